"""Per-device memory and time of a training run, before running it (`tools/plan.py`).

    from massivetext_tf.training import memory
    memory.plan("chinchilla_70b", hardware="TPU v5p", devices=1024,
                global_batch_tokens=3_000_000, sequence_length=2048, remat="block",
                precision="bfloat16", mesh="data=64,model=16")

Formulas (docs/training.md, "Planning memory"), N parameters, mesh data=D x model=M:
  parameters, gradients: 4 N / M bytes each (float32 master weights and gradients, also in
      bfloat16 training); AdamW's two slots: 8 N / M. The model axis shards them; the data
      axis replicates them (the trainer has no optimizer-state sharding).
  activations, per layer and per sequence on the device, p bytes an element (4 float32,
      2 bfloat16), b = global_batch_tokens / L / D sequences a device, divided by M:
      kept (remat none):  p b L (8 d + 2 f + H L)        8 [L, d] tensors (norm inputs and
                          outputs, q, k, v, attention output, residual), the feed-forward's
                          two [L, f] tensors, the attention probabilities [H, L, L] (XLA
                          fuses the scores into them)
      kept (remat block): p b L d                         the block input only,
      plus, once: p b L 2 H L without remat (the backward's score gradients), or one block's
      full set with it (the block being recomputed), and the float32 logits and their
      gradient, 8 b L V.
  The tensor counts are the block's; that XLA keeps one [H, L, L] tensor a layer was read off
  one measured configuration (tools/benchmark_memory.py). The activations are XLA's one
  temporary buffer of the gradient program (its buffer assignment's "preallocated-temp"),
  which they match within 6% at three other sizes (tests/training/test_plan.py; the figures:
  docs/training.md, "Planning memory").
  On this CPU the measured peak is TF's CPU allocator's, a BFC allocator that grows by
  power-of-two regions: it serves that buffer, the step's largest allocation, from a fresh
  region and charges the whole region when the rest is under 128 MiB
  (`tf_cpu_allocator_bytes`: 396 MiB of activations count as 512 MiB). That is the
  measuring allocator's, not the model's: the plan's figures leave it out.
  step time = 6 N' T / (devices x peak FLOP/s x MFU), N' = N + 2 layers d L (attention),
      and remat adds a forward pass of the blocks: x 4/3 on the block share.
  days = 20 N tokens (Chinchilla-optimal) / T tokens a step x step time / 86400.
"""
from __future__ import annotations

import dataclasses
import math
import os

# Per device: memory in bytes and dense bf16 peak FLOP/s, with where each figure comes from.
HARDWARE = {
    "TPU v4": (32 * 2**30, 275e12, "cloud.google.com/tpu/docs/v4: 32 GiB HBM2, 275 TFLOP/s bf16 per chip"),
    "TPU v5e": (16 * 2**30, 197e12, "cloud.google.com/tpu/docs/v5e: 16 GiB HBM2, 197 TFLOP/s bf16 per chip"),
    "TPU v5p": (95 * 2**30, 459e12, "cloud.google.com/tpu/docs/v5p: 95 GiB HBM2e, 459 TFLOP/s bf16 per chip"),
    "TPU v6e": (32 * 2**30, 918e12, "cloud.google.com/tpu/docs/v6e: 32 GiB HBM, 918 TFLOP/s bf16 per chip"),
    "A100": (80 * 10**9, 312e12, "NVIDIA A100 datasheet: 80 GB HBM2e (SXM), 312 TFLOP/s bf16 dense"),
    "H100": (80 * 10**9, 989e12, "NVIDIA H100 datasheet: 80 GB HBM3 (SXM), 989 TFLOP/s bf16 dense"),
    "H200": (141 * 10**9, 989e12, "NVIDIA H200 datasheet: 141 GB HBM3e (SXM), 989 TFLOP/s bf16 dense"),
    "CPU": (None, None, "this machine: physical memory (sysconf) and a measured float32 XLA matmul"),
}
PRECISIONS = {"float32": 4, "bfloat16": 2}
REMAT = ("none", "block")
DEFAULT_MFU = 0.4


@dataclasses.dataclass
class Mesh:
    data: int
    model: int = 1


def parse_mesh(text: str | None, devices: int) -> Mesh:
    """`data=D,model=M` (D x M must be `devices`); None: data=devices."""
    if not text:
        return Mesh(devices, 1)
    axes = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        if name.strip() not in ("data", "model") or not value.strip().isdigit() or int(value) < 1:
            raise ValueError(f"--mesh: expected data=D,model=M with positive integers, got {text!r}")
        axes[name.strip()] = int(value)
    mesh = Mesh(axes.get("data", 1), axes.get("model", 1))
    if mesh.data * mesh.model != devices:
        raise ValueError(f"--mesh: data x model = {mesh.data * mesh.model}, but --devices is {devices}")
    return mesh


def hardware(kind: str) -> dict:
    """{"memory_bytes", "peak_flops", "source"} of one device of `kind` (HARDWARE's keys)."""
    if kind not in HARDWARE:
        raise ValueError(f"--hardware: {kind!r} is not one of {', '.join(HARDWARE)}")
    mem, peak, source = HARDWARE[kind]
    if kind == "CPU":
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        from massivetext_tf.training.metrics import measure_matmul_peak

        peak = measure_matmul_peak(n=1024, seconds=0.5)
    return {"memory_bytes": mem, "peak_flops": peak, "source": source}


def activation_bytes(config: dict, *, sequences: float, sequence_length: int,
                     remat: str = "none", precision: str = "float32", model_shards: int = 1) -> float:
    """Peak activation bytes of one training step of a decoder-only `config` on one device
    (see the module docstring)."""
    p = PRECISIONS[precision]
    L, d = sequence_length, config["hidden_dim"]
    f, H, layers = config["intermediate_dim"], config["num_heads"], config["num_layers"]
    b = sequences
    full_layer = b * L * (8 * d + 2 * f + H * L)
    if remat == "block":  # block inputs, and the one block being recomputed
        kept = layers * b * L * d + full_layer
    else:  # every block's activations, and the score gradients of the backward's first block
        kept = layers * full_layer + b * L * 2 * H * L
    logits = 8 * b * L * config["vocabulary_size"]  # float32 logits and their gradient
    return (p * kept + logits) / model_shards


MIB = 2**20
BFC_MAX_INTERNAL_FRAGMENTATION = 128 * MIB  # tensorflow/core/common_runtime/bfc_allocator.cc


def tf_cpu_allocator_bytes(nbytes: float) -> float:
    """Bytes TF's CPU allocator counts in use for one allocation of `nbytes` that it serves
    from a fresh region (XLA's temporary buffer, the largest allocation of a training step).
    The allocator is a BFC allocator growing by regions of 2 MiB x 2^k, the smallest that
    holds the request; it splits the unused rest off the region only when the rest is at
    least the request or at least 128 MiB, so otherwise the whole region counts:
    396 MiB -> 512 MiB, 280 MiB -> 280 MiB (measured: docs/training.md, "Planning memory")."""
    region = 2 * MIB
    while region < nbytes:
        region *= 2
    rest = region - nbytes
    return nbytes if rest >= nbytes or rest >= BFC_MAX_INTERNAL_FRAGMENTATION else region


def plan(preset, *, hardware_kind: str, devices: int, global_batch_tokens: int,
         sequence_length: int, remat: str = "none", precision: str = "float32",
         mesh: str | None = None, mfu: float = DEFAULT_MFU) -> dict:
    """Per-device bytes, fit, step time and days to train `preset` (a name or a config dict)
    on `devices` of `hardware_kind`. Raises ValueError naming the flag on bad input."""
    from massivetext_tf import models

    if devices < 1:
        raise ValueError(f"--devices: must be >= 1, got {devices}")
    if sequence_length < 1 or global_batch_tokens < sequence_length:
        raise ValueError(f"--global-batch-tokens: must be >= --sequence-length ({sequence_length}),"
                         f" got {global_batch_tokens}")
    if remat not in REMAT:
        raise ValueError(f"--remat: {remat!r} is not one of {', '.join(REMAT)}")
    if precision not in PRECISIONS:
        raise ValueError(f"--precision: {precision!r} is not one of {', '.join(PRECISIONS)}")
    if not (isinstance(mfu, float) and math.isfinite(mfu) and 0 < mfu <= 1):
        raise ValueError(f"mfu: must be in (0, 1], got {mfu!r}")
    try:
        config = models.resolve_config(preset) if isinstance(preset, str) else dict(preset)
    except (KeyError, ValueError):
        raise ValueError(f"--preset: unknown preset {preset!r}; see models.list_presets()") from None
    if "num_layers" not in config:
        raise ValueError(f"--preset: {preset!r} is not a decoder-only model (the planner covers "
                         "Gopher/Chinchilla decoders)")
    hw = hardware(hardware_kind)
    m = parse_mesh(mesh, devices)
    n = models.count_params(config)
    sequences = global_batch_tokens / sequence_length / m.data
    act = activation_bytes(config, sequences=sequences, sequence_length=sequence_length,
                           remat=remat, precision=precision, model_shards=m.model)
    per_device = {
        "parameters": 4 * n / m.model,
        "gradients": 4 * n / m.model,
        "optimizer_slots": 8 * n / m.model,
        "activations": act,
    }
    total = sum(per_device.values())
    layers, d = config["num_layers"], config["hidden_dim"]
    flops_per_token = 6 * n + 12 * layers * d * sequence_length
    if remat == "block":  # one more forward pass of the blocks (a third of their 6N)
        flops_per_token += (2 * (n - config["vocabulary_size"] * d)
                            + 4 * layers * d * sequence_length)
    step_seconds = (global_batch_tokens * flops_per_token / (devices * hw["peak_flops"] * mfu)
                    if hw["peak_flops"] else None)
    tokens = 20 * n
    return {
        "preset": preset if isinstance(preset, str) else "custom",
        "params": n,
        "hardware": hardware_kind,
        "hardware_source": hw["source"],
        "devices": devices,
        "mesh": {"data": m.data, "model": m.model},
        "sequences_per_device": sequences,
        "bytes_per_device": {k: int(v) for k, v in per_device.items()},
        "total_bytes_per_device": int(total),
        "device_memory_bytes": hw["memory_bytes"],
        "fits": bool(hw["memory_bytes"] and total <= hw["memory_bytes"]),
        "mfu": mfu,
        "peak_flops_per_device": hw["peak_flops"],
        "step_seconds": step_seconds,
        "chinchilla_tokens": tokens,
        "days": (tokens / global_batch_tokens * step_seconds / 86400) if step_seconds else None,
    }
