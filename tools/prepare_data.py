#!/usr/bin/env python
"""`massivetext prepare-data`: the same flags, output and exit status (massivetext_tf/cli/prepare_data.py)."""
from massivetext_tf.cli.prepare_data import main

if __name__ == "__main__":
    raise SystemExit(main())
