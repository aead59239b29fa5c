#!/usr/bin/env python
"""`massivetext train`: the same flags, output and exit status (massivetext_tf/cli/train.py)."""
from massivetext_tf.cli.train import main

if __name__ == "__main__":
    raise SystemExit(main())
