#!/usr/bin/env python
"""`massivetext make-eval-tasks`: the same flags, output and exit status (massivetext_tf/cli/make_eval_tasks.py)."""
from massivetext_tf.cli.make_eval_tasks import main

if __name__ == "__main__":
    raise SystemExit(main())
