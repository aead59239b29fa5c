"""The model zoo: decoder-only (Gopher/Chinchilla) and encoder-decoder (T5-style) models.

Public entry points::

    list_presets() -> list[str]
    preset_config(name) -> dict
    build(name_or_config, *, tokenizer=None, sequence_length=None, dtype=None, **overrides)
    count_params(name_or_config, **overrides) -> int
    load(preset_dir, **kwargs) -> task      (a `save_to_preset` directory, e.g. MODEL_DIR/preset)
    kind(model_or_preset_dir) -> "decoder_only" | "encoder_decoder"
"""
from massivetext_tf.models.decoder_only import (
    GopherBackbone,
    GopherCausalLM,
    GopherCausalLMPreprocessor,
    GopherTokenizer,
)
from massivetext_tf.models.encoder_decoder import (
    EncoderDecoderBackbone,
    EncoderDecoderSeq2SeqLM,
    EncoderDecoderSeq2SeqLMPreprocessor,
    build_encoder_decoder,
)
from massivetext_tf.models.presets import (
    count_params,
    list_presets,
    preset_config,
    preset_metadata,
    resolve_config,
    validate_config,
)

_NON_ARCHITECTURE = ("model_type",)


def _architecture(config):
    return {k: v for k, v in config.items() if k not in _NON_ARCHITECTURE}


def _tokenizer_vocabulary_size(tokenizer):
    import sentencepiece as spm
    import tensorflow as tf

    proto = tokenizer
    if isinstance(tokenizer, str):
        with tf.io.gfile.GFile(tokenizer, "rb") as f:
            proto = f.read()
    return spm.SentencePieceProcessor(model_proto=proto).get_piece_size()


def build(name_or_config, *, tokenizer=None, sequence_length=None, dtype=None, **overrides):
    """Build a task model with fresh weights from a preset name or a config dict.

    Args:
        name_or_config: a preset name (see `list_presets()`) or a config dict.
        tokenizer: optional SentencePiece model (path, `gs://` path or serialized proto).
            With it the task gets a preprocessor and takes strings; without it the task takes
            keras-hub's token dicts. The vocabulary size follows the tokenizer unless given.
        sequence_length: preprocessor padding length (default: the model's context).
        dtype: Keras dtype policy, e.g. `"mixed_bfloat16"`.
        **overrides: config fields replacing the preset's.

    Returns:
        A `GopherCausalLM` (keras-hub `CausalLM`) for decoder-only configs, or an
        `EncoderDecoderSeq2SeqLM` (keras-hub `Seq2SeqLM`) for encoder-decoder configs.
    """
    if tokenizer is not None:
        vocab = _tokenizer_vocabulary_size(tokenizer)
        if "vocabulary_size" in overrides and overrides["vocabulary_size"] != vocab:
            raise ValueError(
                f"`vocabulary_size={overrides['vocabulary_size']}` does not match the "
                f"tokenizer's {vocab} pieces."
            )
        overrides["vocabulary_size"] = vocab
    config = resolve_config(name_or_config, **overrides)
    if sequence_length is not None and sequence_length > config["max_sequence_length"]:
        raise ValueError(
            f"`sequence_length={sequence_length}` is longer than the model's context "
            f"(`max_sequence_length={config['max_sequence_length']}`)."
        )
    sequence_length = sequence_length or config["max_sequence_length"]
    if config["model_type"] == "decoder_only":
        backbone = GopherBackbone(**_architecture(config), dtype=dtype)
        preprocessor = None
        if tokenizer is not None:
            preprocessor = GopherCausalLMPreprocessor(
                GopherTokenizer(proto=tokenizer), sequence_length=sequence_length
            )
        return GopherCausalLM(backbone, preprocessor=preprocessor)
    return build_encoder_decoder(config, tokenizer=tokenizer, sequence_length=sequence_length, dtype=dtype)


def _preset_json(preset_dir, name):
    """`preset_dir/name` parsed, or None when missing; invalid JSON names the file."""
    from massivetext_tf import io

    path = f"{str(preset_dir).rstrip('/')}/{name}"
    try:
        return io.read_json(path, default=None)
    except io.JSONFileError as e:
        raise ValueError(f"{e}: not a keras-hub preset file") from None


def _registered_class(entry):
    """The class a keras-hub preset JSON entry names (module + class_name), or None."""
    import importlib

    import keras

    if not isinstance(entry, dict):
        return None
    if entry.get("registered_name"):
        cls = keras.saving.get_registered_object(entry["registered_name"])
        if cls is not None:
            return cls
    try:
        return getattr(importlib.import_module(entry.get("module", "")), entry.get("class_name", ""))
    except (ImportError, AttributeError, ValueError):
        return None


def kind(model_or_preset_dir) -> str:
    """`"decoder_only"` or `"encoder_decoder"` for a task/backbone instance or a preset directory
    written by `save_to_preset` (keras-hub's GPT-2 and T5 count as the matching kind)."""
    import keras_hub

    obj = model_or_preset_dir
    if isinstance(obj, (str, bytes)) or hasattr(obj, "__fspath__"):
        preset = str(obj)
        entry = _preset_json(preset, "task.json") or _preset_json(preset, "config.json")
        if entry is None:
            raise ValueError(f"{preset}: not a preset directory (no config.json); expected the "
                             "output of save_to_preset, e.g. MODEL_DIR/preset")
        obj = _registered_class(entry)
        if obj is None:
            raise ValueError(f"{preset}: unknown model class {entry.get('class_name')!r} "
                             f"(module {entry.get('module')!r})")
    cls = obj if isinstance(obj, type) else type(obj)
    if issubclass(cls, (EncoderDecoderBackbone, keras_hub.models.Seq2SeqLM)) or (
            issubclass(cls, keras_hub.models.Backbone) and "Encoder" in cls.__name__
            and "Decoder" in cls.__name__) or issubclass(
            cls, getattr(keras_hub.models, "T5Backbone", ())):
        return "encoder_decoder"
    if issubclass(cls, (keras_hub.models.CausalLM, keras_hub.models.Backbone)):
        return "decoder_only"
    raise ValueError(f"{cls.__name__}: not a keras-hub task or backbone")


def load(preset_dir, **kwargs):
    """Loads a preset directory written by `save_to_preset` (e.g. the `MODEL_DIR/preset` a
    finished training run writes) as its task: `GopherCausalLM` or `EncoderDecoderSeq2SeqLM`
    (or keras-hub's own classes), with weights and, if saved, the tokenizer.

    Works in a fresh process: importing `massivetext_tf.models` registers our classes with
    Keras before keras-hub deserializes the preset. `kwargs` go to `from_preset`
    (e.g. `dtype=`, `load_weights=`).
    """
    import keras_hub

    base = keras_hub.models.Seq2SeqLM if kind(preset_dir) == "encoder_decoder" else \
        keras_hub.models.CausalLM
    return base.from_preset(str(preset_dir), **kwargs)


__all__ = [
    "EncoderDecoderBackbone",
    "EncoderDecoderSeq2SeqLM",
    "EncoderDecoderSeq2SeqLMPreprocessor",
    "GopherBackbone",
    "GopherCausalLM",
    "GopherCausalLMPreprocessor",
    "GopherTokenizer",
    "build",
    "count_params",
    "kind",
    "list_presets",
    "load",
    "preset_config",
    "preset_metadata",
    "resolve_config",
    "validate_config",
]
