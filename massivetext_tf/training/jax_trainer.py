"""The JAX trainer (runtime.backend jax): the same Keras models, data, configs, metrics,
TensorBoard output, cadence (`Controller`) and preset as the TensorFlow `Trainer`, with the
weights and optimizer slots sharded over a device mesh by `keras.distribution`.

    massivetext train --backend jax --strategy model_parallel --mesh data=2,model=4 \\
        --config gopher_tiny --data DIR --model-dir runs/sharded

Why JAX: Keras' TensorFlow backend has no model parallelism (`keras.distribution` is JAX
only), so a model whose weights and AdamW slots do not fit one device trains here. The
TensorFlow path still exports and serves the preset this writes (`massivetext export`).

Several processes (one per host: a TPU pod slice, a multi-node GPU cluster; `--coordinator
HOST:PORT --num-processes N --process-id I`, or the KERAS_DISTRIBUTION_* variables, or nothing
but `--num-processes` on Cloud TPU): `initialize_processes` joins them before any JAX
computation (`keras.distribution.initialize`; gloo collectives on CPU). The mesh spans every
process's devices; each process reads only the rows of the global batch its devices hold
(its own `tf.data` pipeline, `InputContext` of one pipeline per distinct batch slice) and
`jax.make_array_from_process_local_data` assembles the global batch. Process 0 writes the
checkpoints, metrics, TensorBoard and preset; saving gathers each array from every process
(all processes take part), restoring reads the files on every process.

One optimizer step is one `jax.jit` program, sharded by XLA's SPMD partitioner from the
variables' layouts (training/sharding.py) and the batch's (`data` axis):

  1. the global weighted-token count (sum of `sample_weight`);
  2. `accumulation_steps` micro-batches, each loss = sum(nll * weight) / token count, gradients
     summed (so the loss is the mean per-token loss of the global batch, as in the TF trainer);
  3. the global gradient norm, and the gradients scaled by clip / max(norm, clip);
  4. AdamW (`optimizer.stateless_apply`), kept only when the loss and norm are finite.

The state (weights, non-trainable state, optimizer slots) is donated to the program and the
new arrays are written back into the Keras variables after each host call, so the model, the
checkpoint and the preset always see the live weights. Input: the task's `tf.data` pipeline
(one per process, reading that process's rows), its batches placed on the mesh; a resumed run rebuilds it and skips the
batches already consumed. Checkpoints: training/jax_checkpoint.py.

Not on this path (each an error naming the field): fine-tuning tasks, `trainer.eval_tasks`,
float16 loss scaling, `model.init_from` naming a TensorFlow checkpoint (give a preset
directory), `one_device` with several processes (use model_parallel), a mesh smaller than all
devices of several processes. With several processes the text samples at evaluation
(`trainer.sample_prompts`) are skipped (logged): keras-hub's `generate` runs on one host.
"""
from __future__ import annotations

import logging
import os

import numpy as np
import tensorflow as tf

from massivetext_tf import io
from massivetext_tf.training import config as config_lib
from massivetext_tf.training import optimizer as opt_lib
from massivetext_tf.training import run_dir as run_dir_lib
from massivetext_tf.training import sharding
from massivetext_tf.training.jax_checkpoint import ArrayCheckpointer
from massivetext_tf.training.task import PretrainTask, is_preset_dir, model_input_keys
from massivetext_tf.training.trainer import LoopOutput, eval_metrics, sample_text

log = logging.getLogger("massivetext_tf.training")

SHARDING_REPORT = "sharding.json"

# keras.distribution.initialize reads these when the runtime fields are None.
PROCESS_ENV = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES",
               "KERAS_DISTRIBUTION_PROCESS_ID")


def initialize_processes(rt) -> bool:
    """Joins the run's JAX processes (`keras.distribution.initialize`, which wraps
    `jax.distributed.initialize`) when runtime.jax_coordinator / jax_num_processes /
    jax_process_id or a KERAS_DISTRIBUTION_* variable asks for it; must run before any JAX
    computation. Returns whether it did (or had already). The fields take precedence over the
    variables; None of both: JAX finds the values (Cloud TPU)."""
    import jax
    import keras

    fields = (rt.jax_coordinator, rt.jax_num_processes, rt.jax_process_id)
    if all(f is None for f in fields) and not any(os.environ.get(k) for k in PROCESS_ENV):
        return False
    if jax.distributed.is_initialized():
        return True
    # Cross-process collectives of the CPU client (the test cluster, and every host's CPU
    # arrays); the accelerators' clients bring their own. gloo is jax 0.10's default: set so
    # that a changed default does not leave a CPU run without collectives.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    # With the Keras seed set, initialize does not need a collective to agree on one.
    keras.utils.set_random_seed(rt.seed)
    try:
        keras.distribution.initialize(rt.jax_coordinator, rt.jax_num_processes,
                                      rt.jax_process_id)
    except (RuntimeError, ValueError) as e:
        raise ValueError(
            "runtime.jax_coordinator / jax_num_processes / jax_process_id (--coordinator, "
            f"--num-processes, --process-id): cannot join the processes: "
            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    log.info("JAX process %d of %d", jax.process_index(), jax.process_count())
    return True


class StepCounter:
    """The training step on the host (the TF trainer's `tf.Variable` interface)."""

    def __init__(self, value: int = 0):
        self.value = int(value)

    def numpy(self):
        return np.int64(self.value)

    def assign(self, value) -> None:
        self.value = int(value)

    def assign_add(self, value) -> None:
        self.value += int(value)


class JaxTrainer:
    """The `Trainer` interface (what the `Controller` drives) on Keras' JAX backend.

    Args:
        cfg: an `ExperimentConfig` with runtime.backend `jax`.
        task: a `PretrainTask` (default: `PretrainTask(cfg)`).
    """

    def __init__(self, cfg, *, task=None):
        import jax
        import keras

        if keras.backend.backend() != "jax":
            raise ValueError("runtime.backend: jax, but Keras runs on "
                             f"{keras.backend.backend()!r} in this process (--backend jax)")
        if not cfg.model_dir:
            raise ValueError("model_dir: required (--model-dir)")
        config_lib.validate(cfg)
        _check_supported(cfg)
        initialize_processes(cfg.runtime)
        self.num_processes = jax.process_count()
        if self.num_processes > 1 and cfg.runtime.strategy != "model_parallel":
            raise ValueError(f"runtime.strategy: {cfg.runtime.strategy} runs on one device; "
                             f"with {self.num_processes} processes use model_parallel "
                             "(--strategy model_parallel --mesh data=D,model=M)")
        self.run_dir = run_dir_lib.check(cfg)
        self.task = task or PretrainTask(cfg)
        self.task.check_inputs(evaluate=cfg.trainer.eval_steps > 0)
        self.cfg = cfg
        rt = cfg.runtime
        self.model_dir = cfg.model_dir.rstrip("/")
        self.strategy = None
        self.distribution = sharding.distribution(rt)
        if self.distribution is None:
            self.mesh = {"data": 1, "model": 1}
            self.devices = [jax.devices()[0]]
        else:
            shape = self.distribution.device_mesh.shape
            self.mesh = {"data": int(shape[0]), "model": int(shape[1])}
            self.devices = list(np.asarray(self.distribution.device_mesh.devices).ravel())
        self.num_replicas = self.mesh["data"]
        self.num_devices = len(self.devices)
        self.device_kind = self.devices[0].platform.upper()
        gbs, acc = cfg.data.global_batch_size, cfg.optimizer.accumulation_steps
        if gbs % (self.num_replicas * acc):
            raise ValueError(f"data.global_batch_size: {gbs} is not divisible by the data axis "
                             f"({self.num_replicas}) x optimizer.accumulation_steps ({acc})")
        if gbs % self.num_processes:
            raise ValueError(f"data.global_batch_size: {gbs} is not divisible by the number of "
                             f"processes ({self.num_processes}); each reads an equal part")
        self.input_pipelines, self.input_pipeline_id = self._input_split(gbs)
        self.is_chief = jax.process_index() == 0
        self.use_xla = True
        self.loss_scaling = False
        keras.utils.set_random_seed(rt.seed)

        resuming = run_dir_lib.has_checkpoint(self.model_dir)
        with self._scope():
            self.model = self.task.create_model(initialize=not resuming)
            self.optimizer = opt_lib.build_optimizer(
                cfg.optimizer, train_steps=cfg.trainer.train_steps, model=self.model)
            self.optimizer.build(self.model.trainable_variables)
        self.step = StepCounter()
        self.input_keys = model_input_keys(self.model)
        self.num_params = int(sum(np.prod(v.shape) for v in self.model.trainable_variables))
        self.total_params = int(self.model.count_params())

        self.train_input_fn = self.task.build_inputs(cfg.data.train_split, training=True)
        self.eval_input_fn = self.task.build_inputs(cfg.data.eval_split, training=False)
        self.train_input = self._iterator(self.train_input_fn)
        self.checkpointer = ArrayCheckpointer(
            self.model_dir, max_to_keep=cfg.trainer.keep_checkpoints, step=self.step,
            is_chief=self.is_chief, groups={
                "trainable": self.model.trainable_variables,
                "non_trainable": self.model.non_trainable_variables,
                "optimizer": self.optimizer.variables,
            })
        self._train_step = self._make_train_step()
        self._eval_step = None
        self._finite_fn = None
        if self.is_chief:
            self.write_sharding_report()

    def fit(self, *, evaluate_fn=None) -> dict:
        """Trains to trainer.train_steps with the `Controller`'s cadence (see `Trainer.fit`)."""
        from massivetext_tf.training.controller import Controller

        return Controller(self, evaluate_fn=evaluate_fn).run()

    def describe_devices(self) -> str:
        if self.distribution is None:
            return f"1 {self.device_kind} device (JAX)"
        return (f"{self.num_devices} {self.device_kind} devices, mesh data={self.mesh['data']},"
                f"model={self.mesh['model']} (JAX)")

    # -- placement ------------------------------------------------------------------------------

    def _scope(self):
        import contextlib

        return self.distribution.scope() if self.distribution else contextlib.nullcontext()

    def _input_split(self, global_batch: int) -> tuple[int, int]:
        """(number of input pipelines, this process's pipeline): one pipeline per distinct
        slice of the batch that a process's devices hold (one process: (1, 0); a process per
        data-axis slice: (process count, process index)). Processes whose devices hold the
        same rows (a `model` axis across hosts) read the same pipeline."""
        import jax

        if self.num_processes == 1:
            return 1, 0
        if self.num_devices != len(jax.devices()):
            raise ValueError(f"runtime.mesh: data={self.mesh['data']},model="
                             f"{self.mesh['model']} uses {self.num_devices} of the "
                             f"{len(jax.devices())} devices of {self.num_processes} processes; "
                             "with several processes the mesh takes every device")
        sharding = self.distribution.get_data_layout((global_batch,)).backend_layout
        rows = sorted({idx[0].indices(global_batch)[:2] for idx in
                       sharding.addressable_devices_indices_map((global_batch,)).values()})
        lo, hi = rows[0][0], rows[-1][1]
        covered = sum(b - a for a, b in rows)
        if covered != hi - lo or global_batch % (hi - lo) or lo % (hi - lo):
            raise ValueError(f"runtime.mesh: the batch rows of process {jax.process_index()} "
                             f"are not one contiguous slice ({rows}); order the mesh's data "
                             "axis by process")
        return global_batch // (hi - lo), lo // (hi - lo)

    def _iterator(self, input_fn, skip_steps: int = 0):
        """The task's pipeline for this process: its part of each global batch (one process:
        the whole batch)."""
        n = self.input_pipelines
        ctx = tf.distribute.InputContext(num_input_pipelines=n,
                                         input_pipeline_id=self.input_pipeline_id,
                                         num_replicas_in_sync=n)
        with tf.device("/CPU:0"):
            ds = input_fn(ctx)
            if skip_steps:
                ds = ds.skip(skip_steps)
            return iter(ds)

    def _place(self, batch):
        """A host batch -> arrays on the mesh, split over `data` (one device: that device).
        Several processes: each holds its rows; the global array has all of them."""
        import jax
        import keras

        def put(t):
            a = np.asarray(t)
            if self.distribution is None:
                return jax.device_put(a, self.devices[0])
            shape = (a.shape[0] * self.input_pipelines, *a.shape[1:])
            layout = self.distribution.get_data_layout(shape).backend_layout
            if self.num_processes == 1:
                return jax.device_put(a, layout)
            return jax.make_array_from_process_local_data(layout, a, shape)

        return keras.tree.map_structure(put, tf.nest.map_structure(lambda t: t.numpy(), batch))

    # -- state ----------------------------------------------------------------------------------

    def _state_variables(self):
        return (self.model.trainable_variables, self.model.non_trainable_variables,
                self.optimizer.variables)

    def _state(self):
        """The variables' arrays, committed to their devices (an uncommitted array, as Keras
        creates on one device, would make the second call of the step compile again)."""
        import jax

        return tuple([jax.device_put(v.value, v.value.sharding) for v in group]
                     for group in self._state_variables())

    def _set_state(self, state) -> None:
        for group, values in zip(self._state_variables(), state):
            for v, value in zip(group, values):
                v.assign(value)

    # -- the compiled step ----------------------------------------------------------------------

    def _loss_fn(self):
        import jax.numpy as jnp
        import keras

        model, keys = self.model, self.input_keys

        def loss_sum(trainable, non_trainable, x, y, w, training):
            if keys is not None and isinstance(x, dict):
                x = {k: x[k] for k in keys if k in x}
            logits, non_trainable = model.stateless_call(trainable, non_trainable, x,
                                                         training=training)
            nll = keras.ops.sparse_categorical_crossentropy(
                y.astype("int32"), logits.astype("float32"), from_logits=True)
            return jnp.sum(nll * w.astype("float32")), non_trainable

        return loss_sum

    def _make_train_step(self):
        import jax
        import jax.numpy as jnp

        loss_sum = self._loss_fn()
        opt = self.optimizer
        acc = self.cfg.optimizer.accumulation_steps
        clip = float(self.cfg.optimizer.clip_norm)

        def grads_of(trainable, non_trainable, x, y, w, denom):
            def f(tr, nt):
                total, nt = loss_sum(tr, nt, x, y, w, True)
                return total / denom, nt

            (loss, non_trainable), grads = jax.value_and_grad(f, has_aux=True)(
                trainable, non_trainable)
            return loss, grads, non_trainable

        def step(trainable, non_trainable, opt_vars, batch):
            x, y, w = batch
            denom = jnp.maximum(jnp.sum(w.astype("float32")), 1.0)
            if acc == 1:
                loss, grads, nt = grads_of(trainable, non_trainable, x, y, w, denom)
            else:  # micro-batch i = rows [i*b, (i+1)*b), as the TF trainer's reshape
                b = y.shape[0] // acc
                loss, grads, nt = 0.0, None, non_trainable
                for i in range(acc):
                    part = jax.tree.map(lambda t: t[i * b:(i + 1) * b], (x, y, w))
                    l_i, g_i, nt = grads_of(trainable, nt, *part, denom)
                    loss = loss + l_i
                    grads = g_i if grads is None else [a + c for a, c in zip(grads, g_i)]
            norm = jnp.sqrt(sum(jnp.sum(jnp.square(g.astype("float32"))) for g in grads))
            finite = jnp.logical_and(jnp.isfinite(loss), jnp.isfinite(norm))
            factor = clip / jnp.maximum(norm, clip) if clip > 0 else jnp.float32(1.0)
            grads = [g * factor.astype(g.dtype) for g in grads]
            new_trainable, new_opt = opt.stateless_apply(opt_vars, grads, trainable)

            def keep(new, old):  # a non-finite step changes nothing
                return [jnp.where(finite, a, c) for a, c in zip(new, old)]

            return (keep(new_trainable, trainable), keep(nt, non_trainable),
                    keep(new_opt, opt_vars), loss, norm, finite)

        shardings = [[v.value.sharding for v in group] for group in self._state_variables()]
        # Outputs keep the variables' layouts (no resharding between steps); the state is
        # donated, so weights and slots are not held twice.
        return jax.jit(step, donate_argnums=(0, 1, 2),
                       out_shardings=(*shardings, None, None, None))

    def train_steps(self, num_steps: int) -> LoopOutput:
        """Runs `num_steps` optimizer steps in one host call (see `Trainer.train_steps`)."""
        stop_on_nonfinite = self.cfg.trainer.on_nonfinite == "stop"
        losses, norms, finites = [], [], []
        done, stopped = 0, False
        state = self._state()
        try:
            for _ in range(num_steps):
                batch = self._place(next(self.train_input))
                *state, loss, norm, finite = self._train_step(*state, batch)
                losses.append(loss)
                norms.append(norm)
                finites.append(finite)
                if stop_on_nonfinite and not bool(finite):
                    stopped = True
                    break
                self.step.assign_add(1)
                done += 1
        finally:
            self._set_state(state)  # the donated buffers are gone: the variables take the new
        finites = [bool(f) for f in finites[:done]]
        return LoopOutput(np.asarray([float(v) for v in losses], np.float32),
                          np.asarray([float(v) for v in norms], np.float32),
                          done, stopped, finites.count(False))

    # -- evaluation -----------------------------------------------------------------------------

    def evaluate(self, num_steps: int | None = None) -> dict:
        """Loss, perplexity and (real data) bits per byte on the first `eval_steps` batches of
        the eval split (see `Trainer.evaluate`)."""
        import jax
        import jax.numpy as jnp

        if self._eval_step is None:
            loss_sum = self._loss_fn()

            def eval_step(trainable, non_trainable, batch):
                x, y, w = batch
                total, _ = loss_sum(trainable, non_trainable, x, y, w, False)
                return total, jnp.sum(w.astype("float32"))

            self._eval_step = jax.jit(eval_step)
        trainable, non_trainable, _ = self._state()
        iterator = self._iterator(self.eval_input_fn)
        total, tokens = 0.0, 0.0
        for _ in range(num_steps or self.cfg.trainer.eval_steps):
            s, n = self._eval_step(trainable, non_trainable, self._place(next(iterator)))
            total += float(s)
            tokens += float(n)
        return eval_metrics(self.cfg, total, tokens)

    def sample_text(self) -> list[str]:
        """Greedy continuations of trainer.sample_prompts (see `trainer.sample_text`); skipped
        with several processes (keras-hub's generate runs in one)."""
        t = self.cfg.trainer
        if self.num_processes > 1:
            if t.sample_prompts:
                log.info("text samples skipped: keras-hub's generate runs in one process and "
                         "this run has %d", self.num_processes)
            return []
        with self._scope():  # the prompts' batch is split over `data` like any other
            return sample_text(self.model, t, batch_multiple=self.num_replicas)

    # -- run state ------------------------------------------------------------------------------

    def any_worker(self, flag: bool) -> bool:
        """True on every process when `flag` is true on any (a collective: all call it)."""
        if self.num_processes == 1:
            return flag
        from jax.experimental import multihost_utils

        return bool(np.sum(multihost_utils.process_allgather(np.int32(bool(flag)))) > 0)

    def variables_finite(self) -> bool:
        """True when every float array of the model and the optimizer is finite."""
        import jax
        import jax.numpy as jnp

        if self._finite_fn is None:
            def all_finite(values):
                checks = [jnp.all(jnp.isfinite(v)) for v in values
                          if jnp.issubdtype(v.dtype, jnp.floating)]
                return jnp.all(jnp.stack(checks)) if checks else jnp.bool_(True)

            self._finite_fn = jax.jit(all_finite)
        values = [v.value for group in self._state_variables() for v in group]
        return bool(self._finite_fn(values))

    def restore(self) -> int:
        """Restores the newest good checkpoint (if any) and the input position; returns the
        step."""
        def verify():
            return None if self.variables_finite() else "weights or optimizer state not finite"

        path = self.checkpointer.restore_latest(verify=verify)
        step = int(self.step.numpy())
        if path:
            log.info("resumed from %s at step %d", path, step)
            self.train_input = self._iterator(self.train_input_fn, skip_steps=step)
        return step

    def save_checkpoint(self) -> str:
        return self.checkpointer.save(int(self.step.numpy()))

    def save_preset(self, path: str | None = None) -> str:
        """MODEL_DIR/preset: the keras-hub preset (the format the TF path loads and exports).

        Several processes: every process calls this (each weight is gathered from all of
        them, one at a time); process 0 writes the preset from the gathered host copies."""
        path = path or f"{self.model_dir}/preset"
        if self.num_processes == 1:
            self.model.save_to_preset(path)
            return path
        from jax.experimental import multihost_utils

        from massivetext_tf.training.jax_checkpoint import gather

        import jax
        import keras

        hosts = []
        for v in self.model.weights:  # a collective per weight: every process gathers
            host = gather(v.value)
            if self.is_chief:
                hosts.append((v, host))
        if self.is_chief:
            # The model reads its weights from the gathered copies, on this host's CPU (the
            # live arrays stay sharded; none is placed whole on one accelerator).
            with jax.default_device(jax.local_devices(backend="cpu")[0]), \
                    keras.StatelessScope(state_mapping=hosts):
                self.model.save_to_preset(path)
        del hosts
        multihost_utils.sync_global_devices(f"preset {path}")
        return path

    def write_sharding_report(self) -> str:
        """MODEL_DIR/sharding.json: the mesh and, per weight and optimizer slot, its layout and
        the elements each device holds (read from the live arrays' shardings). Written by
        process 0: with several processes `devices`/`per_device` count only process 0's
        (addressable) shards; every process holds the same split of its own devices."""
        import jax

        path = f"{self.model_dir}/{SHARDING_REPORT}"
        io.write_json(path, {
            "backend": "jax",
            "strategy": self.cfg.runtime.strategy,
            "processes": self.num_processes,
            "local_devices": [str(d) for d in jax.local_devices()
                              if d in set(self.devices)],
            "mesh": self.mesh,
            "devices": [str(d) for d in self.devices],
            "weights": sharding.report(self.model.weights),
            "optimizer": sharding.report(self.optimizer.variables),
        })
        return path


def _check_supported(cfg) -> None:
    """What the JAX trainer does not do, as errors naming the field."""
    if cfg.trainer.eval_tasks:
        raise ValueError("trainer.eval_tasks: evaluation tasks run on the TensorFlow backend; "
                         "evaluate the preset afterwards (massivetext evaluate), or drop them "
                         "with runtime.backend jax")
    init = cfg.model.init_from
    if init and not is_preset_dir(init):
        raise ValueError(f"model.init_from: {init} is not a preset directory (no config.json); "
                         "with runtime.backend jax start from a keras-hub preset "
                         "(MODEL_DIR/preset of a finished run)")
