"""Throughput, MFU, metrics.jsonl, TensorBoard scalars and the console progress line."""
from __future__ import annotations

import json
import math
import os
import sys
import time

import numpy as np
import tensorflow as tf

# Peak dense bf16/fp16 FLOP/s per replica (a TPU v2/v3 replica is one core, v4 and later one
# chip). Override with runtime.peak_flops_per_device / --peak-flops.
PEAK_FLOPS = {
    "TPU v2": 22.5e12,
    "TPU v3": 61.5e12,
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
    "TPU v5e": 197e12,
    "TPU v5p": 459e12,
    "TPU v6e": 918e12,
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
    "A10": 125e12,
    "L4": 121e12,
    "V100": 125e12,
    "T4": 65e12,
}


def flops_per_token(num_params: int, num_layers: int, hidden_dim: int, seq_len: int) -> float:
    """Training FLOPs per token: 6N for the matmuls of forward + backward plus the attention
    scores and weighted sum, 12 * layers * d_model * seq_len (PaLM, appendix B)."""
    return 6.0 * num_params + 12.0 * num_layers * hidden_dim * seq_len


def model_dims(model) -> tuple[int, int]:
    """(num_layers, hidden_dim) of a keras-hub task's backbone (0, 0 if unknown)."""
    bb = getattr(model, "backbone", model)
    layers = getattr(bb, "num_layers", None) or getattr(bb, "num_decoder_layers", None) or 0
    if getattr(bb, "num_encoder_layers", None):
        layers = bb.num_encoder_layers + (getattr(bb, "num_decoder_layers", 0) or 0)
    hidden = getattr(bb, "hidden_dim", None) or getattr(bb, "d_model", None) or 0
    return int(layers), int(hidden)


def measure_matmul_peak(n: int = 2048, seconds: float = 1.0, dtype=tf.float32) -> float:
    """FLOP/s of a square float32 matmul compiled with XLA on the default device: the
    achievable peak we measure MFU against on CPUs (no vendor number applies there)."""
    a = tf.random.stateless_normal([n, n], seed=[1, 2], dtype=dtype)
    b = tf.random.stateless_normal([n, n], seed=[3, 4], dtype=dtype)

    @tf.function(jit_compile=True)
    def mm(a, b):
        return tf.matmul(a, b)

    mm(a, b).numpy()  # compile
    reps, t0 = 0, time.perf_counter()
    while True:
        mm(a, b).numpy()
        reps += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds and reps >= 3:
            break
    return 2.0 * n**3 * reps / elapsed


def device_peak_flops(kind: str) -> float | None:
    """Looks up the peak FLOP/s of one replica of `kind` ('GPU', 'TPU', 'CPU') in PEAK_FLOPS."""
    names = []
    if kind == "GPU":
        for gpu in tf.config.list_physical_devices("GPU"):
            names.append(tf.config.experimental.get_device_details(gpu).get("device_name", ""))
    elif kind == "TPU":
        acc = os.environ.get("TPU_ACCELERATOR_TYPE", "")  # e.g. v4-8, v5litepod-16
        names.append("TPU " + acc.split("-")[0].replace("litepod", " lite"))
    for name in names:
        for key, value in PEAK_FLOPS.items():
            if key.lower() in name.lower():
                return value
    return None


SUPERSEDED = "metrics_superseded.jsonl"


def json_line(record: dict) -> str:
    """One strict JSON line (no bare NaN/Infinity): a non-finite number becomes `null` and its
    value is kept as a string under `"nonfinite": {field: "nan"|"inf"|"-inf"}`."""
    from massivetext_tf import io

    bad = {k: repr(float(v)) for k, v in record.items()
           if isinstance(v, float) and not math.isfinite(v)}
    if bad:
        record = {**record, "nonfinite": bad}
    return io.dumps(record, indent=None, sort_keys=False)


class MetricsWriter:
    """Appends JSON lines to MODEL_DIR/metrics.jsonl and writes TensorBoard scalars.

    Lines are strict JSON (`json_line`). Only the chief writes; other workers get a writer that
    does nothing. After a resume, `supersede_after(step)` moves the lines of steps the run will
    redo to MODEL_DIR/metrics_superseded.jsonl, so metrics.jsonl holds each step once.
    """

    def __init__(self, model_dir: str | None, *, enabled: bool = True, tensorboard: bool = True):
        self.enabled = bool(enabled and model_dir)
        self.path = f"{model_dir}/metrics.jsonl" if model_dir else None
        self._summary = None
        if self.enabled:
            tf.io.gfile.makedirs(model_dir)
            if tensorboard:
                self._summary = tf.summary.create_file_writer(f"{model_dir}/tensorboard")

    def write(self, step: int, record: dict, *, prefix: str = "train") -> None:
        if not self.enabled:
            return
        record = {"step": int(step), "split": prefix, **{k: _py(v) for k, v in record.items()}}
        _append_line(self.path, json_line(record))
        if self._summary is not None:
            with self._summary.as_default(step=int(step)):
                for k, v in record.items():
                    if k != "step" and not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v):
                        tf.summary.scalar(f"{prefix}/{k}", v)
            self._summary.flush()

    def supersede_after(self, step: int, *, eval_at_step: bool = False) -> int:
        """Moves the lines with `step` > `step` (and, with `eval_at_step`, the eval lines at
        `step`, about to be rewritten) and any unreadable line (a line cut by a kill) to
        MODEL_DIR/metrics_superseded.jsonl, each tagged `"superseded_at_step": step`. Returns
        the number of lines moved."""
        if not self.enabled or not tf.io.gfile.exists(self.path):
            return 0
        from massivetext_tf import io

        with tf.io.gfile.GFile(self.path) as f:
            lines = [line for line in f.read().splitlines() if line.strip()]
        keep, moved = [], []
        for line in lines:
            try:
                rec = json.loads(line)
                s = int(rec["step"])
            except (ValueError, KeyError, TypeError):
                moved.append(json_line({"superseded_at_step": int(step), "unreadable": line}))
                continue
            if s > step or (eval_at_step and s == step and rec.get("split") == "eval"):
                moved.append(json_line({**rec, "superseded_at_step": int(step)}))
            else:
                keep.append(line)
        if moved:
            old_path = f"{self.path.rsplit('/', 1)[0]}/{SUPERSEDED}"
            old = ""
            if tf.io.gfile.exists(old_path):
                with tf.io.gfile.GFile(old_path) as f:
                    old = f.read()
            io.atomic_write(old_path, old + "".join(m + "\n" for m in moved))
            io.atomic_write(self.path, "".join(k + "\n" for k in keep))
        return len(moved)

    def text(self, step: int, name: str, text: str) -> None:
        if self.enabled and self._summary is not None:
            with self._summary.as_default(step=int(step)):
                tf.summary.text(name, text)
            self._summary.flush()

    def close(self):
        if self._summary is not None:
            self._summary.close()


def _py(v):
    if isinstance(v, (np.generic,)):
        return v.item()
    if hasattr(v, "numpy"):
        return _py(v.numpy())
    return v


def _append_line(path: str, line: str) -> None:
    # GFile has no append mode on every filesystem (gs://); local paths append directly.
    if "://" not in path:
        with tf.io.gfile.GFile(path, "a") as f:
            f.write(line + "\n")
        return
    old = ""
    if tf.io.gfile.exists(path):
        with tf.io.gfile.GFile(path) as f:
            old = f.read()
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(old + line + "\n")


def read_metrics(model_dir: str) -> list[dict]:
    path = f"{model_dir}/metrics.jsonl"
    if not tf.io.gfile.exists(path):
        return []
    with tf.io.gfile.GFile(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class Progress:
    """One console line rewritten with a carriage return: step, loss, tokens/s, ETA."""

    def __init__(self, total_steps: int, *, enabled: bool = True, stream=None):
        self.total = total_steps
        self.stream = stream or sys.stdout
        self.enabled = enabled
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._start = time.perf_counter()
        self._start_step = None

    def update(self, step: int, loss: float, tokens_per_s: float, *, force_line: bool = False):
        if not self.enabled:
            return
        if self._start_step is None:
            self._start_step = step
            self._start = time.perf_counter()
        done = step - self._start_step
        elapsed = time.perf_counter() - self._start
        eta = (self.total - step) * elapsed / done if done > 0 else float("nan")
        width = 20
        filled = int(width * step / max(self.total, 1))
        line = (
            f"[{'=' * filled}{'.' * (width - filled)}] step {step}/{self.total} "
            f"loss {loss:.4f} {tokens_per_s:,.0f} tok/s ETA {_fmt_eta(eta)}"
        )
        if self.tty:
            self.stream.write("\r" + line + " " * 4)
            if step >= self.total:
                self.stream.write("\n")
        elif force_line:
            self.stream.write(line + "\n")
        self.stream.flush()

    def message(self, text: str):
        if self.enabled:
            self.stream.write(("\n" if self.tty else "") + text + "\n")
            self.stream.flush()


def _fmt_eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "--:--"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"
