"""Model parallelism on the JAX backend: the device mesh and the `LayoutMap` of the zoo's
weights (runtime.strategy model_parallel, runtime.mesh `data=D,model=M`).

Megatron's split, written as Keras layouts over a 2-D mesh `(data, model)`:

| weight (path pattern)                              | layout           | split over `model`      |
|----------------------------------------------------|------------------|-------------------------|
| token_embedding/embeddings (vocab, hidden)         | (model, None)    | vocabulary rows         |
| token_embedding/reverse_embeddings (hidden, vocab) | (None, model)    | vocabulary columns      |
| attention query/key/value kernels (hidden, H*d)    | (None, model)    | heads                   |
| attention_output kernel (H*d, hidden)              | (model, None)    | heads                   |
| relative_kernel (hidden, H, d)                     | (None, model, None) | heads                |
| content_bias / position_bias (H, d)                | (model, None)    | heads                   |
| relative position bias embeddings (buckets, H)     | (None, model)    | heads                   |
| feed_forward input/gate kernels (hidden, ffw)      | (None, model)    | feed-forward columns    |
| feed_forward output kernel (ffw, hidden)           | (model, None)    | feed-forward rows       |
| norm scales, learned positions, biases             | replicated       |                         |

The batch is split over `data`. AdamW's slots take their weight's layout (Keras creates them
from the weight), so weights, gradients and both slots all take 1/M of a sharded weight's
bytes per device. XLA's SPMD partitioner inserts the collectives (an all-reduce after the
attention output and feed-forward output projections, the gradient all-reduce over `data`).
"""
from __future__ import annotations

import re

from massivetext_tf.training import config as config_lib

# (path regex, layout). keras.distribution.LayoutMap matches a variable path with
# `re.fullmatch` and refuses a path that two patterns match, so the patterns are disjoint.
LAYOUT_RULES = (
    (r"(.*/)?token_embedding/embeddings", ("model", None)),
    (r"(.*/)?token_embedding/reverse_embeddings", (None, "model")),
    (r".*attention/(query|key|value)/kernel", (None, "model")),
    (r".*attention/attention_output/kernel", ("model", None)),
    (r".*attention/relative_kernel", (None, "model", None)),
    (r".*attention/(content|position)_bias", ("model", None)),
    (r".*position_bias/embeddings", (None, "model")),
    (r".*feed_forward/(input|gate)_dense/kernel", (None, "model")),
    (r".*feed_forward/output_dense/kernel", ("model", None)),
)


def mesh_shape(rt, num_devices: int) -> dict:
    """{"data": D, "model": M} of runtime.mesh (default: every device on `model`); `ValueError`
    naming runtime.mesh when D x M is not the number of devices."""
    shape = config_lib.parse_mesh(rt.mesh) if rt.mesh else {"data": 1, "model": num_devices}
    need = shape["data"] * shape["model"]
    if need > num_devices:
        raise ValueError(f"runtime.mesh: data={shape['data']},model={shape['model']} needs "
                         f"{need} devices; this process sees {num_devices} (on a CPU, "
                         "XLA_FLAGS=--xla_force_host_platform_device_count=N gives N)")
    return shape


def layout_map(mesh):
    """The `keras.distribution.LayoutMap` of `LAYOUT_RULES` over `mesh`."""
    import keras

    lm = keras.distribution.LayoutMap(mesh)
    for pattern, layout in LAYOUT_RULES:
        lm[pattern] = layout
    return lm


def distribution(rt):
    """The `keras.distribution` of runtime (None for one_device: no distribution, one device)."""
    if rt.strategy != "model_parallel":
        return None
    import jax
    import keras

    class CheckedModelParallel(keras.distribution.ModelParallel):
        """ModelParallel that names the weight and runtime.mesh when the model axis does not
        divide a dimension it splits (jax's own error names neither), before any array is
        placed."""

        def get_variable_layout(self, variable):
            check_shape(variable.path, tuple(variable.shape), shape)
            return super().get_variable_layout(variable)

    devices = jax.devices()
    shape = mesh_shape(rt, len(devices))
    n = shape["data"] * shape["model"]
    mesh = keras.distribution.DeviceMesh((shape["data"], shape["model"]), ("data", "model"),
                                         devices=devices[:n])
    return CheckedModelParallel(layout_map=layout_map(mesh), batch_dim_name="data")


def check_shape(path: str, dims: tuple, shape: dict) -> None:
    """`ValueError` naming runtime.mesh and the weight when the `model` axis of mesh `shape`
    does not divide a dimension the layout rules split (XLA would refuse, or pad)."""
    m = shape["model"]
    for dim, axis in zip(dims, rule_for(path) or ()):
        if axis == "model" and dim % m:
            raise ValueError(f"runtime.mesh: model={m} does not divide {path} {dims} "
                             f"(dimension {dim}); pick a model axis that divides the heads, "
                             "the feed-forward width and the vocabulary")


def check_divisible(model, shape: dict) -> None:
    """`check_shape` for every weight of `model`."""
    for v in model.weights:
        check_shape(v.path, tuple(v.shape), shape)


def rule_for(path: str):
    """The layout `LAYOUT_RULES` gives a variable path (None: replicated)."""
    for pattern, layout in LAYOUT_RULES:
        if re.fullmatch(pattern, path):
            return layout
    return None


def report(variables) -> list[dict]:
    """Per variable, from the live arrays' shardings: path, shape, partition spec, elements on
    each device (`per_device`) and the fraction of the whole array one device holds."""
    import numpy as np

    rows = []
    for v in variables:
        value = v.value
        sharding = getattr(value, "sharding", None)
        spec = getattr(sharding, "spec", None)
        shards = getattr(value, "addressable_shards", [])
        sizes = sorted({int(np.prod(s.data.shape)) for s in shards})
        total = int(np.prod(v.shape))
        rows.append({
            "path": v.path,
            "shape": list(v.shape),
            "spec": [None if a is None else str(a) for a in spec] if spec is not None else None,
            "devices": len(shards),
            "per_device": sizes,
            "fraction": (max(sizes) / total) if sizes and total else 1.0,
        })
    return rows
