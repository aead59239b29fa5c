"""What a model directory remembers about its configuration, and the check that a rerun in it
is compatible.

    MODEL_DIR/config.yaml                   the config of the run that created the directory;
                                            never overwritten
    MODEL_DIR/config_history/run-NNN.yaml   one file per later run whose config differed from the
                                            previous one (a header comment says from which step
                                            and what changed); each is a valid --config file

`check(cfg)` runs before a trainer writes anything in the directory. It compares `cfg` with the
latest recorded config: with a checkpoint present, a change of a field in
`config.UNSAFE_FIELDS` (shapes, data, the meaning of the checkpoint) is refused with one
message naming every differing field; other changes (learning rate, schedule, steps,
intervals) are allowed and listed. Without a checkpoint nothing depends on the old config, so
every change is allowed (and recorded). `record(...)` writes the history once the run resumed.
"""
from __future__ import annotations

import dataclasses
import logging
import time

import tensorflow as tf

from massivetext_tf.training import config as config_lib

log = logging.getLogger(__name__)

CONFIG = "config.yaml"
HISTORY = "config_history"


class ConfigMismatchError(ValueError):
    """The model directory's checkpoint was made with a configuration this run changes."""


@dataclasses.dataclass
class RunDirState:
    previous: object | None  # the latest recorded ExperimentConfig, None for a new directory
    changes: list  # (field, old, new) of this run vs `previous`
    has_checkpoint: bool


def _history_files(model_dir: str) -> list[str]:
    return sorted(tf.io.gfile.glob(f"{model_dir}/{HISTORY}/run-*.yaml"))


def latest_config_path(model_dir: str) -> str | None:
    history = _history_files(model_dir)
    if history:
        return history[-1]
    path = f"{model_dir}/{CONFIG}"
    return path if tf.io.gfile.exists(path) else None


def has_checkpoint(model_dir: str) -> bool:
    return tf.io.gfile.exists(f"{model_dir}/checkpoints/checkpoint")


def check(cfg) -> RunDirState:
    """Compares `cfg` with what `cfg.model_dir` recorded; raises `ConfigMismatchError` (a
    `ValueError`) naming each unsafe difference when the directory holds a checkpoint."""
    model_dir = cfg.model_dir.rstrip("/")
    ckpt = has_checkpoint(model_dir)
    path = latest_config_path(model_dir)
    if path is None:
        return RunDirState(None, [], ckpt)
    previous = config_lib.read_config(path)
    unsafe, safe = config_lib.compare_configs(previous, cfg)
    if unsafe and ckpt:
        raise ConfigMismatchError(
            f"--model-dir {model_dir} holds checkpoints made with a different configuration "
            f"({path}): {config_lib.describe_changes(unsafe)}. These fields change the "
            "model's shapes, its data or the meaning of the checkpoint, so the run cannot "
            "resume with them; rerun with the recorded values, or use a new --model-dir "
            f"(add --init-from {model_dir} to start from its weights)."
        )
    return RunDirState(previous, unsafe + safe, ckpt)


def record(cfg, state: RunDirState, *, step: int) -> str | None:
    """Writes config.yaml (a new directory) or, when the config changed, the next
    config_history/run-NNN.yaml. Returns the path written (None: nothing changed)."""
    model_dir = cfg.model_dir.rstrip("/")
    if state.previous is None:
        path = f"{model_dir}/{CONFIG}"
        config_lib.save_config(cfg, path)
        return path
    if not state.changes:
        return None
    n = len(_history_files(model_dir)) + 1
    path = f"{model_dir}/{HISTORY}/run-{n:03d}.yaml"
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    header = (f"run {n} of {model_dir}, started at step {step} on {when}\n"
              f"changes vs the previous run: {config_lib.describe_changes(state.changes)}")
    config_lib.save_config(cfg, path, header=header)
    return path
