#!/usr/bin/env python
"""`massivetext finetune`: the same flags, output and exit status (massivetext_tf/cli/finetune.py)."""
from massivetext_tf.cli.finetune import main

if __name__ == "__main__":
    raise SystemExit(main())
