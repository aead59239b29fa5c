#!/usr/bin/env python
"""`massivetext evaluate`: the same flags, output and exit status (massivetext_tf/cli/evaluate.py)."""
from massivetext_tf.cli.evaluate import main

if __name__ == "__main__":
    raise SystemExit(main())
