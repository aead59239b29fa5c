"""Filesystem helpers shared by every stage: gs://-aware atomic writes and JSON.

Every file the package writes goes through `tf.io.gfile`, so the same code writes to a local
disk or to Cloud Storage. A file is written to a temporary sibling and renamed into place, so a
kill never leaves half a file under the final name; temporary names start with the final name
and carry `.tmp-`, so a later run can recognise (and remove) the leftovers of a killed one.

JSON is written with sorted keys and without bare `NaN`/`Infinity` (not valid JSON): non-finite
floats become `null` unless the caller asks for strings.

Example:

```python
from massivetext_tf import io

io.write_json("gs://bucket/run/config.json", {"lr": 3e-4})
io.read_json("gs://bucket/run/config.json")   # {"lr": 0.0003}
```
"""

from __future__ import annotations

import json
import math
import os
import uuid

TMP_MARK = ".tmp-"


def _gfile():
    """`tf.io.gfile`, imported on first use so importing this module stays cheap."""
    import tensorflow as tf

    return tf.io.gfile


def tmp_name(path: str) -> str:
    """A unique temporary sibling of `path` (same directory, so the rename is atomic locally)."""
    return f"{path}{TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}"


def is_tmp_name(name: str) -> bool:
    return TMP_MARK in os.path.basename(name.rstrip("/"))


def makedirs(path: str) -> None:
    if path:
        _gfile().makedirs(path)


def atomic_write(path: str, data: str | bytes) -> None:
    """Writes `data` to `path` through a temporary sibling and a rename."""
    makedirs(os.path.dirname(path))
    tmp = tmp_name(path)
    try:
        with _gfile().GFile(tmp, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
        _gfile().rename(tmp, path, overwrite=True)
    except BaseException:
        if _gfile().exists(tmp):
            _gfile().remove(tmp)
        raise


def finite_json(obj, *, nonfinite: str = "null"):
    """`obj` with every non-finite float replaced: `nonfinite="null"` gives None,
    `"string"` gives "nan"/"inf"/"-inf" (so the value is still readable)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if nonfinite == "null" else repr(obj)
    if isinstance(obj, dict):
        return {k: finite_json(v, nonfinite=nonfinite) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v, nonfinite=nonfinite) for v in obj]
    return obj


def dumps(obj, *, indent: int | None = 2, sort_keys: bool = True,
          nonfinite: str = "null") -> str:
    """Strict JSON text (no bare NaN/Infinity)."""
    return json.dumps(finite_json(obj, nonfinite=nonfinite), indent=indent,
                      sort_keys=sort_keys, allow_nan=False, ensure_ascii=False)


def write_json(path: str, obj, *, indent: int | None = 2, sort_keys: bool = True) -> None:
    """Atomic, strict JSON write (temp file + rename)."""
    atomic_write(path, dumps(obj, indent=indent, sort_keys=sort_keys) + "\n")


class JSONFileError(ValueError):
    """A JSON file exists but cannot be parsed; the message names the file."""


_MISSING = object()


def read_json(path: str, default=_MISSING):
    """Parsed JSON of `path`; `default` when the file is missing (if given), else NotFound.
    Invalid JSON raises `JSONFileError` naming the file."""
    if default is not _MISSING and not _gfile().exists(path):
        return default
    with _gfile().GFile(path, "r") as f:
        text = f.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise JSONFileError(f"{path}: invalid JSON ({e})") from None


def remove_tmp_leftovers(directory: str) -> list[str]:
    """Removes files and directories in `directory` (not below) whose names mark them as
    temporaries of a killed writer; returns the removed paths."""
    removed = []
    if not _gfile().isdir(directory):
        return removed
    for name in _gfile().listdir(directory):
        if is_tmp_name(name):
            path = os.path.join(directory, name.rstrip("/"))
            if _gfile().isdir(path):
                _gfile().rmtree(path)
            else:
                _gfile().remove(path)
            removed.append(path)
    return removed
