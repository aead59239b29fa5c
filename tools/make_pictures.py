#!/usr/bin/env python
"""`massivetext pictures`: the same flags, output and exit status (massivetext_tf/cli/pictures.py)."""
from massivetext_tf.cli.pictures import main

if __name__ == "__main__":
    raise SystemExit(main())
