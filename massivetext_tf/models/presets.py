"""Architecture presets (configs only, no weights), validation and analytic parameter counts.

Gopher family: Rae et al. 2021, Table 1; Chinchilla: Hoffmann et al. 2022, Table 4.
Every preset is plain data registered once in `PRESETS`; `count_params` reproduces
`model.count_params()` exactly without allocating a weight (see docs/parameter_count.md).
"""
import copy

from massivetext_tf.layers.attention import POSITION_ENCODINGS
from massivetext_tf.layers.feed_forward import ACTIVATIONS

MODEL_TYPES = ("decoder_only", "encoder_decoder")

_COMMON_FIELDS = {
    "model_type": None,
    "vocabulary_size": 32000,
    "num_heads": None,
    "key_value_dim": None,
    "hidden_dim": None,
    "intermediate_dim": None,
    "max_sequence_length": 2048,
    "position_encoding": "relative",
    "activation": "gelu",
    "dropout": 0.0,
    "layer_norm_epsilon": 1e-6,
    "tie_word_embeddings": True,
}
DECODER_ONLY_FIELDS = {**_COMMON_FIELDS, "num_layers": None}
ENCODER_DECODER_FIELDS = {
    **_COMMON_FIELDS,
    "num_encoder_layers": None,
    "num_decoder_layers": None,
    "position_encoding": "t5_bias",
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    # T5's two constants (see EncoderDecoderBackbone). Absent from a config = the earlier
    # T5-style behaviour (configs saved before the fields existed); the t5_* presets set both.
    "scale_attention_logits": True,
    "rescale_tied_output": False,
}
_BOOLS = ("tie_word_embeddings", "scale_attention_logits", "rescale_tied_output")
_POSITIVE_INTS = (
    "vocabulary_size",
    "num_layers",
    "num_encoder_layers",
    "num_decoder_layers",
    "num_heads",
    "key_value_dim",
    "hidden_dim",
    "intermediate_dim",
    "max_sequence_length",
    "relative_attention_num_buckets",
    "relative_attention_max_distance",
)


def _gopher(layers, heads, kv, d, lr, batch, paper):
    return {
        "config": {
            "model_type": "decoder_only",
            "vocabulary_size": 32000,
            "num_layers": layers,
            "num_heads": heads,
            "key_value_dim": kv,
            "hidden_dim": d,
            "intermediate_dim": 4 * d,
            "max_sequence_length": 2048,
            "position_encoding": "relative",
            "activation": "gelu",
            "dropout": 0.0,
            "layer_norm_epsilon": 1e-6,
            "tie_word_embeddings": True,
        },
        "metadata": {"max_learning_rate": lr, "batch_tokens": batch, "paper_params": paper},
    }


def _t5(enc, dec, heads, kv, d, ff, paper, vocab=32128, max_len=512, v1_1=False):
    """T5 (Raffel et al. 2020) as the public code computes it; `v1_1`: T5 v1.1 / Flan-T5
    (gated GELU, untied input and output embeddings, no output rescale, no dropout)."""
    return {
        "config": {
            "model_type": "encoder_decoder",
            "vocabulary_size": vocab,
            "num_encoder_layers": enc,
            "num_decoder_layers": dec,
            "num_heads": heads,
            "key_value_dim": kv,
            "hidden_dim": d,
            "intermediate_dim": ff,
            "max_sequence_length": max_len,
            "position_encoding": "t5_bias",
            "activation": "geglu" if v1_1 else "relu",
            "dropout": 0.0,
            "layer_norm_epsilon": 1e-6,
            "tie_word_embeddings": not v1_1,
            "relative_attention_num_buckets": 32,
            "relative_attention_max_distance": 128,
            "scale_attention_logits": False,
            "rescale_tied_output": not v1_1,
        },
        "metadata": {"paper_params": paper},
    }


PRESETS = {
    # name: (layers, heads, key/value size, d_model, max LR, batch tokens, paper size)
    "gopher_44m": _gopher(8, 16, 32, 512, 6e-4, "0.25M", 44e6),
    "gopher_117m": _gopher(12, 12, 64, 768, 6e-4, "0.25M", 117e6),
    "gopher_417m": _gopher(12, 12, 128, 1536, 2e-4, "0.25M", 417e6),
    "gopher_1_4b": _gopher(24, 16, 128, 2048, 2e-4, "0.25M", 1.4e9),
    "gopher_7_1b": _gopher(32, 32, 128, 4096, 1.2e-4, "2M", 7.1e9),
    "gopher_280b": _gopher(80, 128, 128, 16384, 4e-5, "3M -> 6M", 280e9),
    "chinchilla_70b": _gopher(80, 64, 128, 8192, 1e-4, "1.5M -> 3M", 70e9),
    # T5-style encoder-decoder (Raffel et al. 2020 sizes; 32,128-token vocabulary).
    "t5_small": _t5(6, 6, 8, 64, 512, 2048, 60e6),
    "t5_base": _t5(12, 12, 12, 64, 768, 3072, 220e6),
    # T5 v1.1 (google/t5-v1_1-*; Flan-T5 has the same architectures).
    "t5_v1_1_small": _t5(8, 8, 6, 64, 512, 1024, 77e6, v1_1=True),
    "t5_v1_1_base": _t5(12, 12, 12, 64, 768, 2048, 248e6, v1_1=True),
}
PRESETS["gopher_tiny"] = _gopher(2, 4, 16, 64, 1e-3, "tiny", None)
PRESETS["gopher_tiny"]["config"].update(vocabulary_size=1024, max_sequence_length=128)
PRESETS["gopher_tiny"]["metadata"]["description"] = "2-layer Gopher-style model for tests and demos"
PRESETS["t5_tiny"] = _t5(2, 2, 4, 16, 64, 256, None, vocab=1024, max_len=128)
PRESETS["t5_tiny"]["metadata"]["description"] = "2+2-layer T5-style model for tests and demos"


def list_presets():
    """Names of every registered preset."""
    return sorted(PRESETS)


def preset_config(name):
    """A fresh copy of preset `name`'s model config."""
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}. Available presets: {', '.join(list_presets())}.")
    return copy.deepcopy(PRESETS[name]["config"])


def preset_metadata(name):
    """Paper facts attached to a preset (learning rate, batch size, paper parameter count)."""
    preset_config(name)
    return copy.deepcopy(PRESETS[name]["metadata"])


def resolve_config(name_or_config, **overrides):
    """Preset name or config dict (plus overrides) -> a validated, complete config dict."""
    if isinstance(name_or_config, str):
        config = preset_config(name_or_config)
    elif isinstance(name_or_config, dict):
        config = copy.deepcopy(name_or_config)
    else:
        raise ValueError(
            f"Expected a preset name or a config dict, got {type(name_or_config).__name__}."
        )
    config.update(overrides)
    return validate_config(config)


def validate_config(config):
    """Fill defaults and check every field; raises `ValueError` naming the bad field."""
    model_type = config.get("model_type", "decoder_only")
    if model_type not in MODEL_TYPES:
        raise ValueError(f"Config field `model_type` must be one of {MODEL_TYPES}, got {model_type!r}.")
    fields = DECODER_ONLY_FIELDS if model_type == "decoder_only" else ENCODER_DECODER_FIELDS
    unknown = sorted(set(config) - set(fields))
    if unknown:
        raise ValueError(
            f"Unknown config field(s) {unknown} for a {model_type} model. "
            f"Valid fields: {sorted(fields)}."
        )
    full = {k: config.get(k, default) for k, default in fields.items()}
    full["model_type"] = model_type
    if full.get("key_value_dim") is None and full.get("num_heads") and full.get("hidden_dim"):
        full["key_value_dim"] = full["hidden_dim"] // full["num_heads"]
    if full.get("intermediate_dim") is None and full.get("hidden_dim"):
        full["intermediate_dim"] = 4 * full["hidden_dim"]
    for field in _POSITIVE_INTS:
        if field in full:
            value = full[field]
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"Config field `{field}` must be a positive integer, got {value!r}.")
    if full["position_encoding"] not in POSITION_ENCODINGS:
        raise ValueError(
            f"Config field `position_encoding` must be one of {POSITION_ENCODINGS}, "
            f"got {full['position_encoding']!r}."
        )
    if full["activation"] not in ACTIVATIONS:
        raise ValueError(f"Config field `activation` must be one of {ACTIVATIONS}, got {full['activation']!r}.")
    if full["position_encoding"] == "rotary" and full["key_value_dim"] % 2:
        raise ValueError("Config field `key_value_dim` must be even with rotary positions.")
    for field in _BOOLS:
        if field in full and not isinstance(full[field], bool):
            raise ValueError(f"Config field `{field}` must be true or false, got {full[field]!r}.")
    if not 0.0 <= float(full["dropout"]) < 1.0:
        raise ValueError(f"Config field `dropout` must be in [0, 1), got {full['dropout']!r}.")
    if not float(full["layer_norm_epsilon"]) > 0:
        raise ValueError(f"Config field `layer_norm_epsilon` must be positive, got {full['layer_norm_epsilon']!r}.")
    return full


def _stack_params(c, num_layers, cross_attention, causal_relative=True):
    d, h, kv, ff = c["hidden_dim"], c["num_heads"], c["key_value_dim"], c["intermediate_dim"]
    attention = 4 * d * h * kv
    if c["position_encoding"] == "relative":
        attention += d * h * kv + 2 * h * kv  # W_r projection and the u, v biases
    ffn = (3 if c["activation"] in ("swiglu", "geglu") else 2) * d * ff
    norms = 2 * d
    per_layer = attention + ffn + norms
    if cross_attention:
        per_layer += 4 * d * h * kv + d
    total = num_layers * per_layer + d  # final norm
    if c["position_encoding"] == "t5_bias":
        total += c["relative_attention_num_buckets"] * h if "relative_attention_num_buckets" in c else 32 * h
    return total, {"attention_and_ffn_per_layer": per_layer, "layers": num_layers}


def count_params(name_or_config, breakdown=False, **overrides):
    """Exact parameter count of the model `build()` would make, without allocating weights.

    Per decoder-only layer: Q, K, V, O projections `4·d·H·k`; with relative positions a
    `d·H·k` projection of the sinusoid features and two `H·k` biases; feed-forward `2·d·f`
    (`3·d·f` gated); two RMSNorm gains `2·d`. Plus the token embedding `V·d` (twice if
    untied), a final norm `d`, learned positions `L·d`, or a T5 bias table `buckets·H`.
    """
    c = resolve_config(name_or_config, **overrides)
    d, v = c["hidden_dim"], c["vocabulary_size"]
    embedding = v * d * (1 if c["tie_word_embeddings"] else 2)
    positions = c["max_sequence_length"] * d if c["position_encoding"] == "learned" else 0
    parts = {"embedding": embedding, "learned_positions": positions}
    if c["model_type"] == "decoder_only":
        stack, _ = _stack_params(c, c["num_layers"], cross_attention=False)
        parts["decoder"] = stack
    else:
        enc, _ = _stack_params(c, c["num_encoder_layers"], cross_attention=False)
        dec, _ = _stack_params(c, c["num_decoder_layers"], cross_attention=True)
        parts["encoder"] = enc
        parts["decoder"] = dec
        if positions:
            parts["learned_positions"] = 2 * positions  # one table per stack
    total = sum(parts.values())
    if breakdown:
        return {"total": total, **parts}
    return total
