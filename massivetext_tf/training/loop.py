"""The distributed training loop.

Shape of one host call (`Trainer._train_loop`, one `tf.function`):

    for _ in tf.range(num_steps):                   # num_steps <= runtime.steps_per_loop
        batch = next(distributed_iterator)
        strategy.run(replica_step, args=(batch,))   # XLA programs, see `_make_train_loop`

`replica_step` does the whole optimizer step:
  1. global weighted-token count: all-reduce SUM of the local sum of `sample_weight`;
  2. `accumulation_steps` micro-batches in a `tf.range` loop, each
     loss = sum(per-token nll * weight) / global token count; gradients summed;
  3. all-reduce SUM of the gradients and the loss (so the loss is the mean per-token loss of
     the *global* batch, exactly as one device would compute it);
  4. fp16: unscale by the LossScaleOptimizer's power-of-two scale (exact);
  5. the global norm of the all-reduced gradient;
  6. apply (AdamW, on the gradient clipped to the global norm) unless the loss or gradient
     norm is non-finite.

Where XLA cannot run (MirroredStrategy over several CPU devices) the same function runs without
`jit_compile`, and a log line says why.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import time

import keras
import numpy as np
import tensorflow as tf

from massivetext_tf.training import checkpoint as ckpt_lib
from massivetext_tf.training import config as config_lib
from massivetext_tf.training import data as data_lib
from massivetext_tf.training import metrics as metrics_lib
from massivetext_tf.training import optimizer as opt_lib
from massivetext_tf.training import run_dir as run_dir_lib
from massivetext_tf.training import strategy as strategy_lib

log = logging.getLogger("massivetext_tf.training")

POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


class NonFiniteError(RuntimeError):
    """Raised when a step's loss or gradient is NaN/Inf and runtime.on_nonfinite is `stop`, or
    when the weights themselves went bad (`skip` cannot help then).

    Attributes: `step` (the first bad step), `good_step` (the step a rerun resumes from),
    `checkpoint` (the verified checkpoint it resumes from; None: it starts from scratch).
    """

    def __init__(self, message, *, step=None, good_step=None, checkpoint=None):
        super().__init__(message)
        self.step, self.good_step, self.checkpoint = step, good_step, checkpoint


# ---------------------------------------------------------------------------------------------
# Model construction


def _standin_gpt2(overrides: dict):
    import keras_hub

    kw = dict(
        vocabulary_size=512, num_layers=2, num_heads=2, hidden_dim=64, intermediate_dim=128,
        max_sequence_length=128,
    )
    kw.update(overrides)
    return keras_hub.models.GPT2CausalLM(keras_hub.models.GPT2Backbone(**kw), preprocessor=None)


def is_preset_dir(path: str | None) -> bool:
    return bool(path) and tf.io.gfile.exists(f"{path}/config.json")


def build_model(cfg, *, tokenizer: str | None = None):
    """Builds the task model of `cfg.model` under the dtype policy of runtime.mixed_precision.

    `model.preset` is a `massivetext_tf.models` preset, or `standin_gpt2` (a keras-hub GPT-2 of
    the same input contract, kept for tests of the loop alone). `model.init_from` naming a
    keras-hub preset directory loads that model (architecture, weights, tokenizer) instead.
    Must be called inside `strategy.scope()`.
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


# ---------------------------------------------------------------------------------------------
# The trainer


@dataclasses.dataclass
class LoopOutput:
    losses: np.ndarray  # per step, finite or not
    grad_norms: np.ndarray
    steps_done: int  # steps counted (applied or skipped)
    nonfinite: bool  # stopped on a non-finite step
    skipped: int


class Trainer:
    """Owns strategy, model, optimizer, iterators, checkpoints and metrics of one run.

    Args:
        cfg: an `ExperimentConfig` (model_dir must be set).
        strategy: optional prebuilt strategy (default: from cfg.runtime).
        train_input_fn / eval_input_fn: `fn(input_context) -> tf.data.Dataset` of
            `(x, y, sample_weight)` per-replica batches (default: from cfg.data).
        model_fn: optional `() -> keras.Model` (called in the strategy scope).
    """

    def __init__(self, cfg, *, strategy=None, train_input_fn=None, eval_input_fn=None,
                 model_fn=None):
        if not cfg.model_dir:
            raise ValueError("model_dir: required (--model-dir)")
        config_lib.validate(cfg)
        # Before anything is written in the model dir: is it compatible with this config?
        self.run_dir = run_dir_lib.check(cfg)
        if train_input_fn is None:
            data_lib.check_data(cfg, evaluate=eval_input_fn is None and cfg.runtime.eval_steps > 0)
        self.cfg = cfg
        rt = cfg.runtime
        self.model_dir = cfg.model_dir.rstrip("/")
        self.strategy = strategy or strategy_lib.get_strategy(
            rt.strategy, tpu=rt.tpu, devices=rt.devices,
            collective_timeout_s=rt.collective_timeout_s,
            heartbeat_timeout_s=rt.heartbeat_timeout_s,
        )
        self.is_chief = ckpt_lib.is_chief(self.strategy)
        self.num_replicas = self.strategy.num_replicas_in_sync
        gbs, acc = cfg.data.global_batch_size, cfg.optimizer.accumulation_steps
        if gbs % (self.num_replicas * acc):
            raise ValueError(
                f"data.global_batch_size: {gbs} is not divisible by replicas ({self.num_replicas})"
                f" x optimizer.accumulation_steps ({acc})"
            )
        if rt.mixed_precision == "float16" and strategy_lib.device_kind(self.strategy) == "TPU":
            raise ValueError("runtime.mixed_precision: float16 is not supported on TPU; use bfloat16")
        self.use_xla = self._decide_xla()
        keras.utils.set_random_seed(rt.seed)

        self.tokenizer = data_lib.tokenizer_path(cfg)
        with self.strategy.scope():
            self.model = model_fn() if model_fn else build_model(cfg, tokenizer=self.tokenizer)
            init = cfg.model.init_from
            if init and not is_preset_dir(init) and not tf.io.gfile.exists(
                f"{self.model_dir}/checkpoints/checkpoint"
            ):
                # Continued pretraining / fine-tuning: weights only; fresh optimizer + schedule.
                log.info("initialized model weights from %s",
                         ckpt_lib.restore_model_weights(self.model, init))
            if cfg.model.lora_rank:
                # After loading the base weights (a checkpoint holds no LoRA variables).
                self.model.backbone.enable_lora(cfg.model.lora_rank)
            if rt.remat != "none":
                set_remat(self.model, rt.remat)
            self.loss_scaling = rt.mixed_precision == "float16"
            self.optimizer = opt_lib.build_optimizer(
                cfg.optimizer, train_steps=rt.train_steps, model=self.model,
                loss_scale=self.loss_scaling,
            )
            self.optimizer.build(self.model.trainable_variables)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="train_step")
            self.rng = tf.random.Generator.from_seed(rt.seed)
        self.input_keys = model_input_keys(self.model)
        self.num_params = int(sum(np.prod(v.shape) for v in self.model.trainable_variables))
        self.total_params = int(self.model.count_params())

        train_input_fn = train_input_fn or data_lib.make_input_fn(
            cfg, cfg.data.train_split, training=True
        )
        self.eval_input_fn = eval_input_fn or data_lib.make_input_fn(
            cfg, cfg.data.eval_split, training=False
        )
        self.train_input_fn = train_input_fn
        with data_lib.explained_data_errors(cfg, "data.train_split"):
            self.train_input = data_lib.DistributedInput(self.strategy, train_input_fn)

        objects = dict(model=self.model, optimizer=self.optimizer, step=self.step, rng=self.rng)
        seeds = ckpt_lib.seed_generator_states(self.model)
        if seeds:
            objects["seed_states"] = seeds
        if rt.checkpoint_input_pipeline and self.train_input.checkpointable:
            objects["input_iterators"] = list(self.train_input.trackables)
        self.checkpointer = ckpt_lib.Checkpointer(
            self.model_dir, max_to_keep=rt.keep_checkpoints, strategy=self.strategy, **objects
        )
        self.writer = metrics_lib.MetricsWriter(
            self.model_dir, enabled=self.is_chief, tensorboard=rt.tensorboard
        )
        self._train_loop = self._make_train_loop()
        self._eval_fn = None
        self._agree_fn = None
        self._finite_fn = None
        self._nonfinite_run = 0  # non-finite steps in a row (on_nonfinite=skip)
        self.history: list[float] = []
        self.peak_flops = None

    # -- step construction ----------------------------------------------------------------------

    def _decide_xla(self) -> bool:
        want = self.cfg.runtime.jit_compile
        ok, why = strategy_lib.xla_supported(self.strategy)
        if want == "false":
            log.warning("XLA off: runtime.jit_compile=false")
            return False
        if not ok:
            if want == "true":
                raise ValueError(f"runtime.jit_compile=true is not possible here: {why}")
            log.warning("XLA off, running the non-XLA step: %s", why)
            print(f"[massivetext_tf] XLA off, running the non-XLA step: {why}", flush=True)
            return False
        return True

    def _model_inputs(self, x):
        if self.input_keys is None or not isinstance(x, dict):
            return x
        return {k: x[k] for k in self.input_keys if k in x}

    def _loss_sum(self, x, y, w, training):
        logits = self.model(self._model_inputs(x), training=training)
        nll = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.cast(y, tf.int32), logits=tf.cast(logits, tf.float32)
        )
        return tf.reduce_sum(nll * tf.cast(w, tf.float32))

    def _compile(self, fn):
        """XLA-compiles a per-replica function (a plain function when XLA is off: a nested
        non-XLA tf.function would forbid the merge_call of MirroredStrategy on CPU)."""
        return tf.function(fn, jit_compile=True) if self.use_xla else fn

    def _make_local_grads(self):
        """Per replica, no collectives: (sum over micro-batches of loss share, gradients).
        The loss share of a micro-batch is sum(nll * weight) / `denom`, the global number of
        weighted tokens, so that the all-reduced SUM is the mean per-token loss of the global
        batch, whatever the replica count or accumulation."""
        tvars = self.model.trainable_variables
        acc = self.cfg.optimizer.accumulation_steps
        opt = self.optimizer
        lso = self.loss_scaling

        def grads_of(x, y, w, denom):
            with tf.GradientTape() as tape:
                loss = self._loss_sum(x, y, w, True) / denom
                scaled = opt.scale_loss(loss) if lso else loss
            grads = tape.gradient(scaled, tvars)
            grads = [tf.zeros(v.shape, v.dtype) if g is None else tf.convert_to_tensor(g)
                     for g, v in zip(grads, tvars)]
            return loss, grads

        def local_grads(batch, denom):
            x, y, w = batch
            if acc == 1:
                return grads_of(x, y, w, denom)
            micro = tf.nest.map_structure(
                lambda t: tf.reshape(t, [acc, -1] + t.shape[1:].as_list()), (x, y, w)
            )
            loss = tf.constant(0.0)
            grads = [tf.zeros(v.shape, v.dtype) for v in tvars]
            for i in tf.range(acc):
                mx, my, mw = tf.nest.map_structure(lambda t: t[i], micro)
                l_i, g_i = grads_of(mx, my, mw, denom)
                loss += l_i
                grads = [a + b for a, b in zip(grads, g_i)]
            return loss, grads

        return local_grads

    def _finish_grads(self, loss, grads):
        """All-reduced loss and grads -> (loss, global norm, finite, unscaled grads). The
        gradients are not clipped here: `_apply_step` folds the clipping factor into the update,
        which saves a pass over every gradient."""
        if self.loss_scaling:
            scale = tf.cast(self.optimizer.dynamic_scale, tf.float32)
            grads = [g / scale for g in grads]  # the scale is a power of two: exact
        norm = tf.linalg.global_norm(grads)
        finite = tf.logical_and(tf.math.is_finite(loss), tf.math.is_finite(norm))
        return loss, norm, finite, grads

    def _apply_step(self, grads, norm):
        """AdamW on the gradients clipped to global norm `optimizer.clip_norm` (the factor
        clip / max(norm, clip), as `tf.clip_by_global_norm`)."""
        tvars = self.model.trainable_variables
        clip = self.cfg.optimizer.clip_norm
        factor = clip / tf.maximum(norm, clip) if clip > 0 else tf.constant(1.0)
        if self.loss_scaling:
            # Re-scaled by the same power of two (exact); the LossScaleOptimizer checks
            # finiteness, skips non-finite steps and adjusts its scale.
            factor *= tf.cast(self.optimizer.dynamic_scale, tf.float32)
        self.optimizer.apply([g * tf.cast(factor, g.dtype) for g in grads], tvars)

    def _make_train_loop(self):
        """The host-call function.

        one_device: two XLA programs per step, the gradient program (forward, backward,
        global norm) and the update program (clipping folded into AdamW), the update run only
        when the step is finite. One program with the update under a condition is slower: XLA
        turns the condition into selects, computes the update either way and copies every
        optimizer slot to keep its old value (profiled at d_model 256: 120 vs 117 ms a step).
        Elsewhere two things keep the update out of XLA: TF has no XLA lowering of CPU
        collectives ("Collectives are not yet implemented for CPU devices when compiling with
        XLA"), and the Keras optimizer synchronizes its variable updates through `merge_call`,
        which cannot run inside a nested (jit-compiled) function. So the step is: the
        XLA-compiled forward/backward per replica, the all-reduce, the norm, and the
        elementwise update in a second `strategy.run` (skipped when non-finite).
        """
        strategy = self.strategy
        local_grads = self._make_local_grads()
        stop_on_nonfinite = self.cfg.runtime.on_nonfinite == "stop"
        lso = self.loss_scaling
        one_device = isinstance(strategy, tf.distribute.OneDeviceStrategy)
        SUM = tf.distribute.ReduceOp.SUM

        def token_count(batch):
            return tf.reduce_sum(tf.cast(batch[2], tf.float32))

        def grad_program(batch):
            denom = tf.maximum(token_count(batch), 1.0)
            return self._finish_grads(*local_grads(batch, denom))

        grad_program = self._compile(grad_program)
        update_program = self._compile(self._apply_step)

        def device_step(batch):
            loss, norm, finite, grads = grad_program(batch)
            if lso or finite:
                update_program(grads, norm)
            return loss, norm, finite

        local_grads_c = self._compile(local_grads)
        # The per-replica compiled functions, exposed for inspection (compiler IR in tests).
        self.compiled_step = grad_program if one_device else local_grads_c
        self.compiled_update = update_program if one_device else None

        def grad_step(batch):  # replica context, outside XLA: collectives live here
            ctx = tf.distribute.get_replica_context()
            denom = tf.maximum(ctx.all_reduce(SUM, token_count(batch)), 1.0)
            loss, grads = local_grads_c(batch, denom)
            loss, grads = ctx.all_reduce(SUM, (loss, grads))
            return self._finish_grads(loss, grads)

        def first(v):
            return strategy.experimental_local_results(v)[0]

        def one_step(batch):
            if one_device:
                loss, norm, finite = strategy.run(device_step, args=(batch,))
                return first(loss), first(norm), first(finite)
            loss, replica_norm, finite, grads = strategy.run(grad_step, args=(batch,))
            loss, norm, finite = first(loss), first(replica_norm), first(finite)
            # Every replica holds the same all-reduced values: one decision for all.
            if lso or finite:
                strategy.run(self._apply_step, args=(grads, replica_norm))
            return loss, norm, finite

        @tf.function
        def train_loop(iterator, num_steps):
            losses = tf.TensorArray(tf.float32, size=num_steps)
            norms = tf.TensorArray(tf.float32, size=num_steps)
            done = tf.constant(0)
            skipped = tf.constant(0)
            stopped = tf.constant(False)
            for i in tf.range(num_steps):
                loss, norm, finite = one_step(next(iterator))
                losses = losses.write(i, loss)
                norms = norms.write(i, norm)
                # fp16: a non-finite gradient is routine (the loss scale adapts); stop only on a
                # non-finite loss.
                bad = tf.logical_not(tf.math.is_finite(loss) if lso else finite)
                if stop_on_nonfinite and bad:
                    stopped = tf.constant(True)
                    break
                self.step.assign_add(1)
                done += 1
                skipped += tf.cast(tf.logical_not(finite), tf.int32)
            n = done + tf.cast(stopped, tf.int32)
            return losses.stack()[:n], norms.stack()[:n], done, stopped, skipped

        return train_loop

    def train_steps(self, num_steps: int) -> LoopOutput:
        """Runs `num_steps` optimizer steps in one host call."""
        losses, norms, done, stopped, skipped = self._train_loop(
            self.train_input.iterator, tf.constant(num_steps, tf.int32)
        )
        return LoopOutput(losses.numpy(), norms.numpy(), int(done), bool(stopped), int(skipped))

    # -- evaluation -----------------------------------------------------------------------------

    def _make_eval_fn(self):
        strategy = self.strategy

        def replica_eval(batch):
            x, y, w = batch
            return self._loss_sum(x, y, w, False), tf.reduce_sum(tf.cast(w, tf.float32))

        replica_eval = tf.function(replica_eval, jit_compile=self.use_xla)

        @tf.function
        def eval_loop(iterator, num_steps):
            total = tf.constant(0.0)
            tokens = tf.constant(0.0)
            for _ in tf.range(num_steps):
                s, n = strategy.run(replica_eval, args=(next(iterator),))
                total += strategy.reduce(tf.distribute.ReduceOp.SUM, s, axis=None)
                tokens += strategy.reduce(tf.distribute.ReduceOp.SUM, n, axis=None)
            return total, tokens

        return eval_loop

    def evaluate(self, num_steps: int | None = None) -> dict:
        """Loss, perplexity and (real data) bits per byte on the first `eval_steps` batches of
        the eval split; the same batches every time."""
        if self._eval_fn is None:
            self._eval_fn = self._make_eval_fn()
        with data_lib.explained_data_errors(self.cfg, "data.eval_split"):
            iterator = data_lib.DistributedInput(self.strategy, self.eval_input_fn).iterator
            total, tokens = self._eval_fn(
                iterator, tf.constant(num_steps or self.cfg.runtime.eval_steps, tf.int32)
            )
        total, tokens = float(total), max(float(tokens), 1.0)
        loss = total / tokens
        out = {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "tokens": tokens}
        bpt = data_lib.bytes_per_token(self.cfg, self.cfg.data.eval_split)
        if bpt:
            # bits per byte = sum nll / (ln 2 * bytes); bytes of the evaluated tokens estimated
            # from the split's bytes/tokens ratio (manifest / split_stats).
            out["bits_per_byte"] = total / (math.log(2) * tokens * bpt)
        return out

    def sample_text(self) -> list[str]:
        """Greedy continuations of runtime.sample_prompts (needs a preprocessor/tokenizer)."""
        if getattr(self.model, "preprocessor", None) is None or not self.cfg.runtime.sample_prompts:
            return []
        try:
            outs = self.model.generate(
                list(self.cfg.runtime.sample_prompts), max_length=self.cfg.runtime.sample_length
            )
            return [outs] if isinstance(outs, str) else list(outs)
        except Exception as e:  # sampling is best effort; training must not die of it
            log.warning("text sampling failed: %s", e)
            return []

    # -- the host loop --------------------------------------------------------------------------

    def _next_boundary(self, step: int) -> int:
        rt = self.cfg.runtime
        nxt = rt.train_steps
        for every in (rt.log_every, rt.checkpoint_every, rt.eval_every):
            if every and every > 0:
                nxt = min(nxt, (step // every + 1) * every)
        return min(nxt, step + rt.steps_per_loop)

    def _agree(self, flag: bool) -> bool:
        """Across workers: True if any worker's flag is True (preemption is per worker)."""
        workers = getattr(self.strategy.extended, "_num_workers", 1)
        if workers <= 1:
            return flag
        if self._agree_fn is None:
            strategy = self.strategy

            @tf.function
            def agree(x):
                value = strategy.run(lambda: tf.identity(x))
                return strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)

            self._agree_fn = agree
        return int(self._agree_fn(tf.constant(int(flag), tf.int32))) > 0

    def _resolve_peak_flops(self):
        rt = self.cfg.runtime
        if rt.peak_flops_per_device:
            return float(rt.peak_flops_per_device), "config"
        kind = strategy_lib.device_kind(self.strategy)
        peak = metrics_lib.device_peak_flops(kind)
        if peak:
            return peak, "table"
        if kind == "CPU":
            return metrics_lib.measure_matmul_peak(n=1024, seconds=0.5), "measured float32 matmul"
        return None, "unknown"

    def variables_finite(self) -> bool:
        """True when every float variable of the model and the optimizer is finite (one
        compiled reduction; run after every host call and before every save)."""
        if self._finite_fn is None:
            variables = [v for v in list(self.model.weights) + list(self.optimizer.variables)
                         if tf.as_dtype(v.dtype).is_floating]

            @tf.function
            def all_finite():
                return tf.reduce_all(tf.stack(
                    [tf.reduce_all(tf.math.is_finite(tf.convert_to_tensor(v))) for v in variables]))

            self._finite_fn = all_finite
        return bool(self._finite_fn())

    def verify_state(self) -> str | None:
        """None when the in-memory state is good: finite weights and optimizer state and, if
        evaluation is configured, a finite loss on the eval batches; else the reason."""
        if not self.variables_finite():
            return "weights or optimizer state not finite"
        if self.cfg.runtime.eval_steps:
            try:
                loss = self.evaluate()["loss"]
            except tf.errors.OpError as e:  # the state may overflow in ops that check
                return f"evaluation failed ({type(e).__name__})"
            if not math.isfinite(loss):
                return f"eval loss {loss}"
        return None

    def _last_good_checkpoint(self) -> tuple[str | None, int]:
        """Restores the newest checkpoint that passes `verify_state`, moving bad ones to
        checkpoints/nonfinite/; returns (path, step) or (None, 0)."""
        for path in reversed(self.checkpointer.checkpoints):
            try:
                self.checkpointer.restore(path)
            except Exception as e:  # noqa: BLE001 - unloadable: not a good state either
                log.warning("checkpoint %s failed to load: %s", path, e)
                continue
            bad = self.verify_state()
            if bad is None:
                return path, int(self.step.numpy())
            self.checkpointer.quarantine(path)
        return None, 0

    def _nonfinite(self, message: str, *, bad_step: int) -> NonFiniteError:
        """The error for a non-finite step or state: checkpoints the in-memory state only if
        it verifies as good, else finds the newest verified checkpoint; the advice in the
        message works when followed (rerun = resume from that checkpoint)."""
        step = int(self.step.numpy())
        bad = self.verify_state()
        if bad is None:
            path, good = self.save_checkpoint(), step
            where = f"the last good state (step {good}, verified) is checkpointed at {path}"
        else:
            path, good = self._last_good_checkpoint()
            where = (f"the state after step {step} is not usable ({bad}) and was not saved; "
                     + (f"the last good checkpoint is step {good} ({path})" if path else
                        "there is no good checkpoint"))
        lr = self.cfg.optimizer.peak_lr
        rerun = f"resumes from step {good}" if path else "starts from step 0"
        return NonFiniteError(
            f"{message}; {where}. Rerunning the same command {rerun}: first "
            f"lower the learning rate (e.g. --set optimizer.peak_lr={lr / 10:g}, now {lr:g}) "
            "or check the data; runtime.on_nonfinite=skip drops single bad batches.",
            step=bad_step, good_step=good, checkpoint=path,
        )

    def restore(self) -> int:
        def verify():
            return None if self.variables_finite() else "weights or optimizer state not finite"

        path = self.checkpointer.restore_latest(verify=verify)
        if path:
            step = int(self.step.numpy())
            log.info("resumed from %s at step %d", path, step)
            if not self.train_input.checkpointable or not self.cfg.runtime.checkpoint_input_pipeline:
                # Resume the input position by skipping the batches already consumed.
                self.train_input = data_lib.DistributedInput(
                    self.strategy, self.train_input_fn, skip_steps=step
                )
        return int(self.step.numpy())

    def save_checkpoint(self) -> str:
        return self.checkpointer.save(int(self.step.numpy()))

    def fit(self, *, evaluate_fn=None) -> dict:
        """Trains to runtime.train_steps; returns final metrics (see `train`)."""
        cfg, rt = self.cfg, self.cfg.runtime
        step = self.restore()
        start_step = step
        if self.is_chief:
            written = run_dir_lib.record(cfg, self.run_dir, step=step)
            if self.run_dir.changes:
                changes = config_lib.describe_changes(self.run_dir.changes)
                log.warning("config changes vs the previous run (%s): %s", written, changes)
                print(f"[massivetext_tf] resuming at step {step} with config changes: {changes}"
                      f" (recorded in {written})", flush=True)
            moved = self.writer.supersede_after(step, eval_at_step=step >= rt.train_steps)
            if moved:
                log.info("moved %d metrics line(s) after step %d to %s", moved, step,
                         metrics_lib.SUPERSEDED)
            self.writer.text(step, "config", "```\n" + config_lib.dump_config(cfg) + "\n```")
        self.peak_flops, peak_source = self._resolve_peak_flops()
        layers, hidden = metrics_lib.model_dims(self.model)
        seq = cfg.data.sequence_length
        tokens_per_step = cfg.data.global_batch_size * seq
        flops_per_token = metrics_lib.flops_per_token(self.total_params, layers, hidden, seq)
        peak_total = (self.peak_flops or 0) * self.num_replicas
        progress = metrics_lib.Progress(rt.train_steps, enabled=rt.progress and self.is_chief)
        progress.message(
            f"training {cfg.model.preset}: {self.total_params:,} params, "
            f"{self.num_replicas} replica(s), XLA {'on' if self.use_xla else 'off'}, "
            f"{rt.mixed_precision}, step {step} -> {rt.train_steps}"
        )
        watcher = ckpt_lib.PreemptionWatcher()
        status = "completed"
        window_losses, window_start, window_steps = [], time.perf_counter(), 0
        steady_tokens, steady_time = 0, 0.0
        last_train, last_eval = {}, {}
        first_call = True
        try:
            while step < rt.train_steps:
                n = self._next_boundary(step) - step
                t0 = time.perf_counter()
                with data_lib.explained_data_errors(
                        cfg, "data.train_split", step=lambda: int(self.step.numpy()),
                        checkpoint=self.checkpointer.latest):
                    out = self.train_steps(n)
                dt = time.perf_counter() - t0
                step = int(self.step.numpy())
                finite_losses = [float(v) for v in out.losses[: out.steps_done] if math.isfinite(v)]
                self.history.extend(float(v) for v in out.losses[: out.steps_done])
                window_losses.extend(finite_losses)
                window_steps += out.steps_done
                if not first_call:
                    steady_tokens += out.steps_done * tokens_per_step
                    steady_time += dt
                first_call = False
                if out.skipped:
                    log.warning("skipped %d non-finite step(s) before step %d", out.skipped, step)
                if out.nonfinite:
                    raise self._nonfinite(
                        f"non-finite loss or gradient at step {step + 1} (loss="
                        f"{float(out.losses[-1])}, grad_norm={float(out.grad_norms[-1])})",
                        bad_step=step + 1)
                for loss_i, norm_i in zip(out.losses[: out.steps_done],
                                          out.grad_norms[: out.steps_done]):
                    ok = math.isfinite(loss_i) and (self.loss_scaling or math.isfinite(norm_i))
                    self._nonfinite_run = 0 if ok else self._nonfinite_run + 1
                if self._nonfinite_run >= rt.max_consecutive_nonfinite:
                    raise self._nonfinite(
                        f"{self._nonfinite_run} non-finite steps in a row up to step {step} "
                        f"(runtime.max_consecutive_nonfinite={rt.max_consecutive_nonfinite}): "
                        "skipping cannot recover from this",
                        bad_step=step - self._nonfinite_run + 1)
                if not self.variables_finite():
                    raise self._nonfinite(
                        f"the weights became non-finite between step {step - out.steps_done} "
                        f"and step {step}",
                        bad_step=step - out.steps_done + 1)
                elapsed = time.perf_counter() - window_start
                tps = window_steps * tokens_per_step / max(elapsed, 1e-9)
                cur_loss = finite_losses[-1] if finite_losses else float("nan")
                progress.update(step, cur_loss, tps)
                if step % rt.log_every == 0 or step == rt.train_steps:
                    lr = opt_lib.current_lr(self.optimizer)
                    rec = {
                        "loss": float(np.mean(window_losses)) if window_losses else float("nan"),
                        "learning_rate": lr,
                        "grad_norm": float(out.grad_norms[out.steps_done - 1]) if out.steps_done else float("nan"),
                        "tokens_per_s": tps,
                        "mfu": tps * flops_per_token / peak_total if peak_total else None,
                    }
                    if self.loss_scaling:
                        rec["loss_scale"] = float(self.optimizer.dynamic_scale.numpy())
                    if out.skipped:
                        rec["skipped_steps"] = out.skipped
                    self.writer.write(step, rec)
                    last_train = rec
                    progress.update(step, rec["loss"], tps, force_line=True)
                    window_losses, window_start, window_steps = [], time.perf_counter(), 0
                if rt.checkpoint_every and step % rt.checkpoint_every == 0 and step < rt.train_steps:
                    self.save_checkpoint()
                if rt.eval_every and step % rt.eval_every == 0 and step < rt.train_steps:
                    last_eval = self._run_eval(step, evaluate_fn, progress)
                    window_start = time.perf_counter()
                if self._agree(watcher.requested):
                    self.save_checkpoint()
                    progress.message(f"preempted: checkpoint at step {step} written, exiting")
                    status = "preempted"
                    break
            if status == "completed":
                if start_step < rt.train_steps or not self.checkpointer.latest:
                    self.save_checkpoint()
                last_eval = self._run_eval(step, evaluate_fn, progress)
                if "loss" in last_eval and not math.isfinite(last_eval["loss"]):
                    raise self._nonfinite(f"the final eval loss is {last_eval['loss']}",
                                          bad_step=step)
                if rt.save_preset and self.is_chief:
                    self.save_preset()
        finally:
            watcher.close()
            self.writer.close()
        steady_tps = steady_tokens / steady_time if steady_time else last_train.get("tokens_per_s")
        result = {
            "status": status,
            "step": step,
            "model_dir": self.model_dir,
            "loss": last_train.get("loss"),
            "learning_rate": last_train.get("learning_rate"),
            "grad_norm": last_train.get("grad_norm"),
            "tokens_per_s": steady_tps,
            "mfu": steady_tps * flops_per_token / peak_total if (steady_tps and peak_total) else None,
            "peak_flops_per_device": self.peak_flops,
            "peak_flops_source": peak_source,
            "num_params": self.total_params,
            "num_replicas": self.num_replicas,
            "xla": self.use_xla,
            "history": list(self.history),
        }
        result.update({f"eval_{k}": v for k, v in last_eval.items()})
        return result

    def _run_eval(self, step, evaluate_fn, progress) -> dict:
        if not self.cfg.runtime.eval_steps:
            return {}
        res = self.evaluate()
        if evaluate_fn is not None:
            res.update(evaluate_fn(self))
        self.writer.write(step, res, prefix="eval")
        progress.message(
            f"eval @ {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in res.items()
                                            if isinstance(v, (int, float)))
        )
        if self.is_chief:
            for i, text in enumerate(self.sample_text()):
                self.writer.text(step, f"samples/{i}", text)
        return res

    def save_preset(self, path: str | None = None) -> str:
        """MODEL_DIR/preset: keras-hub preset (config, model.weights.h5, tokenizer if any)."""
        path = path or f"{self.model_dir}/preset"
        model = self.model
        if self.cfg.model.lora_rank:
            log.info("saving a LoRA model: the preset holds the merged-in LoRA weights as trained")
        model.save_to_preset(path)
        return path


def train(cfg, **kwargs) -> dict:
    """Trains `cfg` (an `ExperimentConfig`) and returns the final metrics:

    `{"status": "completed"|"preempted", "step", "loss", "learning_rate", "grad_norm",
    "tokens_per_s", "mfu", "eval_loss", "eval_perplexity", ["eval_bits_per_byte"], "history",
    "model_dir", ...}`. Raises `NonFiniteError` on a non-finite step with on_nonfinite=stop.
    Keyword arguments go to `Trainer` (strategy, train_input_fn, eval_input_fn, model_fn).
    The tasks of `runtime.eval_tasks` are checked first and run with every evaluation
    (`TASK/METRIC` in the eval metrics; `massivetext_tf.training.evaluator`).
    """
    from massivetext_tf.training.evaluator import task_eval_fn

    evaluate_fn = task_eval_fn(cfg)
    trainer = Trainer(cfg, **kwargs)
    return trainer.fit(evaluate_fn=evaluate_fn)
