"""What a model directory remembers about its configuration, and the check that a rerun in it
is compatible.

    MODEL_DIR/config.yaml                   the config of the run that created the directory;
                                            never overwritten
    MODEL_DIR/config_history/run-NNN.yaml   one file per later run whose config differed from the
                                            previous one (a header comment says from which step
                                            and what changed); each is a valid --config file

`check(cfg)` runs before a trainer writes anything in the directory. It compares `cfg` with the
latest recorded config (`compare_configs`; a config saved before fields moved between sections
loads into the current sections, see `config.MOVED`): with a checkpoint present, a change of a
field in `UNSAFE_FIELDS` (shapes, data, the meaning of the checkpoint) is refused with one
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
    """A TensorFlow (`checkpoint` state file) or JAX (`checkpoint.json`) training checkpoint."""
    return (tf.io.gfile.exists(f"{model_dir}/checkpoints/checkpoint")
            or tf.io.gfile.exists(f"{model_dir}/checkpoints/checkpoint.json"))


def check(cfg) -> RunDirState:
    """Compares `cfg` with what `cfg.model_dir` recorded; raises `ConfigMismatchError` (a
    `ValueError`) naming each unsafe difference when the directory holds a checkpoint."""
    model_dir = cfg.model_dir.rstrip("/")
    ckpt = has_checkpoint(model_dir)
    path = latest_config_path(model_dir)
    if path is None:
        return RunDirState(None, [], ckpt)
    previous = config_lib.read_config(path)
    unsafe, safe = compare_configs(previous, cfg)
    if unsafe and ckpt:
        raise ConfigMismatchError(
            f"--model-dir {model_dir} holds checkpoints made with a different configuration "
            f"({path}): {describe_changes(unsafe)}. These fields change the "
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
              f"changes vs the previous run: {describe_changes(state.changes)}")
    config_lib.save_config(cfg, path, header=header)
    return path


# ---------------------------------------------------------------------------------------------
# Comparing two configs

# Fields whose change alters the shapes, the data or the meaning of a checkpoint: a run that
# resumes from a checkpoint must keep them. A prefix ending in "." covers a whole section.
UNSAFE_FIELDS = (
    "model.",                          # architecture, init, LoRA: the checkpoint's shapes
    "data.dir", "data.objective", "data.train_split", "data.mixture",  # what is trained on
    "data.sequence_length", "data.decoder_sequence_length", "data.global_batch_size",
    "data.vocabulary_size",
    "runtime.mixed_precision",         # float16 wraps the optimizer (a loss-scale state)
    "runtime.strategy", "runtime.devices",  # replicas: the input-pipeline state per replica
    "runtime.backend",                 # the checkpoint format (tf.train.Checkpoint or arrays)
    "trainer.checkpoint_input_pipeline", "runtime.seed",  # what the checkpoint holds, order
    "task.type", "task.train_file", "task.input_key", "task.target_key", "task.labels",
    "task.prompt_template", "task.max_target_length", "task.tokenizer",
)


_PATH_FIELDS = ("data.dir", "model.init_from", "task.train_file", "task.eval_file",
                "task.tokenizer")


def _norm_path(path: str) -> str:
    import os
    import posixpath

    if "://" in path:
        scheme, rest = path.split("://", 1)
        return f"{scheme}://{posixpath.normpath(rest)}"
    return os.path.normpath(path)


def is_unsafe_field(key: str) -> bool:
    """Whether a change of the dotted field `key` is refused on resume (`UNSAFE_FIELDS`)."""
    return any(key == f or (f.endswith(".") and key.startswith(f)) for f in UNSAFE_FIELDS)


def _flatten(data, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        where = f"{prefix}{key}"
        if isinstance(value, dict) and where != "data.mixture":  # {} contributes nothing
            out.update(_flatten(value, where + "."))
        else:
            out[where] = value
    return out


def compare_configs(old, new):
    """-> (unsafe, safe): lists of `(field, old value, new value)` that differ, the dotted
    field names sorted (model.overrides are compared per key). `model_dir` is not compared."""
    a, b = _flatten(config_lib.to_dict(old)), _flatten(config_lib.to_dict(new))
    for flat in (a, b):
        flat.pop("model_dir", None)
        for key in _PATH_FIELDS:  # data/ and data/./ are the same directory
            if isinstance(flat.get(key), str) and flat[key]:
                flat[key] = _norm_path(flat[key])
    _missing = "<unset>"
    diffs = [(k, a.get(k, _missing), b.get(k, _missing)) for k in sorted(set(a) | set(b))
             if a.get(k, _missing) != b.get(k, _missing)]
    unsafe = [d for d in diffs if is_unsafe_field(d[0])]
    safe = [d for d in diffs if not is_unsafe_field(d[0])]
    return unsafe, safe


def describe_changes(diffs) -> str:
    """`field old -> new, ...` of `(field, old, new)` differences."""
    return ", ".join(f"{k} {a!r} -> {b!r}" for k, a, b in diffs)
