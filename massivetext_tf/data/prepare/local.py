"""The local runner: the whole of prepare_data in this process (`run_local`), after
`validate_inputs` has checked everything that can be checked before writing."""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Callable

import tensorflow as tf

from massivetext_tf.data import records
from massivetext_tf.data.prepare.encoder import Encoder
from massivetext_tf.data.prepare.output_dir import check_state
from massivetext_tf.data.prepare.plan import (FileTask, PrepareConfig, _text_field, all_specs,
                                              plan_files)
from massivetext_tf.data.prepare.steps import (Deduper, FileProcessor, ShardAssigner,
                                               dedup_rejected)
from massivetext_tf.data.prepare.write import (_RejectedWriters, finalize, merge_reports,
                                               write_jsonl_shard, write_tfrecord_shard)


def validate_inputs(cfg: PrepareConfig) -> list[FileTask]:
    """Everything that can be checked before anything is written: every pattern matches
    files (sources and contamination eval files) and the tokenizer loads. Returns the plan."""
    from massivetext_tf.data.curate import SourceSpec, list_files

    tasks = plan_files(cfg)
    for _, spec in all_specs(cfg):
        if spec.blocklist:
            from massivetext_tf.data.curate.urlfilter import load_blocklist
            load_blocklist(spec.blocklist)  # a missing or bad blocklist fails here, one line
    c = cfg.curation.contamination
    if "contamination" not in cfg.curation.skip and c.eval_files:
        list_files(SourceSpec(name="contamination_eval", patterns=list(c.eval_files)))
    if cfg.tokenizer and not cfg.curate_only:
        Encoder(cfg.tokenizer)
    return tasks


def run_local(cfg: PrepareConfig, *, log: Callable[[str], None] = print) -> dict:
    """Runs the whole pipeline in this process; returns the manifest (or curated index).
    Inputs are checked before the output directory is claimed (`validate_inputs`)."""
    tasks = validate_inputs(cfg)
    check_state(cfg)
    if cfg.train_tokenizer_vocab and not cfg.tokenizer and not cfg.curate_only:
        return _run_with_tokenizer_training(cfg, log=log)
    encoder = tok_sha = None
    if not cfg.curate_only:
        encoder = Encoder(cfg.tokenizer)
        tok_sha = records.file_sha256(cfg.tokenizer)
    specs = all_specs(cfg)
    processor = FileProcessor(cfg)
    deduper = Deduper(processor.dedup)
    assigner = ShardAssigner(cfg.shard_size)
    reports, entries = [], []
    buffers: dict = {}       # (split, source) -> (index, [docs])
    rejected_out = _RejectedWriters(cfg.keep_rejected) if cfg.keep_rejected else None

    def flush(split, source):
        index, docs = buffers.pop((split, source))
        if cfg.curate_only:
            entries.append(write_jsonl_shard(cfg.output, split, source, index,
                                             [d.to_record(_text_field(cfg, source))
                                              for d in docs]))
        else:
            e = write_tfrecord_shard(cfg.output, split, source, index, [d.text for d in docs],
                                     encoder, tok_sha, batch=cfg.encode_batch)
            log(f"{'resumed' if e.get('resumed') else 'wrote'} {e['file']}: "
                f"{e['documents']} docs, {e['tokens']} tokens")
            entries.append(e)

    for task in tasks:
        survivors, rejected, rep = processor.process(task, specs[task.source_index][1])
        reports.append(rep)
        for s, doc in survivors:
            verdict = deduper.check(s)
            report = rep[s.split]
            if verdict is None:
                report.count_kept(s.source, s.num_bytes, s.language)
                index, new = assigner.add(s.split, s.source, s.num_bytes)
                if new and (s.split, s.source) in buffers:
                    flush(s.split, s.source)
                buffers.setdefault((s.split, s.source), (index, []))[1].append(doc)
            else:
                report.count_removed(s.source, f"dedup:{verdict}", s.num_bytes, s.language)
                if rejected_out is not None:
                    rejected.append(dedup_rejected(cfg, s, doc, verdict))
        if rejected_out is not None:
            for r in sorted(rejected, key=lambda r: r.key):
                rejected_out.write(r)
    for split, source in sorted(buffers):
        flush(split, source)
    if rejected_out is not None:
        rejected_out.close()
    report = merge_reports(reports)
    return finalize(cfg, entries, report)


def _run_with_tokenizer_training(cfg: PrepareConfig, *, log) -> dict:
    """--train-tokenizer-vocab: curate to OUTPUT/curated/, train on its train split, then
    tokenize the curated shards (one TFRecord shard per curated shard)."""
    from massivetext_tf.data.curate import SourceSpec
    from massivetext_tf.data.tokenizer import train_tokenizer

    curated = dataclasses.replace(cfg, curate_only=True, train_tokenizer_vocab=None)
    index = run_local(curated, log=log)
    tok_path = os.path.join(cfg.output, records.TOKENIZER_FILE)
    train_files = [(os.path.join(cfg.output, e["file"]), e) for e in index["files"]
                   if e["split"] == "train"]
    if not train_files:
        raise ValueError("--train-tokenizer-vocab: curation kept no training documents")
    specs = [SourceSpec(f"curated{i}", [path], format="jsonl",
                        text_field=_text_field(cfg, e["source"]))
             for i, (path, e) in enumerate(train_files)]
    train_tokenizer(tok_path, sources=specs,
                    vocab_size=cfg.train_tokenizer_vocab, **cfg.tokenizer_options)
    log(f"trained tokenizer {tok_path} (vocab {cfg.train_tokenizer_vocab})")
    encoder = Encoder(tok_path)
    tok_sha = records.file_sha256(tok_path)
    entries = []
    for e in index["files"]:
        texts = []
        with tf.io.gfile.GFile(os.path.join(cfg.output, e["file"]), "r") as f:
            for line in f:
                texts.append(json.loads(line)[_text_field(cfg, e["source"])])
        idx = int(e["file"].rsplit("-", 1)[1].split(".")[0])
        entries.append(write_tfrecord_shard(cfg.output, e["split"], e["source"], idx, texts,
                                            encoder, tok_sha, batch=cfg.encode_batch))
    final = dataclasses.replace(cfg, tokenizer=tok_path)
    return finalize(final, entries, index["report"])
