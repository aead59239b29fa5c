#!/usr/bin/env python
"""`massivetext train-tokenizer`: the same flags, output and exit status (massivetext_tf/cli/train_tokenizer.py)."""
from massivetext_tf.cli.train_tokenizer import main

if __name__ == "__main__":
    raise SystemExit(main())
