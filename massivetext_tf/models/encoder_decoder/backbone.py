"""Encoder-decoder backbone (T5-style) on the project's pre-norm blocks."""
import keras
from keras_hub.models import Backbone

from massivetext_tf.layers import (
    DecoderBlock,
    EncoderBlock,
    LearnedPositionEmbedding,
    RMSNormalization,
    T5RelativePositionBias,
    set_remat,
)


@keras.saving.register_keras_serializable(package="massivetext_tf")
class EncoderDecoderBackbone(Backbone):
    """A bidirectional encoder stack and a causal decoder stack with cross-attention.

    Both stacks share one token embedding (also the output projection when
    `tie_word_embeddings`), use pre-norm blocks with RMSNorm, and end in an RMSNorm.
    Positions follow `position_encoding`:

    - `"t5_bias"` (T5): one `T5RelativePositionBias` per stack, bidirectional buckets in
      the encoder, causal buckets in the decoder, shared by every layer of the stack.
    - `"relative"` (Transformer-XL): per-layer relative projections in self-attention.
    - `"rotary"`: rotary queries/keys in self-attention.
    - `"learned"`: one learned absolute table per stack, restarting in every segment.

    Cross-attention never carries positions.

    T5 itself (Raffel et al.; the `t5_*` presets) does not divide attention logits by
    `sqrt(key_value_dim)` and, with tied embeddings, multiplies the decoder output by
    `hidden_dim^-0.5` before the output projection: `scale_attention_logits=False`,
    `rescale_tied_output=True`. Without logit scaling the model also takes T5's
    initialization (normals of std: embeddings 1.0, query `(hidden_dim·key_value_dim)^-0.5`,
    every other projection `fan_in^-0.5`, relative bias `hidden_dim^-0.5`); with it, the
    earlier one (Glorot-uniform projections, std 0.02 embeddings and bias). The defaults
    (`True`, `False`) are the earlier T5-style behaviour, so configs saved before these
    fields existed still compute what they were trained to compute.

    Args:
        vocabulary_size: token vocabulary size (shared by both stacks).
        num_encoder_layers, num_decoder_layers: blocks per stack.
        num_heads: attention heads.
        hidden_dim: model width (d_model).
        intermediate_dim: feed-forward width.
        key_value_dim: per-head size (defaults to `hidden_dim // num_heads`).
        max_sequence_length: longest encoder or decoder sequence (learned positions).
        position_encoding: `"t5_bias"`, `"relative"`, `"rotary"` or `"learned"`.
        activation: feed-forward activation.
        dropout: dropout rate.
        layer_norm_epsilon: RMSNorm epsilon.
        tie_word_embeddings: share input embedding and output projection.
        relative_attention_num_buckets, relative_attention_max_distance: T5 bias buckets.
        scale_attention_logits: divide attention logits by `sqrt(key_value_dim)` (T5: False;
            False also selects T5's initialization).
        rescale_tied_output: with `tie_word_embeddings`, multiply the decoder output by
            `hidden_dim^-0.5` before the tied output projection (T5 v1.0: True). No effect
            when untied.
        dtype: dtype policy, e.g. `"mixed_bfloat16"`.

    Inputs: int32 `[batch, length]` tensors `encoder_token_ids`, `encoder_padding_mask`,
    `decoder_token_ids`, `decoder_padding_mask`. A padding mask may hold segment ids of
    packed sequences (0 = padding): self-attention stays inside a segment.

    Outputs: `{"encoder_sequence_output", "decoder_sequence_output"}`, both
    `[batch, length, hidden_dim]` (after each stack's final RMSNorm).

    Example:
    >>> backbone = EncoderDecoderBackbone(vocabulary_size=100, num_encoder_layers=1,
    ...     num_decoder_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=32)
    >>> ones = keras.ops.ones((1, 4), "int32")
    >>> out = backbone({"encoder_token_ids": ones, "encoder_padding_mask": ones,
    ...                 "decoder_token_ids": ones, "decoder_padding_mask": ones})
    >>> out["decoder_sequence_output"].shape
    (1, 4, 16)

    References:
        Raffel et al., "Exploring the Limits of Transfer Learning with a Unified
        Text-to-Text Transformer", 2020. Vaswani et al., "Attention Is All You Need", 2017.
    """

    def __init__(
        self,
        vocabulary_size,
        num_encoder_layers,
        num_decoder_layers,
        num_heads,
        hidden_dim,
        intermediate_dim,
        key_value_dim=None,
        max_sequence_length=512,
        position_encoding="t5_bias",
        activation="relu",
        dropout=0.0,
        layer_norm_epsilon=1e-6,
        tie_word_embeddings=True,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        scale_attention_logits=True,
        rescale_tied_output=False,
        dtype=None,
        **kwargs,
    ):
        key_value_dim = key_value_dim or hidden_dim // num_heads
        init = _initializers(hidden_dim, key_value_dim, t5=not scale_attention_logits)
        # === Layers ===
        self.token_embedding = keras.layers.ReversibleEmbedding(
            vocabulary_size,
            hidden_dim,
            tie_weights=tie_word_embeddings,
            embeddings_initializer=init["embeddings"],
            dtype=dtype,
            name="token_embedding",
        )
        self.encoder_position_embedding = self.decoder_position_embedding = None
        self.encoder_position_bias = self.decoder_position_bias = None
        if position_encoding == "learned":
            self.encoder_position_embedding, self.decoder_position_embedding = (
                LearnedPositionEmbedding(max_sequence_length, hidden_dim, dtype=dtype, name=f"{s}_position_embedding")
                for s in ("encoder", "decoder")
            )
        if position_encoding == "t5_bias":
            self.encoder_position_bias, self.decoder_position_bias = (
                T5RelativePositionBias(
                    num_heads,
                    num_buckets=relative_attention_num_buckets,
                    max_distance=relative_attention_max_distance,
                    bidirectional=s == "encoder",
                    embeddings_initializer=init["position_bias"],
                    dtype=dtype,
                    name=f"{s}_position_bias",
                )
                for s in ("encoder", "decoder")
            )
        block_kwargs = dict(
            position_encoding=position_encoding,
            activation=activation,
            dropout=dropout,
            layer_norm_epsilon=layer_norm_epsilon,
            kernel_initializer=init["kernel"],
            scale_attention_logits=scale_attention_logits,
            query_initializer=init["query"],
            dtype=dtype,
        )
        self.encoder_embeddings_dropout = keras.layers.Dropout(
            dropout, dtype=dtype, name="encoder_embeddings_dropout"
        )
        self.encoder_transformer_layers = [
            EncoderBlock(num_heads, key_value_dim, intermediate_dim, name=f"encoder_layer_{i}", **block_kwargs)
            for i in range(num_encoder_layers)
        ]
        self.encoder_layer_norm = RMSNormalization(layer_norm_epsilon, dtype=dtype, name="encoder_final_norm")
        self.decoder_embeddings_dropout = keras.layers.Dropout(
            dropout, dtype=dtype, name="decoder_embeddings_dropout"
        )
        self.decoder_transformer_layers = [
            DecoderBlock(
                num_heads,
                key_value_dim,
                intermediate_dim,
                cross_attention=True,
                name=f"decoder_layer_{i}",
                **block_kwargs,
            )
            for i in range(num_decoder_layers)
        ]
        self.decoder_layer_norm = RMSNormalization(layer_norm_epsilon, dtype=dtype, name="decoder_final_norm")

        # === Functional Model ===
        encoder_token_ids = keras.Input(shape=(None,), dtype="int32", name="encoder_token_ids")
        encoder_padding_mask = keras.Input(shape=(None,), dtype="int32", name="encoder_padding_mask")
        decoder_token_ids = keras.Input(shape=(None,), dtype="int32", name="decoder_token_ids")
        decoder_padding_mask = keras.Input(shape=(None,), dtype="int32", name="decoder_padding_mask")

        x = self.encoder_embed(encoder_token_ids, segments=encoder_padding_mask)
        bias = self.encoder_position_bias(x) if self.encoder_position_bias is not None else None
        for layer in self.encoder_transformer_layers:
            x = layer(x, segments=encoder_padding_mask, attention_bias=bias)
        encoder_output = self.encoder_layer_norm(x)

        x = self.decoder_embed(decoder_token_ids, segments=decoder_padding_mask)
        bias = self.decoder_position_bias(x) if self.decoder_position_bias is not None else None
        for layer in self.decoder_transformer_layers:
            x = layer(
                x,
                segments=decoder_padding_mask,
                attention_bias=bias,
                encoder_outputs=encoder_output,
                encoder_segments=encoder_padding_mask,
            )
        decoder_output = self.decoder_layer_norm(x)
        super().__init__(
            inputs={
                "encoder_token_ids": encoder_token_ids,
                "encoder_padding_mask": encoder_padding_mask,
                "decoder_token_ids": decoder_token_ids,
                "decoder_padding_mask": decoder_padding_mask,
            },
            outputs={
                "encoder_sequence_output": encoder_output,
                "decoder_sequence_output": decoder_output,
            },
            dtype=dtype,
            **kwargs,
        )

        # === Config ===
        self.vocabulary_size = vocabulary_size
        self.num_encoder_layers = num_encoder_layers
        self.num_decoder_layers = num_decoder_layers
        self.num_heads = num_heads
        self.hidden_dim = hidden_dim
        self.intermediate_dim = intermediate_dim
        self.key_value_dim = key_value_dim
        self.max_sequence_length = max_sequence_length
        self.position_encoding = position_encoding
        self.activation = activation
        self.dropout = dropout
        self.layer_norm_epsilon = layer_norm_epsilon
        self.tie_word_embeddings = tie_word_embeddings
        self.relative_attention_num_buckets = relative_attention_num_buckets
        self.relative_attention_max_distance = relative_attention_max_distance
        self.scale_attention_logits = scale_attention_logits
        self.rescale_tied_output = rescale_tied_output

    def encoder_embed(self, token_ids, segments=None):
        """Token (+ learned position) embedding of encoder tokens, then dropout."""
        x = self.token_embedding(token_ids)
        if self.encoder_position_embedding is not None:
            x = x + self.encoder_position_embedding(x, segments=segments)
        return self.encoder_embeddings_dropout(x)

    def decoder_embed(self, token_ids, segments=None, start_index=0):
        """Token (+ learned position) embedding of decoder tokens, then dropout.

        `start_index` is the position of `token_ids[:, 0]` in cached decoding (then no
        `segments`); with `segments`, learned positions restart in every segment.
        """
        x = self.token_embedding(token_ids)
        if self.decoder_position_embedding is not None:
            x = x + self.decoder_position_embedding(x, start_index=start_index, segments=segments)
        return self.decoder_embeddings_dropout(x)

    def token_logits(self, hidden_states):
        """Vocabulary logits of decoder outputs (after the final norm): the output
        projection, preceded by T5's `hidden_dim^-0.5` rescale when tied and
        `rescale_tied_output`."""
        if self.tie_word_embeddings and self.rescale_tied_output:
            hidden_states = hidden_states * self.hidden_dim**-0.5
        return self.token_embedding(hidden_states, reverse=True)

    def set_remat(self, mode):
        """`"block"`: recompute each encoder and decoder block's activations in the backward
        pass (only block inputs are kept); `"none"`: keep them all (default). A training
        setting (`runtime.remat`), not saved in the config; cached decoding is never
        rematerialized."""
        set_remat(self.encoder_transformer_layers + self.decoder_transformer_layers, mode)

    def get_config(self):
        return {
            **super().get_config(),
            "vocabulary_size": self.vocabulary_size,
            "num_encoder_layers": self.num_encoder_layers,
            "num_decoder_layers": self.num_decoder_layers,
            "num_heads": self.num_heads,
            "hidden_dim": self.hidden_dim,
            "intermediate_dim": self.intermediate_dim,
            "key_value_dim": self.key_value_dim,
            "max_sequence_length": self.max_sequence_length,
            "position_encoding": self.position_encoding,
            "activation": self.activation,
            "dropout": self.dropout,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "tie_word_embeddings": self.tie_word_embeddings,
            "relative_attention_num_buckets": self.relative_attention_num_buckets,
            "relative_attention_max_distance": self.relative_attention_max_distance,
            "scale_attention_logits": self.scale_attention_logits,
            "rescale_tied_output": self.rescale_tied_output,
        }


def _initializers(hidden_dim, key_value_dim, t5):
    """Initializers of the backbone's weights: T5's (`t5=True`) or the earlier ones."""
    normal = keras.initializers.RandomNormal
    if not t5:
        return {
            "embeddings": normal(stddev=0.02),
            "position_bias": normal(stddev=0.02),
            "kernel": "glorot_uniform",
            "query": None,
        }
    # T5 (Mesh TensorFlow / HuggingFace `_init_weights`): every projection a normal of std
    # fan_in^-0.5 (K, V, feed-forward in: d^-0.5; O: (H·k)^-0.5; feed-forward out: f^-0.5),
    # the query additionally scaled by key_dim^-0.5, which replaces 1/sqrt(k) on the logits.
    fan_in_normal = lambda scale: keras.initializers.VarianceScaling(scale, "fan_in", "untruncated_normal")
    return {
        "embeddings": normal(stddev=1.0),
        "position_bias": normal(stddev=hidden_dim**-0.5),
        "kernel": fan_in_normal(1.0),
        "query": fan_in_normal(1.0 / key_value_dim),
    }
