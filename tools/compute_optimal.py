#!/usr/bin/env python
"""`massivetext compute-optimal`: the same flags, output and exit status (massivetext_tf/cli/compute_optimal.py)."""
from massivetext_tf.cli.compute_optimal import main

if __name__ == "__main__":
    raise SystemExit(main())
