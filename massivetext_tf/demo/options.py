"""The demo's flags, its `demo:` config section, and its two exceptions (no TensorFlow)."""
from __future__ import annotations

import dataclasses
import os
import sys

DEFAULT_RUN_DIR = "runs/demo"
# The bundled config (massivetext_tf/configs/demo.yaml), so the demo runs from any directory.
DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "configs", "demo.yaml")
HELD_OUT = ("hamlet", "the-tempest", "julius-caesar")
STAGES = ("corpus", "curate", "tokenizer", "shards", "train", "evaluate", "generate", "export")
SOURCE = "shakespeare"
EVAL_SOURCE = "heldout"
MODEL_NAME = "shakespeare"

# Defaults of the `demo:` section of the config (the rest of the file is the trainer's config).
DEMO_DEFAULTS = {
    "plays": None,  # None = every play; else a list of slugs (file names without .md)
    "held_out": list(HELD_OUT),
    "vocab_size": 4096,
    "prompts": ["ROMEO.", "To be, or not", "KING HENRY."],
    "sample_tokens": 64,
    "sample_top_k": 20,
    "sample_temperature": 0.8,
    "eval_stride": None,  # sliding-window stride in tokens (default: half the window)
    "eval_batch_size": 16,
    "eval_task_items": 40,  # items of each bundled task (massivetext make-eval-tasks); 0 = none
    "export_max_new_tokens": 64,
}


class DemoError(RuntimeError):
    """A stage failed or the run directory / config is not usable; the message says which."""


class Interrupted(Exception):
    """Training stopped by Ctrl-C after writing a checkpoint."""


@dataclasses.dataclass
class Options:
    """What `massivetext demo` was asked to do.

    Attributes:
        run_dir: Directory every stage writes under (local or gs://).
        config: Demo config: a bundled config name or a YAML path with a `demo:` section
            (see `DEMO_DEFAULTS`) plus the trainer's config.
        fresh: Delete `run_dir` first (only a directory holding `.stages/`).
        export_dir: TF Serving base directory; None means `RUN/saved_models`.
        strategy: Distribution strategy for training; None keeps the config's.
        tpu: TPU name or address (with `strategy="tpu"`).
        train_steps: Overrides the config's number of training steps.
        overrides: `section.field=value` trainer config overrides (`--set`).
        stop_after: Last stage to run (one of `STAGES`); None runs them all.
        python: Interpreter for the fresh-process export checks.
        quiet: Unused; kept so callers that pass it keep working.
    """

    run_dir: str = DEFAULT_RUN_DIR
    config: str = DEFAULT_CONFIG
    fresh: bool = False
    export_dir: str | None = None
    strategy: str | None = None
    tpu: str | None = None
    train_steps: int | None = None
    overrides: tuple = ()
    stop_after: str | None = None
    python: str = sys.executable
    quiet: bool = False


def build_parser():
    """The flags of `massivetext demo` (and `tools/demo.py`)."""
    import argparse

    from massivetext_tf.training.names import STRATEGIES

    p = argparse.ArgumentParser(
        description="Train a Gopher-style model on Shakespeare and export it for serving "
                    "(see docs/demo.md).")
    p.add_argument("--run-dir", default=DEFAULT_RUN_DIR, help="everything goes here")
    p.add_argument("--config", default=DEFAULT_CONFIG,
                   help="demo config: a `demo:` section plus the trainer's config (a path, or "
                        "a bundled config name such as demo_ci)")
    p.add_argument("--fresh", action="store_true", default=os.environ.get("FRESH", "") not in
                   ("", "0", "false", "no"), help="start over (also FRESH=1 in the environment)")
    p.add_argument("--export-dir", help="TF Serving base directory (default: RUN_DIR/saved_models)")
    p.add_argument("--strategy", choices=list(STRATEGIES))
    p.add_argument("--tpu", help="TPU name (with --strategy tpu)")
    p.add_argument("--train-steps", type=int)
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="SECTION.FIELD=VALUE", help="trainer config override (repeatable)")
    p.add_argument("--stop-after", choices=STAGES, help="run the stages up to this one")
    return p


def parse_args(argv=None) -> Options:
    """Command-line flags -> `Options`."""
    a = build_parser().parse_args(argv)
    return Options(run_dir=a.run_dir, config=a.config, fresh=a.fresh, export_dir=a.export_dir,
                   strategy=a.strategy, tpu=a.tpu, train_steps=a.train_steps,
                   overrides=tuple(a.overrides), stop_after=a.stop_after)


def load_config(path: str) -> tuple[dict, dict]:
    """Reads a demo config; returns (`demo:` settings over `DEMO_DEFAULTS`, the trainer's
    config). Raises DemoError naming the file and the field for a bad one."""
    import yaml

    from massivetext_tf import configs

    try:
        path = configs.resolve(path)
    except ValueError as e:
        raise DemoError(str(e)) from None
    import tensorflow as tf

    try:
        with tf.io.gfile.GFile(path) as f:
            full = yaml.safe_load(f.read()) or {}
    except tf.errors.OpError as e:
        raise DemoError(f"--config {path}: {e.message}") from None
    except yaml.YAMLError as e:
        raise DemoError(f"--config {path}: not valid YAML ({e})") from None
    if not isinstance(full, dict):
        raise DemoError(f"--config {path}: expected a mapping of config sections")
    section = full.pop("demo", None) or {}
    unknown = set(section) - set(DEMO_DEFAULTS)
    if unknown:
        raise DemoError(f"{path}: unknown demo field(s) {sorted(unknown)}; "
                        f"valid: {sorted(DEMO_DEFAULTS)}")
    return {**DEMO_DEFAULTS, **section}, full
