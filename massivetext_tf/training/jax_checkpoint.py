"""Checkpoints of the JAX trainer (runtime.backend jax): every array of the run's state, one
`.npy` file per variable, through `tf.io.gfile` (gs:// works).

    MODEL_DIR/checkpoints/checkpoint.json      {"format", "checkpoints": [..., "ckpt-N"]}
    MODEL_DIR/checkpoints/ckpt-N/manifest.json step, and per array: key, file, shape, dtype
    MODEL_DIR/checkpoints/ckpt-N/00000.npy ...

What it holds: the model's weights and non-trainable state (dropout seed states), AdamW's
iteration count and slots, and the step. The input position is the step: the pipeline is
rebuilt and skips the batches already consumed (deterministic for a given seed), so a resumed
run sees the batches an uninterrupted one would.

Why a kill never leaves an unloadable checkpoint: the arrays and the manifest of `ckpt-N` are
written first; only then is `checkpoint.json` rewritten (a temporary file and a rename) to
list it. A kill before that rename leaves the index naming the previous complete checkpoints;
a half-written `ckpt-N` is ignored and overwritten by the next save of step N. A checkpoint
that fails to load, or fails the caller's `verify`, is moved to `checkpoints/nonfinite/`
(never deleted) and the previous one is tried.

Arrays are gathered to the host one variable at a time (a sharded array is assembled from its
shards), so host memory bounds the largest single weight, not the model.

Several JAX processes (multi-host): a save is a collective. Every process gathers each array
in turn (`multihost_utils.process_allgather`: the shards other hosts hold come over the
network), process 0 alone writes the files, the manifest and then the index, and all
processes wait for it before going on (so none runs ahead of, or exits before, a finished
checkpoint). The kill story above is unchanged: only process 0 writes, in the same order.
Every process restores by reading the same files (each keeps its own shards on assignment),
and only process 0 quarantines. The files do not depend on the process count: a checkpoint
of N processes resumes in one, and the other way round.
"""
from __future__ import annotations

import io as _io
import json
import logging

import numpy as np
import tensorflow as tf

from massivetext_tf import io

log = logging.getLogger(__name__)

FORMAT = "massivetext_tf.arrays/1"
INDEX = "checkpoint.json"
QUARANTINE = "nonfinite"


def gather(value) -> np.ndarray:
    """The whole of one array on this host: `np.asarray` when this process holds all of it,
    else `process_allgather` (a collective: every process must call it for the same array)."""
    if getattr(value, "is_fully_addressable", True):
        return np.asarray(value)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(value, tiled=True))


def _barrier(name: str) -> None:
    """Every JAX process waits here for the others (nothing with one process)."""
    import sys

    jax = sys.modules.get("jax")
    if jax is not None and jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def has_checkpoint(model_dir: str) -> bool:
    return tf.io.gfile.exists(f"{model_dir}/checkpoints/{INDEX}")


class ArrayCheckpointer:
    """Save and restore named lists of Keras variables (`groups`: name -> variables; `step`:
    an object with `.numpy()` and `.assign(int)`) under MODEL_DIR/checkpoints."""

    def __init__(self, model_dir: str, *, max_to_keep: int, groups: dict, step, is_chief=True):
        self.directory = f"{model_dir}/checkpoints"
        self.max_to_keep = max_to_keep
        self.groups = groups
        self.step = step
        self.is_chief = is_chief

    # -- index ----------------------------------------------------------------------------------

    def _read_index(self) -> list[str]:
        path = f"{self.directory}/{INDEX}"
        if not tf.io.gfile.exists(path):
            return []
        try:
            with tf.io.gfile.GFile(path) as f:
                data = json.load(f)
        except ValueError as e:
            raise ValueError(f"{path}: not a checkpoint index ({e})") from None
        if data.get("format") != FORMAT:
            raise ValueError(f"{path}: format {data.get('format')!r}, expected {FORMAT!r}")
        return [f"{self.directory}/{name}" for name in data.get("checkpoints", [])]

    def _write_index(self, paths: list[str]) -> None:
        names = [p.rsplit("/", 1)[-1] for p in paths]
        io.atomic_write(f"{self.directory}/{INDEX}",
                        json.dumps({"format": FORMAT, "checkpoints": names}, indent=1) + "\n")

    @property
    def checkpoints(self) -> list[str]:
        return self._read_index()

    @property
    def latest(self) -> str | None:
        paths = self._read_index()
        return paths[-1] if paths else None

    # -- save / restore -------------------------------------------------------------------------

    def _arrays(self):
        for group, variables in self.groups.items():
            for i, v in enumerate(variables):
                yield f"{group}/{i:05d}/{v.path}", v

    def save(self, step: int) -> str:
        """Writes ckpt-`step` and lists it in the index (keeping `max_to_keep`); returns the path.
        Several processes: all call it (gathering is a collective); process 0 writes."""
        path = f"{self.directory}/ckpt-{int(step)}"
        if self.is_chief:
            tf.io.gfile.makedirs(path)
        entries = []
        for n, (key, v) in enumerate(self._arrays()):
            array = gather(v.value)  # a sharded array is gathered here, one at a time
            if not self.is_chief:
                continue
            buf = _io.BytesIO()
            np.save(buf, array, allow_pickle=False)
            name = f"{n:05d}.npy"
            with tf.io.gfile.GFile(f"{path}/{name}", "wb") as f:
                f.write(buf.getvalue())
            entries.append({"key": key, "file": name, "shape": list(array.shape),
                            "dtype": str(v.dtype)})
        if self.is_chief:
            self._commit(path, step, entries)
        _barrier(f"checkpoint {path}")
        return path

    def _commit(self, path: str, step: int, entries: list) -> None:
        """Process 0: the manifest, then the index that lists `path` (the atomic rename)."""
        manifest = {"format": FORMAT, "step": int(step), "arrays": entries}
        io.atomic_write(f"{path}/manifest.json", json.dumps(manifest, indent=1) + "\n")
        paths = [p for p in self._read_index() if p != path] + [path]
        keep, drop = paths[-self.max_to_keep:], paths[:-self.max_to_keep]
        self._write_index(keep)
        for old in drop:
            if tf.io.gfile.exists(old):
                tf.io.gfile.rmtree(old)
        log.info("saved checkpoint %s", path)

    def restore(self, path: str) -> None:
        """Loads ckpt-N into the variables (each re-sharded to its layout on assignment);
        `ValueError` naming the file when it does not match the model."""
        with tf.io.gfile.GFile(f"{path}/manifest.json") as f:
            manifest = json.load(f)
        entries = {e["key"]: e for e in manifest["arrays"]}
        wanted = dict(self._arrays())
        missing = sorted(set(wanted) - set(entries))
        extra = sorted(set(entries) - set(wanted))
        if missing or extra:
            raise ValueError(f"{path}: the checkpoint does not match this model (missing "
                             f"{missing[:3]}, unexpected {extra[:3]})")
        for key, v in wanted.items():
            e = entries[key]
            with tf.io.gfile.GFile(f"{path}/{e['file']}", "rb") as f:
                array = np.load(_io.BytesIO(f.read()), allow_pickle=False)
            if tuple(array.shape) != tuple(v.shape):
                raise ValueError(f"{path}/{e['file']}: {key} has shape {array.shape}, the model "
                                 f"{tuple(v.shape)}")
            v.assign(array.astype(v.dtype) if str(array.dtype) != str(v.dtype) else array)
        self.step.assign(int(manifest["step"]))

    def quarantine(self, path: str) -> str:
        """Moves ckpt-N to checkpoints/nonfinite/ (kept) and drops it from the index (process 0
        moves; every process calls it at the same point, after reading `path`)."""
        dest_dir = f"{self.directory}/{QUARANTINE}"
        dest = f"{dest_dir}/{path.rsplit('/', 1)[-1]}"
        if not self.is_chief:
            _barrier(f"quarantine {path}")
            return dest
        tf.io.gfile.makedirs(dest_dir)
        name = path.rsplit("/", 1)[-1]
        dest = f"{dest_dir}/{name}"
        if tf.io.gfile.exists(dest):
            tf.io.gfile.rmtree(dest)
        tf.io.gfile.rename(path, dest)
        self._write_index([p for p in self._read_index() if p != path])
        log.warning("checkpoint %s is not usable; moved to %s", path, dest)
        _barrier(f"quarantine {path}")
        return dest

    def restore_latest(self, verify=None) -> str | None:
        """Restores the newest loadable checkpoint that `verify()` accepts (None: nothing to
        restore); bad ones are quarantined, unloadable ones skipped."""
        from massivetext_tf.training.checkpoint import restore_newest

        return restore_newest(list(reversed(self._read_index())), self.restore,
                              self.quarantine, verify)
