#!/usr/bin/env python
"""`massivetext make-web-testdata`: the same flags, output and exit status (massivetext_tf/cli/make_web_testdata.py)."""
from massivetext_tf.cli.make_web_testdata import main, warc_record  # noqa: F401  (tests build WARC records with it)

if __name__ == "__main__":
    raise SystemExit(main())
