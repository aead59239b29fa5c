"""Tasks, Model Garden's way: a `Task` is one training objective. It builds the model, the
input functions of its splits, the loss and its own metrics; the `Trainer` (compiled steps) and
the `Controller` (cadence) are the same for every task.

    task = PretrainTask(cfg)                 # next token, or span corruption (data.objective)
    trainer = Trainer(cfg, task=task)
    result = trainer.fit()

Pretraining is `PretrainTask`; each fine-tuning objective is a subclass in
`training/finetune_tasks.py`. A task's `loss_sum` returns the *sum* of weighted per-token
losses of a batch: the trainer divides by the global weighted-token count, so the loss is the
mean per-token loss of the global batch whatever the replica count or accumulation.
"""
from __future__ import annotations

import logging

import keras
import tensorflow as tf

from massivetext_tf.training import checkpoint as ckpt_lib
from massivetext_tf.training import data as data_lib

log = logging.getLogger("massivetext_tf.training")

# runtime.mixed_precision -> Keras dtype policy.
POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


def _standin_gpt2(overrides: dict):
    import keras_hub

    kw = dict(
        vocabulary_size=512, num_layers=2, num_heads=2, hidden_dim=64, intermediate_dim=128,
        max_sequence_length=128,
    )
    kw.update(overrides)
    return keras_hub.models.GPT2CausalLM(keras_hub.models.GPT2Backbone(**kw), preprocessor=None)


def is_preset_dir(path: str | None) -> bool:
    """Whether `path` is a keras-hub preset directory (has config.json), not a checkpoint."""
    return bool(path) and tf.io.gfile.exists(f"{path}/config.json")


def build_model(cfg, *, tokenizer: str | None = None):
    """Builds the task model of `cfg.model` under the dtype policy of runtime.mixed_precision.

    `model.preset` is a `massivetext_tf.models` preset, or `standin_gpt2` (a keras-hub GPT-2 of
    the same input contract, kept for tests of the loop alone). `model.init_from` naming a
    keras-hub preset directory loads that model (architecture, weights, tokenizer) instead
    (`massivetext_tf.models.load`). Must be called inside `strategy.scope()`.
    """
    policy = POLICIES[cfg.runtime.mixed_precision]
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        if is_preset_dir(cfg.model.init_from):
            from massivetext_tf import models

            # models.load registers our classes before keras-hub deserializes the preset, so
            # this works in a fresh process for both model kinds.
            model = models.load(cfg.model.init_from)
        elif cfg.model.preset == "standin_gpt2":
            model = _standin_gpt2(dict(cfg.model.overrides))
        else:
            from massivetext_tf import models

            kwargs = dict(cfg.model.overrides)
            if tokenizer:
                kwargs["tokenizer"] = tokenizer
            model = models.build(cfg.model.preset, **kwargs)
    finally:
        keras.config.set_dtype_policy(previous)
    return model


def set_remat(model, mode: str) -> None:
    """runtime.remat on a built model: `block` makes every transformer block of its backbone
    recompute its activations in the backward pass (`keras.remat`, i.e. `tf.recompute_grad`,
    inside the XLA step and under every strategy). Only the step's memory and time change."""
    backbone = getattr(model, "backbone", None)
    if not hasattr(backbone, "set_remat"):
        raise ValueError(
            f"runtime.remat: {mode!r} needs a massivetext_tf model (GopherBackbone or "
            f"EncoderDecoderBackbone); {type(backbone).__name__} has no blocks to recompute"
        )
    dropout = float(getattr(backbone, "dropout", 0.0) or 0.0)
    if mode == "block" and dropout > 0:
        raise ValueError(
            f"runtime.remat: 'block' needs model dropout 0 (got {dropout:g}): a recomputed "
            "block would draw new dropout masks (set model.overrides.dropout=0 or remat none)"
        )
    backbone.set_remat(mode)


def model_input_keys(model) -> list[str] | None:
    """Input names the backbone declares (extra pipeline keys are dropped before the call)."""
    bb = getattr(model, "backbone", None)
    inp = getattr(bb, "input", None)
    if isinstance(inp, dict):
        return list(inp.keys())
    return None


class Task:
    """One training objective: model, inputs, loss and metrics.

    Subclasses override `build_model` (the architecture), `build_inputs` (an input function
    per split), and optionally `check_inputs`, `loss_sum` and `metrics`. The trainer calls, in
    order: `check_inputs`, `create_model` (inside the strategy scope), `build_inputs` for the
    train and eval splits, then `loss_sum` inside its compiled programs and `metrics` after
    every evaluation.

    Args:
        cfg: the `ExperimentConfig`.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        self.model = None

    # -- model ------------------------------------------------------------------------------

    def tokenizer(self) -> str | None:
        """The SentencePiece model file the model is built with (None: the preset's own)."""
        return data_lib.tokenizer_path(self.cfg)

    def build_model(self):
        """The architecture of `cfg.model` (fresh weights, or a preset directory's)."""
        return build_model(self.cfg, tokenizer=self.tokenizer())

    def initialize(self, model) -> None:
        """Loads `model.init_from` weights when it names a training checkpoint (continued
        pretraining, fine-tuning: weights only; fresh optimizer and schedule)."""
        init = self.cfg.model.init_from
        if init and not is_preset_dir(init):
            log.info("initialized model weights from %s",
                     ckpt_lib.restore_model_weights(model, init))

    def create_model(self, *, initialize: bool = True):
        """The model ready to train, built once: `build_model`, then (unless the run resumes
        from its own checkpoint) `initialize`, then LoRA adapters and runtime.remat. Called
        by the trainer inside the strategy scope; the model is kept as `self.model`."""
        model = self.build_model()
        if initialize:
            self.initialize(model)
        if self.cfg.model.lora_rank:
            # After loading the base weights (a checkpoint holds no LoRA variables).
            model.backbone.enable_lora(self.cfg.model.lora_rank)
        if self.cfg.runtime.remat != "none":
            set_remat(model, self.cfg.runtime.remat)
        self.model = model
        return model

    # -- inputs -----------------------------------------------------------------------------

    def check_inputs(self, *, evaluate: bool) -> None:
        """Fails early, naming the file and field, when the inputs cannot be read."""

    def build_inputs(self, split: str, *, training: bool):
        """`fn(input_context) -> tf.data.Dataset` of per-replica `(x, y, sample_weight)`
        batches of `split` (`data.train_split` when training)."""
        raise NotImplementedError

    # -- loss and metrics -------------------------------------------------------------------

    def loss_sum(self, model, x, y, w, *, training: bool):
        """Sum over the batch of per-token cross-entropy x sample weight (float32)."""
        keys = model_input_keys(model)
        if keys is not None and isinstance(x, dict):
            x = {k: x[k] for k in keys if k in x}
        logits = model(x, training=training)
        nll = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.cast(y, tf.int32), logits=tf.cast(logits, tf.float32)
        )
        return tf.reduce_sum(nll * tf.cast(w, tf.float32))

    def metrics(self, trainer) -> dict:
        """The task's own metrics after an evaluation (added to the eval metrics line);
        `trainer.model` holds the live weights."""
        return {}


class PretrainTask(Task):
    """Pretraining: next-token prediction (decoder-only) or span corruption (encoder-decoder,
    `data.objective: span_corruption`) on `data.dir` (prepared shards or `synthetic`).

    Args:
        cfg: the `ExperimentConfig`.
        eval_tasks: evaluation tasks (`evaluator.load_eval_tasks`) run with each evaluation
            as `TASK/METRIC`; `train()` passes those of `trainer.eval_tasks`.
        train_input_fn, eval_input_fn: replace the input functions of `cfg.data` (tests,
            benchmarks): `fn(input_context) -> tf.data.Dataset`.
        model_fn: replaces `build_model`: `() -> keras.Model`, called in the strategy scope.
    """

    def __init__(self, cfg, *, eval_tasks=None, train_input_fn=None, eval_input_fn=None,
                 model_fn=None):
        super().__init__(cfg)
        self._input_fns = {True: train_input_fn, False: eval_input_fn}
        self._model_fn = model_fn
        self._task_eval = None
        if eval_tasks:
            from massivetext_tf.training.evaluator import task_eval_fn

            self._task_eval = task_eval_fn(cfg, eval_tasks)

    def build_model(self):
        return self._model_fn() if self._model_fn else super().build_model()

    def check_inputs(self, *, evaluate: bool) -> None:
        if self._input_fns[True] is None:
            data_lib.check_data(self.cfg, evaluate=evaluate and self._input_fns[False] is None)

    def build_inputs(self, split: str, *, training: bool):
        return self._input_fns[training] or data_lib.make_input_fn(self.cfg, split,
                                                                   training=training)

    def metrics(self, trainer) -> dict:
        return self._task_eval(trainer) if self._task_eval else {}
