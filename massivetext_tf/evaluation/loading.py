"""Which model a `--model` path names, loaded as a `ModelAdapter`.

* a keras-hub preset directory (e.g. `MODEL_DIR/preset`): the Keras task, wrapped in memory
  by `massivetext_tf.export.build_serving_module` (`from_task`);
* an exported SavedModel `NAME/VERSION` directory (or `NAME`, its highest version): loaded
  with `tf.saved_model.load` and scored through its own signatures;
* a training run's `MODEL_DIR/checkpoints/ckpt-N`: the run's model with that checkpoint.

Each adapter's `info` records what was judged (path, format, checkpoint hashes and position).
"""
from __future__ import annotations

import hashlib
import re

from massivetext_tf import io
from massivetext_tf.evaluation.model_adapter import ModelAdapter
from massivetext_tf.evaluation.protocol import BOS_ID, DEFAULT_BATCH_SIZE

EXPORT_INFO = "assets.extra/massivetext_export.json"


class ModelLoadError(ValueError):
    """A --model path is neither a preset directory nor a SavedModel."""


def _gfile():
    import tensorflow as tf

    return tf.io.gfile


def _join(*parts):
    return "/".join([parts[0].rstrip("/")] + [p.strip("/") for p in parts[1:]])


def is_saved_model(path: str) -> bool:
    """Whether `path` holds a SavedModel (`saved_model.pb`)."""
    return _gfile().exists(_join(path, "saved_model.pb"))


def _sha256(path: str) -> str | None:
    if not _gfile().exists(path):
        return None
    digest = hashlib.sha256()
    with _gfile().GFile(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def load_task(preset_dir: str, dtype: str | None = "float32"):
    """The Keras task of a preset directory (`massivetext_tf.models.load`), in `dtype`."""
    from massivetext_tf import models

    return models.load(preset_dir, dtype=dtype) if dtype else models.load(preset_dir)


def from_task(task, *, name=None, batch_size=DEFAULT_BATCH_SIZE, max_length=None, stride=None,
              jit_compile=True, info=None, share_context=True) -> ModelAdapter:
    """An adapter over an in-memory Keras task (its tokenizer attached)."""
    from massivetext_tf.export.saved_model import (build_serving_module, resolve_max_length,
                                                   token_conventions, tokenizer_proto)

    from massivetext_tf import models

    kind = models.kind(task)
    length = resolve_max_length(task, max_length)
    module = build_serving_module(task, max_length=length, jit_compile=jit_compile, max_batch_size=None)
    info = {"name": name or task.name, "format": "keras", "dtype": task.dtype_policy.name,
            **(info or {})}
    return ModelAdapter(module, tokenizer_proto(task), kind, length, batch_size=batch_size,
                        info=info, stride=stride, task=task, share_context=share_context,
                        decoder_start_id=token_conventions(task)["decoder_start_id"])


def load_model(path: str, *, name=None, batch_size=DEFAULT_BATCH_SIZE, dtype="float32",
               max_length=None, stride=None, jit_compile=True) -> ModelAdapter:
    """A `ModelAdapter` for a preset directory (Keras, loaded in `dtype`) or a SavedModel
    `NAME/VERSION` directory (scored through its signatures)."""
    path = str(path).rstrip("/")
    gfile = _gfile()
    checkpoint = _CHECKPOINT.match(path)
    if checkpoint and gfile.exists(f"{path}.index"):
        return _load_checkpoint(path, checkpoint.group(1), int(checkpoint.group(2)), name=name,
                                batch_size=batch_size, max_length=max_length, stride=stride,
                                jit_compile=jit_compile)
    if not gfile.exists(path):
        raise ModelLoadError(f"--model {path}: does not exist")
    if gfile.isdir(path) and not is_saved_model(path) and not gfile.exists(_join(path, "config.json")):
        # saved_models/NAME given without a version: the highest version, as TF Serving serves
        versions = sorted((int(v.strip("/")) for v in gfile.listdir(path) if v.strip("/").isdigit()
                           and is_saved_model(_join(path, v.strip("/")))), reverse=True)
        if versions:
            path = _join(path, str(versions[0]))
    if is_saved_model(path):
        import tensorflow as tf
        import tensorflow_text  # noqa: F401  (registers the SentencePiece kernels)

        info_path = _join(path, EXPORT_INFO)
        export = io.read_json(info_path, default=None)
        if export is None:
            raise ModelLoadError(f"--model {path}: a SavedModel without {EXPORT_INFO}; only "
                                 "massivetext_tf exports (tools/export.py) can be evaluated")
        tok = _join(path, "assets", "tokenizer.model")
        if not gfile.exists(tok):
            raise ModelLoadError(f"--model {path}: no assets/tokenizer.model in the SavedModel")
        with gfile.GFile(tok, "rb") as f:
            proto = f.read()
        loaded = tf.saved_model.load(path)
        length = int(export["max_length"])
        if max_length is not None and max_length < length:
            length = int(max_length)
        cap = export.get("max_batch_size") or batch_size
        version = path.rsplit("/", 1)[-1]
        info = {"name": name or _saved_model_name(path), "path": path,
                "format": "saved_model", "version": version,
                "checkpoint": {"variables_index_sha256": _sha256(_join(path, "variables", "variables.index"))},
                "model_class": export.get("model_class")}
        return ModelAdapter(loaded, proto, export["model_kind"], length,
                            batch_size=min(batch_size, cap), info=info, stride=stride,
                            decoder_start_id=export.get("decoder_start_id", BOS_ID))
    if not gfile.exists(_join(path, "config.json")):
        raise ModelLoadError(f"--model {path}: neither a SavedModel (saved_model.pb) nor a keras-hub "
                             "preset directory (config.json), e.g. MODEL_DIR/preset or saved_models/NAME/1")
    task = load_task(path, dtype=dtype)
    if getattr(getattr(task, "preprocessor", None), "tokenizer", None) is None:
        raise ModelLoadError(f"--model {path}: the preset has no tokenizer (save it with one)")
    info = {"path": path, "checkpoint": {"weights_sha256": _sha256(_join(path, "model.weights.h5"))}}
    run = _run_of_preset(path)
    if run:
        info["checkpoint"].update(run)
    meta = io.read_json(_join(path, "metadata.json"), default=None)
    if isinstance(meta, dict):
        info["checkpoint"]["metadata"] = {k: meta[k] for k in sorted(meta) if not isinstance(meta[k], (dict, list))}
    return from_task(task, name=name or _preset_name(path), batch_size=batch_size,
                     max_length=max_length, stride=stride, jit_compile=jit_compile, info=info)


_CHECKPOINT = re.compile(r"^(.*)/checkpoints/ckpt-(\d+)$")


def _run_config(model_dir: str):
    from massivetext_tf.training import config as config_lib
    from massivetext_tf.training.run_dir import latest_config_path

    cfg_path = latest_config_path(model_dir)
    return config_lib.read_config(cfg_path) if cfg_path else None


def _training_position(cfg, step: int) -> dict:
    return {"step": int(step), "tokens": int(step) * cfg.data.global_batch_size * cfg.data.sequence_length}


def _run_of_preset(path: str) -> dict | None:
    """A training run's `MODEL_DIR/preset` (saved at the run's end, with its last checkpoint):
    that checkpoint's step and training tokens."""
    if not path.endswith("/preset"):
        return None
    model_dir = path[: -len("/preset")]
    try:
        cfg = _run_config(model_dir)
        import tensorflow as tf

        latest = tf.train.latest_checkpoint(f"{model_dir}/checkpoints") if cfg else None
    except (ValueError, OSError):
        return None
    found = _CHECKPOINT.match(latest or "")
    return _training_position(cfg, int(found.group(2))) if found else None


def _load_checkpoint(path, model_dir, step, *, name, batch_size, max_length, stride, jit_compile):
    """`MODEL_DIR/checkpoints/ckpt-N` of a training run: the run's model (its recorded config
    and the data's tokenizer) with that checkpoint's weights, float32."""
    from massivetext_tf.training import data as data_lib
    from massivetext_tf.training.checkpoint import restore_model_weights
    from massivetext_tf.training.loop import build_model

    cfg = _run_config(model_dir)
    if cfg is None:
        raise ModelLoadError(f"--model {path}: {model_dir} has no config.yaml (not a training run's directory)")
    tokenizer = data_lib.tokenizer_path(cfg)
    if not tokenizer:
        raise ModelLoadError(f"--model {path}: the run's data ({cfg.data.dir}) has no tokenizer.model")
    task = build_model(cfg, tokenizer=tokenizer)
    restore_model_weights(task, path)
    position = _training_position(cfg, step)
    info = {"path": path, "format": "checkpoint", "run": model_dir, "checkpoint": {"path": path, **position}}
    return from_task(task, name=name or f"{_preset_name(model_dir)}@{step}", batch_size=batch_size,
                     max_length=max_length, stride=stride, jit_compile=jit_compile, info=info)


def _saved_model_name(path: str) -> str:
    parts = [p for p in path.split("/") if p]
    return parts[-2] if len(parts) >= 2 and parts[-1].isdigit() else parts[-1]


def _preset_name(path: str) -> str:
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[-1] == "preset":
        return parts[-2]
    return parts[-1] if parts else path
