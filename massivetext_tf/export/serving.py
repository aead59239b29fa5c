"""TF Serving layout: versioned export directories, `models.config`, warm-up requests.

Layout under a base directory (default `saved_models/`)::

    saved_models/
      models.config                 ModelServerConfig text proto listing every model
      NAME/
        1/                          a SavedModel (saved_model.pb, variables/, assets/,
          assets.extra/               tf_serving_warmup_requests, massivetext_export.json)
        2/
        tflite/                     NAME.float32.tflite, NAME.int8.tflite, NAME.json,
                                    tokenizer.model (see massivetext_tf.export.tflite)

A version is written into a hidden sibling directory (`NAME/.tmp-VERSION-HOST-PID-...`, ignored
by TF Serving's version poller, which only looks at numeric names) and renamed into place when
complete, so a failed export leaves nothing behind and a server never sees half a model. A
killed export (SIGKILL, power loss) cannot clean up after itself: the next export of the model
removes such leftovers, skipping those of an export still running on this host.
An existing version is never overwritten. All file I/O goes through `tf.io.gfile`.

`models.config` is merged, not regenerated (see `massivetext_tf.export.models_config`): other
models' entries and settings are kept, the previous file is kept as `models.config.bak`.

Warm-up requests (`assets.extra/tf_serving_warmup_requests`) are written by
`massivetext_tf.export.warmup` (names re-exported here).
"""
import hashlib
import os
import re
import socket
import tempfile
import time
import uuid

import tensorflow as tf

from massivetext_tf import io
from massivetext_tf.export import models_config as mc
from massivetext_tf.export.warmup import (  # noqa: F401 (also this module's names)
    WARMUP_FILE,
    decode_prediction_log,
    default_warmup_requests,
    encode_prediction_log,
    read_warmup_requests,
    write_warmup_requests,
)

MODELS_CONFIG = "models.config"
TFLITE_DIR = "tflite"
_VERSION_RE = re.compile(r"^\d+$")


class ExportError(RuntimeError):
    """An export that cannot proceed (bad flag, existing version, ...)."""


# ----------------------------------------------------------------------------------------
# Versions and models.config
# ----------------------------------------------------------------------------------------


def _is_dir(path):
    return tf.io.gfile.exists(path) and tf.io.gfile.isdir(path)


def _strip(name):
    return name.rstrip("/")


def list_versions(base_dir, name):
    """Sorted integer versions of `base_dir/name/` that hold a `saved_model.pb`."""
    model_dir = tf.io.gfile.join(base_dir, name)
    if not _is_dir(model_dir):
        return []
    versions = []
    for entry in tf.io.gfile.listdir(model_dir):
        entry = _strip(entry)
        if _VERSION_RE.match(entry) and tf.io.gfile.exists(
            tf.io.gfile.join(model_dir, entry, "saved_model.pb")
        ):
            versions.append(int(entry))
    return sorted(versions)


def next_version(base_dir, name):
    """One past the highest existing version (numeric directory of any content), or 1."""
    model_dir = tf.io.gfile.join(base_dir, name)
    if not _is_dir(model_dir):
        return 1
    numbers = [int(_strip(e)) for e in tf.io.gfile.listdir(model_dir) if _VERSION_RE.match(_strip(e))]
    return max(numbers, default=0) + 1


def _absolute(path):
    return path if "://" in path else os.path.abspath(path)


def list_models(base_dir):
    """Names of the models under `base_dir` with at least one complete version."""
    if not _is_dir(base_dir):
        return []
    names = []
    for entry in sorted(tf.io.gfile.listdir(base_dir)):
        entry = _strip(entry)
        if not entry.startswith(".") and _is_dir(tf.io.gfile.join(base_dir, entry)) and list_versions(base_dir, entry):
            names.append(entry)
    return names


def _directory_models(base_dir):
    """name -> absolute base_path of every model under `base_dir` with a complete version."""
    return {name: _absolute(tf.io.gfile.join(base_dir, name)) for name in list_models(base_dir)}


def models_config_text(base_dir):
    """A fresh TF Serving `ModelServerConfig` text proto for every model under `base_dir`
    (what `write_models_config` writes when there is no models.config yet)."""
    return mc.new_models_config_text(_directory_models(base_dir))


def check_models_config(base_dir):
    """Raise `ExportError` (naming the file and line) when `base_dir/models.config` exists and
    cannot be merged into; an export checks this before it starts."""
    path = tf.io.gfile.join(base_dir, MODELS_CONFIG)
    text = mc.read_text(path)
    if text is not None and text.strip():
        try:
            mc.ModelsConfig(text, path)
        except mc.ModelsConfigError as e:
            raise ExportError(f"{e}. Fix the file or move it away; nothing was exported.") from None


def sync_models_config(base_dir, name=None):
    """Merge `base_dir/models.config` with the models in `base_dir`: model `name` (the one just
    exported) gets an entry whose `base_path` is `base_dir/name` (its other settings kept);
    every other model in `base_dir` gets an entry only if it has none. Entries of other models,
    their settings, comments and layout are kept; the previous file is kept as
    `models.config.bak`. Returns `massivetext_tf.export.models_config.update_models_config`'s
    dict (`path`, `backup`, `changes`, `checked`)."""
    path = tf.io.gfile.join(base_dir, MODELS_CONFIG)
    models = _directory_models(base_dir)
    if name is not None and name not in models:
        models[name] = _absolute(tf.io.gfile.join(base_dir, name))
    return mc.update_models_config(path, models, update={name} if name else set())


def write_models_config(base_dir, name=None):
    """`sync_models_config(base_dir, name)`; returns the path of `base_dir/models.config`."""
    return sync_models_config(base_dir, name)["path"]


# ----------------------------------------------------------------------------------------
# Temporary directories of exports, and the leftovers of killed ones
# ----------------------------------------------------------------------------------------

_HOST = hashlib.sha1(socket.gethostname().encode("utf-8")).hexdigest()[:6]
_TMP_OWNER_RE = re.compile(r"\.tmp-(?:[^-]+-)?([0-9a-f]{6})-(\d+)-[0-9a-f]{8}$")
_IO_TMP_OWNER_RE = re.compile(r"\.tmp-(\d+)-[0-9a-f]{8}$")  # massivetext_tf.io.tmp_name


def export_tmp_name(model_dir, label):
    """`model_dir/.tmp-LABEL-HOST-PID-RANDOM`: hidden from TF Serving's version poller, and
    naming its writer, so a later export can tell a killed export's leftover from a running one."""
    return tf.io.gfile.join(model_dir, f".tmp-{label}-{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _running_here(name, pattern, with_host):
    match = pattern.search(name)
    if not match:
        return False
    if with_host and match.group(1) != _HOST:
        return False  # another machine's; its process cannot be seen from here
    return _pid_alive(int(match.group(2 if with_host else 1)))


def remove_export_leftovers(base_dir, name):
    """Remove what killed exports of model `name` left behind: `base_dir/name/.tmp-*`
    directories, `base_dir/models.config*.tmp-*` files and the local scratch directories
    (`$TMPDIR/massivetext-export-PID-*`) of dead export processes, except those of a process
    still running on this host. Returns the removed paths."""
    from massivetext_tf.export import saved_model as sm

    removed = []
    scratch = tempfile.gettempdir()
    for entry in tf.io.gfile.listdir(scratch):
        entry = _strip(entry)
        pid = sm.local_tmp_owner(entry)
        path = os.path.join(scratch, entry)
        if pid is not None and not _pid_alive(pid) and tf.io.gfile.isdir(path):
            tf.io.gfile.rmtree(path)
            removed.append(path)
    model_dir = tf.io.gfile.join(base_dir, name)
    if _is_dir(model_dir):
        for entry in tf.io.gfile.listdir(model_dir):
            entry = _strip(entry)
            if entry.startswith(".tmp-") and not _running_here(entry, _TMP_OWNER_RE, True):
                path = tf.io.gfile.join(model_dir, entry)
                if tf.io.gfile.isdir(path):
                    tf.io.gfile.rmtree(path)
                else:
                    tf.io.gfile.remove(path)
                removed.append(_absolute(path))
    if _is_dir(base_dir):
        for entry in tf.io.gfile.listdir(base_dir):
            entry = _strip(entry)
            if (
                entry.startswith(MODELS_CONFIG)
                and io.is_tmp_name(entry)
                and not _running_here(entry, _IO_TMP_OWNER_RE, False)
            ):
                path = tf.io.gfile.join(base_dir, entry)
                tf.io.gfile.remove(path)
                removed.append(_absolute(path))
    return removed


def validate_name(name):
    """`name` if it is a usable model directory name, else an `ExportError` naming `--name`."""
    if not name or not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", name):
        raise ExportError(
            f"--name {name!r}: use letters, digits, '_', '-' or '.', starting with a letter or digit."
        )
    return name


# ----------------------------------------------------------------------------------------
# Loading a task and the versioned export
# ----------------------------------------------------------------------------------------


def load_task(model=None, *, preset=None, tokenizer=None, max_length=None):
    """A task model from a keras-hub preset directory (`--model`) or a fresh preset
    (`--preset NAME --tokenizer SPM_MODEL`)."""
    import massivetext_tf.models as models  # registers our classes with keras-hub

    if (model is None) == (preset is None):
        raise ExportError("Give exactly one of --model PRESET_DIR or --preset NAME.")
    if model is not None:
        config_path = tf.io.gfile.join(model, "config.json")
        if not tf.io.gfile.exists(config_path):
            raise ExportError(
                f"--model {model}: no config.json there; expected a keras-hub preset directory "
                "written by `task.save_to_preset(dir)`."
            )
        try:
            return models.load(model)
        except ValueError as e:
            raise ExportError(f"--model {model}: {e}") from None
    if tokenizer is None:
        raise ExportError(f"--preset {preset} needs --tokenizer SPM_MODEL (a SentencePiece .model file).")
    if not tf.io.gfile.exists(tokenizer):
        raise ExportError(f"--tokenizer {tokenizer}: file does not exist.")
    try:
        return models.build(preset, tokenizer=tokenizer)
    except ValueError as e:
        raise ExportError(f"--preset {preset}: {e}") from None


def directory_size(path):
    """Bytes on disk of a file or every file under a directory."""
    if not tf.io.gfile.isdir(path):
        return tf.io.gfile.stat(path).length
    total = 0
    for root, _, files in tf.io.gfile.walk(path):
        for name in files:
            total += tf.io.gfile.stat(tf.io.gfile.join(root, name)).length
    return total


def human_size(num_bytes):
    """`num_bytes` as B, KiB, MiB or GiB with one decimal."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if num_bytes < 1024 or unit == "GiB":
            return f"{num_bytes:.1f} {unit}" if unit != "B" else f"{num_bytes} B"
        num_bytes /= 1024.0


def export_model(
    task,
    name,
    *,
    base_dir="saved_models",
    version=None,
    tokenizer=None,
    max_length=None,
    default_max_new_tokens=None,
    jit_compile=True,
    warmup=True,
    tflite=False,
    quantize=None,
    max_batch_size=None,
):
    """Export `task` for serving: `base_dir/name/version/` (SavedModel with warm-up requests),
    optionally `base_dir/name/tflite/`, and `base_dir/models.config` with this model merged in
    (other entries kept, the previous file in `models.config.bak`). Leftover temporary
    directories of killed exports of this model are removed first.

    Args:
        task: a `GopherCausalLM` or `EncoderDecoderSeq2SeqLM` (with a tokenizer attached, or
            pass `tokenizer=`).
        name: model name (TF Serving's `model_spec.name`).
        base_dir: export root (local path or `gs://...`).
        version: integer version; default one past the highest existing. An existing version
            raises `ExportError`.
        tokenizer: SentencePiece model path or bytes when the task has no preprocessor.
        max_length: static cache / context length (default: the model's context).
        default_max_new_tokens: default of the `generate` signature's `max_new_tokens`.
        jit_compile: XLA-compile the decoding loop (needs `--xla_cpu_compilation_enabled=true`
            on a CPU TF Serving; GPUs and `tf.saved_model.load` need nothing).
        warmup: write `assets.extra/tf_serving_warmup_requests`.
        tflite: also write LiteRT files (decoder-only models).
        quantize: `None` or `"int8"` (dynamic-range) for the extra `.int8.tflite` file.
        max_batch_size: the most rows (prompts, texts, token id rows) one request may carry,
            enforced in the graph (default `saved_model.DEFAULT_MAX_BATCH_SIZE`; 0: no cap).

    Returns:
        A summary dict: paths, version, sizes in bytes, seconds, `removed_leftovers` (paths),
        `models_config_changes` and `models_config_backup`.
    """
    from massivetext_tf.export import saved_model as sm

    validate_name(name)
    if max_batch_size is None:
        max_batch_size = sm.DEFAULT_MAX_BATCH_SIZE
    max_batch_size = sm.resolve_max_batch_size(max_batch_size)
    max_length = sm.resolve_max_length(task, max_length)
    if quantize not in (None, "int8"):
        raise ExportError(f"--quantize {quantize!r}: only 'int8' (dynamic-range) is supported.")
    if quantize and not tflite:
        raise ExportError("--quantize int8 applies to the TFLite files; add --tflite.")
    if version is None:
        version = next_version(base_dir, name)
    if not isinstance(version, int) or version < 1:
        raise ExportError(f"--version {version!r}: must be a positive integer.")
    model_dir = tf.io.gfile.join(base_dir, name)
    final_dir = tf.io.gfile.join(model_dir, str(version))
    if tf.io.gfile.exists(final_dir):
        raise ExportError(
            f"{final_dir} already exists; versions are never overwritten. Pick another "
            "--version or leave it out to use the next one."
        )
    kind = sm.model_kind(task)
    if tflite and kind != "decoder_only":
        raise ExportError("--tflite is only supported for decoder-only models for now.")
    check_models_config(base_dir)

    start = time.time()
    tf.io.gfile.makedirs(model_dir)
    removed = remove_export_leftovers(base_dir, name)
    tmp_dir = export_tmp_name(model_dir, str(version))
    tflite_tmp = None
    try:
        module = sm.build_serving_module(
            task,
            tokenizer=tokenizer,
            max_length=max_length,
            default_max_new_tokens=default_max_new_tokens or sm.DEFAULT_MAX_NEW_TOKENS,
            jit_compile=jit_compile,
            max_batch_size=max_batch_size,
        )
        proto = module.tokenizer_proto
        info = sm.save_serving_module(module, tmp_dir)
        if warmup:
            write_warmup_requests(tmp_dir, name, default_warmup_requests(kind, info["max_length"]))
        tflite_files = {}
        if tflite:
            from massivetext_tf.export import tflite as tfl

            tflite_tmp = export_tmp_name(model_dir, "tflite")
            tflite_files = tfl.export_tflite(
                task,
                tflite_tmp,
                name,
                tokenizer=proto,
                max_length=info["max_length"],
                quantize=quantize,
                version=version,
            )
        if tf.io.gfile.exists(final_dir):
            raise ExportError(f"{final_dir} appeared during the export; not overwriting it.")
        tf.io.gfile.rename(tmp_dir, final_dir)
    except BaseException:
        for path in (tmp_dir, tflite_tmp):
            if path and tf.io.gfile.exists(path):
                tf.io.gfile.rmtree(path)
        raise

    result = {
        "name": name,
        "version": version,
        "model_kind": kind,
        "saved_model": _absolute(final_dir),
        "saved_model_bytes": directory_size(final_dir),
        "max_length": info["max_length"],
        "max_batch_size": info["max_batch_size"],
        "jit_compile": info["jit_compile"],
        "removed_leftovers": removed,
    }
    if tflite:
        tflite_dir = tf.io.gfile.join(model_dir, TFLITE_DIR)
        tf.io.gfile.makedirs(tflite_dir)
        for key, tmp_path in tflite_files.items():
            target = tf.io.gfile.join(tflite_dir, os.path.basename(tmp_path))
            tf.io.gfile.rename(tmp_path, target, overwrite=True)
            if key.endswith(".tflite"):
                result[f"tflite_{key.split('.')[-2]}"] = _absolute(target)
                result[f"tflite_{key.split('.')[-2]}_bytes"] = directory_size(target)
        tf.io.gfile.rmtree(tflite_tmp)
        result["tflite_dir"] = _absolute(tflite_dir)
    try:
        merged = sync_models_config(base_dir, name)
    except mc.ModelsConfigError as e:
        raise ExportError(
            f"exported {result['saved_model']}, but models.config was not updated: {e}. "
            f"Fix the file, then run `python -c \"from massivetext_tf.export import "
            f"write_models_config; write_models_config({base_dir!r}, {name!r})\"`."
        ) from None
    result["models_config"] = _absolute(merged["path"])
    result["models_config_backup"] = _absolute(merged["backup"]) if merged["backup"] else None
    result["models_config_changes"] = merged["changes"]
    result["models_config_checked"] = merged["checked"]
    result["seconds"] = round(time.time() - start, 1)
    return result
