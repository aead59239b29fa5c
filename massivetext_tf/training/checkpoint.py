"""Checkpoints that survive preemption and kills.

What a checkpoint holds: the model, the optimizer (slots, iteration count, loss scale), the
training step, the `tf.random.Generator` state, the Keras seed-generator states (dropout) and the
input-pipeline iterator position. Anything that can load it can resume it bit for bit.

Why a kill never leaves an unloadable checkpoint: `tf.train.Checkpoint.write` writes the data
files under a temporary name and renames them into place when complete (`MergeV2Checkpoints`), and
`tf.train.CheckpointManager` only then rewrites the `checkpoint` state file, itself atomically
(written to a temporary file and renamed). A kill before the rename leaves the state file naming
the previous, complete checkpoints; the half-written temporary files are ignored. On top of that,
`restore_latest` falls back to the previous checkpoint when the latest one fails to load (a
truncated file on a flaky filesystem, say) or fails the caller's `verify` (non-finite weights).

A checkpoint found bad (non-finite weights, or a non-finite loss from its state) is never
deleted: `quarantine` moves its files to `checkpoints/nonfinite/` and rewrites the `checkpoint`
state file without it, so the next run resumes from the newest good one.

Multi-worker: every worker must take part in a save (variables may need collectives), and every
worker's input-pipeline position is its own; the chief writes MODEL_DIR/checkpoints, worker i
writes MODEL_DIR/checkpoints/worker_i and restores from there.
"""
from __future__ import annotations

import logging
import signal
import threading

import tensorflow as tf

log = logging.getLogger(__name__)

QUARANTINE = "nonfinite"  # checkpoints/nonfinite/: checkpoints found bad, kept for inspection


def seed_generator_states(model) -> list:
    """The state variables of every Keras SeedGenerator in `model` (dropout RNG state)."""
    import keras

    states = []
    seen = set()
    for layer in model._flatten_layers(include_self=True, recursive=True):
        for attr in vars(layer).values():
            if isinstance(attr, keras.random.SeedGenerator) and id(attr) not in seen:
                seen.add(id(attr))
                states.append(attr.state)
    return states


class Checkpointer:
    """`tf.train.CheckpointManager` with fallback on restore and per-worker directories."""

    def __init__(self, model_dir: str, *, max_to_keep: int, strategy=None, **objects):
        self.objects = objects
        self.checkpoint = tf.train.Checkpoint(**objects)
        self.is_chief, worker = _task(strategy)
        self.root = f"{model_dir}/checkpoints"
        directory = self.root if self.is_chief else f"{self.root}/worker_{worker}"
        self.directory = directory
        self.max_to_keep = max_to_keep
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, directory, max_to_keep=max_to_keep, step_counter=objects.get("step")
        )

    @property
    def latest(self) -> str | None:
        return self.manager.latest_checkpoint

    def save(self, step: int) -> str:
        path = self.manager.save(checkpoint_number=int(step))
        log.info("saved checkpoint %s", path)
        return path

    def _common_steps(self) -> list[int] | None:
        """Steps present in the chief's and every worker's directory (multi-worker), so that
        every worker restores the same step even if a kill interrupted one worker's save."""
        dirs = [self.root] + [d.rstrip("/") for d in tf.io.gfile.glob(f"{self.root}/worker_*")]
        if len(dirs) == 1:
            return None
        common = None
        for d in dirs:
            state = tf.train.get_checkpoint_state(d)
            paths = list(state.all_model_checkpoint_paths) if state else []
            steps = {int(p.rsplit("-", 1)[1]) for p in paths}
            common = steps if common is None else common & steps
        return sorted(common or ())

    @property
    def checkpoints(self) -> list[str]:
        return list(self.manager.checkpoints)

    def restore(self, path: str) -> None:
        status = self.checkpoint.restore(path)
        status.assert_existing_objects_matched()

    def quarantine(self, path: str) -> str:
        """Moves checkpoint `path`'s files to `DIR/nonfinite/` (kept, not deleted) and drops it
        from the `checkpoint` state file; returns the new prefix."""
        dest_dir = f"{self.directory}/{QUARANTINE}"
        tf.io.gfile.makedirs(dest_dir)
        name = path.rsplit("/", 1)[-1]
        for src in tf.io.gfile.glob(f"{path}.*"):
            tf.io.gfile.rename(src, f"{dest_dir}/{src.rsplit('/', 1)[-1]}", overwrite=True)
        remaining = [p for p in self.manager.checkpoints if p != path]
        state = f"{self.directory}/checkpoint"
        if remaining:
            tf.compat.v1.train.update_checkpoint_state(
                self.directory, remaining[-1], all_model_checkpoint_paths=remaining)
        elif tf.io.gfile.exists(state):
            tf.io.gfile.rename(state, f"{dest_dir}/checkpoint", overwrite=True)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, self.directory, max_to_keep=self.max_to_keep,
            step_counter=self.objects.get("step"))
        log.warning("checkpoint %s is not usable; moved to %s/%s", path, dest_dir, name)
        return f"{dest_dir}/{name}"

    def restore_latest(self, verify=None) -> str | None:
        """Restores the newest loadable checkpoint; returns its path (None: nothing to restore).

        `verify()`, if given, is called after each restore; a checkpoint for which it returns a
        reason (a string) instead of None is quarantined and the previous one tried."""
        candidates = list(reversed(self.manager.checkpoints))
        common = self._common_steps()
        if common is not None:
            candidates = [p for p in candidates if int(p.rsplit("-", 1)[1]) in common]
        return restore_newest(candidates, self.restore, self.quarantine, verify)


def restore_newest(candidates, restore, quarantine, verify=None) -> str | None:
    """Restores the first of `candidates` (newest first) that loads and that `verify()`
    accepts, for both checkpointers: an unloadable one is skipped (logged), one `verify`
    refuses is `quarantine`d; `RuntimeError` listing every failure when none loaded, None when
    there was nothing to restore."""
    errors = []
    for path in candidates:
        try:
            restore(path)
        except Exception as e:  # noqa: BLE001 - any failure to load: try the previous one
            log.warning("checkpoint %s failed to load (%s); trying the previous one", path, e)
            errors.append(f"{path}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
            continue
        bad = verify() if verify else None
        if bad is None:
            return path
        log.warning("checkpoint %s: %s; trying the previous one", path, bad)
        quarantine(path)
    if errors:
        raise RuntimeError("no checkpoint could be loaded:\n  " + "\n  ".join(errors))
    return None


def _task(strategy) -> tuple[bool, int]:
    if strategy is None:
        return True, 0
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True, 0
    task_type, task_id = resolver.task_type, resolver.task_id
    is_chief = task_type == "chief" or (
        task_type == "worker" and task_id == 0 and "chief" not in resolver.cluster_spec().jobs
    )
    return is_chief, task_id if task_type == "worker" else 0


def is_chief(strategy) -> bool:
    return _task(strategy)[0]


def restore_model_weights(model, path: str) -> str:
    """Loads only the model's weights from a training checkpoint (a dir or a prefix)."""
    if not tf.io.gfile.exists(path) and not tf.io.gfile.exists(f"{path}.index"):
        raise ValueError(f"model.init_from: {path} does not exist; expected a training "
                         "checkpoint (MODEL_DIR, MODEL_DIR/checkpoints or a ckpt-N prefix) or a "
                         "preset directory (MODEL_DIR/preset)")
    if tf.io.gfile.isdir(path):
        for sub in (f"{path}/checkpoints", path):
            latest = tf.train.latest_checkpoint(sub)
            if latest:
                path = latest
                break
        else:
            raise ValueError(f"model.init_from: no checkpoint found in {path}")
    tf.train.Checkpoint(model=model).restore(path).expect_partial().assert_existing_objects_matched()
    return path


class PreemptionWatcher:
    """Turns SIGTERM (preemption notice) and Ctrl-C (SIGINT) into a request the loop checks
    at each boundary.

    The loop then writes a checkpoint and returns cleanly. A second Ctrl-C aborts at once
    (KeyboardInterrupt). Installed only from the main thread; the previous handlers are
    restored by `close()`.
    """

    def __init__(self, signals=(signal.SIGTERM, signal.SIGINT)):
        self.requested = False
        self._previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in signals:
                self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        if signum == signal.SIGINT and self.requested:
            raise KeyboardInterrupt
        log.warning("received signal %d: checkpointing at the next loop boundary%s", signum,
                    " (Ctrl-C again to abort)" if signum == signal.SIGINT else "")
        self.requested = True

    def close(self):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}
