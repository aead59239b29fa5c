r"""Evaluate models the way Gopher was judged: bits per byte per source, and tasks from YAML.

Examples:
  massivetext evaluate --model runs/tiny/preset --source wiki='raw/wiki/*.jsonl' \
      --source books='gs://bucket/books/*.txt' --output results.json --markdown results.md
  massivetext evaluate --model runs/tiny/preset --model saved_models/tiny/1 \
      --task tasks/capitals.yaml --task tasks/qa.yaml --num-fewshot 2

--model takes a keras-hub preset directory (e.g. MODEL_DIR/preset, run in float32 unless
--dtype), an exported SavedModel NAME/VERSION directory (scored through its forward and
generate signatures) or a training checkpoint MODEL_DIR/checkpoints/ckpt-N; repeat it to put
models side by side, `LABEL=PATH` to name a column. --plot PNG draws each metric against the
training tokens of checkpoints of one run.
Prints the markdown table; exits 2 on bad input (one line naming the file, line and field).
See docs/evaluation.md.
"""
import argparse
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build_parser():
    """The flags of `massivetext evaluate` (no TensorFlow import)."""
    from massivetext_tf.data.source_args import add_source_args

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", required=True, metavar="[LABEL=]PATH",
                   help="preset directory or SavedModel NAME/VERSION directory (repeatable)")
    p.add_argument("--task", action="append", default=[], metavar="YAML_OR_NAME",
                   help="task file, or a task name found in --task-dir (repeatable)")
    p.add_argument("--task-dir", action="append", default=[], metavar="DIR",
                   help="directory of task YAML files addressable by name")
    add_source_args(p)  # --input, --source NAME=GLOB[:opts], --text-field, --format, --text-unit
    p.add_argument("--output", metavar="JSON", help="write every result row here (local or gs://)")
    p.add_argument("--markdown", metavar="MD", help="write the markdown tables here")
    p.add_argument("--plot", metavar="PNG", help="each metric against training tokens, for checkpoints of one run "
                                                 "(--model MODEL_DIR/checkpoints/ckpt-N ...)")
    p.add_argument("--num-fewshot", type=int, help="override every task's num_fewshot")
    p.add_argument("--limit", type=int, help="evaluate only the first N items of each task")
    p.add_argument("--seed", type=int, help="override every task's few-shot seed")
    p.add_argument("--batch-size", type=int, default=8, help="rows per forward/generate call")
    p.add_argument("--max-length", type=int, help="window in tokens (default: the model's context)")
    p.add_argument("--stride", type=int, help="sliding-window stride (default: half the window)")
    p.add_argument("--rolling-windows", choices=("stride", "lm-eval"), default="stride",
                   help="bits per byte windows: 'stride' (default: --stride apart, docs/evaluation.md) or "
                        "'lm-eval' (lm-evaluation-harness's loglikelihood_rolling, one token of context)")
    p.add_argument("--dtype", default="float32",
                   help="dtype policy of preset models (default float32; e.g. bfloat16)")
    p.add_argument("--bootstrap-iters", type=int, default=1000, help="bootstrap resamples for stderr")
    p.add_argument("--no-jit-compile", dest="jit_compile", action="store_false",
                   help="do not XLA-compile the decoding loop of preset models")
    return p


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)

    def bad(message):
        print(f"evaluate: error: {message}", file=sys.stderr)
        return 2

    from massivetext_tf import evaluation
    from massivetext_tf.data.curate.readers import ReadError
    from massivetext_tf.data.prepare import sources_from_args
    from massivetext_tf.evaluation import report, runner

    try:
        for flag, value, low in (("--batch-size", args.batch_size, 1), ("--bootstrap-iters", args.bootstrap_iters, 0),
                                 ("--num-fewshot", args.num_fewshot, 0), ("--limit", args.limit, 1),
                                 ("--max-length", args.max_length, 2), ("--stride", args.stride, 1)):
            if value is not None and value < low:
                return bad(f"{flag} must be at least {low}, got {value}")
        if args.plot and len(args.model) < 2:
            return bad("--plot: needs checkpoints of one run, at least two --model MODEL_DIR/checkpoints/ckpt-N")
        specs = sources_from_args(args)
        if not specs and not args.task:
            return bad("nothing to evaluate: give --task YAML and/or --source NAME=GLOB")
        tasks = [evaluation.load_task(evaluation.find_task(t, args.task_dir), num_fewshot=args.num_fewshot,
                                      limit=args.limit, seed=args.seed) for t in args.task]
        labelled = []
        for value in args.model:
            label, sep, path = value.partition("=")
            if not sep or "/" in label or ":" in label:
                label, path = None, value
            labelled.append((label, path))
        runs = []
        for label, path in labelled:
            adapter = evaluation.load_model(path, name=label, batch_size=args.batch_size, dtype=args.dtype,
                                            max_length=args.max_length, stride=args.stride,
                                            jit_compile=args.jit_compile)
            if any(adapter.info["name"] == info["name"] for info, _ in runs):
                adapter.info["name"] = f"{adapter.info['name']}#{len(runs) + 1}"
            rows = []
            for task in tasks:
                print(f"[{adapter.info['name']}] {task.name} ({task.kind}, {len(task.items)} items)", file=sys.stderr)
                rows += runner.evaluate_task(adapter, task, bootstrap_iters=args.bootstrap_iters)
            for spec in specs:
                print(f"[{adapter.info['name']}] source {spec.name}", file=sys.stderr)
                rows += runner.evaluate_source(adapter, spec, stride=args.stride,
                                               bootstrap_iters=args.bootstrap_iters,
                                               log=lambda m: print(m, file=sys.stderr),
                                               windows=args.rolling_windows)
            runs.append((adapter.info, rows))
    except (ValueError, ReadError, FileNotFoundError) as e:  # TaskError, ModelLoadError, bad flags
        return bad(str(e).splitlines()[0] if str(e) else type(e).__name__)
    protocol = {"tasks": {t.name: {"path": t.path, "kind": t.kind, "num_fewshot": t.config["num_fewshot"],
                                   "seed": t.config["seed"], "items": len(t.items)} for t in tasks},
                "sources": {s.name: s.patterns for s in specs}, "dtype": args.dtype,
                "bootstrap_iters": args.bootstrap_iters, "stride": args.stride, "max_length": args.max_length,
                "rolling_windows": args.rolling_windows}
    document = report.results_document(runs, protocol=protocol)
    if args.plot:
        try:
            report.plot_against_tokens(document, args.plot)
        except ValueError as e:
            return bad(str(e))
        except ImportError:
            return bad("--plot needs matplotlib (pip install -e '.[demo]')")
    if args.output:
        report.write_json(args.output, document)
    if args.markdown:
        report.write_markdown(args.markdown, document)
    print(report.markdown(document), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
