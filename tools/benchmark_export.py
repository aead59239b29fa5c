#!/usr/bin/env python
"""`massivetext benchmark-export`: the same flags, output and exit status (massivetext_tf/cli/benchmark_export.py)."""
from massivetext_tf.cli.benchmark_export import main

if __name__ == "__main__":
    raise SystemExit(main())
