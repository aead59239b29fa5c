"""Print a preset's parameter count without allocating weights.

    massivetext count-params gopher_280b
    massivetext count-params gopher_44m --json
    massivetext count-params gopher_tiny --set num_layers=4 --set position_encoding=rotary

(`python tools/count_params.py` takes the same arguments.)
"""
import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _value(text):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def build_parser():
    """The arguments of `massivetext count-params` (no TensorFlow import)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # The preset names live in massivetext_tf.models, which imports Keras: an unknown name
    # prints them all.
    parser.add_argument("preset", help="a zoo preset, e.g. gopher_44m, gopher_280b, chinchilla_70b "
                                       "(an unknown name lists them all)")
    parser.add_argument("--json", action="store_true", help="print the breakdown as JSON")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override a config field")
    return parser


def main(argv=None):
    """Runs `massivetext count-params`; returns 0 (2 on a bad preset or override)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    overrides = {}
    for item in args.set:
        if "=" not in item:
            parser.error(f"--set expects FIELD=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        overrides[key] = _value(value)
    from massivetext_tf import models

    try:
        breakdown = models.count_params(args.preset, breakdown=True, **overrides)
    except ValueError as e:
        parser.error(str(e))
    if args.json:
        paper = None
        if isinstance(args.preset, str) and args.preset in models.list_presets():
            paper = models.preset_metadata(args.preset).get("paper_params")
        print(json.dumps({"preset": args.preset, **breakdown, "paper_params": paper}, indent=2))
    else:
        print(breakdown["total"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
