#!/usr/bin/env python
"""`massivetext benchmark-data`: the same flags, output and exit status (massivetext_tf/cli/benchmark_data.py)."""
from massivetext_tf.cli.benchmark_data import main

if __name__ == "__main__":
    raise SystemExit(main())
