"""Chinchilla-optimal model size and token count for a FLOP budget (Hoffmann et al. 2022).

    massivetext compute-optimal --flop-budget 5.76e23
    massivetext compute-optimal --flop-budget 1e12 --config gopher_tiny \
        --data synthetic --write-config runs/optimal_tiny.yaml
    massivetext train --config runs/optimal_tiny.yaml --model-dir runs/optimal_tiny

N = sqrt(C / 120) parameters and D = 20 N tokens (C ~= 6 N D, about 20 tokens per parameter).
Prints one JSON object: N, D, the nearest zoo preset, a shape of about N parameters and, with
--config, the number of training steps at its batch shape. See docs/tuning.md.
"""
import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build_parser():
    """The flags of `massivetext compute-optimal` (no TensorFlow import)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--flop-budget", dest="flop_budget", type=float, required=True,
                   help="training compute C in FLOPs")
    p.add_argument("--tokens-per-param", dest="tokens_per_param", type=float, default=20.0)
    p.add_argument("--config", help="base experiment config (its preset, vocabulary, batch shape)")
    p.add_argument("--data", help="data dir for the base config (vocabulary of its tokenizer)")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="SECTION.FIELD=VALUE")
    p.add_argument("--write-config", dest="write_config",
                   help="write the base config with the suggested shape and D tokens of training")
    p.add_argument("--model-dir", dest="model_dir", help="model_dir of the written config")
    return p


def main(argv=None) -> int:
    """Runs `massivetext compute-optimal`; returns 0, or 2 with one line naming the problem."""
    args = build_parser().parse_args(argv)
    from massivetext_tf.training import config as config_lib
    from massivetext_tf.tuning import compute_optimal

    try:
        base = None
        if args.config or args.write_config:
            base = config_lib.load_config(args.config, overrides=args.overrides,
                                          **{"data.dir": args.data, "model_dir": args.model_dir})
        if args.write_config:
            cfg, out = compute_optimal.suggest_config(args.flop_budget, base,
                                                      tokens_per_param=args.tokens_per_param)
            config_lib.save_config(cfg, args.write_config)
            out["config"] = args.write_config
        else:
            out = compute_optimal.suggest(args.flop_budget, base_cfg=base,
                                          tokens_per_param=args.tokens_per_param)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
