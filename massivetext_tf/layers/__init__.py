"""Keras 3 layers of the model zoo: one layer per file, each serializable via `get_config()`."""
from massivetext_tf.layers.attention import POSITION_ENCODINGS, CachedAttention, attention_mask
from massivetext_tf.layers.blocks import REMAT_MODES, DecoderBlock, EncoderBlock, set_remat
from massivetext_tf.layers.feed_forward import FeedForward
from massivetext_tf.layers.position import (
    LearnedPositionEmbedding,
    T5RelativePositionBias,
    positions_from_segments,
    sinusoid,
)
from massivetext_tf.layers.rms_normalization import RMSNormalization

__all__ = [
    "POSITION_ENCODINGS",
    "REMAT_MODES",
    "CachedAttention",
    "DecoderBlock",
    "EncoderBlock",
    "FeedForward",
    "LearnedPositionEmbedding",
    "RMSNormalization",
    "T5RelativePositionBias",
    "attention_mask",
    "positions_from_segments",
    "set_remat",
    "sinusoid",
]
