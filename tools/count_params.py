#!/usr/bin/env python
"""`massivetext count-params`: the same flags, output and exit status (massivetext_tf/cli/count_params.py)."""
from massivetext_tf.cli.count_params import main

if __name__ == "__main__":
    raise SystemExit(main())
