"""Runs the zoo's layers and backbones under the active Keras backend (`KERAS_BACKEND`).

    python tests/models/backend_check.py OUT_DIR [WEIGHTS_DIR]

Without WEIGHTS_DIR every case gets fresh weights, which are saved to OUT_DIR (layers as
`.npz` of `get_weights()`, backbones with `save_weights` as `.weights.h5`); with it, each case
loads the weights saved there. The outputs of every case go to `OUT_DIR/outputs.npz`, and the
backend that ran them to `OUT_DIR/backend.txt`. `tests/models/test_backends.py` runs this
once under TensorFlow and once under JAX on the same weights and compares the outputs.
"""
import os
import sys

import keras
import numpy as np
from keras import ops

from massivetext_tf import models
from massivetext_tf.layers import (
    POSITION_ENCODINGS,
    CachedAttention,
    DecoderBlock,
    EncoderBlock,
    FeedForward,
    LearnedPositionEmbedding,
    RMSNormalization,
    T5RelativePositionBias,
)

RNG = np.random.default_rng(0)
X = RNG.normal(size=(2, 6, 16)).astype("float32")
ENCODED = RNG.normal(size=(2, 5, 16)).astype("float32")
SEGMENTS = np.array([[1, 1, 1, 2, 2, 0], [1, 1, 1, 1, 1, 1]], dtype="int32")
ENCODER_SEGMENTS = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype="int32")
BIAS = RNG.normal(size=(1, 2, 6, 6)).astype("float32")
TOKENS = RNG.integers(4, 97, size=(2, 8)).astype("int32")
MASK = np.array([[1] * 8, [1] * 5 + [0] * 3], dtype="int32")
ENCODER_TOKENS = RNG.integers(4, 97, size=(2, 7)).astype("int32")
ENCODER_MASK = np.array([[1] * 7, [1] * 4 + [0] * 3], dtype="int32")
SMALL = dict(vocabulary_size=97, hidden_dim=32, intermediate_dim=64, num_heads=2, key_value_dim=16)


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


def _attention_steps(layer, x, bias=None):
    """Full pass, then a cached pass: three tokens at once (the gather path of relative
    positions), then one token (the slice path)."""
    out = {"full": layer(x, query_segments=SEGMENTS, key_segments=SEGMENTS, attention_bias=bias)}
    cache = ops.zeros((2, 2, 6, layer.num_heads, layer.key_dim))
    first, cache = layer(x[:, :3], cache=cache, cache_update_index=0,
                         attention_bias=None if bias is None else bias[:, :, :3])
    step, cache = layer(x[:, 3:4], cache=cache, cache_update_index=3,
                        attention_bias=None if bias is None else bias[:, :, 3:4])
    return {**out, "cached_first": first, "cached_step": step, "cache": cache}


def _block_steps(block, x):
    out = {"full": block(x, segments=SEGMENTS)}
    cache = ops.zeros((2, 2, 6, block.num_heads, block.key_dim))
    for i in range(2):
        step, cache = block(x[:, i : i + 1], cache=cache, cache_update_index=i)
        out[f"step_{i}"] = step
    return out


def _remat_block(x):
    block = DecoderBlock(2, 8, 32, position_encoding="relative")
    block.remat = True
    return block, lambda: {"full": block(x, segments=SEGMENTS)}


def _layer_cases():
    """`{name: (layer, run)}`: `run()` returns the outputs to compare."""
    cases = {}
    norm = RMSNormalization(1e-6)
    cases["rms_norm"] = (norm, lambda: {"out": norm(X)})
    for activation in ("gelu", "swiglu"):
        ff = FeedForward(16, 32, activation=activation)
        cases[f"feed_forward_{activation}"] = (ff, lambda ff=ff: {"out": ff(X)})
    for scheme in POSITION_ENCODINGS:
        layer = CachedAttention(2, 8, position_encoding=scheme)
        bias = BIAS if scheme == "t5_bias" else None
        cases[f"attention_{scheme}"] = (layer, lambda layer=layer, bias=bias: _attention_steps(layer, X, bias))
    bidirectional = CachedAttention(2, 8, position_encoding="relative", causal=False)
    cases["attention_relative_bidirectional"] = (
        bidirectional, lambda: {"out": bidirectional(X, query_segments=SEGMENTS, key_segments=SEGMENTS)})
    cross = CachedAttention(2, 8, position_encoding=None, causal=False)
    cases["cross_attention"] = (cross, lambda: {"out": cross(X, key_value=ENCODED, key_segments=ENCODER_SEGMENTS)})
    for scheme in ("relative", "rotary", "learned"):
        block = DecoderBlock(2, 8, 32, position_encoding=scheme, activation="swiglu")
        cases[f"decoder_block_{scheme}"] = (block, lambda block=block: _block_steps(block, X))
    cases["decoder_block_remat"] = _remat_block(X)
    cross_block = DecoderBlock(2, 8, 32, position_encoding="t5_bias", cross_attention=True)
    cases["decoder_block_cross"] = (cross_block, lambda: {"out": cross_block(
        X, segments=SEGMENTS, attention_bias=BIAS, encoder_outputs=ENCODED, encoder_segments=ENCODER_SEGMENTS)})
    encoder_block = EncoderBlock(2, 8, 32, position_encoding="relative")
    cases["encoder_block"] = (encoder_block, lambda: {"out": encoder_block(X, segments=SEGMENTS)})
    t5_bias = T5RelativePositionBias(2, bidirectional=False)
    cases["t5_bias"] = (t5_bias, lambda: {"out": t5_bias(X)})
    learned = LearnedPositionEmbedding(16, 16)
    cases["learned_positions"] = (learned, lambda: {"out": learned(X, segments=SEGMENTS),
                                                    "step": learned(X[:, :1], start_index=3)})
    return cases


def _decoder_only(scheme):
    config = models.resolve_config("gopher_tiny", position_encoding=scheme, max_sequence_length=16, **SMALL)
    config.pop("model_type")
    return models.GopherBackbone(**config)


def _decoder_only_run(backbone):
    hidden = backbone({"token_ids": TOKENS, "padding_mask": MASK})
    out = {"hidden": hidden, "logits": backbone.token_embedding(hidden, reverse=True)}
    # One cached decoding step after a cached prompt of 4 tokens, block by block.
    x = backbone.token_embedding(TOKENS[:, :5])
    caches = []
    for layer in backbone.transformer_layers:
        cache = ops.zeros((2, 2, 8, backbone.num_heads, backbone.key_value_dim))
        x, cache = layer(x, cache=cache, cache_update_index=0)
        caches.append(cache)
    out["cached_prompt"] = backbone.layer_norm(x)
    x = backbone.token_embedding(TOKENS[:, 5:6])
    for i, layer in enumerate(backbone.transformer_layers):
        x, caches[i] = layer(x, cache=caches[i], cache_update_index=5)
    out["cached_step"] = backbone.layer_norm(x)
    return out


def _encoder_decoder(scheme):
    config = models.resolve_config("t5_tiny", position_encoding=scheme, **SMALL)
    config.pop("model_type")
    return models.EncoderDecoderBackbone(**config)


def _encoder_decoder_run(backbone):
    out = backbone({"encoder_token_ids": ENCODER_TOKENS, "encoder_padding_mask": ENCODER_MASK,
                    "decoder_token_ids": TOKENS, "decoder_padding_mask": MASK})
    return {**out, "logits": backbone.token_logits(out["decoder_sequence_output"])}


def _backbone_cases():
    cases = {}
    for scheme in ("relative", "rotary"):
        backbone = _decoder_only(scheme)
        cases[f"gopher_{scheme}"] = (backbone, lambda b=backbone: _decoder_only_run(b))
    for scheme in ("t5_bias", "relative"):
        backbone = _encoder_decoder(scheme)
        cases[f"t5_{scheme}"] = (backbone, lambda b=backbone: _encoder_decoder_run(b))
    return cases


def main(out_dir, weights_dir=None):
    keras.utils.set_random_seed(0)
    outputs = {}
    for name, (layer, run) in _layer_cases().items():
        run()  # builds the layer
        path = os.path.join(weights_dir or out_dir, f"{name}.npz")
        if weights_dir:
            with np.load(path) as saved:
                layer.set_weights([saved[f"arr_{i}"] for i in range(len(saved.files))])
        else:
            np.savez(path, *layer.get_weights())
        outputs.update({f"{name}/{k}": _np(v) for k, v in run().items()})
    for name, (backbone, run) in _backbone_cases().items():
        path = os.path.join(weights_dir or out_dir, f"{name}.weights.h5")
        if weights_dir:
            backbone.load_weights(path)
        else:
            backbone.save_weights(path)
        outputs.update({f"{name}/{k}": _np(v) for k, v in run().items()})
    np.savez(os.path.join(out_dir, "outputs.npz"), **outputs)
    with open(os.path.join(out_dir, "backend.txt"), "w") as f:
        f.write(keras.backend.backend())


if __name__ == "__main__":
    main(*sys.argv[1:])
