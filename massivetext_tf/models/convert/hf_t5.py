"""HuggingFace T5 checkpoints <-> `EncoderDecoderSeq2SeqLM`, with numpy and safetensors only.

Reads a directory as `transformers`' `save_pretrained` writes it for
`T5ForConditionalGeneration` (T5 v1.0, T5 v1.1, Flan-T5): `config.json` and
`model.safetensors`, or shards listed in `model.safetensors.index.json`, in PyTorch naming.
float32, float16 and bfloat16 tensors are read (and upcast to float32 exactly); no torch and
no transformers are needed. Every file goes through `tf.io.gfile`, so `gs://` works.

Name mapping (`i` = block; torch `Linear` weights are `[out, in]`, our kernels `[in, out]`,
so every projection is transposed):

| HuggingFace | ours (backbone) |
|---|---|
| `shared.weight` | `token_embedding.embeddings` |
| `lm_head.weight` (untied only) | `token_embedding.reverse_embeddings` (transposed) |
| `{encoder,decoder}.block.0.layer.0.SelfAttention.relative_attention_bias.weight` | `{encoder,decoder}_position_bias.embeddings` |
| `encoder.block.i.layer.0.SelfAttention.{q,k,v,o}.weight` | `encoder_layer_i.attention.{query,key,value,attention_output}.kernel` |
| `encoder.block.i.layer.0.layer_norm.weight` | `encoder_layer_i.attention_norm.scale` |
| `encoder.block.i.layer.1.DenseReluDense.wi.weight` (ReLU) | `encoder_layer_i.feed_forward.input_dense.kernel` |
| `encoder.block.i.layer.1.DenseReluDense.wi_0.weight` (gated, GELU branch) | `encoder_layer_i.feed_forward.gate_dense.kernel` |
| `encoder.block.i.layer.1.DenseReluDense.wi_1.weight` (gated, linear branch) | `encoder_layer_i.feed_forward.input_dense.kernel` |
| `encoder.block.i.layer.1.DenseReluDense.wo.weight` | `encoder_layer_i.feed_forward.output_dense.kernel` |
| `encoder.block.i.layer.1.layer_norm.weight` | `encoder_layer_i.feed_forward_norm.scale` |
| `decoder.block.i.layer.0.*` | `decoder_layer_i.attention.*`, `decoder_layer_i.attention_norm` |
| `decoder.block.i.layer.1.EncDecAttention.{q,k,v,o}.weight` | `decoder_layer_i.cross_attention.*.kernel` |
| `decoder.block.i.layer.1.layer_norm.weight` | `decoder_layer_i.cross_attention_norm.scale` |
| `decoder.block.i.layer.2.*` | `decoder_layer_i.feed_forward.*`, `decoder_layer_i.feed_forward_norm` |
| `{encoder,decoder}.final_layer_norm.weight` | `{encoder,decoder}_final_norm.scale` |

Accepted and ignored, as `transformers` ignores them (their shapes are still checked):
`encoder.embed_tokens.weight` and `decoder.embed_tokens.weight` (copies of `shared.weight`
that older checkpoints store), `lm_head.weight` of a tied model, and
`decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight` (unused by T5's
cross-attention, stored by older checkpoints).

The model config comes from `config.json` (`config_from_hf`); the embedding keeps
`vocab_size` rows (32,128 for T5), whatever the tokenizer's size. This module converts weights
only; T5's tokenizer and token conventions (pad 0, eos 1, unk 2, no bos, the decoder starts
from pad) come with `massivetext_tf.models.convert.checkpoint` (`massivetext convert`), which
attaches a `T5Tokenizer`. Without it, feed `decoder_token_ids` starting with 0.

Example:
>>> from massivetext_tf.models.convert import hf_t5  # doctest: +SKIP
>>> lm = hf_t5.load_hf_t5("flan-t5-small/")  # doctest: +SKIP
>>> state = hf_t5.hf_state_dict(lm)  # PyTorch names -> float32 numpy  # doctest: +SKIP
>>> hf_t5.save_hf_t5(lm, "out/")  # config.json + model.safetensors  # doctest: +SKIP
"""
import os

import numpy as np

from massivetext_tf import io

# transformers' T5Config defaults: what a config.json without the field means.
HF_DEFAULTS = {
    "vocab_size": 32128,
    "d_model": 512,
    "d_kv": 64,
    "d_ff": 2048,
    "num_layers": 6,
    "num_decoder_layers": None,
    "num_heads": 8,
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "dropout_rate": 0.1,
    "layer_norm_epsilon": 1e-6,
    "feed_forward_proj": "relu",
    "tie_word_embeddings": True,
    "n_positions": 512,
}
# feed_forward_proj -> our activation. transformers maps "gated-gelu" to `gelu_new` (GELU with
# the tanh approximation), which is what our "geglu" computes.
ACTIVATIONS = {"relu": "relu", "gated-gelu": "geglu"}
_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "BF16": "bfloat16"}
_LIST_LIMIT = 12


class CheckpointError(ValueError):
    """A HuggingFace checkpoint that cannot be loaded; the message names the file or tensor."""


def _names(names):
    names = sorted(names)
    more = f" ... and {len(names) - _LIST_LIMIT} more" if len(names) > _LIST_LIMIT else ""
    return ", ".join(names[:_LIST_LIMIT]) + more


def config_from_hf(hf_config, source="config.json"):
    """Our encoder-decoder config dict (validated) from a HuggingFace T5 `config.json` dict.

    Maps `vocab_size`, `d_model`, `d_kv`, `d_ff`, `num_layers`, `num_decoder_layers`,
    `num_heads`, `relative_attention_num_buckets`, `relative_attention_max_distance`,
    `feed_forward_proj` (`relu` or `gated-gelu`), `tie_word_embeddings`,
    `layer_norm_epsilon`, `dropout_rate` and `n_positions`; missing fields take
    transformers' defaults. The result computes exactly what T5 computes: no logit scaling,
    and the `d_model^-0.5` output rescale exactly when the embeddings are tied.
    """
    from massivetext_tf.models.presets import validate_config

    model_type = hf_config.get("model_type")
    if model_type != "t5":
        raise CheckpointError(f"{source}: `model_type` is {model_type!r}; only 't5' checkpoints are supported.")
    hf = {**HF_DEFAULTS, **{k: v for k, v in hf_config.items() if k in HF_DEFAULTS and v is not None}}
    for field in ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads",
                  "relative_attention_num_buckets", "relative_attention_max_distance", "n_positions"):
        value = hf[field]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise CheckpointError(f"{source}: field `{field}` must be a positive integer, got {value!r}.")
    proj = hf["feed_forward_proj"]
    if proj not in ACTIVATIONS:
        raise CheckpointError(
            f"{source}: `feed_forward_proj` {proj!r} is not supported (supported: {sorted(ACTIVATIONS)})."
        )
    tied = hf["tie_word_embeddings"]
    if not isinstance(tied, bool):
        raise CheckpointError(f"{source}: field `tie_word_embeddings` must be true or false, got {tied!r}.")
    config = {
        "model_type": "encoder_decoder",
        "vocabulary_size": hf["vocab_size"],
        "num_encoder_layers": hf["num_layers"],
        "num_decoder_layers": hf["num_decoder_layers"] or hf["num_layers"],
        "num_heads": hf["num_heads"],
        "key_value_dim": hf["d_kv"],
        "hidden_dim": hf["d_model"],
        "intermediate_dim": hf["d_ff"],
        "max_sequence_length": hf["n_positions"],
        "position_encoding": "t5_bias",
        "activation": ACTIVATIONS[proj],
        "dropout": float(hf["dropout_rate"]),
        "layer_norm_epsilon": float(hf["layer_norm_epsilon"]),
        "tie_word_embeddings": tied,
        "relative_attention_num_buckets": hf["relative_attention_num_buckets"],
        "relative_attention_max_distance": hf["relative_attention_max_distance"],
        "scale_attention_logits": False,
        "rescale_tied_output": tied,
    }
    try:
        return validate_config(config)
    except ValueError as e:
        raise CheckpointError(f"{source}: {e}") from None


def read_safetensors(path):
    """`{name: float32 array}` of one safetensors file (any filesystem `tf.io.gfile` reads).

    float16 and bfloat16 tensors are upcast exactly; other dtypes raise `CheckpointError`
    naming the tensor.
    """
    import safetensors
    import tensorflow as tf

    with tf.io.gfile.GFile(path, "rb") as f:
        data = f.read()
    try:
        tensors = safetensors.deserialize(data)
    except Exception as e:  # the Rust parser raises its own error types
        reason = " ".join(str(e).split())  # one line
        raise CheckpointError(f"{path}: not a readable safetensors file ({reason}).") from None
    out = {}
    for name, tensor in tensors:
        dtype = _DTYPES.get(tensor["dtype"])
        if dtype is None:
            raise CheckpointError(
                f"{path}: tensor {name!r} has dtype {tensor['dtype']}; expected one of {sorted(_DTYPES)}."
            )
        raw = bytes(tensor["data"])
        if dtype == "bfloat16":  # the upper half of a float32: shift it back into place
            array = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            array = np.frombuffer(raw, np.dtype(dtype).newbyteorder("<")).astype(np.float32)
        out[name] = array.reshape(tensor["shape"])
    return out


def read_hf_state_dict(directory):
    """Every tensor of a `save_pretrained` directory: `model.safetensors`, or the shards named
    by `model.safetensors.index.json`. A directory with only `pytorch_model.bin` (a torch
    pickle) raises `CheckpointError` saying how to convert it."""
    import tensorflow as tf

    gfile = tf.io.gfile
    index = os.path.join(directory, "model.safetensors.index.json")
    single = os.path.join(directory, "model.safetensors")
    if gfile.exists(index):
        index_json = io.read_json(index)
        weight_map = index_json.get("weight_map") if isinstance(index_json, dict) else None
        if not isinstance(weight_map, dict) or not weight_map:
            raise CheckpointError(f"{index}: no `weight_map` of tensor names to shard files.")
        state = {}
        for shard in sorted(set(weight_map.values())):
            path = os.path.join(directory, shard)
            if not gfile.exists(path):
                raise CheckpointError(f"{index}: shard {shard!r} does not exist in {directory}.")
            tensors = read_safetensors(path)
            twice = set(tensors) & set(state)
            if twice:
                raise CheckpointError(f"{path}: tensors also stored in another shard: {_names(twice)}.")
            state.update(tensors)
        absent = set(weight_map) - set(state)
        if absent:
            raise CheckpointError(f"{index}: tensors listed but not in their shards: {_names(absent)}.")
        return state
    if gfile.exists(single):
        return read_safetensors(single)
    for torch_file in ("pytorch_model.bin", "pytorch_model.bin.index.json"):
        if gfile.exists(os.path.join(directory, torch_file)):
            raise CheckpointError(
                f"{directory}: holds {torch_file} (a torch pickle) but no model.safetensors; convert it to "
                "safetensors once where torch is installed: T5ForConditionalGeneration.from_pretrained(DIR)"
                ".save_pretrained(OUT, safe_serialization=True)."
            )
    raise CheckpointError(f"{directory}: no model.safetensors or model.safetensors.index.json found.")


# Projections: torch `Linear` stores `[out, in]` where our kernels are `[in, out]`, and
# `lm_head` is `[vocab, d]` where our reverse embeddings are `[d, vocab]`: transposed (True).
# Embeddings, bias tables (`[buckets, heads]` on both sides) and norm gains are not (False).


def _attention_names(prefix, attention):
    return {
        f"{prefix}.q.weight": (attention.query_dense.kernel, True),
        f"{prefix}.k.weight": (attention.key_dense.kernel, True),
        f"{prefix}.v.weight": (attention.value_dense.kernel, True),
        f"{prefix}.o.weight": (attention.output_dense.kernel, True),
    }


def _feed_forward_names(prefix, feed_forward):
    names = {f"{prefix}.wo.weight": (feed_forward.output_dense.kernel, True)}
    if feed_forward.gate_dense is not None:
        names[f"{prefix}.wi_0.weight"] = (feed_forward.gate_dense.kernel, True)
        names[f"{prefix}.wi_1.weight"] = (feed_forward.input_dense.kernel, True)
    else:
        names[f"{prefix}.wi.weight"] = (feed_forward.input_dense.kernel, True)
    return names


def weight_map(backbone):
    """`{HuggingFace name: (our variable, transposed)}` for a built `EncoderDecoderBackbone`
    with T5 positions; `transposed` when torch stores the matrix the other way round."""
    if backbone.position_encoding != "t5_bias":
        raise CheckpointError(
            f"HuggingFace T5 weights need `position_encoding='t5_bias'`, got {backbone.position_encoding!r}."
        )
    names = {"shared.weight": (backbone.token_embedding.embeddings, False)}
    if not backbone.tie_word_embeddings:
        names["lm_head.weight"] = (backbone.token_embedding.reverse_embeddings, True)
    for stack, bias in (("encoder", backbone.encoder_position_bias), ("decoder", backbone.decoder_position_bias)):
        names[f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"] = (bias.embeddings, False)
    for i, layer in enumerate(backbone.encoder_transformer_layers):
        block = f"encoder.block.{i}"
        names.update(_attention_names(f"{block}.layer.0.SelfAttention", layer.attention))
        names[f"{block}.layer.0.layer_norm.weight"] = (layer.attention_norm.scale, False)
        names.update(_feed_forward_names(f"{block}.layer.1.DenseReluDense", layer.feed_forward))
        names[f"{block}.layer.1.layer_norm.weight"] = (layer.feed_forward_norm.scale, False)
    for i, layer in enumerate(backbone.decoder_transformer_layers):
        block = f"decoder.block.{i}"
        names.update(_attention_names(f"{block}.layer.0.SelfAttention", layer.attention))
        names[f"{block}.layer.0.layer_norm.weight"] = (layer.attention_norm.scale, False)
        names.update(_attention_names(f"{block}.layer.1.EncDecAttention", layer.cross_attention_layer))
        names[f"{block}.layer.1.layer_norm.weight"] = (layer.cross_attention_norm.scale, False)
        names.update(_feed_forward_names(f"{block}.layer.2.DenseReluDense", layer.feed_forward))
        names[f"{block}.layer.2.layer_norm.weight"] = (layer.feed_forward_norm.scale, False)
    names["encoder.final_layer_norm.weight"] = (backbone.encoder_layer_norm.scale, False)
    names["decoder.final_layer_norm.weight"] = (backbone.decoder_layer_norm.scale, False)
    return names


def _ignored_names(backbone):
    """Tensors checkpoints may hold that T5 does not use: `{name: expected shape}`."""
    vocab_by_d = (backbone.vocabulary_size, backbone.hidden_dim)
    ignored = {"encoder.embed_tokens.weight": vocab_by_d, "decoder.embed_tokens.weight": vocab_by_d}
    if backbone.tie_word_embeddings:
        ignored["lm_head.weight"] = vocab_by_d
    ignored["decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight"] = (
        backbone.relative_attention_num_buckets,
        backbone.num_heads,
    )
    return ignored


def load_hf_weights(task, state_dict, source="state dict"):
    """Assign a HuggingFace T5 state dict (`{name: array}`) to `task`'s backbone.

    Every name and shape is checked before anything is assigned: unknown, missing or
    wrongly shaped tensors raise one `CheckpointError` listing them all, and the model is
    left untouched.
    """
    backbone = task.backbone
    mapping = weight_map(backbone)
    ignored = _ignored_names(backbone)
    unknown = set(state_dict) - set(mapping) - set(ignored)
    missing = set(mapping) - set(state_dict)
    wrong = []
    for name, array in state_dict.items():
        if name in mapping:
            variable, transposed = mapping[name]
            expected = tuple(variable.shape)[::-1] if transposed else tuple(variable.shape)
        elif name in ignored:
            expected = tuple(ignored[name])
        else:
            continue
        if tuple(np.shape(array)) != expected:
            wrong.append(f"{name} {tuple(np.shape(array))} (expected {expected})")
    problems = []
    if unknown:
        problems.append(f"unknown tensors: {_names(unknown)}")
    if missing:
        problems.append(f"missing tensors: {_names(missing)}")
    if wrong:
        problems.append(f"wrong shapes: {_names(wrong)}")
    if problems:
        raise CheckpointError(f"{source} does not match the model config; " + "; ".join(problems) + ".")
    for name, (variable, transposed) in mapping.items():
        array = np.asarray(state_dict[name], dtype=np.float32)
        variable.assign(array.T if transposed else array)
    return task


def hf_state_dict(task):
    """The reverse mapping: `{HuggingFace name: float32 array}` of `task`'s weights, as
    `save_pretrained` stores them (tied embeddings once, as `shared.weight`)."""
    out = {}
    for name, (variable, transposed) in weight_map(task.backbone).items():
        array = np.asarray(variable.numpy(), dtype=np.float32)
        out[name] = np.ascontiguousarray(array.T if transposed else array)
    return out


def load_hf_t5(directory, dtype=None):
    """An `EncoderDecoderSeq2SeqLM` holding the HuggingFace T5 checkpoint in `directory`
    (`config.json` + safetensors, single or sharded). No preprocessor is attached (weights
    only); `checkpoint.hf_to_preset` also attaches T5's tokenizer.

    Args:
        directory: a `save_pretrained` directory (local or `gs://`).
        dtype: Keras dtype policy of the model, e.g. `"mixed_bfloat16"` (weights stay float32).
    """
    import tensorflow as tf

    from massivetext_tf.models.encoder_decoder import build_encoder_decoder

    config_path = os.path.join(directory, "config.json")
    if not tf.io.gfile.exists(config_path):
        raise CheckpointError(f"{directory}: no config.json (expected a save_pretrained directory).")
    config = config_from_hf(io.read_json(config_path), source=config_path)
    state_dict = read_hf_state_dict(directory)
    task = build_encoder_decoder(config, dtype=dtype)
    return load_hf_weights(task, state_dict, source=directory)


def config_to_hf(config):
    """The HuggingFace `config.json` dict of one of our T5-exact encoder-decoder configs
    (the inverse of `config_from_hf`); configs T5 cannot express raise `CheckpointError`
    naming the field."""
    from massivetext_tf.models.presets import resolve_config

    c = resolve_config(config)
    activation = {ours: theirs for theirs, ours in ACTIVATIONS.items()}.get(c["activation"])
    expected = {
        "model_type": ("encoder_decoder", c["model_type"]),
        "position_encoding": ("t5_bias", c["position_encoding"]),
        "scale_attention_logits": (False, c["scale_attention_logits"]),
        "rescale_tied_output": (c["tie_word_embeddings"], c["rescale_tied_output"]),
    }
    for field, (want, got) in expected.items():
        if want != got:
            raise CheckpointError(f"Config field `{field}` is {got!r}; a HuggingFace T5 model needs {want!r}.")
    if activation is None:
        raise CheckpointError(
            f"Config field `activation` is {c['activation']!r}; HuggingFace T5 supports {sorted(ACTIVATIONS.values())}."
        )
    return {
        "architectures": ["T5ForConditionalGeneration"],
        "model_type": "t5",
        "vocab_size": c["vocabulary_size"],
        "d_model": c["hidden_dim"],
        "d_kv": c["key_value_dim"],
        "d_ff": c["intermediate_dim"],
        "num_layers": c["num_encoder_layers"],
        "num_decoder_layers": c["num_decoder_layers"],
        "num_heads": c["num_heads"],
        "relative_attention_num_buckets": c["relative_attention_num_buckets"],
        "relative_attention_max_distance": c["relative_attention_max_distance"],
        "dropout_rate": c["dropout"],
        "layer_norm_epsilon": c["layer_norm_epsilon"],
        "feed_forward_proj": activation,
        "tie_word_embeddings": c["tie_word_embeddings"],
        "n_positions": c["max_sequence_length"],
        "is_encoder_decoder": True,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "decoder_start_token_id": 0,
    }


def save_hf_t5(task, directory):
    """Write `task` as a HuggingFace T5 checkpoint directory: `config.json` and one float32
    `model.safetensors` in PyTorch naming (each written atomically, `gs://` works), which
    `load_hf_t5` and `transformers`' `from_pretrained` read."""
    import safetensors.numpy

    backbone = task.backbone
    hf_config = config_to_hf({"model_type": "encoder_decoder", **_backbone_config(backbone)})
    state = hf_state_dict(task)
    io.atomic_write(os.path.join(directory, "model.safetensors"), safetensors.numpy.save(state, {"format": "pt"}))
    io.write_json(os.path.join(directory, "config.json"), hf_config)


def _backbone_config(backbone):
    from massivetext_tf.models.presets import ENCODER_DECODER_FIELDS

    config = backbone.get_config()
    return {k: config[k] for k in ENCODER_DECODER_FIELDS if k in config}
