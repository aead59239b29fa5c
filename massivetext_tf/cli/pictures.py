"""`massivetext pictures`: the docs' pictures from a training run directory.

    massivetext pictures --run-dir runs/demo --out docs/images          # TensorBoard screenshots
    massivetext pictures --run-dir runs/demo/train --out docs/images --no-browser
    python tools/make_pictures.py --run-dir runs/demo --out docs/images  # the same

Writes `loss.png` (train and eval loss against the step, from metrics.jsonl) and a TensorBoard
view of the run's scalars and generated samples: `tensorboard_scalars.png` and
`tensorboard_text.png`, screenshots of a TensorBoard started on the run (needs a Chromium-family
browser), or with `--no-browser` `tensorboard_view.png`, the same data read from the event files
and drawn with matplotlib. The last stdout line is a JSON summary. Bad input: exit 2, one line.
"""
from __future__ import annotations

import argparse
import json
import os
import sys


def build_parser() -> argparse.ArgumentParser:
    """The command line of `massivetext pictures` (no TensorFlow import)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", required=True,
                        help="a training --model-dir (holds metrics.jsonl and tensorboard/), "
                             "or a demo run directory (its train/ is used); gs:// works")
    parser.add_argument("--out", default="docs/images",
                        help="directory for the PNG files (default: docs/images)")
    parser.add_argument("--no-browser", action="store_true",
                        help="render the TensorBoard view with matplotlib instead of taking "
                             "screenshots (no browser needed)")
    parser.add_argument("--browser", default=None,
                        help="Chromium-family browser for the screenshots (a command or path; "
                             "default: the first of chromium, chromium-browser, google-chrome)")
    parser.add_argument("--title", default="", help="title of the loss curve")
    return parser


def main(argv=None) -> int:
    """Runs the command; returns the exit status (0 done, 2 bad input)."""
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from massivetext_tf import pictures

    try:
        result = pictures.make_pictures(args.run_dir, args.out, browser=args.browser,
                                        no_browser=args.no_browser, title=args.title)
    except (pictures.PicturesError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path in result["pictures"]:
        print(f"wrote {path}")
    print(json.dumps({"run_dir": result["run_dir"], "pictures": result["pictures"],
                      "samples": len(result["samples"])}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
