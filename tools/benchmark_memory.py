#!/usr/bin/env python
"""`massivetext benchmark-memory`: the same flags, output and exit status (massivetext_tf/cli/benchmark_memory.py)."""
from massivetext_tf.cli.benchmark_memory import main

if __name__ == "__main__":
    raise SystemExit(main())
