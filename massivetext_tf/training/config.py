"""Experiment configuration: nested dataclasses, loaded from YAML, overridable from flags.

    cfg = load_config("massivetext_tf/configs/gopher_tiny.yaml",
                      overrides=["optimizer.peak_lr=1e-3", "runtime.strategy=mirrored"])
    cfg.runtime.train_steps = 100
    save_config(cfg, "runs/x/config.yaml")

Unknown fields and values of the wrong type raise `ValueError` naming the field
(e.g. ``optimizer.peak_lr: expected a number, got 'fast'``); so do NaN and infinity in any
float field.

Reusing a model directory: `compare_configs(old, new)` splits the differences into changes
that alter shapes, data or the meaning of a checkpoint (`UNSAFE_FIELDS`, refused by the
trainer) and changes a run can safely resume with (everything else: learning rate, schedule,
steps, intervals...). See docs/training.md, "Reusing a model directory".
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Optional

import tensorflow as tf
import yaml

from massivetext_tf.training import names


@dataclass
class ModelConfig:
    preset: str = "gopher_tiny"  # a massivetext_tf.models preset name (or "gpt2_tiny" stand-in)
    overrides: dict = field(default_factory=dict)  # e.g. {num_layers: 2, dropout: 0.0}
    init_from: Optional[str] = None  # checkpoint (dir or prefix) or keras-hub preset dir
    lora_rank: int = 0  # > 0: backbone.enable_lora(rank), train only the LoRA weights


@dataclass
class DataConfig:
    dir: str = "synthetic"  # prepare_data.py output dir, or "synthetic" (tests, benchmarks)
    objective: str = "lm"  # lm (next token) | span_corruption (encoder-decoder)
    train_split: str = "train"
    eval_split: str = "eval"
    sequence_length: int = 128
    decoder_sequence_length: Optional[int] = None  # span_corruption targets (default: L / 4)
    global_batch_size: int = 8
    mixture: Optional[dict] = None  # {source: weight}; None = the manifest's proportions
    vocabulary_size: int = 512  # synthetic data only (real data: from the manifest)


@dataclass
class OptimizerConfig:
    peak_lr: float = 6e-4
    init_lr: float = 1e-7  # Gopher warms up linearly from 1e-7
    warmup_steps: int = 1500
    decay_steps: Optional[int] = None  # cosine length; default: train_steps - warmup_steps
    final_lr_fraction: float = 0.1  # cosine decay by 10x
    weight_decay: float = 0.1  # not on norms, biases, embeddings (optimizer.no_decay)
    beta_1: float = 0.9
    beta_2: float = 0.95
    epsilon: float = 1e-8
    clip_norm: float = 1.0  # global norm of the all-reduced gradient; 0 = no clipping
    accumulation_steps: int = 1  # micro-batches per optimizer step, inside the compiled step


@dataclass
class RuntimeConfig:
    strategy: str = "one_device"  # one_device | mirrored | multi_worker_mirrored | tpu
    devices: Optional[str] = None  # e.g. "GPU:0,GPU:1"
    tpu: Optional[str] = None  # TPU name/address ("local" on a TPU VM)
    mixed_precision: str = "float32"  # float32 | bfloat16 | float16 (loss scaling, GPU)
    jit_compile: str = "auto"  # auto | true | false (auto: XLA unless unsupported)
    remat: str = "none"  # none | block (recompute each block's activations in the backward pass)
    train_steps: int = 1000
    steps_per_loop: int = 10
    log_every: int = 10
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    checkpoint_input_pipeline: bool = True
    eval_every: int = 500  # 0 = only at the end
    eval_steps: int = 10  # batches per evaluation; 0 = no evaluation
    eval_tasks: list = field(default_factory=list)  # task YAML files run with each evaluation
    eval_task_limit: Optional[int] = None  # first N items of each eval task (None: all)
    seed: int = 0
    on_nonfinite: str = "stop"  # stop (checkpoint last good state, raise) | skip (drop step)
    max_consecutive_nonfinite: int = 10  # skip: give up (as stop) after this many in a row
    peak_flops_per_device: Optional[float] = None  # MFU denominator; default: table / measured
    collective_timeout_s: Optional[float] = None  # multi_worker: abort a stuck collective
    heartbeat_timeout_s: Optional[float] = 30.0  # multi_worker: declare a silent worker dead
    tensorboard: bool = True
    progress: bool = True
    sample_prompts: list = field(default_factory=lambda: ["The"])  # eval text samples
    sample_length: int = 32
    save_preset: bool = True  # MODEL_DIR/preset at the end (keras-hub layout)


@dataclass
class TaskConfig:
    """Downstream fine-tuning (trainers/finetune.py); type `lm` = continued pretraining."""

    type: str = "lm"  # lm | classification | seq2seq
    train_file: Optional[str] = None  # JSONL
    eval_file: Optional[str] = None  # JSONL
    input_key: str = "text"  # classification: text; seq2seq: input
    target_key: str = "label"  # classification: label; seq2seq: target
    labels: Optional[list] = None  # classification label strings (default: from train file)
    prompt_template: str = "{input}\n"  # decoder-only: text the target is appended to
    max_target_length: int = 32
    tokenizer: Optional[str] = None  # SentencePiece model (default: data dir or preset's)


@dataclass
class ExperimentConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    model_dir: Optional[str] = None


_CHOICES = {
    "data.objective": ("lm", "span_corruption"),
    "runtime.strategy": names.STRATEGIES,
    "runtime.mixed_precision": names.PRECISIONS,
    "runtime.jit_compile": ("auto", "true", "false"),
    "runtime.remat": ("none", "block"),
    "runtime.on_nonfinite": ("stop", "skip"),
    "task.type": ("lm", "classification", "seq2seq"),
}
_POSITIVE = (
    "data.sequence_length", "data.global_batch_size", "optimizer.accumulation_steps",
    "runtime.train_steps", "runtime.steps_per_loop", "runtime.log_every",
    "runtime.checkpoint_every", "runtime.keep_checkpoints",
    "runtime.max_consecutive_nonfinite",
)
_NON_NEGATIVE = ("runtime.eval_steps", "runtime.eval_every", "runtime.sample_length")


def _coerce(value, tp, where: str):
    """Converts a YAML/flag value to the annotated type, or raises naming the field."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return _coerce(value, args[0], where)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ValueError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: expected an integer, got {value!r}") from None
        if f != int(f):
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        return int(f)
    if tp is float:
        if isinstance(value, bool):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: expected a number, got {value!r}") from None
        if not math.isfinite(f):
            raise ValueError(f"{where}: expected a finite number, got {value!r}")
        return f
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ValueError(f"{where}: expected a string, got {value!r}")
        if isinstance(value, bool):  # YAML 'true' for jit_compile
            return "true" if value else "false"
        return str(value)
    if tp in (dict, list) or origin in (dict, list):
        base = origin or tp
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, base):
            raise ValueError(f"{where}: expected a {base.__name__}, got {value!r}")
        return value
    return value


def _from_dict(cls, data, prefix: str):
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise ValueError(f"{prefix or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ValueError(
            f"unknown config field {where}{unknown[0]}; valid fields{' of ' + prefix if prefix else ''}:"
            f" {', '.join(sorted(names))}"
        )
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        where = f"{prefix}.{name}" if prefix else name
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _from_dict(tp, value, where)
        else:
            kwargs[name] = _coerce(value, tp, where)
    return cls(**kwargs)


def from_dict(data: dict) -> ExperimentConfig:
    cfg = _from_dict(ExperimentConfig, data, "")
    validate(cfg)
    return cfg


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def apply_override(cfg: ExperimentConfig, assignment: str) -> None:
    """Applies one `section.field=value` override in place (the value is parsed as YAML)."""
    if "=" not in assignment:
        raise ValueError(f"--set {assignment!r}: expected section.field=value")
    key, raw = assignment.split("=", 1)
    set_value(cfg, key.strip(), yaml.safe_load(raw) if raw.strip() else None, flag=f"--set {key}")


def set_value(cfg: ExperimentConfig, key: str, value, *, flag: str | None = None) -> None:
    """Sets the dotted field `key` (e.g. `optimizer.peak_lr`) to `value`, type-checked."""
    flag = flag or key
    parts = key.split(".")
    obj = cfg
    for i, part in enumerate(parts):
        where = ".".join(parts[: i + 1])
        last = i == len(parts) - 1
        if dataclasses.is_dataclass(obj):
            names = [f.name for f in dataclasses.fields(obj)]
            if part not in names:
                raise ValueError(f"{flag}: unknown config field {where}; valid: {', '.join(names)}")
            tp = typing.get_type_hints(type(obj))[part]
            if last:
                if dataclasses.is_dataclass(tp):
                    raise ValueError(f"{flag}: {where} is a section, set one of its fields")
                setattr(obj, part, _coerce(value, tp, where))
                return
            if getattr(obj, part) is None:
                setattr(obj, part, {})
            obj = getattr(obj, part)
        elif isinstance(obj, dict):  # free-form maps: model.overrides.num_layers=4
            if last:
                obj[part] = value
                return
            obj = obj.setdefault(part, {})
        else:
            raise ValueError(f"{flag}: {'.'.join(parts[:i])} is not a section")


def validate(cfg: ExperimentConfig) -> ExperimentConfig:
    flat = {}
    for section in ("data", "optimizer", "runtime", "task", "model"):
        for k, v in dataclasses.asdict(getattr(cfg, section)).items():
            flat[f"{section}.{k}"] = v
    for key, choices in _CHOICES.items():
        if flat[key] not in choices:
            raise ValueError(f"{key}: {flat[key]!r} is not one of {', '.join(choices)}")
    for key in _POSITIVE:
        if not isinstance(flat[key], int) or flat[key] <= 0:
            raise ValueError(f"{key}: must be a positive integer, got {flat[key]!r}")
    for key in _NON_NEGATIVE:
        if not isinstance(flat[key], int) or flat[key] < 0:
            raise ValueError(f"{key}: must be an integer >= 0, got {flat[key]!r}")
    # Every float anywhere (typed fields, model.overrides, data.mixture): NaN and infinity
    # would poison the run (a NaN learning rate passes every `<= 0` check).
    for key, value in _walk(flat):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{key}: expected a finite number, got {value!r}")
    for key, low, high in _RANGES:
        value = flat[key]
        if value is not None and not (low[0] < value if low[1] else low[0] <= value):
            raise ValueError(f"{key}: must be {'>' if low[1] else '>='} {low[0]}, got {value!r}")
        if value is not None and high is not None and not value < high:
            raise ValueError(f"{key}: must be < {high}, got {value!r}")
    for name, weight in (cfg.data.mixture or {}).items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
            raise ValueError(f"data.mixture.{name}: expected a number >= 0, got {weight!r}")
    if cfg.optimizer.peak_lr <= 0:
        raise ValueError(f"optimizer.peak_lr: must be > 0, got {cfg.optimizer.peak_lr}")
    if cfg.optimizer.warmup_steps < 0:
        raise ValueError("optimizer.warmup_steps: must be >= 0")
    if cfg.optimizer.clip_norm < 0:
        raise ValueError("optimizer.clip_norm: must be >= 0 (0 = no clipping)")
    if not 0 <= cfg.optimizer.final_lr_fraction <= 1:
        raise ValueError("optimizer.final_lr_fraction: must be in [0, 1]")
    if cfg.runtime.eval_task_limit is not None and cfg.runtime.eval_task_limit < 1:
        raise ValueError(f"runtime.eval_task_limit: must be >= 1, got {cfg.runtime.eval_task_limit}")
    for i, task in enumerate(cfg.runtime.eval_tasks):
        if not isinstance(task, str) or not task:
            raise ValueError(f"runtime.eval_tasks[{i}]: expected a task YAML path, got {task!r}")
    if cfg.model.lora_rank < 0:
        raise ValueError("model.lora_rank: must be >= 0")
    return cfg


# (field, (lower bound, exclusive?), exclusive upper bound or None); None values are allowed.
_RANGES = (
    ("optimizer.init_lr", (0.0, False), None),
    ("optimizer.weight_decay", (0.0, False), None),
    ("optimizer.beta_1", (0.0, False), 1.0),
    ("optimizer.beta_2", (0.0, False), 1.0),
    ("optimizer.epsilon", (0.0, True), None),
    ("runtime.peak_flops_per_device", (0.0, True), None),
    ("runtime.collective_timeout_s", (0.0, True), None),
    ("runtime.heartbeat_timeout_s", (0.0, True), None),
)


def _walk(flat: dict, prefix: str = ""):
    """(dotted key, leaf value) of a flat section dict, descending into dicts and lists."""
    for key, value in flat.items():
        where = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _walk(value, where + ".")
        elif isinstance(value, (list, tuple)):
            yield from _walk({f"{key}[{i}]": item for i, item in enumerate(value)}, prefix)
        else:
            yield where, value


def load_config(path: Optional[str] = None, overrides=(), **explicit) -> ExperimentConfig:
    """Loads YAML (or the defaults), applies `--set` overrides, then explicit values.

    `explicit` maps dotted names to values (`{"runtime.train_steps": 10}`); None is ignored,
    so argparse results can be passed straight through.
    """
    from massivetext_tf import configs

    data = {}
    path = configs.resolve(path)
    if path:
        if not tf.io.gfile.exists(path):
            raise ValueError(f"--config: no such file {path}")
        with tf.io.gfile.GFile(path) as f:
            data = yaml.safe_load(f) or {}
    cfg = _from_dict(ExperimentConfig, data, "")
    for item in overrides or ():
        apply_override(cfg, item)
    for key, value in explicit.items():
        if value is not None:
            set_value(cfg, key, value)
    return validate(cfg)


def dump_config(cfg: ExperimentConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def save_config(cfg: ExperimentConfig, path: str, *, header: str = "") -> None:
    """Writes `cfg` as YAML (atomically, gs:// ok); `header` lines become YAML comments."""
    from massivetext_tf import io

    comments = "".join(f"# {line}\n" for line in header.splitlines())
    io.atomic_write(path, comments + dump_config(cfg))


# ---------------------------------------------------------------------------------------------
# Reusing a model directory

# Fields whose change alters the shapes, the data or the meaning of a checkpoint: a run that
# resumes from a checkpoint must keep them. A prefix ending in "." covers a whole section.
UNSAFE_FIELDS = (
    "model.",                          # architecture, init, LoRA: the checkpoint's shapes
    "data.dir", "data.objective", "data.train_split", "data.mixture",  # what is trained on
    "data.sequence_length", "data.decoder_sequence_length", "data.global_batch_size",
    "data.vocabulary_size",
    "runtime.mixed_precision",         # float16 wraps the optimizer (a loss-scale state)
    "runtime.strategy", "runtime.devices",  # replicas: the input-pipeline state per replica
    "runtime.checkpoint_input_pipeline", "runtime.seed",  # what the checkpoint holds, order
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


def compare_configs(old: "ExperimentConfig", new: "ExperimentConfig"):
    """-> (unsafe, safe): lists of `(field, old value, new value)` that differ, the dotted
    field names sorted (model.overrides are compared per key). `model_dir` is not compared."""
    a, b = _flatten(to_dict(old)), _flatten(to_dict(new))
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
    return ", ".join(f"{k} {a!r} -> {b!r}" for k, a, b in diffs)


def read_config(path: str) -> "ExperimentConfig":
    """A saved config (MODEL_DIR/config.yaml or a history file), fields not validated;
    `ValueError` naming the file if it cannot be read."""
    try:
        with tf.io.gfile.GFile(path) as f:
            data = yaml.safe_load(f) or {}
        return _from_dict(ExperimentConfig, data, "")
    except (ValueError, yaml.YAMLError) as e:
        raise ValueError(f"{path}: cannot read the saved config ({str(e).splitlines()[0]})") \
            from None
