"""Experiment configuration: nested dataclasses, loaded from YAML, overridable from flags.

    cfg = load_config("gopher_tiny",   # a bundled config's name, or a YAML path
                      overrides=["optimizer.peak_lr=1e-3", "runtime.strategy=mirrored"])
    cfg.trainer.train_steps = 100
    save_config(cfg, "runs/x/config.yaml")

Sections, as in TF Model Garden (`official/core/config_definitions.py`): `model`, `data`,
`optimizer`, `runtime` (where and how the run executes: strategy, devices, precision, XLA,
seed), `trainer` (what the loop does: steps, steps per host call, logging, evaluation,
checkpoint cadence, non-finite policy) and `task` (the fine-tuning objective).

Moved fields keep their old spelling: `MOVED` maps each old dotted name to its new one
(`runtime.train_steps` -> `trainer.train_steps`), and every way in (YAML files, `--set`,
command-line flag maps, the config.yaml of an existing model directory) goes through it.

Unknown fields and values of the wrong type raise `ValueError` naming the field
(e.g. ``optimizer.peak_lr: expected a number, got 'fast'``); so do NaN and infinity in any
float field. Reusing a model directory (which changes are safe): `massivetext_tf.training.run_dir`.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Optional

import tensorflow as tf
import yaml

from massivetext_tf.training import config_parsing as parsing
from massivetext_tf.training import names


@dataclass
class ModelConfig:
    """The model to train.

    Attributes:
        preset: a `massivetext_tf.models` preset name (`gopher_tiny`, `t5_tiny`, ...), or
            `standin_gpt2` (a keras-hub GPT-2 of the same input contract, for loop tests).
        overrides: preset arguments to change, e.g. `{num_layers: 2, dropout: 0.0}`.
        init_from: initial weights: a training checkpoint (directory or prefix; weights only,
            fresh optimizer and schedule) or a keras-hub preset directory (architecture,
            weights and tokenizer). None: random initialization.
        lora_rank: > 0 enables LoRA adapters of this rank on the backbone and trains only them.
    """

    preset: str = "gopher_tiny"
    overrides: dict = field(default_factory=dict)
    init_from: Optional[str] = None
    lora_rank: int = 0


@dataclass
class DataConfig:
    """The training and evaluation data.

    Attributes:
        dir: a `massivetext prepare-data` output directory (gs:// ok), or `synthetic`
            (learnable arithmetic progressions; tests and benchmarks).
        objective: `lm` (next token, decoder-only) or `span_corruption` (encoder-decoder).
        train_split: the manifest split trained on.
        eval_split: the manifest split evaluated on.
        sequence_length: tokens per row (encoder tokens for span corruption).
        decoder_sequence_length: span-corruption targets (default: sequence_length / 4) and
            fine-tuning decoder length for encoder-decoder models.
        global_batch_size: rows per optimizer step over all replicas.
        mixture: `{source: weight}` sampling weights; None: the manifest's proportions.
        vocabulary_size: synthetic data only (real data: from the manifest).
    """

    dir: str = "synthetic"
    objective: str = "lm"
    train_split: str = "train"
    eval_split: str = "eval"
    sequence_length: int = 128
    decoder_sequence_length: Optional[int] = None
    global_batch_size: int = 8
    mixture: Optional[dict] = None
    vocabulary_size: int = 512


@dataclass
class OptimizerConfig:
    """AdamW with linear warmup and cosine decay (Gopher's recipe).

    Attributes:
        peak_lr: learning rate at the end of warmup.
        init_lr: learning rate at step 0 (Gopher warms up linearly from 1e-7).
        warmup_steps: linear warmup length in steps.
        decay_steps: cosine length in steps; None: train_steps - warmup_steps.
        final_lr_fraction: the cosine ends at peak_lr x this (0.1: decay by 10x).
        weight_decay: decoupled weight decay, not on norms, biases or embeddings.
        beta_1: Adam's first-moment decay.
        beta_2: Adam's second-moment decay.
        epsilon: Adam's epsilon.
        clip_norm: clip the all-reduced gradient to this global norm; 0: no clipping.
        accumulation_steps: micro-batches per optimizer step, inside the compiled step.
    """

    peak_lr: float = 6e-4
    init_lr: float = 1e-7
    warmup_steps: int = 1500
    decay_steps: Optional[int] = None
    final_lr_fraction: float = 0.1
    weight_decay: float = 0.1
    beta_1: float = 0.9
    beta_2: float = 0.95
    epsilon: float = 1e-8
    clip_norm: float = 1.0
    accumulation_steps: int = 1


@dataclass
class RuntimeConfig:
    """Where and how the run executes (Model Garden's `RuntimeConfig`); the strategy is built
    from this section alone (`strategy.from_config`).

    Attributes:
        strategy: `one_device`, `mirrored`, `multi_worker_mirrored` or `tpu` (TensorFlow);
            `one_device` or `model_parallel` (JAX).
        backend: `tensorflow` (tf.distribute, training/trainer.py) or `jax` (Keras on JAX,
            `keras.distribution`, training/jax_trainer.py); the data, configs, metrics and
            preset are the same.
        mesh: model_parallel: the device mesh, `data=D,model=M` (D x M devices: the batch is
            split over `data`, attention heads, feed-forward columns and the vocabulary over
            `model`); default every device on `model`.
        devices: devices to use, e.g. `GPU:0,GPU:1` (one_device: one; mirrored: default every
            GPU, else CPU:0).
        tpu: TPU name or address for the tpu strategy (`local` on a TPU VM).
        mixed_precision: `float32`, `bfloat16` or `float16` (float16: dynamic loss scaling,
            GPU only).
        jit_compile: `auto` (XLA unless the strategy cannot run it), `true` (XLA or an error)
            or `false`.
        remat: `none` or `block` (recompute each transformer block's activations in the
            backward pass: less memory, more time; same loss and gradients).
        seed: seeds weights, dropout, synthetic data and fine-tuning shuffles.
        peak_flops_per_device: MFU denominator; None: the device table, or measured on CPU.
        collective_timeout_s: multi_worker_mirrored: abort a collective that waits longer.
        heartbeat_timeout_s: multi_worker_mirrored: declare a silent worker dead after this.
        jax_coordinator: JAX with several processes (one per host): `host:port` of process
            0, which every process connects to (`keras.distribution.initialize`); None: the
            `KERAS_DISTRIBUTION_JOB_ADDRESSES` variable, or found by JAX (Cloud TPU).
        jax_num_processes: JAX: the number of processes of the run; None: the
            `KERAS_DISTRIBUTION_NUM_PROCESSES` variable, or found by JAX (Cloud TPU). Setting
            any `jax_*` field (or variable) starts the processes' coordination.
        jax_process_id: JAX: this process's index, 0 to jax_num_processes - 1 (0 writes the
            checkpoints, metrics and preset); None: `KERAS_DISTRIBUTION_PROCESS_ID`, or found
            by JAX (Cloud TPU).
    """

    strategy: str = "one_device"
    backend: str = "tensorflow"
    mesh: Optional[str] = None
    devices: Optional[str] = None
    tpu: Optional[str] = None
    mixed_precision: str = "float32"
    jit_compile: str = "auto"
    remat: str = "none"
    seed: int = 0
    peak_flops_per_device: Optional[float] = None
    collective_timeout_s: Optional[float] = None
    heartbeat_timeout_s: Optional[float] = 30.0
    jax_coordinator: Optional[str] = None
    jax_num_processes: Optional[int] = None
    jax_process_id: Optional[int] = None


@dataclass
class TrainerConfig:
    """What the training loop does and when (Model Garden's `TrainerConfig`): its length, the
    steps of one host call, and the logging, evaluation and checkpoint cadence.

    Attributes:
        train_steps: optimizer steps of the whole run (a resumed run continues to this).
        steps_per_loop: at most this many steps in one host call (one `tf.function`).
        log_every: a metrics line (metrics.jsonl, TensorBoard) every this many steps.
        checkpoint_every: a checkpoint every this many steps (and always at the end).
        keep_checkpoints: checkpoints kept in MODEL_DIR/checkpoints (older ones deleted).
        checkpoint_input_pipeline: save the input iterators in checkpoints (exact resume);
            false: a resumed run skips the batches already consumed instead.
        eval_every: evaluate every this many steps; 0: only at the end.
        eval_steps: batches of the eval split per evaluation; 0: no evaluation.
        eval_tasks: task YAML files (docs/evaluation.md) run with each evaluation.
        eval_task_limit: the first N items of each eval task; None: all.
        on_nonfinite: `stop` (checkpoint the last good state and raise `NonFiniteError`) or
            `skip` (drop the step's update and go on).
        max_consecutive_nonfinite: skip: give up (as stop) after this many bad steps in a row.
        tensorboard: write TensorBoard summaries in MODEL_DIR/tensorboard.
        progress: print a progress line (chief only).
        sample_prompts: prompts of the greedy text samples logged at each evaluation.
        sample_length: total length of those samples in tokens.
        save_preset: write MODEL_DIR/preset (keras-hub layout) at the end.
    """

    train_steps: int = 1000
    steps_per_loop: int = 10
    log_every: int = 10
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    checkpoint_input_pipeline: bool = True
    eval_every: int = 500
    eval_steps: int = 10
    eval_tasks: list = field(default_factory=list)
    eval_task_limit: Optional[int] = None
    on_nonfinite: str = "stop"
    max_consecutive_nonfinite: int = 10
    tensorboard: bool = True
    progress: bool = True
    sample_prompts: list = field(default_factory=lambda: ["The"])
    sample_length: int = 32
    save_preset: bool = True


@dataclass
class TaskConfig:
    """The fine-tuning objective (`massivetext finetune`); `lm` is continued pretraining.

    Attributes:
        type: `lm`, `classification` or `seq2seq` (generative: translation, summarization,
            QA).
        train_file: JSONL training examples.
        eval_file: JSONL evaluation examples (default: the training file).
        input_key: the input field of an example (classification: text; seq2seq: input).
        target_key: the target field (classification: label; seq2seq: target; a list of
            accepted answers for QA, the first is trained on).
        labels: classification label strings (default: those of the training file, sorted).
        prompt_template: decoder-only models: the text the target is appended to.
        max_target_length: target tokens kept (and generated at evaluation).
        tokenizer: SentencePiece model (default: the data dir's, else the preset's).
    """

    type: str = "lm"
    train_file: Optional[str] = None
    eval_file: Optional[str] = None
    input_key: str = "text"
    target_key: str = "label"
    labels: Optional[list] = None
    prompt_template: str = "{input}\n"
    max_target_length: int = 32
    tokenizer: Optional[str] = None


@dataclass
class ExperimentConfig:
    """One experiment: every section, and the model directory.

    Attributes:
        model: `ModelConfig`.
        data: `DataConfig`.
        optimizer: `OptimizerConfig`.
        runtime: `RuntimeConfig` (strategy, devices, precision).
        trainer: `TrainerConfig` (steps and cadence).
        task: `TaskConfig` (fine-tuning).
        model_dir: where checkpoints, metrics, config.yaml and the preset go (gs:// ok).
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    model_dir: Optional[str] = None


# Old dotted name -> new dotted name of every moved field. Loading a YAML file or a saved
# config.yaml, `--set` and the command-line flag maps all accept the old names.
MOVED = {f"runtime.{f.name}": f"trainer.{f.name}" for f in dataclasses.fields(TrainerConfig)}


def canonical(key: str) -> str:
    """The current dotted name of `key` (an old spelling from `MOVED`, or itself)."""
    return MOVED.get(key, key)


def _move_old_fields(data: dict) -> dict:
    """A top-level config mapping with moved fields taken to their new sections (a copy)."""
    if not any(isinstance(data.get(old.split(".")[0]), dict) and old.split(".")[1]
               in data[old.split(".")[0]] for old in MOVED):
        return data
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for old, new in MOVED.items():
        (old_section, name), (new_section, new_name) = old.split("."), new.split(".")
        section = data.get(old_section)
        if not isinstance(section, dict) or name not in section:
            continue
        value = section.pop(name)
        target = data.get(new_section)
        if target is None:
            target = data[new_section] = {}
        if not isinstance(target, dict):
            continue  # reported as "expected a mapping" by _from_dict
        if new_name in target and target[new_name] != value:
            raise ValueError(f"{old} ({value!r}) and {new} ({target[new_name]!r}) are the same "
                             f"field ({old} is its old name): set only {new}")
        target[new_name] = value
    return data


_CHOICES = {
    "data.objective": ("lm", "span_corruption"),
    "runtime.strategy": names.STRATEGIES,
    "runtime.backend": names.BACKENDS,
    "runtime.mixed_precision": names.PRECISIONS,
    "runtime.jit_compile": ("auto", "true", "false"),
    "runtime.remat": ("none", "block"),
    "trainer.on_nonfinite": ("stop", "skip"),
    "task.type": ("lm", "classification", "seq2seq"),
}
_POSITIVE = (
    "data.sequence_length", "data.global_batch_size", "optimizer.accumulation_steps",
    "trainer.train_steps", "trainer.steps_per_loop", "trainer.log_every",
    "trainer.checkpoint_every", "trainer.keep_checkpoints",
    "trainer.max_consecutive_nonfinite",
)
_NON_NEGATIVE = ("trainer.eval_steps", "trainer.eval_every", "trainer.sample_length")


def _from_dict(cls, data, prefix: str):
    """`cls` from a mapping; an ExperimentConfig mapping may use the old names of `MOVED`."""
    if cls is ExperimentConfig and isinstance(data, dict):
        data = _move_old_fields(data)
    return parsing.from_mapping(cls, data, prefix)


def from_dict(data: dict) -> ExperimentConfig:
    """A validated `ExperimentConfig` from a mapping of sections (old field names accepted)."""
    cfg = _from_dict(ExperimentConfig, data, "")
    validate(cfg)
    return cfg


def to_dict(cfg) -> dict:
    """The config as plain nested dicts (the layout save_config writes)."""
    return dataclasses.asdict(cfg)


def apply_override(cfg: ExperimentConfig, assignment: str) -> None:
    """Applies one `section.field=value` override in place (the value is parsed as YAML)."""
    if "=" not in assignment:
        raise ValueError(f"--set {assignment!r}: expected section.field=value")
    key, raw = assignment.split("=", 1)
    set_value(cfg, key.strip(), yaml.safe_load(raw) if raw.strip() else None, flag=f"--set {key}")


def set_value(cfg: ExperimentConfig, key: str, value, *, flag: str | None = None) -> None:
    """Sets the dotted field `key` (e.g. `optimizer.peak_lr`) to `value`, type-checked; an
    old name of a moved field (`MOVED`) sets the field in its new place."""
    flag = flag or key
    key = canonical(key)
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
                setattr(obj, part, parsing.coerce(value, tp, where))
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
    """Checks choices, ranges and finiteness of every field; `ValueError` naming the field."""
    flat = {}
    for section in ("data", "optimizer", "runtime", "trainer", "task", "model"):
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
    for key, value in parsing.walk(flat):
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
    if cfg.trainer.eval_task_limit is not None and cfg.trainer.eval_task_limit < 1:
        raise ValueError(f"trainer.eval_task_limit: must be >= 1, got {cfg.trainer.eval_task_limit}")
    for i, task in enumerate(cfg.trainer.eval_tasks):
        if not isinstance(task, str) or not task:
            raise ValueError(f"trainer.eval_tasks[{i}]: expected a task YAML path, got {task!r}")
    if cfg.model.lora_rank < 0:
        raise ValueError("model.lora_rank: must be >= 0")
    _validate_backend(cfg.runtime)
    return cfg


def parse_mesh(text: str) -> dict:
    """`data=2,model=4` -> {"data": 2, "model": 4} (runtime.mesh, --mesh); `ValueError`
    naming the field on anything else."""
    out = {}
    for part in str(text).split(","):
        name, _, size = part.strip().partition("=")
        if name not in ("data", "model") or name in out or not size.strip().isdigit() \
                or int(size) < 1:
            raise ValueError(f"runtime.mesh: expected data=D,model=M with positive sizes (e.g. "
                             f"data=2,model=4), got {text!r}")
        out[name] = int(size)
    return {"data": out.get("data", 1), "model": out.get("model", 1)}


def _validate_backend(rt) -> None:
    if rt.backend == "jax":
        if rt.strategy not in names.JAX_STRATEGIES:
            raise ValueError(f"runtime.strategy: {rt.strategy!r} is a TensorFlow strategy; with "
                             f"runtime.backend jax use {' or '.join(names.JAX_STRATEGIES)}")
        if rt.mixed_precision == "float16":
            raise ValueError("runtime.mixed_precision: float16 (loss scaling) is TensorFlow "
                             "only; use bfloat16 with runtime.backend jax")
        n, i = rt.jax_num_processes, rt.jax_process_id
        if n is not None and n < 1:
            raise ValueError(f"runtime.jax_num_processes: must be >= 1, got {n}")
        if i is not None and (i < 0 or (n is not None and i >= n)):
            raise ValueError(f"runtime.jax_process_id: must be in [0, jax_num_processes"
                             f"{'' if n is None else f' = {n}'}), got {i}")
        if rt.jax_coordinator is not None and ":" not in str(rt.jax_coordinator):
            raise ValueError(f"runtime.jax_coordinator: expected host:port of process 0, got "
                             f"{rt.jax_coordinator!r}")
    elif rt.strategy == "model_parallel":
        raise ValueError("runtime.strategy: model_parallel needs runtime.backend jax (--backend "
                         "jax): Keras shards weights with keras.distribution on JAX only")
    if rt.backend != "jax":
        for name in ("jax_coordinator", "jax_num_processes", "jax_process_id"):
            if getattr(rt, name) is not None:
                raise ValueError(f"runtime.{name}: only with runtime.backend jax (backend is "
                                 f"{rt.backend!r}); TensorFlow's workers read TF_CONFIG")
    if rt.mesh is not None:
        if rt.strategy != "model_parallel":
            raise ValueError(f"runtime.mesh: only with runtime.strategy model_parallel "
                             f"(strategy is {rt.strategy!r})")
        parse_mesh(rt.mesh)


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


def load_config(path: Optional[str] = None, overrides=(), **explicit) -> ExperimentConfig:
    """Loads YAML (or the defaults), applies `--set` overrides, then explicit values.

    `explicit` maps dotted names to values (`{"trainer.train_steps": 10}`; old names of
    moved fields work too); None is ignored, so argparse results can be passed straight
    through.
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
    """The config as YAML, sections in declaration order."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def save_config(cfg: ExperimentConfig, path: str, *, header: str = "") -> None:
    """Writes `cfg` as YAML (atomically, gs:// ok); `header` lines become YAML comments."""
    from massivetext_tf import io

    comments = "".join(f"# {line}\n" for line in header.splitlines())
    io.atomic_write(path, comments + dump_config(cfg))


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


_RUN_DIR_NAMES = ("UNSAFE_FIELDS", "compare_configs", "describe_changes", "is_unsafe_field")


def __getattr__(name):
    # Comparing configs moved to run_dir.py (its one user); the old names keep working.
    if name in _RUN_DIR_NAMES:
        from massivetext_tf.training import run_dir

        return getattr(run_dir, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
