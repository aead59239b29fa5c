#!/usr/bin/env python
"""`massivetext plan`: the same flags, output and exit status (massivetext_tf/cli/plan.py)."""
from massivetext_tf.cli.plan import main

if __name__ == "__main__":
    raise SystemExit(main())
