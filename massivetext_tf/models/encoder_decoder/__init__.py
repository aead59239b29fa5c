"""Encoder-decoder (T5-style) models: backbone, seq2seq LM task and preprocessor."""
from massivetext_tf.models.encoder_decoder.backbone import EncoderDecoderBackbone
from massivetext_tf.models.encoder_decoder.preprocessor import EncoderDecoderSeq2SeqLMPreprocessor
from massivetext_tf.models.encoder_decoder.seq2seq_lm import EncoderDecoderSeq2SeqLM
from massivetext_tf.models.encoder_decoder.t5 import T5Seq2SeqLMPreprocessor, T5Tokenizer

_NON_ARCHITECTURE = ("model_type",)


def build_encoder_decoder(config, tokenizer=None, sequence_length=None, dtype=None):
    """An `EncoderDecoderSeq2SeqLM` with fresh weights from a validated config dict.

    Args:
        config: an encoder-decoder config (see `massivetext_tf.models.resolve_config`).
        tokenizer: optional SentencePiece model (path, `gs://` path or serialized proto,
            read with the toolkit's `GopherTokenizer` conventions) or a tokenizer instance
            (`GopherTokenizer`, or `T5Tokenizer` for T5's pad-start conventions, which then
            gets a `T5Seq2SeqLMPreprocessor`); with it the task gets a preprocessor and takes
            strings.
        sequence_length: encoder and decoder padding length of the preprocessor
            (default: `max_sequence_length`).
        dtype: Keras dtype policy, e.g. `"mixed_bfloat16"`.
    """
    from massivetext_tf.models.decoder_only.tokenizer import GopherTokenizer
    from massivetext_tf.models.presets import resolve_config

    config = resolve_config(config)
    if config["model_type"] != "encoder_decoder":
        raise ValueError(f"Config field `model_type` must be 'encoder_decoder', got {config['model_type']!r}.")
    architecture = {k: v for k, v in config.items() if k not in _NON_ARCHITECTURE}
    backbone = EncoderDecoderBackbone(**architecture, dtype=dtype)
    preprocessor = None
    if tokenizer is not None:
        length = sequence_length or config["max_sequence_length"]
        if not isinstance(tokenizer, (GopherTokenizer, T5Tokenizer)):
            tokenizer = GopherTokenizer(proto=tokenizer)
        cls = T5Seq2SeqLMPreprocessor if isinstance(tokenizer, T5Tokenizer) else EncoderDecoderSeq2SeqLMPreprocessor
        preprocessor = cls(
            tokenizer,
            encoder_sequence_length=length,
            decoder_sequence_length=length,
        )
    return EncoderDecoderSeq2SeqLM(backbone, preprocessor=preprocessor)


__all__ = [
    "EncoderDecoderBackbone",
    "EncoderDecoderSeq2SeqLM",
    "EncoderDecoderSeq2SeqLMPreprocessor",
    "T5Seq2SeqLMPreprocessor",
    "T5Tokenizer",
    "build_encoder_decoder",
]
