#!/usr/bin/env python
"""`massivetext export`: the same flags, output and exit status (massivetext_tf/cli/export.py)."""
from massivetext_tf.cli.export import main

if __name__ == "__main__":
    raise SystemExit(main())
