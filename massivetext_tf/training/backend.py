"""Choosing the Keras backend of a run (runtime.backend, `--backend`) before Keras is imported.

Keras reads its backend once, at import (`KERAS_BACKEND`), so the command line settles it right
after reading the config and before anything imports Keras:

- `tensorflow` (default): every tf.distribute strategy, export and serving.
- `jax`: `one_device` and `model_parallel` (keras.distribution), training/jax_trainer.py.
  TensorFlow still reads the data (tf.data) and writes TensorBoard; it is kept off the
  accelerators so that JAX owns their memory.

A process whose Keras already runs another backend cannot switch: that is an error naming the
field and the fix, never a half-working run.
"""
from __future__ import annotations

import os
import sys


def requested(args) -> str:
    """The backend a command asks for, found without importing TensorFlow (which imports
    Keras): `--backend`, else `--set runtime.backend=X`, else the `runtime.backend` of a local
    `--config` file, else `tensorflow`. (A gs:// config's field is checked after loading.)"""
    if getattr(args, "backend", None):
        return args.backend
    for item in reversed(getattr(args, "overrides", None) or []):
        key, _, value = item.partition("=")
        if key.strip() == "runtime.backend":
            return value.strip()
    config = getattr(args, "config", None)
    if config:
        import yaml

        from massivetext_tf import configs

        try:
            path = configs.resolve(config)
        except ValueError:
            return "tensorflow"  # loading the config reports it
        if path and "://" not in path and os.path.isfile(path):
            try:
                with open(path) as f:
                    data = yaml.safe_load(f) or {}
                runtime = data.get("runtime") if isinstance(data, dict) else None
                if isinstance(runtime, dict) and runtime.get("backend"):
                    return str(runtime["backend"])
            except (OSError, yaml.YAMLError):
                pass  # loading the config reports it
    return "tensorflow"


def check_loaded(name: str) -> None:
    """After the config is loaded: its runtime.backend is the one Keras runs."""
    have = current()
    if have is not None and have != name:
        raise ValueError(f"runtime.backend: the config says {name!r} but Keras was started on "
                         f"{have!r} before the config could be read; pass --backend {name}")


def current() -> str | None:
    """The backend of the Keras already imported in this process (None: not imported yet)."""
    keras = sys.modules.get("keras")
    if keras is None or not hasattr(keras, "backend"):
        return None
    return keras.backend.backend()


def select(name: str) -> None:
    """Makes `name` ('tensorflow' or 'jax') the Keras backend of this process; `ValueError`
    naming runtime.backend if Keras already runs another one or JAX is not installed."""
    have = current()
    if have is not None and have != name:
        raise ValueError(
            f"runtime.backend: {name!r} needs Keras on the {name} backend, but this process "
            f"already imported Keras with {have!r}; run the command in a fresh process "
            f"(massivetext train --backend {name} ...)")
    if name not in ("tensorflow", "jax"):
        return  # not a backend: config validation names runtime.backend and the choices
    if name == "jax":
        try:
            import jax  # noqa: F401
        except ImportError:
            raise ValueError("runtime.backend: jax is not installed; pip install "
                             "'massivetext_tf[jax]' (or the TPU/GPU JAX build, docs/install.md)"
                             ) from None
    os.environ["KERAS_BACKEND"] = name
    if name == "jax":
        keep_tensorflow_off_accelerators()


def keep_tensorflow_off_accelerators() -> None:
    """TensorFlow only feeds data and writes summaries next to JAX: it must not take the GPUs'
    memory (TF reserves it all at its first op)."""
    import tensorflow as tf

    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:  # TF already initialized its devices: too late, and nothing to do
        pass
