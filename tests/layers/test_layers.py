"""Every layer through the shared harness, plus the math each one is supposed to do."""
import keras
import numpy as np
import pytest

from harness import check_layer
from massivetext_tf.layers import (
    POSITION_ENCODINGS,
    CachedAttention,
    DecoderBlock,
    EncoderBlock,
    FeedForward,
    LearnedPositionEmbedding,
    RMSNormalization,
    T5RelativePositionBias,
    positions_from_segments,
)

RNG = np.random.default_rng(0)
X = RNG.normal(size=(2, 6, 16)).astype("float32")
SEGMENTS = np.array([[1, 1, 1, 2, 2, 0], [1, 1, 1, 1, 1, 1]], dtype="int32")


def test_rms_normalization_harness_and_math(tmp_path):
    layer = check_layer(RMSNormalization, {"epsilon": 1e-6}, [X], expected_output_shape=X.shape, tmp_path=tmp_path)
    expected = X / np.sqrt(np.mean(X**2, axis=-1, keepdims=True) + 1e-6)
    layer.scale.assign(np.ones(16))
    np.testing.assert_allclose(layer(X), expected, rtol=1e-5)


@pytest.mark.parametrize("activation", ["gelu", "relu", "swiglu", "geglu"])
def test_feed_forward_harness(activation, tmp_path):
    layer = check_layer(
        FeedForward,
        {"hidden_dim": 16, "intermediate_dim": 32, "activation": activation},
        [X],
        expected_output_shape=X.shape,
        tmp_path=tmp_path,
    )
    gated = activation in ("swiglu", "geglu")
    assert len(layer.trainable_weights) == (3 if gated else 2)


@pytest.mark.parametrize("position_encoding", POSITION_ENCODINGS)
def test_attention_harness(position_encoding, tmp_path):
    check_layer(
        CachedAttention,
        {"num_heads": 2, "key_dim": 8, "position_encoding": position_encoding},
        [X],
        {"query_segments": SEGMENTS, "key_segments": SEGMENTS},
        expected_output_shape=X.shape,
        tmp_path=tmp_path,
    )


@pytest.mark.parametrize("position_encoding", POSITION_ENCODINGS)
def test_decoder_block_harness_and_cache(position_encoding, tmp_path):
    block = check_layer(
        DecoderBlock,
        {"num_heads": 2, "key_dim": 8, "intermediate_dim": 32, "position_encoding": position_encoding},
        [X],
        {"segments": SEGMENTS},
        expected_output_shape=X.shape,
        tmp_path=tmp_path,
    )
    # Writing one token at a time into a full-length cache reproduces the full pass.
    full = block(X)
    cache = keras.ops.zeros((2, 2, 6, 2, 8))
    steps = []
    for i in range(6):
        out, cache = block(X[:, i : i + 1], cache=cache, cache_update_index=i)
        steps.append(out)
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-5)


@pytest.mark.parametrize("position_encoding", ["relative", "rotary", "t5_bias", "learned"])
def test_segments_stop_attention_across_documents(position_encoding):
    """The second packed document gives exactly what it gives alone."""
    block = DecoderBlock(2, 8, 32, position_encoding=position_encoding)
    packed = block(X, segments=SEGMENTS)
    if position_encoding == "learned":
        return  # learned positions live in the embedding, covered by the model test
    alone = block(X[:1, 3:5])
    np.testing.assert_allclose(packed[0, 3:5], alone[0], atol=1e-5)
    # And the first document is not affected by what follows it.
    np.testing.assert_allclose(packed[0, :3], block(X[:1, :3])[0], atol=1e-5)


def test_relative_attention_is_translation_invariant():
    """With relative positions, shifting a window left by k positions (same tokens, same
    distances) gives the same outputs: there is no absolute position anywhere."""
    layer = CachedAttention(2, 8, position_encoding="relative", causal=False)
    layer(X)
    layer.content_bias.assign(RNG.normal(size=(2, 8)))
    layer.position_bias.assign(RNG.normal(size=(2, 8)))
    seg = np.array([[0, 1, 1, 1, 1, 0]] * 2, dtype="int32")
    shifted = np.roll(X, -1, axis=1)
    a = layer(X, query_segments=seg, key_segments=seg)
    b = layer(shifted, query_segments=np.roll(seg, -1, axis=1), key_segments=np.roll(seg, -1, axis=1))
    np.testing.assert_allclose(a[:, 1:5], b[:, 0:4], atol=1e-5)
    # ...while the relative term does matter: zeroing W_r changes the outputs.
    layer.relative_kernel.assign(np.zeros_like(layer.relative_kernel.numpy()))
    assert not np.allclose(layer(X, query_segments=seg, key_segments=seg), a, atol=1e-4)


def test_encoder_block_harness_and_bidirectional(tmp_path):
    block = check_layer(
        EncoderBlock,
        {"num_heads": 2, "key_dim": 8, "intermediate_dim": 32, "position_encoding": "t5_bias"},
        [X],
        {"segments": np.ones((2, 6), "int32")},
        expected_output_shape=X.shape,
        tmp_path=tmp_path,
    )
    # Bidirectional: changing the last token changes the first output.
    changed = X.copy()
    changed[:, -1] += 1.0
    assert not np.allclose(block(X)[:, 0], block(changed)[:, 0])


def test_learned_positions_restart_per_segment(tmp_path):
    check_layer(LearnedPositionEmbedding, {"max_sequence_length": 8, "hidden_dim": 16}, [X], tmp_path=tmp_path)
    layer = LearnedPositionEmbedding(8, 16)
    out = layer(X, segments=SEGMENTS)
    np.testing.assert_allclose(out[0, 3], out[0, 0])  # second document starts at position 0
    np.testing.assert_array_equal(positions_from_segments(SEGMENTS), [[0, 1, 2, 0, 1, 0], [0, 1, 2, 3, 4, 5]])


def test_t5_relative_bias_buckets():
    layer = T5RelativePositionBias(num_heads=2, num_buckets=32, max_distance=128, bidirectional=True)
    layer(X)
    distances = keras.ops.convert_to_numpy(layer._bucket(keras.ops.arange(-3, 4)))
    # Keys before the query (negative relative position) use the upper half of the buckets.
    np.testing.assert_array_equal(distances, [3, 2, 1, 0, 17, 18, 19])
    causal = T5RelativePositionBias(num_heads=2, bidirectional=False)
    far = keras.ops.convert_to_numpy(causal._bucket(keras.ops.convert_to_tensor([-1000, -200, -5, 0])))
    assert far[0] == far[1] == 31 and far[2] == 5 and far[3] == 0
    assert tuple(layer(X).shape) == (1, 2, 6, 6)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"num_heads": 0, "key_dim": 8}, "num_heads"),
        ({"num_heads": 2, "key_dim": -1}, "key_dim"),
        ({"num_heads": 2, "key_dim": 8, "position_encoding": "alibi"}, "position_encoding"),
        ({"num_heads": 2, "key_dim": 7, "position_encoding": "rotary"}, "key_dim"),
    ],
)
def test_bad_attention_config_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        CachedAttention(**kwargs)


def test_bad_feed_forward_config_names_the_field():
    with pytest.raises(ValueError, match="activation"):
        FeedForward(8, 16, activation="tanh")
    with pytest.raises(ValueError, match="intermediate_dim"):
        FeedForward(8, 0)
    with pytest.raises(ValueError, match="epsilon"):
        RMSNormalization(epsilon=0)


def test_attention_projections_start_different():
    """One unseeded initializer instance reused would start Q, K, V (and W_r) identical."""
    layer = CachedAttention(2, 8, position_encoding="relative")
    layer(X)
    q, k, v = (np.asarray(d.kernel) for d in (layer.query_dense, layer.key_dense, layer.value_dense))
    assert not np.allclose(q, k) and not np.allclose(q, v) and not np.allclose(k, v)


def test_attention_kernels_are_two_dimensional():
    """Projection kernels are `[hidden, heads * key_dim]` (and back): XLA on CPU turns the
    one-token product with a reshaped 3-D kernel into a plain loop, far slower per decoded
    token (docs/benchmarks.md, Generation)."""
    layer = CachedAttention(2, 8, position_encoding="relative")
    layer(X)
    hidden = X.shape[-1]
    for dense in (layer.query_dense, layer.key_dense, layer.value_dense):
        assert tuple(dense.kernel.shape) == (hidden, 16)
    assert tuple(layer.output_dense.kernel.shape) == (16, hidden)
    assert tuple(layer.relative_table(5).shape) == (2, 8, 5)  # distances last


def test_relative_logit_paths_agree():
    """Shift (full sequence), slice (one decoded token) and gather (anything else) give the
    same relative logits."""
    layer = CachedAttention(2, 8, position_encoding="relative")
    layer(X)
    layer.position_bias.assign(RNG.normal(size=(2, 8)))
    q = keras.ops.convert_to_tensor(RNG.normal(size=(2, 6, 2, 8)).astype("float32"))
    full = np.asarray(layer._relative_logits(q, 6, 0, None))  # shift
    gathered = np.asarray(layer._relative_logits(q[:, 2:5], 6, 2, None))  # gather, offset 2
    causal = np.arange(6)[None, :] <= np.arange(2, 5)[:, None]  # entries above are masked
    np.testing.assert_allclose(gathered[..., causal], full[:, :, 2:5][..., causal], atol=1e-5)
    for i in range(6):
        one = np.asarray(layer._relative_logits(q[:, i : i + 1], 6, i, None))  # slice
        np.testing.assert_allclose(one[..., : i + 1], full[:, :, i : i + 1, : i + 1], atol=1e-5)


def test_t5_unscaled_attention_is_scaling_folded_into_the_query(tmp_path):
    """T5 (`scale_logits=False`) drops 1/sqrt(key_dim) from the logits: the same as scaled
    attention whose query kernel is multiplied by sqrt(key_dim). The query gets its own
    initializer (T5: std (hidden * key_dim)^-0.5), and both round-trip through get_config."""
    query_init = keras.initializers.VarianceScaling(1.0 / 8, "fan_in", "untruncated_normal")
    t5 = check_layer(
        CachedAttention,
        {"num_heads": 2, "key_dim": 8, "position_encoding": "t5_bias", "causal": False,
         "scale_logits": False, "query_initializer": query_init},
        [X],
        {"query_segments": SEGMENTS, "key_segments": SEGMENTS},
        expected_output_shape=X.shape,
        tmp_path=tmp_path,
    )
    assert t5.get_config()["scale_logits"] is False
    assert t5.get_config()["query_initializer"]["config"]["scale"] == 1.0 / 8
    scaled = CachedAttention(2, 8, position_encoding="t5_bias", causal=False)
    scaled(X)
    for ours, theirs in zip(t5.weights, scaled.weights):
        theirs.assign(ours.numpy())
    bias = RNG.normal(size=(1, 2, 6, 6)).astype("float32")
    unscaled = t5(X, attention_bias=bias)
    assert not np.allclose(scaled(X, attention_bias=bias), unscaled, atol=1e-4)
    scaled.query_dense.kernel.assign(t5.query_dense.kernel.numpy() * np.sqrt(8))
    np.testing.assert_allclose(scaled(X, attention_bias=bias), unscaled, atol=1e-5)
    # The query initializer is used: std (16 * 8)^-0.5 instead of Glorot's.
    big = CachedAttention(2, 64, scale_logits=False, query_initializer=query_init.__class__(1.0 / 64, "fan_in", "untruncated_normal"))
    big(X)
    assert abs(np.std(big.query_dense.kernel.numpy()) - (16 * 64) ** -0.5) < 0.1 * (16 * 64) ** -0.5


def test_block_passes_t5_attention_options_to_both_attentions():
    block = DecoderBlock(2, 8, 32, position_encoding="t5_bias", cross_attention=True, scale_attention_logits=False)
    block(X, encoder_outputs=X)
    assert block.attention.scale_logits is False and block.cross_attention_layer.scale_logits is False
    clone = DecoderBlock.from_config(block.get_config())
    assert clone.get_config() == block.get_config()
    # Gated feed-forward projections start different although they share one initializer.
    ff = FeedForward(16, 32, activation="geglu", kernel_initializer=keras.initializers.RandomNormal(stddev=1.0))
    ff(X)
    assert not np.allclose(ff.gate_dense.kernel.numpy(), ff.input_dense.kernel.numpy())


def test_t5_bias_initializer_and_distinct_tables():
    init = keras.initializers.RandomNormal(stddev=0.25)
    encoder = T5RelativePositionBias(4, num_buckets=32, embeddings_initializer=init)
    decoder = T5RelativePositionBias(4, num_buckets=32, bidirectional=False, embeddings_initializer=init)
    encoder(X), decoder(X)
    assert 0.18 < np.std(encoder.embeddings.numpy()) < 0.32
    assert not np.allclose(encoder.embeddings.numpy(), decoder.embeddings.numpy())
    clone = T5RelativePositionBias.from_config(encoder.get_config())
    assert clone.get_config() == encoder.get_config()
