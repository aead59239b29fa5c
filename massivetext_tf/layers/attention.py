"""Multi-head attention with a fixed-size key/value cache and four position schemes."""
import math

import keras
from keras import ops

from massivetext_tf.layers.position import sinusoid

POSITION_ENCODINGS = ("relative", "rotary", "learned", "t5_bias")
# Attention logits of masked positions. Large but finite, so fully masked rows (padding
# queries) stay finite; their outputs are ignored by the loss.
_MASKED_LOGIT = -1e9


def attention_mask(
    query_length,
    key_length,
    *,
    causal,
    query_offset=0,
    query_segments=None,
    key_segments=None,
):
    """Boolean `[batch or 1, query_length, key_length]` mask: True where attention is allowed.

    `causal` lets query `i` (at absolute position `query_offset + i`) see keys `j <= i`.
    Segments (int, 0 = padding) stop attention across packed documents and to padding;
    a 0/1 padding mask is the one-segment special case.
    """
    mask = None
    if causal:
        q = ops.arange(query_length, dtype="int32")[:, None] + query_offset
        k = ops.arange(key_length, dtype="int32")[None, :]
        mask = ops.expand_dims(ops.greater_equal(q, k), 0)
    if key_segments is not None:
        key_segments = ops.cast(key_segments, "int32")
        allowed = ops.not_equal(key_segments, 0)[:, None, :]
        if query_segments is not None:
            query_segments = ops.cast(query_segments, "int32")
            same = ops.equal(query_segments[:, :, None], key_segments[:, None, :])
            allowed = ops.logical_and(allowed, same)
        mask = allowed if mask is None else ops.logical_and(mask, allowed)
    return mask


def _causal_shift(scores):
    """Transformer-XL's relative shift: `scores[..., i, r]` (query i, distance r) to
    `out[..., i, j] = scores[..., i, i - j]` for `j <= i`, by padding and reshaping only.
    Entries above the diagonal are garbage and must be masked."""
    b, n, t = ops.shape(scores)[0], ops.shape(scores)[1], ops.shape(scores)[2]
    x = ops.flip(scores, axis=-1)  # column c: distance t - 1 - c
    x = ops.pad(x, [[0, 0], [0, 0], [0, 0], [1, 0]])
    x = ops.reshape(x, (b, n, t + 1, t))[:, :, 1:, :]
    return ops.reshape(x, (b, n, t, t))


@keras.saving.register_keras_serializable(package="massivetext_tf")
class CachedAttention(keras.layers.Layer):
    """Multi-head attention with a preallocated key/value cache.

    Position schemes (`position_encoding`):
        - `"relative"`: Transformer-XL relative encoding (Dai et al. 2019), what Gopher and
          Chinchilla use: `logit = (q + u)·k + (q + v)·W_r·R_{i-j}` with a per-layer
          projection `W_r` of sinusoid relative-position features and two learned biases.
        - `"rotary"`: rotary embeddings on queries and keys (keras-hub's RotaryEmbedding).
        - `"learned"` / `"t5_bias"` / `None`: nothing inside the layer (absolute positions are
          added to the embeddings; the T5 bias is passed in as `attention_bias`).

    The cache has shape `[batch, 2, max_length, num_heads, key_dim]` and is written with
    `slice_update` at `cache_update_index`, so shapes never grow inside a compiled loop.

    Args:
        num_heads: number of heads.
        key_dim: size of each head's keys, queries and values.
        position_encoding: one of `POSITION_ENCODINGS` or None.
        causal: whether query `i` only sees keys `<= i` (self-attention in a decoder).
        dropout: dropout rate on attention probabilities.
        max_wavelength: rotary / sinusoid base wavelength.
        kernel_initializer: initializer for the projections.
        scale_logits: divide the attention logits by `sqrt(key_dim)` (Vaswani et al.,
            Gopher). T5 does not: it folds that scale into the query initialization.
        query_initializer: initializer for the query projection (default:
            `kernel_initializer`); T5 uses a normal of std `(hidden * key_dim)^-0.5`.

    Call arguments:
        query: `[batch, q_len, hidden]`.
        key_value: `[batch, k_len, hidden]` for cross-attention; defaults to `query`.
        query_segments, key_segments: int `[batch, len]` segment ids (0 = padding). With
            both given, a query only sees keys of its own segment (also in cross-attention,
            so packed source/target pairs stay paired).
        attention_bias: float bias broadcastable to `[batch, heads, q_len, k_len]`.
        cache: `[batch, 2, max_length, heads, key_dim]` key/value cache, or None.
        cache_update_index: where to write this call's keys/values in the cache. With a
            cache but no index, the cache is used as is (precomputed cross-attention).
        relative_table: precomputed `relative_table(n)` (saves recomputing it per step).
        training: dropout switch.

    Returns:
        The attention output `[batch, q_len, hidden]`, and the updated cache if one was given.

    Example:
    >>> layer = CachedAttention(num_heads=2, key_dim=4, position_encoding="relative")
    >>> layer(keras.ops.ones((1, 3, 8))).shape
    (1, 3, 8)

    References:
        Dai et al., "Transformer-XL", 2019. Su et al., "RoFormer", 2021.
        Rae et al., "Scaling Language Models: ... Training Gopher", 2021.
    """

    def __init__(
        self,
        num_heads,
        key_dim,
        position_encoding="relative",
        causal=True,
        dropout=0.0,
        max_wavelength=10000.0,
        kernel_initializer="glorot_uniform",
        scale_logits=True,
        query_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if position_encoding not in POSITION_ENCODINGS + (None,):
            raise ValueError(
                f"`position_encoding` must be one of {POSITION_ENCODINGS}, "
                f"got {position_encoding!r}."
            )
        for field, value in (("num_heads", num_heads), ("key_dim", key_dim)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"`{field}` must be a positive integer, got {value!r}.")
        if position_encoding == "rotary" and key_dim % 2:
            raise ValueError(f"`key_dim` must be even for rotary positions, got {key_dim}.")
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.position_encoding = position_encoding
        self.causal = causal
        self.dropout = dropout
        self.max_wavelength = max_wavelength
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.scale_logits = scale_logits
        self.query_initializer = None if query_initializer is None else keras.initializers.get(query_initializer)
        self.rotary = None
        if position_encoding == "rotary":
            from keras_hub.layers import RotaryEmbedding

            self.rotary = RotaryEmbedding(
                max_wavelength=max_wavelength, dtype=self.dtype_policy, name="rotary"
            )
        self.dropout_layer = keras.layers.Dropout(dropout, dtype=self.dtype_policy)

    def _initializer(self, init=None):
        """A fresh copy of an initializer (default: the kernel initializer): one unseeded
        instance called twice returns the same values, which would start Q, K and V identical."""
        init = init or self.kernel_initializer
        return init.__class__.from_config(init.get_config())

    def _projection(self, name, equation, output_shape, initializer=None):
        return keras.layers.EinsumDense(
            equation,
            output_shape=output_shape,
            kernel_initializer=self._initializer(initializer),
            dtype=self.dtype_policy,
            name=name,
        )

    def build(self, query_shape, key_value_shape=None):
        hidden = query_shape[-1]
        self.hidden_dim = hidden
        kv_shape = key_value_shape or query_shape
        # Two-dimensional kernels `[hidden, heads * key_dim]`, heads split by a reshape after
        # the product. With a `[hidden, heads, key_dim]` kernel XLA on CPU fuses the kernel's
        # reshape into a one-token (matrix-vector) product and emits it as a plain loop, which
        # made every decoded token pay for it (docs/benchmarks.md, Generation).
        width = self.num_heads * self.key_dim
        self.query_dense = self._projection("query", "btd,de->bte", (None, width), self.query_initializer)
        self.key_dense = self._projection("key", "btd,de->bte", (None, width))
        self.value_dense = self._projection("value", "btd,de->bte", (None, width))
        self.output_dense = self._projection("attention_output", "bte,ed->btd", (None, hidden))
        self.query_dense.build(query_shape)
        self.key_dense.build(kv_shape)
        self.value_dense.build(kv_shape)
        self.output_dense.build((None, None, width))
        if self.position_encoding == "relative":
            self.relative_kernel = self.add_weight(
                name="relative_kernel",
                shape=(hidden, self.num_heads, self.key_dim),
                initializer=self._initializer(),
            )
            self.content_bias = self.add_weight(
                name="content_bias", shape=(self.num_heads, self.key_dim), initializer="zeros"
            )
            self.position_bias = self.add_weight(
                name="position_bias", shape=(self.num_heads, self.key_dim), initializer="zeros"
            )
        self.built = True

    def relative_table(self, num_distances, bidirectional=False):
        """Projected relative-position features `[heads, key_dim, n]` for distances
        `0..n-1` (causal) or `-(n-1)..n-1` (bidirectional). Distances last: the layout the
        score product `[.., key_dim] x [key_dim, n]` reads without a transpose, which matters
        when the table is computed once and reused for every decoded token."""
        if bidirectional:
            distances = ops.arange(-(num_distances - 1), num_distances, dtype="int32")
        else:
            distances = ops.arange(num_distances, dtype="int32")
        features = ops.cast(sinusoid(distances, self.hidden_dim, self.max_wavelength), self.compute_dtype)
        return ops.einsum("rd,dnh->nhr", features, ops.cast(self.relative_kernel, self.compute_dtype))

    def _split_heads(self, x):
        """`[batch, length, heads * key_dim]` -> `[batch, length, heads, key_dim]`."""
        return ops.reshape(x, (ops.shape(x)[0], -1, self.num_heads, self.key_dim))

    def key_values(self, source, offset=0):
        """Keys and values `[batch, length, heads, key_dim]` of `source` (rotary keys rotated
        as positions `offset, offset + 1, ...`)."""
        key = self._split_heads(self.key_dense(source))
        value = self._split_heads(self.value_dense(source))
        if self.rotary is not None:
            key = self.rotary(key, start_index=offset)
        return key, value

    def _relative_logits(self, query, key_length, query_offset, relative_table):
        """(q + v)·W_r·R_{i-j} for every query i and key j: `[batch, heads, q, k]`.

        Three exact ways to line distances up with keys, picked from static shapes:
        a full causal sequence uses Transformer-XL's pad-and-reshape shift, one decoded
        token uses a dynamic slice of its reversed scores, anything else a gather.
        """
        bidirectional = not self.causal
        if relative_table is None:
            # Queries never sit past the last key (self-attention, or a cache holding
            # every position), so key_length distances cover all unmasked pairs.
            relative_table = self.relative_table(key_length, bidirectional=bidirectional)
        q = query + ops.cast(self.position_bias, query.dtype)
        scores = ops.einsum("bqnh,nhr->bnqr", q, relative_table)  # column r: distance r
        query_length = query.shape[1]
        static_keys = key_length if isinstance(key_length, int) else None
        if not bidirectional and isinstance(query_offset, int) and query_offset == 0 and (
            query_length is not None and query_length == static_keys == relative_table.shape[-1]
        ):
            return _causal_shift(scores)
        if not bidirectional and query_length == 1:
            # Key j sits at distance offset - j: reverse the scores, pad, slice from the offset.
            n = ops.shape(scores)[-1]
            flipped = ops.flip(scores, axis=-1)
            flipped = ops.pad(flipped, [[0, 0], [0, 0], [0, 0], [0, key_length]])
            start = n - 1 - query_offset
            return ops.slice(flipped, [0, 0, 0, start], [ops.shape(scores)[0], self.num_heads, 1, key_length])
        num_distances = ops.shape(relative_table)[-1]
        q_pos = ops.arange(ops.shape(query)[1], dtype="int32")[:, None] + query_offset
        k_pos = ops.arange(key_length, dtype="int32")[None, :]
        distance = q_pos - k_pos
        if bidirectional:
            distance = distance + (num_distances - 1) // 2
        # Negative causal distances are masked anyway; clip them to a valid index.
        distance = ops.clip(distance, 0, num_distances - 1)
        # Gather along distances with one flat `[q * k]` int32 index shared by every batch row
        # and head (a broadcast index would be [b, h, q, k], huge as a constant in converted
        # graphs): rows of `[q * distances, b * h]` are picked at `query * distances + distance`.
        b, n, q_len = ops.shape(scores)[0], ops.shape(scores)[1], ops.shape(scores)[2]
        by_query = ops.transpose(ops.reshape(scores, (b * n, q_len * num_distances)), (1, 0))
        rows = ops.arange(q_len, dtype="int32")[:, None] * num_distances + ops.cast(distance, "int32")
        picked = ops.take(by_query, ops.reshape(rows, (-1,)), axis=0)  # [q * k, b * n]
        return ops.reshape(ops.transpose(picked, (1, 0)), (b, n, q_len, key_length))

    def call(
        self,
        query,
        key_value=None,
        query_segments=None,
        key_segments=None,
        attention_bias=None,
        cache=None,
        cache_update_index=None,
        relative_table=None,
        training=None,
    ):
        is_cross = key_value is not None
        source = key_value if is_cross else query
        q = self._split_heads(self.query_dense(query))
        offset = 0 if cache_update_index is None else cache_update_index
        if cache is not None and cache_update_index is None:
            key, value = cache[:, 0, ...], cache[:, 1, ...]
        else:
            key, value = self.key_values(source, offset)
            if cache is not None:
                start = [0, cache_update_index, 0, 0]
                key = ops.slice_update(cache[:, 0, ...], start, key)
                value = ops.slice_update(cache[:, 1, ...], start, value)
                cache = ops.stack((key, value), axis=1)
        if self.rotary is not None:
            q = self.rotary(q, start_index=offset)

        key_length = ops.shape(key)[1]
        query_offset = 0 if is_cross else offset
        content_q = q
        if self.position_encoding == "relative" and not is_cross:
            content_q = q + ops.cast(self.content_bias, q.dtype)
        logits = ops.einsum("bqnh,bknh->bnqk", content_q, key)
        if self.position_encoding == "relative" and not is_cross:
            logits = logits + self._relative_logits(q, key_length, query_offset, relative_table)
        # Softmax in float32 (as Gopher does), whatever the compute dtype.
        logits = ops.cast(logits, "float32")
        if self.scale_logits:
            logits = logits / math.sqrt(self.key_dim)
        if attention_bias is not None:
            logits = logits + ops.cast(attention_bias, "float32")
        mask = attention_mask(
            ops.shape(q)[1],
            key_length,
            causal=self.causal and not is_cross,
            query_offset=query_offset,
            query_segments=query_segments,
            key_segments=key_segments,
        )
        if mask is not None:
            logits = ops.where(mask[:, None, :, :], logits, _MASKED_LOGIT)
        probs = ops.cast(ops.softmax(logits, axis=-1), self.compute_dtype)
        probs = self.dropout_layer(probs, training=training)
        output = ops.einsum("bnqk,bknh->bqnh", probs, value)
        output = self.output_dense(
            ops.reshape(output, (ops.shape(output)[0], -1, self.num_heads * self.key_dim))
        )
        if cache is not None:
            return output, cache
        return output

    def compute_output_shape(self, query_shape, key_value_shape=None):
        return query_shape

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "key_dim": self.key_dim,
            "position_encoding": self.position_encoding,
            "causal": self.causal,
            "dropout": self.dropout,
            "max_wavelength": self.max_wavelength,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "scale_logits": self.scale_logits,
            "query_initializer": (
                None if self.query_initializer is None else keras.initializers.serialize(self.query_initializer)
            ),
        }
