#!/usr/bin/env python
"""`massivetext benchmark-generate`: the same flags, output and exit status (massivetext_tf/cli/benchmark_generate.py)."""
from massivetext_tf.cli.benchmark_generate import main

if __name__ == "__main__":
    raise SystemExit(main())
