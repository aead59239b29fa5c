"""The Controller: the cadence of a run (Orbit's `Controller`). It drives a `Trainer` from its
restored step to `trainer.train_steps` in host calls of at most `steps_per_loop` steps, each
ending on the next log, checkpoint or evaluation boundary, and after each call decides:

    restore -> [train_loop -> check_finite -> log -> maybe_checkpoint -> maybe_evaluate
                -> maybe_preempt]* -> finish (final checkpoint, evaluation, preset) -> result

Non-finite steps: with `trainer.on_nonfinite: stop` the first bad step raises `NonFiniteError`
after checkpointing the last *verified* state (finite weights and, with evaluation, a finite
eval loss), else after finding the newest verified checkpoint; with `skip` the bad step's
update is dropped, up to `max_consecutive_nonfinite` in a row. Weights that became non-finite
are never saved. SIGTERM (preemption) checkpoints on every worker and returns
`status: preempted`; rerunning the same command resumes.
"""
from __future__ import annotations

import logging
import math
import time

import numpy as np

from massivetext_tf.training import checkpoint as ckpt_lib
from massivetext_tf.training import config as config_lib
from massivetext_tf.training import data as data_lib
from massivetext_tf.training import metrics as metrics_lib
from massivetext_tf.training import optimizer as opt_lib
from massivetext_tf.training import run_dir as run_dir_lib

log = logging.getLogger("massivetext_tf.training")


class NonFiniteError(RuntimeError):
    """Raised when a step's loss or gradient is NaN/Inf and trainer.on_nonfinite is `stop`, or
    when the weights themselves went bad (`skip` cannot help then).

    Attributes:
        step: the first bad step.
        good_step: the step a rerun resumes from.
        checkpoint: the verified checkpoint it resumes from; None: it starts from scratch.
    """

    def __init__(self, message, *, step=None, good_step=None, checkpoint=None):
        super().__init__(message)
        self.step, self.good_step, self.checkpoint = step, good_step, checkpoint


def next_boundary(step: int, t) -> int:
    """The step the host call starting at `step` ends at: the next multiple of log_every,
    checkpoint_every or eval_every, at most steps_per_loop ahead, at most train_steps (`t`: a
    `TrainerConfig`)."""
    nxt = t.train_steps
    for every in (t.log_every, t.checkpoint_every, t.eval_every):
        if every and every > 0:
            nxt = min(nxt, (step // every + 1) * every)
    return min(nxt, step + t.steps_per_loop)


class Controller:
    """Runs a `Trainer` with the cadence of `cfg.trainer`; `run()` returns the result dict.

    Args:
        trainer: a `Trainer`.
        evaluate_fn: optional `fn(trainer) -> dict` of extra metrics at each evaluation (after
            the task's own `metrics`).
    """

    def __init__(self, trainer, *, evaluate_fn=None):
        self.trainer = trainer
        self.cfg = trainer.cfg
        self.t = trainer.cfg.trainer
        self.evaluate_fn = evaluate_fn
        self.writer = metrics_lib.MetricsWriter(
            trainer.model_dir, enabled=trainer.is_chief, tensorboard=self.t.tensorboard
        )
        self.history: list[float] = []
        self.status = "completed"
        self.nonfinite_run = 0  # non-finite steps in a row (on_nonfinite=skip)
        self.last_train, self.last_eval = {}, {}
        self.window_losses, self.window_start, self.window_steps = [], time.perf_counter(), 0
        self.steady_tokens, self.steady_time, self.first_call = 0, 0.0, True
        self.peak_flops, self.peak_source = None, None

    # -- the run --------------------------------------------------------------------------------

    def run(self) -> dict:
        """Trains to trainer.train_steps; returns the final metrics (see `train`)."""
        step = self.start_step = self.restore()
        self.measure()
        watcher = ckpt_lib.PreemptionWatcher()
        try:
            while step < self.t.train_steps:
                step, out = self.train_loop(step)
                self.check_finite(step, out)
                self.log(step, out)
                self.maybe_checkpoint(step)
                self.maybe_evaluate(step)
                if self.maybe_preempt(step, watcher):
                    break
            if self.status == "completed":
                self.finish(step)
        finally:
            watcher.close()
            self.writer.close()
        return self.result(step)

    def restore(self) -> int:
        """Restores the newest good checkpoint; records the config and supersedes the metrics
        lines the run will redo (chief); returns the step."""
        tr, cfg = self.trainer, self.cfg
        step = tr.restore()
        if tr.is_chief:
            written = run_dir_lib.record(cfg, tr.run_dir, step=step)
            if tr.run_dir.changes:
                changes = run_dir_lib.describe_changes(tr.run_dir.changes)
                log.warning("config changes vs the previous run (%s): %s", written, changes)
                print(f"[massivetext_tf] resuming at step {step} with config changes: {changes}"
                      f" (recorded in {written})", flush=True)
            moved = self.writer.supersede_after(step, eval_at_step=step >= self.t.train_steps)
            if moved:
                log.info("moved %d metrics line(s) after step %d to %s", moved, step,
                         metrics_lib.SUPERSEDED)
            self.writer.text(step, "config", "```\n" + config_lib.dump_config(cfg) + "\n```")
        return step

    def measure(self) -> None:
        """Throughput bookkeeping (tokens per step, FLOPs per token, peak FLOPs) and the
        progress line."""
        tr, cfg = self.trainer, self.cfg
        self.peak_flops, self.peak_source = self._resolve_peak_flops()
        layers, hidden = metrics_lib.model_dims(tr.model)
        seq = cfg.data.sequence_length
        self.tokens_per_step = cfg.data.global_batch_size * seq
        self.flops_per_token = metrics_lib.flops_per_token(tr.total_params, layers, hidden, seq)
        self.peak_total = (self.peak_flops or 0) * tr.num_devices
        self.progress = metrics_lib.Progress(self.t.train_steps,
                                             enabled=self.t.progress and tr.is_chief)
        self.progress.message(
            f"training {cfg.model.preset}: {tr.total_params:,} params, "
            f"{tr.describe_devices()}, XLA {'on' if tr.use_xla else 'off'}, "
            f"{cfg.runtime.mixed_precision}, step {self.start_step} -> {self.t.train_steps}"
        )

    def train_loop(self, step: int):
        """One host call up to the next boundary -> (new step, `LoopOutput`)."""
        tr = self.trainer
        n = next_boundary(step, self.t) - step
        t0 = time.perf_counter()
        with data_lib.explained_data_errors(
                self.cfg, "data.train_split", step=lambda: int(tr.step.numpy()),
                checkpoint=tr.checkpointer.latest):
            out = tr.train_steps(n)
        dt = time.perf_counter() - t0
        self.history.extend(float(v) for v in out.losses[: out.steps_done])
        self.window_losses.extend(self._finite_losses(out))
        self.window_steps += out.steps_done
        if not self.first_call:  # the first call compiles: not a steady-state figure
            self.steady_tokens += out.steps_done * self.tokens_per_step
            self.steady_time += dt
        self.first_call = False
        return int(tr.step.numpy()), out

    def check_finite(self, step: int, out) -> None:
        """Raises `NonFiniteError` on a stop-mode bad step, on too many skipped steps in a row,
        or on non-finite weights."""
        tr, t = self.trainer, self.t
        if out.skipped:
            log.warning("skipped %d non-finite step(s) before step %d", out.skipped, step)
        if out.nonfinite:
            raise self.nonfinite(
                f"non-finite loss or gradient at step {step + 1} (loss="
                f"{float(out.losses[-1])}, grad_norm={float(out.grad_norms[-1])})",
                bad_step=step + 1)
        for loss_i, norm_i in zip(out.losses[: out.steps_done], out.grad_norms[: out.steps_done]):
            ok = math.isfinite(loss_i) and (tr.loss_scaling or math.isfinite(norm_i))
            self.nonfinite_run = 0 if ok else self.nonfinite_run + 1
        if self.nonfinite_run >= t.max_consecutive_nonfinite:
            raise self.nonfinite(
                f"{self.nonfinite_run} non-finite steps in a row up to step {step} "
                f"(trainer.max_consecutive_nonfinite={t.max_consecutive_nonfinite}): "
                "skipping cannot recover from this",
                bad_step=step - self.nonfinite_run + 1)
        if not tr.variables_finite():
            raise self.nonfinite(
                f"the weights became non-finite between step {step - out.steps_done} "
                f"and step {step}",
                bad_step=step - out.steps_done + 1)

    def log(self, step: int, out) -> None:
        """The progress line; a metrics line at log_every and at the end."""
        tr = self.trainer
        elapsed = time.perf_counter() - self.window_start
        tps = self.window_steps * self.tokens_per_step / max(elapsed, 1e-9)
        finite_losses = self._finite_losses(out)
        self.progress.update(step, finite_losses[-1] if finite_losses else float("nan"), tps)
        if step % self.t.log_every and step != self.t.train_steps:
            return
        losses = self.window_losses
        rec = {
            "loss": float(np.mean(losses)) if losses else float("nan"),
            "learning_rate": opt_lib.current_lr(tr.optimizer),
            "grad_norm": float(out.grad_norms[out.steps_done - 1]) if out.steps_done else float("nan"),
            "tokens_per_s": tps,
            "mfu": tps * self.flops_per_token / self.peak_total if self.peak_total else None,
        }
        if tr.loss_scaling:
            rec["loss_scale"] = float(tr.optimizer.dynamic_scale.numpy())
        if out.skipped:
            rec["skipped_steps"] = out.skipped
        self.writer.write(step, rec)
        self.last_train = rec
        self.progress.update(step, rec["loss"], tps, force_line=True)
        self.window_losses, self.window_start, self.window_steps = [], time.perf_counter(), 0

    def maybe_checkpoint(self, step: int) -> None:
        """A checkpoint at checkpoint_every (the end has its own, in `finish`)."""
        every = self.t.checkpoint_every
        if every and step % every == 0 and step < self.t.train_steps:
            self.trainer.save_checkpoint()

    def maybe_evaluate(self, step: int) -> None:
        """An evaluation at eval_every (the end has its own, in `finish`)."""
        every = self.t.eval_every
        if every and step % every == 0 and step < self.t.train_steps:
            self.last_eval = self.evaluate(step)
            self.window_start = time.perf_counter()

    def maybe_preempt(self, step: int, watcher) -> bool:
        """On SIGTERM (any worker): checkpoint and stop with status `preempted`."""
        if not self.trainer.any_worker(watcher.requested):
            return False
        self.trainer.save_checkpoint()
        self.progress.message(f"preempted: checkpoint at step {step} written, exiting")
        self.status = "preempted"
        return True

    def finish(self, step: int) -> None:
        """The end of a completed run: final checkpoint, final evaluation, preset."""
        tr = self.trainer
        if self.start_step < self.t.train_steps or not tr.checkpointer.latest:
            tr.save_checkpoint()
        self.last_eval = self.evaluate(step)
        if "loss" in self.last_eval and not math.isfinite(self.last_eval["loss"]):
            raise self.nonfinite(f"the final eval loss is {self.last_eval['loss']}", bad_step=step)
        if self.t.save_preset:
            # Every process: a JAX run of several gathers the sharded weights from all of
            # them; the writing is the chief's (each trainer's save_preset).
            tr.save_preset()

    def evaluate(self, step: int) -> dict:
        """Eval loss and perplexity, the task's metrics, `evaluate_fn`'s; written as an eval
        line, with the text samples (chief)."""
        tr = self.trainer
        if not self.t.eval_steps:
            return {}
        res = tr.evaluate()
        res.update(tr.task.metrics(tr))
        if self.evaluate_fn is not None:
            res.update(self.evaluate_fn(tr))
        self.writer.write(step, res, prefix="eval")
        self.progress.message(
            f"eval @ {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in res.items()
                                            if isinstance(v, (int, float)))
        )
        if tr.is_chief:
            for i, text in enumerate(tr.sample_text()):
                self.writer.text(step, f"samples/{i}", text)
        return res

    def result(self, step: int) -> dict:
        """The final result dict (see `train`)."""
        tr = self.trainer
        last = self.last_train
        steady_tps = self.steady_tokens / self.steady_time if self.steady_time \
            else last.get("tokens_per_s")
        result = {
            "status": self.status,
            "step": step,
            "model_dir": tr.model_dir,
            "loss": last.get("loss"),
            "learning_rate": last.get("learning_rate"),
            "grad_norm": last.get("grad_norm"),
            "tokens_per_s": steady_tps,
            "mfu": steady_tps * self.flops_per_token / self.peak_total
            if (steady_tps and self.peak_total) else None,
            "peak_flops_per_device": self.peak_flops,
            "peak_flops_source": self.peak_source,
            "num_params": tr.total_params,
            "num_replicas": tr.num_replicas,
            "num_devices": tr.num_devices,
            "xla": tr.use_xla,
            "history": list(self.history),
        }
        result.update({f"eval_{k}": v for k, v in self.last_eval.items()})
        return result

    # -- non-finite handling --------------------------------------------------------------------

    def verify_state(self) -> str | None:
        """None when the in-memory state is good: finite weights and optimizer state and, if
        evaluation is configured, a finite loss on the eval batches; else the reason."""
        import tensorflow as tf

        tr = self.trainer
        if not tr.variables_finite():
            return "weights or optimizer state not finite"
        if self.t.eval_steps:
            try:
                loss = tr.evaluate()["loss"]
            except tf.errors.OpError as e:  # the state may overflow in ops that check
                return f"evaluation failed ({type(e).__name__})"
            if not math.isfinite(loss):
                return f"eval loss {loss}"
        return None

    def last_good_checkpoint(self) -> tuple[str | None, int]:
        """Restores the newest checkpoint that passes `verify_state`, moving bad ones to
        checkpoints/nonfinite/; returns (path, step) or (None, 0)."""
        tr = self.trainer
        for path in reversed(tr.checkpointer.checkpoints):
            try:
                tr.checkpointer.restore(path)
            except Exception as e:  # noqa: BLE001 - unloadable: not a good state either
                log.warning("checkpoint %s failed to load: %s", path, e)
                continue
            bad = self.verify_state()
            if bad is None:
                return path, int(tr.step.numpy())
            tr.checkpointer.quarantine(path)
        return None, 0

    def nonfinite(self, message: str, *, bad_step: int) -> NonFiniteError:
        """The error for a non-finite step or state: checkpoints the in-memory state only if
        it verifies as good, else finds the newest verified checkpoint; the advice in the
        message works when followed (rerun = resume from that checkpoint)."""
        tr = self.trainer
        step = int(tr.step.numpy())
        bad = self.verify_state()
        if bad is None:
            path, good = tr.save_checkpoint(), step
            where = f"the last good state (step {good}, verified) is checkpointed at {path}"
        else:
            path, good = self.last_good_checkpoint()
            where = (f"the state after step {step} is not usable ({bad}) and was not saved; "
                     + (f"the last good checkpoint is step {good} ({path})" if path else
                        "there is no good checkpoint"))
        lr = self.cfg.optimizer.peak_lr
        rerun = f"resumes from step {good}" if path else "starts from step 0"
        return NonFiniteError(
            f"{message}; {where}. Rerunning the same command {rerun}: first "
            f"lower the learning rate (e.g. --set optimizer.peak_lr={lr / 10:g}, now {lr:g}) "
            "or check the data; trainer.on_nonfinite=skip drops single bad batches.",
            step=bad_step, good_step=good, checkpoint=path,
        )

    # -- helpers --------------------------------------------------------------------------------

    @staticmethod
    def _finite_losses(out) -> list[float]:
        return [float(v) for v in out.losses[: out.steps_done] if math.isfinite(v)]

    def _resolve_peak_flops(self):
        tr, rt = self.trainer, self.cfg.runtime
        if rt.peak_flops_per_device:
            return float(rt.peak_flops_per_device), "config"
        kind = tr.device_kind
        peak = metrics_lib.device_peak_flops(kind)
        if peak:
            return peak, "table"
        if kind == "CPU":
            return metrics_lib.measure_matmul_peak(n=1024, seconds=0.5), "measured float32 matmul"
        return None, "unknown"
