"""`massivetext demo` (`make demo`): train a Gopher-style model on Shakespeare and export it
for serving.

    massivetext demo                           # everything under runs/demo/
    massivetext demo --run-dir runs/d2 --fresh
    massivetext demo --config demo_ci --run-dir /tmp/ci
    FRESH=1 make demo                          # start over
    make demo DEMO_ARGS="--train-steps 200 --run-dir runs/short"

(`python tools/demo.py` takes the same flags.) A second run reuses every finished stage;
Ctrl-C during training writes a checkpoint and the next run continues from it. See
docs/demo.md for each stage's own command.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def build_parser():
    """The flags of `massivetext demo` (the demo package's own parser)."""
    from massivetext_tf import demo

    return demo.build_parser()


def main(argv=None) -> int:
    """Runs the demo; returns its exit status (0, 1 a stage failed, 130 interrupted)."""
    from massivetext_tf.demo import main as demo_main

    return demo_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
