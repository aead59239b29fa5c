#!/usr/bin/env python
"""`massivetext demo`: the same flags, output and exit status (massivetext_tf/cli/demo.py)."""
from massivetext_tf.cli.demo import main

if __name__ == "__main__":
    raise SystemExit(main())
