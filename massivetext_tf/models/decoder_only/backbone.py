"""Decoder-only backbone (Gopher / Chinchilla family)."""
import keras
from keras_hub.models import Backbone

from massivetext_tf.layers import (
    DecoderBlock,
    LearnedPositionEmbedding,
    RMSNormalization,
    T5RelativePositionBias,
    set_remat,
)


@keras.saving.register_keras_serializable(package="massivetext_tf")
class GopherBackbone(Backbone):
    """A stack of pre-norm decoder blocks over tied token embeddings, final RMSNorm.

    Gopher and Chinchilla use `position_encoding="relative"` (Transformer-XL), RMSNorm,
    a 4x GELU feed-forward and a 32,000-token SentencePiece vocabulary.

    Args:
        vocabulary_size: token vocabulary size.
        num_layers: number of decoder blocks.
        num_heads: attention heads.
        hidden_dim: model width (d_model).
        intermediate_dim: feed-forward width.
        key_value_dim: per-head size (defaults to `hidden_dim // num_heads`).
        max_sequence_length: longest sequence (context window).
        position_encoding: `"relative"`, `"rotary"`, `"learned"` or `"t5_bias"`.
        activation: feed-forward activation.
        dropout: dropout rate.
        layer_norm_epsilon: RMSNorm epsilon.
        tie_word_embeddings: share input embedding and output projection.
        dtype: dtype policy, e.g. `"mixed_bfloat16"`.

    Inputs: `{"token_ids": int [batch, length], "padding_mask": int [batch, length]}`;
    `padding_mask` may hold segment ids of packed documents (0 = padding).

    Example:
    >>> backbone = GopherBackbone(vocabulary_size=100, num_layers=2, num_heads=2,
    ...                           hidden_dim=16, intermediate_dim=32)
    >>> backbone({"token_ids": keras.ops.ones((1, 4), "int32"),
    ...           "padding_mask": keras.ops.ones((1, 4), "int32")}).shape
    (1, 4, 16)

    References:
        Rae et al. 2021 (Gopher), Hoffmann et al. 2022 (Chinchilla).
    """

    def __init__(
        self,
        vocabulary_size,
        num_layers,
        num_heads,
        hidden_dim,
        intermediate_dim,
        key_value_dim=None,
        max_sequence_length=2048,
        position_encoding="relative",
        activation="gelu",
        dropout=0.0,
        layer_norm_epsilon=1e-6,
        tie_word_embeddings=True,
        dtype=None,
        **kwargs,
    ):
        key_value_dim = key_value_dim or hidden_dim // num_heads
        # === Layers ===
        self.token_embedding = keras.layers.ReversibleEmbedding(
            vocabulary_size,
            hidden_dim,
            tie_weights=tie_word_embeddings,
            embeddings_initializer=keras.initializers.RandomNormal(stddev=0.02),
            dtype=dtype,
            name="token_embedding",
        )
        self.position_embedding = None
        self.position_bias = None
        if position_encoding == "learned":
            self.position_embedding = LearnedPositionEmbedding(
                max_sequence_length, hidden_dim, dtype=dtype, name="position_embedding"
            )
        if position_encoding == "t5_bias":
            self.position_bias = T5RelativePositionBias(
                num_heads, bidirectional=False, dtype=dtype, name="position_bias"
            )
        self.embeddings_dropout = keras.layers.Dropout(dropout, dtype=dtype, name="embeddings_dropout")
        self.transformer_layers = [
            DecoderBlock(
                num_heads,
                key_value_dim,
                intermediate_dim,
                position_encoding=position_encoding,
                activation=activation,
                dropout=dropout,
                layer_norm_epsilon=layer_norm_epsilon,
                dtype=dtype,
                name=f"transformer_layer_{i}",
            )
            for i in range(num_layers)
        ]
        self.layer_norm = RMSNormalization(layer_norm_epsilon, dtype=dtype, name="final_norm")

        # === Functional Model ===
        token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
        padding_mask = keras.Input(shape=(None,), dtype="int32", name="padding_mask")
        x = self.token_embedding(token_ids)
        if self.position_embedding is not None:
            x = x + self.position_embedding(x, segments=padding_mask)
        x = self.embeddings_dropout(x)
        bias = self.position_bias(x) if self.position_bias is not None else None
        for layer in self.transformer_layers:
            x = layer(x, segments=padding_mask, attention_bias=bias)
        x = self.layer_norm(x)
        super().__init__(
            inputs={"token_ids": token_ids, "padding_mask": padding_mask},
            outputs=x,
            dtype=dtype,
            **kwargs,
        )

        # === Config ===
        self.vocabulary_size = vocabulary_size
        self.num_layers = num_layers
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

    def set_remat(self, mode):
        """`"block"`: recompute each decoder block's activations in the backward pass
        (only block inputs are kept); `"none"`: keep them all (default). A training setting
        (`runtime.remat`), not saved in the config; cached decoding is never rematerialized."""
        set_remat(self.transformer_layers, mode)

    def get_config(self):
        return {
            **super().get_config(),
            "vocabulary_size": self.vocabulary_size,
            "num_layers": self.num_layers,
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
        }
