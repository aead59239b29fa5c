"""Flags and config file of `massivetext tune` (trainers/tune.py).

The config file is an experiment config (the sections of massivetext_tf/configs/gopher_tiny.yaml:
the base every trial starts from) plus two sections of its own:

    tuning:            # defaults for the flags of the same name
      tuner: random            # random | hyperband | bayesian
      max_trials: 8
      budget_tokens: 262144    # training tokens per (full-budget) trial
      seed: 0
      hyperband_max_epochs: 3
      hyperband_factor: 3
      max_consecutive_failures: 3
      flop_budget: null        # FLOPs: bound the architecture choices (compute_optimal)
      flop_factor: 4
    search_space:      # see massivetext_tf/tuning/space.py
      model.num_layers: "int:1:2"
      optimizer.peak_lr: {type: float, min: 3e-4, max: 3e-3, sampling: log}

Precedence: file, then `--set`/`--space`, then the explicit flags.
"""
from __future__ import annotations

import argparse
import json
import sys

TUNING_DEFAULTS = {
    "tuner": "random", "max_trials": None, "budget_tokens": None, "seed": 0,
    "hyperband_max_epochs": 3, "hyperband_factor": 3, "max_consecutive_failures": 3,
    "flop_budget": None, "flop_factor": 4.0, "num_initial_points": None,
}

# Explicit flag -> experiment config field.
CONFIG_FLAGS = {
    "strategy": "runtime.strategy", "data": "data.dir", "devices": "runtime.devices",
    "tpu": "runtime.tpu", "mixed_precision": "runtime.mixed_precision",
}


def parser() -> argparse.ArgumentParser:
    """`massivetext tune`: the base flags of training (`training.cli.base_parser`) plus the
    search's own."""
    from massivetext_tf.training.cli import base_parser

    p = base_parser(
        "Hyperparameter search over the model zoo with keras-tuner; every trial "
        "runs the distributed training loop of `massivetext train`.",
        config_help="tuning YAML: a path, or the name of a bundled config (tune_tiny)",
        config_required=True, set_help="override a base config field",
        epilog="Writes PROJECT_DIR/trials.csv and PROJECT_DIR/best_config.yaml; "
               "watch with: tensorboard --logdir PROJECT_DIR (HParams tab).")
    p.add_argument("--project-dir", dest="project_dir", required=True,
                   help="oracle state, trials, TensorBoard logs, reports; rerun to resume")
    p.add_argument("--max-trials", dest="max_trials", type=int,
                   help="total trials of the project (a resumed project counts its old ones)")
    p.add_argument("--tuner", choices=["random", "hyperband", "bayesian"])
    p.add_argument("--budget-tokens", dest="budget_tokens", type=float,
                   help="training tokens per trial: steps = tokens / (batch x sequence length); "
                        "Hyperband: the budget of its max_epochs")
    p.add_argument("--seed", type=int, help="oracle seed (trials share runtime.seed)")
    p.add_argument("--space", action="append", default=[], metavar="TARGET=KIND:...",
                   help="add/replace a search dimension, e.g. model.num_layers=choice:1,2 or "
                        "optimizer.peak_lr=float:1e-4:1e-2:log; TARGET=none removes one")
    p.add_argument("--flop-budget", dest="flop_budget", type=float,
                   help="FLOPs: keep architectures within --flop-factor of the Chinchilla-optimal "
                        "N = sqrt(C/120); the token budget defaults to D = 20 N")
    p.add_argument("--flop-factor", dest="flop_factor", type=float)
    p.add_argument("--hyperband-max-epochs", dest="hyperband_max_epochs", type=int)
    p.add_argument("--hyperband-factor", dest="hyperband_factor", type=int)
    p.add_argument("--max-consecutive-failures", dest="max_consecutive_failures", type=int)
    p.add_argument("--num-initial-points", dest="num_initial_points", type=int,
                   help="bayesian: random trials before the Gaussian process")
    p.add_argument("--overwrite", action="store_true", help="start the project over")
    return p


def load(path: str, *, overrides=(), space_flags=(), explicit: dict | None = None,
         tuning_flags: dict | None = None):
    """Tuning YAML -> (base ExperimentConfig, {target: ParamSpec}, tuning settings)."""
    import tensorflow as tf
    import yaml

    from massivetext_tf import configs
    from massivetext_tf.training import config as config_lib
    from massivetext_tf.tuning import space as space_lib

    path = configs.resolve(path)
    if not tf.io.gfile.exists(path):
        raise ValueError(f"--config: no such file {path}")
    with tf.io.gfile.GFile(path) as f:
        data = yaml.safe_load(f.read()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"--config {path}: expected a mapping")
    space_data = data.pop("search_space", None)
    tuning = dict(TUNING_DEFAULTS)
    file_tuning = data.pop("tuning", None) or {}
    if not isinstance(file_tuning, dict):
        raise ValueError("tuning: expected a mapping")
    unknown = sorted(set(file_tuning) - set(TUNING_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown config field tuning.{unknown[0]}; valid fields of tuning: "
                         f"{', '.join(sorted(TUNING_DEFAULTS))}")
    tuning.update(file_tuning)
    for key, value in (tuning_flags or {}).items():
        if value is not None:
            tuning[key] = value
    cfg = config_lib.from_dict(data)
    for item in overrides or ():
        config_lib.apply_override(cfg, item)
    for key, value in (explicit or {}).items():
        if value is not None:
            flag = "--" + next(k for k, v in CONFIG_FLAGS.items() if v == key).replace("_", "-")
            config_lib.set_value(cfg, key, value, flag=flag)
    config_lib.validate(cfg)
    space = space_lib.parse_space(space_data)
    space = space_lib.apply_space_flags(space, space_flags)
    _check_tuning(tuning)
    return cfg, space, tuning


def _check_tuning(t: dict) -> None:
    from massivetext_tf.tuning.search import TUNERS

    if t["tuner"] not in TUNERS:
        raise ValueError(f"--tuner / tuning.tuner: expected one of {', '.join(TUNERS)}, "
                         f"got {t['tuner']!r}")
    if t["max_trials"] is None:
        raise ValueError("--max-trials: required (or tuning.max_trials in the config)")
    for key in ("max_trials", "hyperband_max_epochs", "hyperband_factor",
                "max_consecutive_failures"):
        v = t[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"--{key.replace('_', '-')} / tuning.{key}: must be a positive "
                             f"integer, got {v!r}")
    for key in ("budget_tokens", "flop_budget"):
        v = t[key]
        if v is not None:
            try:
                t[key] = float(v)
            except (TypeError, ValueError):
                raise ValueError(f"--{key.replace('_', '-')} / tuning.{key}: expected a number, "
                                 f"got {v!r}") from None
            if not t[key] > 0:
                raise ValueError(f"--{key.replace('_', '-')} / tuning.{key}: must be > 0, "
                                 f"got {v!r}")


def main(argv=None) -> int:
    """Runs the search (`massivetext tune`); exit status 0 done, 1 no trial completed,
    2 bad input, 3 stopped early (rerun to go on)."""
    from massivetext_tf.training.cli import setup

    args = parser().parse_args(argv)
    setup(args)
    from massivetext_tf.tuning import compute_optimal
    from massivetext_tf.tuning import search as search_lib

    tuning_flags = {k: getattr(args, k) for k in TUNING_DEFAULTS if hasattr(args, k)}
    try:
        cfg, space, t = load(
            args.config, overrides=args.overrides, space_flags=args.space,
            explicit={field: getattr(args, flag) for flag, field in CONFIG_FLAGS.items()},
            tuning_flags=tuning_flags)
        budget = t["budget_tokens"]
        if t["flop_budget"]:
            space, info = compute_optimal.bound_space(space, t["flop_budget"], cfg,
                                                      factor=float(t["flop_factor"]))
            budget = budget or info["tokens"]
            print(f"[tune] --flop-budget {t['flop_budget']:g}: compute-optimal N = "
                  f"{info['params']:,.0f} params, D = {info['tokens']:,.0f} tokens "
                  f"(Chinchilla, 20 tokens/param); architecture choices within x"
                  f"{info['factor']:g}: " + json.dumps(
                      {k: v["after"] for k, v in info["dimensions"].items()}), flush=True)
        result = search_lib.search(
            cfg, space, project_dir=args.project_dir, max_trials=t["max_trials"],
            tuner=t["tuner"], budget_tokens=budget, seed=t["seed"],
            hyperband_max_epochs=t["hyperband_max_epochs"],
            hyperband_factor=t["hyperband_factor"],
            max_consecutive_failures=t["max_consecutive_failures"],
            num_initial_points=t["num_initial_points"], overwrite=args.overwrite)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print()
    print(result["table"])
    print()
    print(f"trials: {result['trials_csv']}")
    if result["stopped"]:
        print(f"search {result['stopped']}", file=sys.stderr)
    if result["best_config"]:
        print(f"best config: {result['best_config']}")
    else:
        print("no trial completed: no best_config.yaml", file=sys.stderr)
    summary = {
        "project_dir": result["project_dir"], "ran_trials": result["ran_trials"],
        "trials": len(result["trials"]),
        "completed": sum(r["status"] == "COMPLETED" for r in result["trials"]),
        "failed": sum(r["status"] == "FAILED" for r in result["trials"]),
        "best_trial": result["best"]["trial_id"] if result["best"] else None,
        "best_val_bits_per_byte": result["best"][search_lib.OBJECTIVE] if result["best"] else None,
        "best_config": result["best_config"], "trials_csv": result["trials_csv"],
        "stopped": result["stopped"],
    }
    print(json.dumps(summary))
    if result["stopped"]:
        return 3  # rerun the same command to go on
    return 0 if result["best_config"] else 1
