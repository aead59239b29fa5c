#!/usr/bin/env python
"""`massivetext benchmark-train`: the same flags, output and exit status (massivetext_tf/cli/benchmark_train.py)."""
from massivetext_tf.cli.benchmark_train import main

if __name__ == "__main__":
    raise SystemExit(main())
