#!/usr/bin/env python
"""`massivetext convert-checkpoint`: the same flags, output and exit status (massivetext_tf/cli/convert_checkpoint.py)."""
from massivetext_tf.cli.convert_checkpoint import main

if __name__ == "__main__":
    raise SystemExit(main())
