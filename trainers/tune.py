#!/usr/bin/env python
"""`massivetext tune`: the same flags, output and exit status (massivetext_tf/cli/tune.py)."""
from massivetext_tf.cli.tune import main

if __name__ == "__main__":
    raise SystemExit(main())
