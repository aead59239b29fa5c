"""Flags of `massivetext train` / `finetune` (trainers/pretrain.py, trainers/finetune.py), and
the base parser that `massivetext tune` shares with them.

Every command takes `--config FILE --strategy NAME --model-dir DIR --data DIR --train-steps N`,
plus `--set section.field=value` (repeatable) for any config field. Precedence: YAML, then
`--set`, then the explicit flags.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

from massivetext_tf.training import names

# Explicit flag -> config field.
FLAGS = {
    "strategy": "runtime.strategy",
    "model_dir": "model_dir",
    "data": "data.dir",
    "train_steps": "trainer.train_steps",
    "tpu": "runtime.tpu",
    "devices": "runtime.devices",
    "mixed_precision": "runtime.mixed_precision",
    "steps_per_loop": "trainer.steps_per_loop",
    "seed": "runtime.seed",
    "peak_flops": "runtime.peak_flops_per_device",
    "init_from": "model.init_from",
    "backend": "runtime.backend",
    "mesh": "runtime.mesh",
    "coordinator": "runtime.jax_coordinator",
    "num_processes": "runtime.jax_num_processes",
    "process_id": "runtime.jax_process_id",
}


def base_parser(description: str, *, config_help: str, config_required: bool = False,
                set_help: str = "override any config field (repeatable)",
                **kwargs) -> argparse.ArgumentParser:
    """The flags that `massivetext train`/`finetune` and `massivetext tune` share, defined once:
    --config, --data, --strategy, --devices, --tpu, --mixed-precision, --set, --logical-cpus,
    -v. `kwargs` go to `argparse.ArgumentParser` (epilog, prog)."""
    p = argparse.ArgumentParser(description=description, **kwargs)
    p.add_argument("--config", required=config_required, help=config_help)
    p.add_argument("--strategy", choices=names.STRATEGIES)
    p.add_argument("--data", help="prepare-data output directory, or 'synthetic'")
    p.add_argument("--tpu", help="TPU name or address (tpu strategy; 'local' on a TPU VM)")
    p.add_argument("--devices", help="e.g. GPU:0,GPU:1 (one_device / mirrored)")
    p.add_argument("--mixed-precision", dest="mixed_precision", choices=names.PRECISIONS)
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="SECTION.FIELD=VALUE", help=set_help)
    p.add_argument("--logical-cpus", dest="logical_cpus", type=int, default=0,
                   help="split the CPU into N logical devices (mirrored on a CPU-only machine)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def parser(description: str) -> argparse.ArgumentParser:
    """`massivetext train` and `massivetext finetune`: the base flags plus the run's own."""
    p = base_parser(description, config_help="experiment YAML: a path, or the name of a "
                                             "bundled config (massivetext_tf/configs/*.yaml)")
    p.add_argument("--model-dir", dest="model_dir", help="checkpoints, metrics, preset (gs:// ok)")
    p.add_argument("--train-steps", dest="train_steps", type=int)
    p.add_argument("--steps-per-loop", dest="steps_per_loop", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--peak-flops", dest="peak_flops", type=float,
                   help="peak FLOP/s per device for MFU (default: table, or measured on CPU)")
    p.add_argument("--init-from", dest="init_from",
                   help="checkpoint or keras-hub preset dir to start from")
    p.add_argument("--backend", choices=names.BACKENDS,
                   help="Keras backend of the training step: tensorflow (default; every "
                        "tf.distribute strategy) or jax (one_device, model_parallel)")
    p.add_argument("--mesh", metavar="data=D,model=M",
                   help="model_parallel: the device mesh (batch over data; heads, feed-forward "
                        "columns and vocabulary over model)")
    p.add_argument("--coordinator", metavar="HOST:PORT",
                   help="jax, several processes (one per host): the address of process 0 "
                        "(default: KERAS_DISTRIBUTION_JOB_ADDRESSES, or found on Cloud TPU)")
    p.add_argument("--num-processes", dest="num_processes", type=int,
                   help="jax: the number of processes (default: "
                        "KERAS_DISTRIBUTION_NUM_PROCESSES, or found on Cloud TPU)")
    p.add_argument("--process-id", dest="process_id", type=int,
                   help="jax: this process's index, 0..N-1; 0 writes checkpoints, metrics and "
                        "the preset (default: KERAS_DISTRIBUTION_PROCESS_ID, or found on "
                        "Cloud TPU)")
    return p


# The evaluation modes of `massivetext train` (run by massivetext_tf.training.evaluator).
MODES = ("train", "eval", "continuous_eval")


def add_mode_flags(p) -> None:
    """The flags of the evaluation modes (`massivetext train`, trainers/pretrain.py)."""
    p.add_argument("--mode", choices=MODES, default="train",
                   help="train (default; evaluates at trainer.eval_every), eval (one checkpoint), "
                        "continuous_eval (each new checkpoint of --model-dir once, until the final one)")
    p.add_argument("--checkpoint", help="--mode eval: checkpoint prefix (default: the newest)")
    p.add_argument("--eval-timeout", dest="eval_timeout", type=float, default=None,
                   help="continuous_eval: stop after this many seconds without a new checkpoint "
                        "(default: wait until the final checkpoint)")
    p.add_argument("--poll-interval", dest="poll_interval", type=float, default=10.0,
                   help="continuous_eval: seconds between looks for a new checkpoint")


def load(args, *, defaults: dict | None = None):
    """argparse namespace -> validated ExperimentConfig (errors name the flag/field)."""
    from massivetext_tf.training import config as config_lib

    explicit = {field: getattr(args, flag) for flag, field in FLAGS.items()
                if getattr(args, flag, None) is not None}
    cfg = config_lib.load_config(args.config)
    for key, value in (defaults or {}).items():
        config_lib.set_value(cfg, key, value)
    for item in args.overrides:
        config_lib.apply_override(cfg, item)
    for key, value in explicit.items():
        config_lib.set_value(cfg, key, value, flag="--" + _flag_name(key))
    config_lib.validate(cfg)
    if not cfg.model_dir:
        raise ValueError("--model-dir is required")
    return cfg


def _flag_name(field: str) -> str:
    for flag, f in FLAGS.items():
        if f == field:
            return flag.replace("_", "-")
    return field


def setup(args) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.logical_cpus:
        from massivetext_tf.training.strategy import set_logical_cpus

        set_logical_cpus(args.logical_cpus)


def result_line(result: dict) -> str:
    """The final stdout line: strict JSON (a non-finite number becomes null)."""
    from massivetext_tf import io

    def plain(v):
        if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:  # numpy / tf scalars
            return v.item()
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        return str(v)

    return io.dumps(plain(result), indent=None, sort_keys=False)


def run(main_fn, description: str, argv=None, *, add_flags=None) -> int:
    """Parses flags, builds the config, calls `main_fn(cfg)` (`main_fn(cfg, args)` when
    `add_flags(parser)` added flags of its own), prints the result as JSON.

    With `--mode eval|continuous_eval` (`massivetext train`) and no `--config`, the config is
    the model directory's own (its latest recorded `config.yaml`).

    Exit status: 0 done (or preempted), 2 bad flags, config or data (one `error:` line naming
    the flag, field or file), 3 a non-finite loss or state (see docs/training.md).
    """
    p = parser(description)
    if add_flags is not None:
        add_flags(p)
    args = p.parse_args(argv)
    try:
        from massivetext_tf.training import backend

        # Keras reads its backend once, at import, and TensorFlow imports Keras: choose it
        # before anything below imports TensorFlow.
        backend.select(backend.requested(args))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    setup(args)
    try:
        if getattr(args, "mode", "train") != "train" and not args.config and args.model_dir:
            from massivetext_tf.training.run_dir import latest_config_path

            args.config = latest_config_path(args.model_dir.rstrip("/"))
            if not args.config:
                raise ValueError(f"--mode {args.mode}: --model-dir {args.model_dir} has no config.yaml "
                                 "(not a training run's directory); give --config")
        cfg = load(args)
        backend.check_loaded(cfg.runtime.backend)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from massivetext_tf.training.loop import NonFiniteError

    try:
        result = main_fn(cfg, args) if add_flags is not None else main_fn(cfg)
    except NonFiniteError as e:
        print(f"error: {e}", file=sys.stderr)
        print(result_line({"status": "nonfinite", "step": e.step, "resume_step": e.good_step,
                           "checkpoint": e.checkpoint, "model_dir": cfg.model_dir,
                           "error": str(e)}), flush=True)
        return 3
    except (ValueError, FileNotFoundError) as e:
        # Bad input met after the flags were read (data, a reused model dir, an init_from
        # path): one line naming it; the traceback only with --verbose.
        logging.getLogger("massivetext_tf").debug("details", exc_info=True)
        print(f"error: {str(e).strip() or type(e).__name__}", file=sys.stderr)
        return 2
    result = {k: v for k, v in result.items() if k != "history"}
    print(result_line(result), flush=True)
    return 0
