"""`massivetext convert`: HuggingFace T5 checkpoint directories <-> keras-hub preset directories.

    python tools/convert_checkpoint.py --from hf flan-t5-small/ --output presets/flan_t5_small
    python tools/convert_checkpoint.py --to hf presets/flan_t5_small --output hf/flan_t5_small

`--from hf DIR` reads what `save_pretrained` writes (`config.json`, `model.safetensors` or its
shards, `spiece.model`, `tokenizer_config.json`) with numpy and safetensors only, checks every
tensor name and shape (`hf_t5.load_hf_weights`) before anything is written, and writes a
keras-hub preset (`save_to_preset`) holding an `EncoderDecoderSeq2SeqLM` with a
`T5Seq2SeqLMPreprocessor`: the SentencePiece model with T5's sentinels appended (`<extra_id_N>`
counting down from the top, as `transformers` numbers them). `models.load` and
`tools/export.py` take that directory. `--to hf PRESET` writes the reverse: `config.json`,
`model.safetensors` (float32), `spiece.model` without the sentinels, and the tokenizer files
`transformers`' `T5Tokenizer` reads.

Nothing a user owns is overwritten: the output directory must not exist or be empty, and
everything is written to a scratch directory first and copied in when complete. Bad input is
one line on stderr and exit status 2.
"""
import os
import tempfile

from massivetext_tf import io
from massivetext_tf.models.convert import hf_t5

DEFAULT_SEQUENCE_LENGTH = 512  # T5's n_positions; the preprocessor's padded lengths


def _read_bytes(path):
    import tensorflow as tf

    with tf.io.gfile.GFile(path, "rb") as f:
        return f.read()


def _check_output(output):
    import tensorflow as tf

    if tf.io.gfile.exists(output) and (not tf.io.gfile.isdir(output) or tf.io.gfile.listdir(output)):
        raise hf_t5.CheckpointError(
            f"{output} (--output): already exists and is not empty; refusing to overwrite it "
            "(choose a new directory)."
        )


def _copy_tree(local, output):
    """Copy the files of local directory `local` into `output` (any filesystem), each through
    a temporary name and a rename."""
    for root, _, files in os.walk(local):
        relative = os.path.relpath(root, local)
        for name in sorted(files):
            with open(os.path.join(root, name), "rb") as f:
                data = f.read()
            target = output if relative == "." else f"{output.rstrip('/')}/{relative}"
            io.atomic_write(f"{target.rstrip('/')}/{name}", data)


def hf_extra_ids(directory):
    """How many sentinels `transformers`' `T5Tokenizer` adds for the checkpoint in `directory`:
    `tokenizer_config.json`'s `extra_ids`, else the `<extra_id_N>` of its
    `additional_special_tokens`, else `T5Tokenizer`'s default, 100."""
    import tensorflow as tf

    from massivetext_tf.models.encoder_decoder.t5 import DEFAULT_EXTRA_IDS

    path = os.path.join(directory, "tokenizer_config.json")
    if not tf.io.gfile.exists(path):
        return DEFAULT_EXTRA_IDS
    config = io.read_json(path)
    if not isinstance(config, dict):
        raise hf_t5.CheckpointError(f"{path}: expected a JSON object.")
    extra = config.get("extra_ids")
    if extra is not None:
        if isinstance(extra, bool) or not isinstance(extra, int) or extra < 0:
            raise hf_t5.CheckpointError(f"{path}: field `extra_ids` must be a non-negative integer, got {extra!r}.")
        if extra:
            return extra
    special = config.get("additional_special_tokens") or []
    sentinels = [t for t in special if isinstance(t, str) and t.startswith("<extra_id_")]
    return len(sentinels) if sentinels or extra == 0 else DEFAULT_EXTRA_IDS


def t5_tokenizer_proto(directory, tokenizer=None, vocabulary_size=None):
    """The SentencePiece proto (sentinels appended) for the checkpoint in `directory`:
    `tokenizer` (a `.model` path) if given, else `DIR/spiece.model`. Checked for T5's ids and
    against the model's `vocabulary_size` rows."""
    import tensorflow as tf

    from massivetext_tf.models.encoder_decoder import t5

    path = tokenizer or os.path.join(directory, "spiece.model")
    if not tf.io.gfile.exists(path):
        flag = "--tokenizer" if tokenizer else "--from"
        raise hf_t5.CheckpointError(
            f"{path} ({flag}): no SentencePiece model; a T5 checkpoint directory holds spiece.model "
            "(pass --tokenizer SPIECE_MODEL to name one)."
        )
    proto = t5.with_extra_ids(_read_bytes(path), hf_extra_ids(directory))
    size = t5.check_t5_proto(proto, source=path)
    if vocabulary_size is not None and size > vocabulary_size:
        raise hf_t5.CheckpointError(
            f"{path}: {size} tokens (sentinels included) but the model has only {vocabulary_size} "
            "embedding rows (config.json `vocab_size`)."
        )
    return proto


def hf_to_preset(directory, output, *, tokenizer=None, sequence_length=DEFAULT_SEQUENCE_LENGTH):
    """Convert the HuggingFace T5 checkpoint `directory` into a keras-hub preset at `output`.

    Returns the loaded task. Raises `CheckpointError` (one line, naming the file) on bad input,
    before anything is written.
    """
    import tensorflow as tf

    from massivetext_tf.models.encoder_decoder import T5Tokenizer, build_encoder_decoder

    _check_output(output)
    config_path = os.path.join(directory, "config.json")
    if not tf.io.gfile.exists(config_path):
        raise hf_t5.CheckpointError(f"{directory} (--from): no config.json (expected a save_pretrained directory).")
    config = hf_t5.config_from_hf(io.read_json(config_path), source=config_path)
    proto = t5_tokenizer_proto(directory, tokenizer, config["vocabulary_size"])
    state = hf_t5.read_hf_state_dict(directory)
    length = min(int(sequence_length), config["max_sequence_length"])
    task = build_encoder_decoder(config, tokenizer=T5Tokenizer(proto=proto), sequence_length=length)
    hf_t5.load_hf_weights(task, state, source=directory)
    with tempfile.TemporaryDirectory(prefix="massivetext-convert-") as tmp:
        local = os.path.join(tmp, "preset")
        task.save_to_preset(local)
        _copy_tree(local, output)
    return task


def preset_to_hf(preset, output):
    """Write the T5 preset `preset` (ours: `--from hf` output or a fine-tuned T5) as a
    HuggingFace T5 directory at `output`. Returns the list of files written."""
    from massivetext_tf import models
    from massivetext_tf.models.encoder_decoder import t5

    _check_output(output)
    try:
        kind = models.kind(preset)
    except ValueError as e:
        raise hf_t5.CheckpointError(f"{preset} (--to hf): {e}") from None
    if kind != "encoder_decoder":
        raise hf_t5.CheckpointError(f"{preset} (--to hf): a {kind} model; only T5 encoder-decoders convert to HF.")
    task = models.load(preset)
    tokenizer = getattr(getattr(task, "preprocessor", None), "tokenizer", None)
    if tokenizer is not None and not isinstance(tokenizer, t5.T5Tokenizer):
        raise hf_t5.CheckpointError(
            f"{preset} (--to hf): its tokenizer is a {type(tokenizer).__name__} (bos 2, unk 3); "
            "HuggingFace T5 needs T5's ids (pad 0, eos 1, unk 2, no bos)."
        )
    hf_t5.config_to_hf({"model_type": "encoder_decoder", **hf_t5._backbone_config(task.backbone)})  # refuses early
    with tempfile.TemporaryDirectory(prefix="massivetext-convert-") as tmp:
        hf_t5.save_hf_t5(task, tmp)
        if tokenizer is not None:
            spiece, extra = t5.without_extra_ids(tokenizer.proto)
            with open(os.path.join(tmp, "spiece.model"), "wb") as f:
                f.write(spiece)
            special = {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
                       "additional_special_tokens": [f"<extra_id_{n}>" for n in range(extra)]}
            io.write_json(os.path.join(tmp, "special_tokens_map.json"), special)
            io.write_json(os.path.join(tmp, "tokenizer_config.json"), {
                **special, "tokenizer_class": "T5Tokenizer", "extra_ids": extra,
                "model_max_length": int(task.backbone.max_sequence_length), "legacy": True,
            })
        written = sorted(os.listdir(tmp))
        _copy_tree(tmp, output)
    return written


def build_parser():
    """The flags of `massivetext convert-checkpoint` (they live in massivetext_tf.cli)."""
    from massivetext_tf.cli.convert_checkpoint import build_parser as cli_parser

    return cli_parser()


def main(argv=None):
    """Entry point of `massivetext convert-checkpoint` (massivetext_tf.cli.convert_checkpoint);
    returns the exit status (0, or 2 on bad input with one line on stderr)."""
    from massivetext_tf.cli.convert_checkpoint import main as cli_main

    return cli_main(argv)
