#!/usr/bin/env python
"""`make demo`: train a Gopher-style model on Shakespeare and export it for serving.

    python tools/demo.py                       # everything under runs/demo/
    python tools/demo.py --run-dir runs/d2 --fresh
    python tools/demo.py --config massivetext_tf/configs/demo_ci.yaml --run-dir /tmp/ci
    FRESH=1 make demo                          # start over
    make demo DEMO_ARGS="--train-steps 200 --run-dir runs/short"

A second run reuses every finished stage; Ctrl-C during training writes a checkpoint and the
next run continues from it. See docs/demo.md for each stage's own command.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from massivetext_tf.demo import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
