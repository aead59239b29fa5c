"""prepare_data on Apache Beam (`massivetext prepare-data --runner DataflowRunner|...`).

The same steps as the local runner (`massivetext_tf.data.prepare`), arranged for many workers:

```
files (driver lists them)  --Reshuffle-->  ParDo(ProcessFile)        per-document filters,
                                             |  |  |  \               dedup keys, reports
                                   survivors docs rejected reports
survivors --GroupByKey(one key)--> ParDo(decide): sort by order key, exact + MinHash dedup per
                                   split, shard assignment  -> (key, keep/reject) decisions
{docs, decisions} --CoGroupByKey(order key)--> kept docs keyed by shard, dedup rejects
kept --GroupByKey(shard)--> ParDo(write shard): sort by key, tokenize, write (skip if done)
shard entries + reports --CoGroupByKey(one key)--> manifest.json, report.json
```

Only the small dedup keys (a 16-byte digest and a 128 x uint32 MinHash signature per
surviving document) meet in one worker; texts stay distributed. Everything is sorted by the
order key `(source, file, document)` before it matters, so DirectRunner produces the same
shard files (byte for byte), manifest and report as the local runner, and a rerun the same
again. Near-duplicate removal is the `Curator`'s streaming rule (first-seen kept) on those keys:
deterministic and correct rather than clever; its one-worker step needs about 0.6 KB per
surviving document.
"""
from __future__ import annotations

import os

from massivetext_tf.data import prepare, records


def _beam():
    try:
        import apache_beam as beam
    except ImportError as e:  # pragma: no cover - the [data] extra installs it
        raise ValueError("--runner needs apache-beam: pip install 'massivetext_tf[data]'") from e
    return beam


def build_pipeline(p, cfg: prepare.PrepareConfig, tasks):
    beam = _beam()
    from apache_beam import pvalue

    specs = prepare.all_specs(cfg)

    class ProcessFile(beam.DoFn):
        def setup(self):
            self.processor = prepare.FileProcessor(cfg)

        def process(self, task):
            survivors, rejected, reports = self.processor.process(
                task, specs[task.source_index][1])
            for s, doc in survivors:
                yield pvalue.TaggedOutput("survivor", (0, s))
                yield pvalue.TaggedOutput("doc", (s.key, doc))
            for r in rejected:
                yield pvalue.TaggedOutput("rejected", r)
            yield pvalue.TaggedOutput("report", (0, {k: v.to_dict() for k, v in reports.items()}))

    class Decide(beam.DoFn):
        def process(self, item):
            from massivetext_tf.data.curate import CurationReport

            _, survivors = item
            processor_dedup = (cfg.curation.dedup if "dedup" not in cfg.curation.skip
                               else None)
            deduper = prepare.Deduper(processor_dedup)
            assigner = prepare.ShardAssigner(cfg.shard_size)
            reports = {s: CurationReport() for s in prepare.SPLITS}
            for s in sorted(survivors, key=lambda s: s.key):
                verdict = deduper.check(s)
                if verdict is None:
                    reports[s.split].count_kept(s.source, s.num_bytes, s.language)
                    index, _ = assigner.add(s.split, s.source, s.num_bytes)
                    yield pvalue.TaggedOutput("decision", (s.key, ("keep", s.split, s.source, index)))
                else:
                    reports[s.split].count_removed(s.source, f"dedup:{verdict}", s.num_bytes,
                                                   s.language)
                    yield pvalue.TaggedOutput("decision", (s.key, ("reject", s.split, s.source, verdict)))
            yield pvalue.TaggedOutput("report",
                                      (0, {k: v.to_dict() for k, v in reports.items()}))

    class Route(beam.DoFn):
        def process(self, item):
            key, grouped = item
            (doc,), (decision,) = grouped["doc"], grouped["decision"]
            kind, split, source, value = decision
            if kind == "keep":
                yield pvalue.TaggedOutput("kept", ((split, source, value), (key, doc)))
            elif cfg.keep_rejected:
                s = prepare.Survivor(key, split, source, doc.num_bytes, None, None)
                yield pvalue.TaggedOutput("rejected", prepare.dedup_rejected(cfg, s, doc, value))

    class WriteShard(beam.DoFn):
        def setup(self):
            self.encoder = None
            if not cfg.curate_only:
                self.encoder = prepare.Encoder(cfg.tokenizer)
                self.tok_sha = records.file_sha256(cfg.tokenizer)

        def process(self, item):
            (split, source, index), docs = item
            docs = [d for _, d in sorted(docs, key=lambda kd: kd[0])]
            if cfg.curate_only:
                field = prepare._text_field(cfg, source)
                yield 0, prepare.write_jsonl_shard(cfg.output, split, source, index,
                                                   [d.to_record(field) for d in docs])
            else:
                yield 0, prepare.write_tfrecord_shard(
                    cfg.output, split, source, index, [d.text for d in docs], self.encoder,
                    self.tok_sha, batch=cfg.encode_batch)

    def write_rejected(item):
        (split, source), rejected = item
        recs = [r.record for r in sorted(rejected, key=lambda r: r.key)]
        prepare.write_rejected(cfg.keep_rejected, split, source, recs)

    def finalize(item):
        _, grouped = item
        report = prepare.merge_reports(grouped["reports"])
        prepare.finalize(cfg, list(grouped["entries"]), report)

    files = (p | "Files" >> beam.Create(tasks) | "Spread" >> beam.Reshuffle())
    out = files | "Process" >> beam.ParDo(ProcessFile()).with_outputs(
        "survivor", "doc", "rejected", "report")
    decided = (out.survivor | "AllSurvivors" >> beam.GroupByKey()
               | "DedupAndAssign" >> beam.ParDo(Decide()).with_outputs("report", "decision"))
    routed = ({"doc": out.doc, "decision": decided.decision} | "Join" >> beam.CoGroupByKey()
              | "Route" >> beam.ParDo(Route()).with_outputs("rejected", "kept"))
    entries = (routed.kept | "ByShard" >> beam.GroupByKey()
               | "WriteShards" >> beam.ParDo(WriteShard()))
    if cfg.keep_rejected:
        ((out.rejected, routed.rejected) | "AllRejected" >> beam.Flatten()
         | "KeyRejected" >> beam.Map(lambda r: ((r.split, r.source), r))
         | "BySource" >> beam.GroupByKey()
         | "WriteRejected" >> beam.Map(write_rejected))
    reports = (out.report, decided.report) | "Reports" >> beam.Flatten()
    ({"entries": entries, "reports": reports} | "Collect" >> beam.CoGroupByKey()
     | "Finalize" >> beam.Map(finalize))
    return p


def run_beam(cfg: prepare.PrepareConfig, *, runner: str = "DirectRunner",
             beam_args=()) -> dict:
    """Runs prepare_data as a Beam pipeline and returns the manifest (or curated index).

    `beam_args` are passed to `PipelineOptions` (e.g. `--project`, `--region`,
    `--temp_location` for Dataflow; `--flink_master` for Flink; `--spark_master_url`)."""
    beam = _beam()
    from apache_beam.options.pipeline_options import PipelineOptions

    if cfg.train_tokenizer_vocab and not cfg.tokenizer and not cfg.curate_only:
        raise ValueError("--train-tokenizer-vocab works with the local runner only; run "
                         "--curate-only, massivetext train-tokenizer, then --tokenizer")
    tasks = prepare.validate_inputs(cfg)   # before the output directory is claimed
    prepare.check_state(cfg)
    args = list(beam_args)
    if runner == "DirectRunner" and not any(a.startswith("--direct_num_workers") for a in args):
        args += ["--direct_num_workers=1"]
    options = PipelineOptions(args, runner=runner)
    with beam.Pipeline(options=options) as p:
        build_pipeline(p, cfg, tasks)
    if cfg.curate_only:
        return records.read_json(os.path.join(cfg.output, prepare.CURATED_DIR, "index.json"))
    return records.read_manifest(cfg.output)
