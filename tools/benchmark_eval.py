#!/usr/bin/env python
"""`massivetext benchmark-eval`: the same flags, output and exit status (massivetext_tf/cli/benchmark_eval.py)."""
from massivetext_tf.cli.benchmark_eval import main

if __name__ == "__main__":
    raise SystemExit(main())
