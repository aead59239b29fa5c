"""Pre-norm transformer blocks: a decoder block (optional cross-attention) and an encoder block.

Rematerialization: a block whose `remat` attribute is True (set by the backbone's
`set_remat("block")`, a training setting, not part of the config) runs through `keras.remat`
(`tf.recompute_grad` on TensorFlow, `jax.checkpoint` on JAX): only its inputs are kept for the
backward pass, and its activations are recomputed there.
"""
import keras

from massivetext_tf.layers.attention import CachedAttention
from massivetext_tf.layers.feed_forward import FeedForward
from massivetext_tf.layers.rms_normalization import RMSNormalization


class _Block(keras.layers.Layer):
    """Shared constructor, sublayers and config of the two blocks."""

    causal = True

    def __init__(
        self,
        num_heads,
        key_dim,
        intermediate_dim,
        position_encoding="relative",
        activation="gelu",
        dropout=0.0,
        layer_norm_epsilon=1e-6,
        cross_attention=False,
        kernel_initializer="glorot_uniform",
        scale_attention_logits=True,
        query_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.intermediate_dim = intermediate_dim
        self.position_encoding = position_encoding
        self.activation = activation
        self.dropout = dropout
        self.layer_norm_epsilon = layer_norm_epsilon
        self.cross_attention = cross_attention
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.scale_attention_logits = scale_attention_logits
        self.query_initializer = None if query_initializer is None else keras.initializers.get(query_initializer)
        attention_kwargs = dict(
            kernel_initializer=self.kernel_initializer,
            scale_logits=scale_attention_logits,
            query_initializer=self.query_initializer,
            dtype=self.dtype_policy,
        )
        norm = lambda name: RMSNormalization(layer_norm_epsilon, dtype=self.dtype_policy, name=name)
        self.attention_norm = norm("attention_norm")
        self.attention = CachedAttention(
            num_heads,
            key_dim,
            position_encoding=position_encoding,
            causal=self.causal,
            dropout=dropout,
            name="attention",
            **attention_kwargs,
        )
        if cross_attention:
            self.cross_attention_norm = norm("cross_attention_norm")
            self.cross_attention_layer = CachedAttention(
                num_heads,
                key_dim,
                position_encoding=None,
                causal=False,
                dropout=dropout,
                name="cross_attention",
                **attention_kwargs,
            )
        self.feed_forward_norm = norm("feed_forward_norm")
        self.feed_forward = None  # built once the width is known
        self.residual_dropout = keras.layers.Dropout(dropout, dtype=self.dtype_policy)
        # Recompute this block in the backward pass (`set_remat`); not serialized.
        self.remat = False

    def _run(self, args):
        """`self._forward(**args)`, through `keras.remat` when `self.remat` is set and no
        cache is passed (cached decoding is never rematerialized). `keras.remat`
        differentiates only positional arguments, so the float tensors gradients flow to
        (`_FLOAT_ARGS`) become positional; masks and flags are closed over.

        Dropout would draw new masks when the block is recomputed, so the gradient would not
        be the gradient of the forward pass: refused."""
        if not self.remat or args.get("cache") is not None or args.get("cross_attention_cache") is not None:
            return self._forward(**args)
        if args["training"] and self.dropout > 0:
            raise ValueError(
                f"remat: block rematerialization needs dropout 0 in training ({self.name} has "
                f"dropout {self.dropout}): the recomputed block would draw new dropout masks"
            )
        floats = [name for name in _FLOAT_ARGS if args.get(name) is not None]
        forward = lambda *values: self._forward(**{**args, **dict(zip(floats, values))})
        return keras.remat(forward)(*(args[name] for name in floats))

    def build(self, x_shape, encoder_outputs_shape=None):
        input_shape = x_shape
        hidden = input_shape[-1]
        self.feed_forward = FeedForward(
            hidden,
            self.intermediate_dim,
            activation=self.activation,
            dropout=self.dropout,
            kernel_initializer=self.kernel_initializer,
            dtype=self.dtype_policy,
            name="feed_forward",
        )
        for layer in (self.attention_norm, self.feed_forward_norm, self.feed_forward):
            layer.build(input_shape)
        self.attention.build(input_shape)
        if self.cross_attention:
            self.cross_attention_norm.build(input_shape)
            self.cross_attention_layer.build(input_shape, encoder_outputs_shape or input_shape)
        self.built = True

    def compute_output_shape(self, x_shape, *args, **kwargs):
        return x_shape

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "key_dim": self.key_dim,
            "intermediate_dim": self.intermediate_dim,
            "position_encoding": self.position_encoding,
            "activation": self.activation,
            "dropout": self.dropout,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "cross_attention": self.cross_attention,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "scale_attention_logits": self.scale_attention_logits,
            "query_initializer": (
                None if self.query_initializer is None else keras.initializers.serialize(self.query_initializer)
            ),
        }


@keras.saving.register_keras_serializable(package="massivetext_tf")
class DecoderBlock(_Block):
    """`x += SelfAttention(Norm(x)); [x += CrossAttention(Norm(x), enc)]; x += FFN(Norm(x))`.

    Args:
        num_heads, key_dim: attention heads and per-head size.
        intermediate_dim: feed-forward inner width.
        position_encoding: `"relative"`, `"rotary"`, `"learned"` or `"t5_bias"`.
        activation: feed-forward activation (`"gelu"`, `"relu"`, `"swiglu"`, `"geglu"`).
        dropout: dropout on attention probabilities, inner activations and residual branches.
        layer_norm_epsilon: RMSNorm epsilon.
        cross_attention: add a cross-attention sublayer (encoder-decoder models).
        kernel_initializer: initializer of every projection.
        scale_attention_logits: divide attention logits by `sqrt(key_dim)` (T5: False).
        query_initializer: initializer of the query projections (default:
            `kernel_initializer`).

    Call arguments:
        x: `[batch, length, hidden]`.
        segments: int `[batch, length]` segment ids / padding mask of `x` (0 = padding).
        attention_bias: T5 relative bias for self-attention.
        cache, cache_update_index: self-attention key/value cache (see `CachedAttention`).
        relative_table: precomputed Transformer-XL table for cached decoding.
        encoder_outputs, encoder_segments: what cross-attention attends to, and its mask.
        cross_attention_cache: precomputed cross-attention keys/values.

    Returns:
        `x`, or `(x, cache)` with a cache, or `(x, cache, cross_attention_cache)` with both.
    """

    def call(self, x, segments=None, attention_bias=None, cache=None, cache_update_index=None,
             relative_table=None, encoder_outputs=None, encoder_segments=None,
             cross_attention_cache=None, training=None):
        return self._run(dict(
            x=x, segments=segments, attention_bias=attention_bias, cache=cache,
            cache_update_index=cache_update_index, relative_table=relative_table,
            encoder_outputs=encoder_outputs, encoder_segments=encoder_segments,
            cross_attention_cache=cross_attention_cache, training=training,
        ))

    def _forward(
        self,
        x,
        segments=None,
        attention_bias=None,
        cache=None,
        cache_update_index=None,
        relative_table=None,
        encoder_outputs=None,
        encoder_segments=None,
        cross_attention_cache=None,
        training=None,
    ):
        drop = lambda h: self.residual_dropout(h, training=training)
        h = self.attention(
            self.attention_norm(x),
            query_segments=segments,
            key_segments=segments,
            attention_bias=attention_bias,
            cache=cache,
            cache_update_index=cache_update_index,
            relative_table=relative_table,
            training=training,
        )
        if cache is not None:
            h, cache = h
        x = x + drop(h)
        if self.cross_attention:
            h = self.cross_attention_layer(
                self.cross_attention_norm(x),
                key_value=encoder_outputs,
                query_segments=None if encoder_segments is None else segments,
                key_segments=encoder_segments,
                cache=cross_attention_cache,
                training=training,
            )
            if cross_attention_cache is not None:
                h, cross_attention_cache = h
            x = x + drop(h)
        x = x + drop(self.feed_forward(self.feed_forward_norm(x), training=training))
        if cache is None:
            return x
        if self.cross_attention:
            return x, cache, cross_attention_cache
        return x, cache


@keras.saving.register_keras_serializable(package="massivetext_tf")
class EncoderBlock(_Block):
    """`x += SelfAttention(Norm(x)); x += FFN(Norm(x))`, attending in both directions.

    Arguments as `DecoderBlock` (no cross-attention, no cache).

    Call arguments:
        x: `[batch, length, hidden]`.
        segments: int `[batch, length]` padding mask / segment ids (0 = padding).
        attention_bias: T5 relative bias.
    """

    causal = False

    def __init__(self, *args, **kwargs):
        kwargs.pop("cross_attention", None)
        super().__init__(*args, cross_attention=False, **kwargs)

    def build(self, x_shape):
        super().build(x_shape)

    def call(self, x, segments=None, attention_bias=None, training=None):
        return self._run(dict(x=x, segments=segments, attention_bias=attention_bias, training=training))

    def _forward(self, x, segments, attention_bias, training):
        h = self.attention(
            self.attention_norm(x),
            query_segments=segments,
            key_segments=segments,
            attention_bias=attention_bias,
            training=training,
        )
        x = x + self.residual_dropout(h, training=training)
        x = x + self.residual_dropout(
            self.feed_forward(self.feed_forward_norm(x), training=training), training=training
        )
        return x


def set_remat(blocks, mode):
    """Turns block rematerialization on (`mode="block"`) or off (`"none"`) for `blocks`."""
    if mode not in REMAT_MODES:
        raise ValueError(f"remat: {mode!r} is not one of {', '.join(REMAT_MODES)}")
    for block in blocks:
        block.remat = mode == "block"


REMAT_MODES = ("none", "block")
# The float inputs of a block that gradients flow to: what `keras.remat` differentiates.
_FLOAT_ARGS = ("x", "attention_bias", "encoder_outputs")
