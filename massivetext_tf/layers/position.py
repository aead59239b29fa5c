"""Position encodings that are not part of an attention layer's own weights.

* `sinusoid(positions, dim)`: Transformer-XL's sinusoid table of (relative) positions.
* `T5RelativePositionBias`: T5's bucketed relative attention bias, one per stack.
* `LearnedPositionEmbedding`: absolute learned positions (restarting per packed segment).
* `positions_from_segments`: position of every token inside its packed segment.
"""
import math

import keras
from keras import ops


def sinusoid(positions, dim, max_wavelength=10000.0):
    """`[len(positions), dim]` table of `[sin(p / w_i), cos(p / w_i)]` (Vaswani et al.)."""
    positions = ops.cast(positions, "float32")
    inv_freq = 1.0 / (max_wavelength ** (ops.arange(0, dim, 2, dtype="float32") / dim))
    angles = positions[:, None] * inv_freq[None, :]
    return ops.concatenate([ops.sin(angles), ops.cos(angles)], axis=-1)


def positions_from_segments(segment_ids):
    """Position of each token inside its segment: `[[1,1,1,2,2,0]] -> [[0,1,2,0,1,0]]`.

    Segments are runs of equal ids along the last axis (packed documents). XLA-friendly:
    static shapes, no loops.
    """
    segment_ids = ops.convert_to_tensor(segment_ids)
    batch, length = ops.shape(segment_ids)[0], ops.shape(segment_ids)[-1]
    index = ops.broadcast_to(ops.arange(length, dtype="int32")[None, :], ops.shape(segment_ids))
    is_start = ops.concatenate(
        [
            ops.ones_like(segment_ids[:, :1], dtype="bool"),
            ops.not_equal(segment_ids[:, 1:], segment_ids[:, :-1]),
        ],
        axis=1,
    )
    # Number each run 0, 1, ... per row, then find each run's first index with one
    # segment-max over the flattened batch (only a run's first token carries its index).
    run = ops.cumsum(ops.cast(is_start, "int32"), axis=1) - 1
    flat_run = ops.reshape(run + ops.arange(batch, dtype="int32")[:, None] * length, (-1,))
    first = ops.reshape(ops.where(is_start, index, 0), (-1,))
    starts = ops.segment_max(first, flat_run, num_segments=batch * length)
    starts = ops.reshape(ops.take(starts, flat_run, axis=0), ops.shape(segment_ids))
    return ops.cast(index - starts, segment_ids.dtype)


@keras.saving.register_keras_serializable(package="massivetext_tf")
class LearnedPositionEmbedding(keras.layers.Layer):
    """Learned absolute position embedding of `max_sequence_length` positions.

    Call arguments:
        inputs: token embeddings `[batch, length, hidden_dim]` (for the shape).
        start_index: position of the first token (cached decoding).
        segments: optional int segment ids `[batch, length]`: positions restart at 0 in
            every packed segment.
    """

    def __init__(self, max_sequence_length, hidden_dim, **kwargs):
        super().__init__(**kwargs)
        self.max_sequence_length = max_sequence_length
        self.hidden_dim = hidden_dim

    def build(self, input_shape=None):
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(self.max_sequence_length, self.hidden_dim),
            initializer=keras.initializers.RandomNormal(stddev=0.02),
        )
        self.built = True

    def call(self, inputs, start_index=0, segments=None):
        if segments is not None:
            positions = positions_from_segments(ops.cast(segments, "int32"))
        else:
            length = ops.shape(inputs)[1]
            positions = ops.arange(length, dtype="int32")[None, :] + start_index
        return ops.cast(ops.take(self.embeddings, positions, axis=0), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "max_sequence_length": self.max_sequence_length,
            "hidden_dim": self.hidden_dim,
        }


@keras.saving.register_keras_serializable(package="massivetext_tf")
class T5RelativePositionBias(keras.layers.Layer):
    """T5's relative attention bias: distances bucketed (exact near, log-spaced far).

    Args:
        num_heads: attention heads (one bias per head and bucket).
        num_buckets: number of distance buckets.
        max_distance: distances beyond this share the last bucket.
        bidirectional: encoder (True) or causal decoder (False) bucketing.
        embeddings_initializer: initializer of the `[num_buckets, num_heads]` table
            (default: normal, std 0.02; T5 uses std `hidden_dim^-0.5`).

    Call arguments:
        inputs: query hidden states `[batch, query_length, ...]` (only the shape is used).
        key_length: number of keys (defaults to `query_length`).
        query_offset: absolute position of the first query (cached decoding).

    Returns:
        `[1, num_heads, query_length, key_length]` float bias added to attention logits.

    References:
        Raffel et al., "Exploring the Limits of Transfer Learning with a Unified
        Text-to-Text Transformer", 2020.
    """

    def __init__(
        self,
        num_heads,
        num_buckets=32,
        max_distance=128,
        bidirectional=True,
        embeddings_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.bidirectional = bidirectional
        self.embeddings_initializer = keras.initializers.get(
            embeddings_initializer or keras.initializers.RandomNormal(stddev=0.02)
        )

    def build(self, input_shape=None):
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(self.num_buckets, self.num_heads),
            # A fresh copy: an unseeded initializer instance shared by the encoder's and
            # the decoder's tables would give both the same values.
            initializer=self.embeddings_initializer.__class__.from_config(self.embeddings_initializer.get_config()),
        )
        self.built = True

    def _bucket(self, relative_position):
        num_buckets = self.num_buckets
        bucket = 0
        n = -relative_position
        if self.bidirectional:
            num_buckets //= 2
            bucket = ops.cast(ops.less(n, 0), "int32") * num_buckets
            n = ops.abs(n)
        else:
            n = ops.maximum(n, 0)
        max_exact = num_buckets // 2
        is_small = ops.less(n, max_exact)
        val_if_large = max_exact + ops.cast(
            ops.log(ops.maximum(ops.cast(n, "float32"), 1.0) / max_exact)
            / math.log(self.max_distance / max_exact)
            * (num_buckets - max_exact),
            "int32",
        )
        val_if_large = ops.minimum(val_if_large, num_buckets - 1)
        return bucket + ops.where(is_small, n, val_if_large)

    def call(self, inputs, key_length=None, query_offset=0):
        query_length = ops.shape(inputs)[1]
        key_length = query_length if key_length is None else key_length
        query_pos = ops.arange(query_length, dtype="int32")[:, None] + query_offset
        key_pos = ops.arange(key_length, dtype="int32")[None, :]
        buckets = self._bucket(key_pos - query_pos)  # [q, k]
        bias = ops.take(ops.cast(self.embeddings, "float32"), buckets, axis=0)  # [q, k, h]
        return ops.transpose(bias, (2, 0, 1))[None, ...]

    def compute_output_shape(self, input_shape):
        return (1, self.num_heads, input_shape[1], input_shape[1])

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "num_buckets": self.num_buckets,
            "max_distance": self.max_distance,
            "bidirectional": self.bidirectional,
            "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer),
        }
