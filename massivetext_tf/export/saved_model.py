"""SavedModel export: `generate`, `score` and `forward` signatures that need only TensorFlow.

The exported graph holds the whole request path: SentencePiece tokenization
(`tensorflow_text.SentencepieceTokenizer` built from the model proto, so the tokenizer is a
graph resource and not a Python object), the one key/value-cached decoding loop
(`massivetext_tf.models.decoding.decode` over the task's `decoding_next` closure; the
signature functions are in `export.signatures`), optionally XLA-compiled, and
detokenization. The module saved is a plain
`tf.Module` tracking the model's `tf.Variable`s and the tokenizer resource, so loading it needs
`tensorflow` and `tensorflow_text` (for the SentencePiece kernels) and nothing else.

Signatures (see docs/serving.md):

* `generate` (= `serving_default`): `prompts` string `[batch]`; `max_new_tokens` int32,
  `temperature` float32, `top_k` int32, `top_p` float32, `seed` int64 scalars, each with a
  default recorded in the SignatureDef (`SignatureDef.defaults`, honored by TF Serving >= 2.12
  and `saved_model_cli run`), so a request may send `prompts` alone. Outputs `text` (string
  `[batch]`, the completion only) and `token_ids` (int32 `[batch, max_new_tokens]`, `</s>`
  included, 0 after it).
* `generate_all_inputs`: the same function without defaults, for servers older than TF Serving
  2.12 that require every declared input.
* `score`: `texts` -> `log_likelihood` (nats, summed), `num_tokens`, `bits_per_byte`.
* `forward`: `token_ids`, `padding_mask` int32 `[batch, length]` -> `logits` float32.

Encoder-decoder models take the source text as `prompts` (`generate`) or `texts` (`score`,
plus `targets`); their `forward` takes keras-hub's four `encoder_*`/`decoder_*` inputs.
"""
import json
import os
import re
import tempfile

import tensorflow as tf
import tensorflow_text as tf_text

from massivetext_tf import io
from massivetext_tf.export.requests import max_text_chars
from massivetext_tf.export.sampling import EOS_ID, PAD_ID
from massivetext_tf.export.signatures import (
    decoder_only_functions,
    encoder_decoder_functions,
    token_conventions,
)

__all__ = [
    "DEFAULT_MAX_BATCH_SIZE",
    "DEFAULT_MAX_NEW_TOKENS",
    "EXPORT_INFO_FILE",
    "MAX_LENGTH_EXTRAPOLATION",
    "SIGNATURES",
    "build_serving_module",
    "export_saved_model",
    "local_tmp_dir",
    "local_tmp_owner",
    "max_text_chars",
    "model_kind",
    "resolve_max_batch_size",
    "resolve_max_length",
    "save_serving_module",
    "token_conventions",
    "tokenizer_proto",
]

DEFAULT_MAX_NEW_TOKENS = 32
# The most rows (prompts, texts, token id rows) one request may carry unless the export says
# otherwise (`max_batch_size=`, `--max-batch-size`; None or 0 = no cap). The decoding cache is
# allocated per row, so without a cap one request with a huge batch can exhaust a server.
DEFAULT_MAX_BATCH_SIZE = 64
# How far past its trained context (`max_sequence_length`) an export's static length may go.
MAX_LENGTH_EXTRAPOLATION = 8
EXPORT_INFO_FILE = "massivetext_export.json"
SIGNATURES = ("serving_default", "generate", "generate_all_inputs", "score", "forward")


def model_kind(task):
    """`"decoder_only"` or `"encoder_decoder"` (`massivetext_tf.models.kind`) for a task this
    package can export: a `GopherCausalLM` or an `EncoderDecoderSeq2SeqLM`."""
    from massivetext_tf import models

    if not isinstance(task, (models.GopherCausalLM, models.EncoderDecoderSeq2SeqLM)):
        raise ValueError(
            f"Cannot export a {type(task).__name__}: expected a GopherCausalLM or an "
            "EncoderDecoderSeq2SeqLM (load keras-hub checkpoints through "
            "massivetext_tf.models.convert first)."
        )
    return models.kind(task)


def tokenizer_proto(task, tokenizer=None):
    """Serialized SentencePiece model of `tokenizer` (path, `gs://` path or bytes) or of the
    task's preprocessor."""
    if tokenizer is None:
        preprocessor = getattr(task, "preprocessor", None)
        proto = getattr(getattr(preprocessor, "tokenizer", None), "proto", None)
        if proto is None:
            raise ValueError(
                "The model has no SentencePiece tokenizer attached; pass `tokenizer=` "
                "(a .model path) or build it with `models.build(..., tokenizer=PATH)` "
                "(CLI: --tokenizer SPM_MODEL)."
            )
        tokenizer = proto
    if isinstance(tokenizer, (bytes, bytearray)):
        return bytes(tokenizer)
    if not tf.io.gfile.exists(tokenizer):
        raise FileNotFoundError(f"SentencePiece model {tokenizer!r} (--tokenizer) does not exist.")
    with tf.io.gfile.GFile(tokenizer, "rb") as f:
        return f.read()


def resolve_max_batch_size(max_batch_size):
    """The per-request row cap of the export: a positive int, or None for no cap (0 or None)."""
    if max_batch_size is None or max_batch_size == 0:
        return None
    if isinstance(max_batch_size, bool) or not isinstance(max_batch_size, int) or max_batch_size < 0:
        raise ValueError(
            f"--max-batch-size must be a positive integer (0 for no cap), got {max_batch_size!r}."
        )
    return max_batch_size


def resolve_max_length(task, max_length=None):
    """The static cache / context length of the export (default: the model's context).

    Relative, rotary and T5-bias positions run past the trained context, up to
    `MAX_LENGTH_EXTRAPOLATION` times it; learned positions stop at it. Checked before anything
    is built, since every cache, attention matrix and LiteRT tensor is sized by it."""
    model_max = task.backbone.max_sequence_length
    if max_length is None:
        return model_max
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
        raise ValueError(f"--max-length must be an integer >= 2, got {max_length!r}.")
    if max_length > model_max and task.backbone.position_encoding == "learned":
        raise ValueError(
            f"--max-length {max_length} exceeds the model's learned positions "
            f"(max_sequence_length={model_max})."
        )
    if max_length > MAX_LENGTH_EXTRAPOLATION * model_max:
        raise ValueError(
            f"--max-length {max_length} is more than {MAX_LENGTH_EXTRAPOLATION}x the model's "
            f"context (max_sequence_length={model_max}); use at most "
            f"{MAX_LENGTH_EXTRAPOLATION * model_max}."
        )
    return max_length


# ----------------------------------------------------------------------------------------
# Module and save
# ----------------------------------------------------------------------------------------


def build_serving_module(
    task,
    *,
    tokenizer=None,
    max_length=None,
    default_max_new_tokens=DEFAULT_MAX_NEW_TOKENS,
    jit_compile=True,
    max_batch_size=DEFAULT_MAX_BATCH_SIZE,
):
    """A `tf.Module` with `generate`, `generate_all_inputs`, `score` and `forward` tf.functions
    over `task`'s variables, plus a `signatures` dict ready for `tf.saved_model.save`.

    Every request input is checked in the graph before anything sized by it is allocated;
    `max_batch_size` (None or 0: no cap) is the most rows one request may carry.

    The module tracks the model's `tf.Variable`s and the SentencePiece resource only (no Keras
    objects), so the SavedModel loads without Keras.
    """
    kind = model_kind(task)
    max_batch_size = resolve_max_batch_size(max_batch_size)
    proto = tokenizer_proto(task, tokenizer)
    max_length = resolve_max_length(task, max_length)
    default_max_new_tokens = max(1, min(int(default_max_new_tokens), max_length - 1))

    module = tf.Module(name="massivetext_serving")
    module.model_variables = [v.value for v in task.variables]
    module.tokenizer = tf_text.SentencepieceTokenizer(model=proto, out_type=tf.int32)
    max_chars = max_text_chars(proto, max_length)
    builder = decoder_only_functions if kind == "decoder_only" else encoder_decoder_functions
    (generate, generate_all), score, (forward, forward_spec) = builder(
        task, module.tokenizer, max_length, default_max_new_tokens, jit_compile, max_batch_size, max_chars
    )
    if kind == "decoder_only":
        score_spec = [tf.TensorSpec([None], tf.string, name="texts")]
    else:
        score_spec = [
            tf.TensorSpec([None], tf.string, name="texts"),
            tf.TensorSpec([None], tf.string, name="targets"),
        ]
    module.generate = generate
    module.generate_all_inputs = generate_all
    module.score = tf.function(score, input_signature=score_spec)
    module.forward = tf.function(forward, input_signature=forward_spec)
    module.signatures = {
        "serving_default": module.generate,
        "generate": module.generate,
        "generate_all_inputs": module.generate_all_inputs,
        "score": module.score,
        "forward": module.forward,
    }
    module.export_info = {
        "format": 1,
        "model_kind": kind,
        "model_class": type(task).__name__,
        "max_length": max_length,
        "default_max_new_tokens": default_max_new_tokens,
        "jit_compile": bool(jit_compile),
        "max_batch_size": max_batch_size,
        "max_text_chars": max_chars,
        "vocabulary_size": int(task.backbone.vocabulary_size),
        "pad_id": PAD_ID,
        "eos_id": EOS_ID,
        **token_conventions(task),
        "signatures": list(SIGNATURES),
        "backbone_config": _jsonable(task.backbone.get_config()),
    }
    module.tokenizer_proto = proto
    return module


def _jsonable(config):
    return json.loads(json.dumps(config, default=str))


# Local scratch directories of an export are named after the process, so that the next export
# can remove those of a killed one (`serving.remove_export_leftovers`).
LOCAL_TMP_PREFIX = "massivetext-export-"
_LOCAL_TMP_RE = re.compile(r"^massivetext-export-(\d+)-")


def local_tmp_dir():
    """A `tempfile.TemporaryDirectory` named `massivetext-export-PID-*`."""
    return tempfile.TemporaryDirectory(prefix=f"{LOCAL_TMP_PREFIX}{os.getpid()}-")


def local_tmp_owner(name):
    """The process id in a `local_tmp_dir` name, or None for other names."""
    match = _LOCAL_TMP_RE.match(name)
    return int(match.group(1)) if match else None


def save_serving_module(module, export_dir):
    """Write `module` (from `build_serving_module`) as a SavedModel into `export_dir`
    (must not exist yet or be empty), with the tokenizer as an asset and an export summary
    in `assets.extra/massivetext_export.json`."""
    proto = module.tokenizer_proto
    export_info = module.export_info
    signatures = module.signatures
    # Neither is a trackable; keep them off the saved object graph.
    del module.tokenizer_proto, module.export_info, module.signatures
    with local_tmp_dir() as tmp:
        local = os.path.join(tmp, "tokenizer.model")
        with open(local, "wb") as f:
            f.write(proto)
        module.tokenizer_asset = tf.saved_model.Asset(local)
        tf.saved_model.save(
            module,
            export_dir,
            signatures=signatures,
            options=tf.saved_model.SaveOptions(experimental_custom_gradients=False),
        )
    io.write_json(tf.io.gfile.join(export_dir, "assets.extra", EXPORT_INFO_FILE), export_info)
    return export_info


def export_saved_model(
    task,
    export_dir,
    *,
    tokenizer=None,
    max_length=None,
    default_max_new_tokens=DEFAULT_MAX_NEW_TOKENS,
    jit_compile=True,
    max_batch_size=DEFAULT_MAX_BATCH_SIZE,
):
    """Export `task` as a self-contained SavedModel into `export_dir` (no versioning; see
    `massivetext_tf.export.serving.export_model` for the TF Serving layout).

    Returns the export summary dict (also written to `assets.extra/massivetext_export.json`).
    """
    module = build_serving_module(
        task,
        tokenizer=tokenizer,
        max_length=max_length,
        default_max_new_tokens=default_max_new_tokens,
        jit_compile=jit_compile,
        max_batch_size=max_batch_size,
    )
    return save_serving_module(module, export_dir)
