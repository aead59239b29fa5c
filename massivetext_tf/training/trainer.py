"""The Trainer: the state of a run (model, optimizer, step, RNG, input iterators, checkpoints)
and its compiled programs. What to do when (log, evaluate, checkpoint, stop) is the
`Controller`'s job (`training/controller.py`); what to train is the `Task`'s.

Shape of one host call (`Trainer.train_steps`, one `tf.function`):

    for _ in tf.range(num_steps):                   # num_steps <= trainer.steps_per_loop
        batch = next(distributed_iterator)
        one_step(batch)                             # XLA programs, see `_make_train_loop`

One optimizer step:
  1. global weighted-token count: all-reduce SUM of the local sum of `sample_weight`;
  2. `accumulation_steps` micro-batches in a `tf.range` loop, each
     loss = task.loss_sum(batch) / global token count; gradients summed;
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

import keras
import numpy as np
import tensorflow as tf

from massivetext_tf.training import checkpoint as ckpt_lib
from massivetext_tf.training import config as config_lib
from massivetext_tf.training import data as data_lib
from massivetext_tf.training import optimizer as opt_lib
from massivetext_tf.training import run_dir as run_dir_lib
from massivetext_tf.training import strategy as strategy_lib
from massivetext_tf.training.task import PretrainTask, model_input_keys

log = logging.getLogger("massivetext_tf.training")


@dataclasses.dataclass
class LoopOutput:
    """What one host call of `Trainer.train_steps` did."""

    losses: np.ndarray  # per step, finite or not
    grad_norms: np.ndarray
    steps_done: int  # steps counted (applied or skipped)
    nonfinite: bool  # stopped on a non-finite step
    skipped: int


def eval_metrics(cfg, total: float, tokens: float) -> dict:
    """Loss, perplexity and (real data) bits per byte from the summed weighted NLL `total` of
    `tokens` weighted tokens of the eval split (both trainers)."""
    tokens = max(tokens, 1.0)
    loss = total / tokens
    out = {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "tokens": tokens}
    bpt = data_lib.bytes_per_token(cfg, cfg.data.eval_split)
    if bpt:
        # bits per byte = sum nll / (ln 2 * bytes); bytes of the evaluated tokens estimated
        # from the split's bytes/tokens ratio (manifest / split_stats).
        out["bits_per_byte"] = total / (math.log(2) * tokens * bpt)
    return out


def sample_text(model, t, *, batch_multiple: int = 1) -> list[str]:
    """Greedy continuations of `t.sample_prompts` to `t.sample_length` tokens (`t`: a
    `TrainerConfig`); [] without a preprocessor or prompts. `batch_multiple`: the prompts are
    padded (with the last one) to a multiple of it, for a batch split over that many devices.
    Best effort: a failure is logged, never raised (training must not die of a sample)."""
    if getattr(model, "preprocessor", None) is None or not t.sample_prompts:
        return []
    prompts = list(t.sample_prompts)
    padded = prompts + prompts[-1:] * (-len(prompts) % batch_multiple)
    try:
        outs = model.generate(padded, max_length=t.sample_length)
        return ([outs] if isinstance(outs, str) else list(outs))[: len(prompts)]
    except Exception as e:  # noqa: BLE001
        log.warning("text sampling failed: %s", e)
        return []


class Trainer:
    """Owns strategy, model, optimizer, iterators and checkpoints of one run, and the compiled
    gradient, update and evaluation programs.

    Args:
        cfg: an `ExperimentConfig` (model_dir must be set).
        task: the `Task` (default: `PretrainTask(cfg)` with the input and model functions
            below).
        strategy: optional prebuilt strategy (default: `strategy.from_config(cfg.runtime)`).
        train_input_fn / eval_input_fn / model_fn: shorthand for a `PretrainTask` with these
            (see there); only without `task`.
    """

    def __init__(self, cfg, *, task=None, strategy=None, train_input_fn=None,
                 eval_input_fn=None, model_fn=None):
        if not cfg.model_dir:
            raise ValueError("model_dir: required (--model-dir)")
        if task is not None and (train_input_fn or eval_input_fn or model_fn):
            raise ValueError("Trainer: pass input and model functions through the task")
        config_lib.validate(cfg)
        # Before anything is written in the model dir: is it compatible with this config?
        self.run_dir = run_dir_lib.check(cfg)
        self.task = task or PretrainTask(cfg, train_input_fn=train_input_fn,
                                         eval_input_fn=eval_input_fn, model_fn=model_fn)
        self.task.check_inputs(evaluate=cfg.trainer.eval_steps > 0)
        self.cfg = cfg
        rt = cfg.runtime
        self.model_dir = cfg.model_dir.rstrip("/")
        self.strategy = strategy or strategy_lib.from_config(rt)
        self.is_chief = ckpt_lib.is_chief(self.strategy)
        self.num_replicas = self.strategy.num_replicas_in_sync
        self.num_devices = self.num_replicas  # one replica per device
        self.device_kind = strategy_lib.device_kind(self.strategy)
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

        with self.strategy.scope():
            resuming = tf.io.gfile.exists(f"{self.model_dir}/checkpoints/checkpoint")
            self.model = self.task.create_model(initialize=not resuming)
            self.loss_scaling = rt.mixed_precision == "float16"
            self.optimizer = opt_lib.build_optimizer(
                cfg.optimizer, train_steps=cfg.trainer.train_steps, model=self.model,
                loss_scale=self.loss_scaling,
            )
            self.optimizer.build(self.model.trainable_variables)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="train_step")
            self.rng = tf.random.Generator.from_seed(rt.seed)
        self.input_keys = model_input_keys(self.model)
        self.num_params = int(sum(np.prod(v.shape) for v in self.model.trainable_variables))
        self.total_params = int(self.model.count_params())

        self.train_input_fn = self.task.build_inputs(cfg.data.train_split, training=True)
        self.eval_input_fn = self.task.build_inputs(cfg.data.eval_split, training=False)
        with data_lib.explained_data_errors(cfg, "data.train_split"):
            self.train_input = data_lib.DistributedInput(self.strategy, self.train_input_fn)

        objects = dict(model=self.model, optimizer=self.optimizer, step=self.step, rng=self.rng)
        seeds = ckpt_lib.seed_generator_states(self.model)
        if seeds:
            objects["seed_states"] = seeds
        if cfg.trainer.checkpoint_input_pipeline and self.train_input.checkpointable:
            objects["input_iterators"] = list(self.train_input.trackables)
        self.checkpointer = ckpt_lib.Checkpointer(
            self.model_dir, max_to_keep=cfg.trainer.keep_checkpoints, strategy=self.strategy,
            **objects
        )
        self._train_loop = self._make_train_loop()
        self._eval_fn = None
        self._agree_fn = None
        self._finite_fn = None

    def fit(self, *, evaluate_fn=None) -> dict:
        """Trains to trainer.train_steps with the `Controller`'s cadence; returns the final
        metrics (see `train`). `evaluate_fn(trainer) -> dict` adds metrics to each evaluation."""
        from massivetext_tf.training.controller import Controller

        return Controller(self, evaluate_fn=evaluate_fn).run()

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
        return self.task.loss_sum(self.model, x, y, w, training=training)

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
        optimizer slot to keep its old value. Elsewhere two things keep the update out of XLA:
        TF has no XLA lowering of CPU collectives ("Collectives are not yet implemented for
        CPU devices when compiling with XLA"), and the Keras optimizer synchronizes its
        variable updates through `merge_call`, which cannot run inside a nested (jit-compiled)
        function. So the step is: the XLA-compiled forward/backward per replica, the
        all-reduce, the norm, and the elementwise update in a second `strategy.run` (skipped
        when non-finite).
        """
        strategy = self.strategy
        local_grads = self._make_local_grads()
        stop_on_nonfinite = self.cfg.trainer.on_nonfinite == "stop"
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
                iterator, tf.constant(num_steps or self.cfg.trainer.eval_steps, tf.int32)
            )
        return eval_metrics(self.cfg, float(total), float(tokens))

    def describe_devices(self) -> str:
        return f"{self.num_replicas} replica(s)"

    def sample_text(self) -> list[str]:
        """Greedy continuations of trainer.sample_prompts (needs a preprocessor/tokenizer)."""
        return sample_text(self.model, self.cfg.trainer)

    # -- state ----------------------------------------------------------------------------------

    def any_worker(self, flag: bool) -> bool:
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

    def restore(self) -> int:
        """Restores the newest loadable checkpoint with finite weights (if any) and the input
        position; returns the step."""
        def verify():
            return None if self.variables_finite() else "weights or optimizer state not finite"

        path = self.checkpointer.restore_latest(verify=verify)
        if path:
            step = int(self.step.numpy())
            log.info("resumed from %s at step %d", path, step)
            if not self.train_input.checkpointable or not self.cfg.trainer.checkpoint_input_pipeline:
                # Resume the input position by skipping the batches already consumed.
                self.train_input = data_lib.DistributedInput(
                    self.strategy, self.train_input_fn, skip_steps=step
                )
        return int(self.step.numpy())

    def save_checkpoint(self) -> str:
        return self.checkpointer.save(int(self.step.numpy()))

    def save_preset(self, path: str | None = None) -> str:
        """MODEL_DIR/preset: keras-hub preset (config, model.weights.h5, tokenizer if any);
        written by the chief only (another worker returns the path, writing nothing)."""
        path = path or f"{self.model_dir}/preset"
        if not self.is_chief:
            return path
        if self.cfg.model.lora_rank:
            log.info("saving a LoRA model: the preset holds the merged-in LoRA weights as trained")
        self.model.save_to_preset(path)
        return path
