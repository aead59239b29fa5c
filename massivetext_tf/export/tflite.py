"""LiteRT (TFLite) export: `prefill`, `decode` and `forward` signatures with an explicit
key/value cache, batch 1, a fixed maximum length.

Signatures (all tensors static-shaped; `L` = max length, `C` = cache shape
`[1, num_layers, 2, L, num_heads, key_value_dim]` float32):

* `prefill(token_ids int32 [1, L], length int32 [])` -> `logits float32 [1, vocab]` (the
  next-token logits after position `length - 1`), `cache float32 C`. `token_ids` holds
  `<s>` + the prompt, right-padded with 0 to `L`.
* `decode(token_id int32 [1, 1], index int32 [], cache float32 C)` -> `logits [1, vocab]`,
  `cache C`: writes `token_id` at position `index` and returns the logits of position
  `index + 1`.
* `forward(token_ids int32 [1, L], padding_mask int32 [1, L])` -> `logits [1, L, vocab]`.

Every shape is static, so no input sizes an allocation. Positions out of range fail instead of
returning plausible logits: `prefill` with `length` outside `[1, L]` and `decode` with `index`
outside `[0, L)` stop with the interpreter's "gather index out of bounds" error (a negative
`index`, which the cache write would clamp to 0, is mapped to `L` first), and
`LiteRTGenerator` checks both on the host with a readable `ValueError`.

`decode` is the task's `decoding_next` closure, the step of every decoding loop of the
package (`massivetext_tf.models.decoding`); the loop itself runs on the host: `prefill` once,
then `decode(argmax, length, cache)`, `decode(argmax, length + 1, cache)`, ... (see
`massivetext_tf.export.litert.LiteRTGenerator`, importable without TensorFlow). Tokenization
happens on the host with the SentencePiece model copied next to the `.tflite` files.

Only TFLite builtin ops are used (no SELECT_TF_OPS): the relative-position gather converts to
GATHER_ND / GATHER and the cache write (`XlaDynamicUpdateSlice`) to DYNAMIC_UPDATE_SLICE.
`--quantize int8` adds a dynamic-range quantized copy (int8 weights, float activations).
"""
import json
import os

import tensorflow as tf

from massivetext_tf import io
from massivetext_tf.export.litert import LiteRTGenerator  # noqa: F401 (old import path)
from massivetext_tf.export.sampling import BOS_ID, EOS_ID, PAD_ID

# Dynamic-range int8 vs float32 logits on the test model (see docs/serving.md): the largest
# absolute difference relative to the float logits' spread.
INT8_LOGITS_TOLERANCE = 0.1


def _cache_shape(task, max_length):
    backbone = task.backbone
    return [1, backbone.num_layers, 2, max_length, backbone.num_heads, backbone.key_value_dim]


def build_lite_module(task, max_length):
    """A tf.Module with the three LiteRT signatures as tf.functions (float32 cache)."""
    L = max_length
    cache_shape = _cache_shape(task, L)
    cache_spec = tf.TensorSpec(cache_shape, tf.float32, name="cache")

    def prefill_step(token_ids, cache):
        logits, _, cache = task.call_with_cache(
            token_ids, tf.cast(cache, task.compute_dtype), 0, task.relative_tables(L)
        )
        return tf.cast(logits, tf.float32), tf.cast(cache, tf.float32)

    @tf.function(
        input_signature=[
            tf.TensorSpec([1, L], tf.int32, name="token_ids"),
            tf.TensorSpec([], tf.int32, name="length"),
        ]
    )
    def prefill(token_ids, length):
        logits, cache = prefill_step(token_ids, tf.zeros(cache_shape, tf.float32))
        last = tf.gather(logits, tf.reshape(length - 1, [1]), axis=1)[:, 0, :]
        return {"logits": last, "cache": cache}

    @tf.function(
        input_signature=[
            tf.TensorSpec([1, 1], tf.int32, name="token_id"),
            tf.TensorSpec([], tf.int32, name="index"),
            cache_spec,
        ]
    )
    def decode(token_id, index, cache):
        # DYNAMIC_UPDATE_SLICE clamps a negative index to 0 (a silently wrong answer); L makes
        # the relative-position gather fail, as every index >= L does.
        index = tf.where(index < 0, L, index)
        # The loop's step: `token_id` is the token at position `index` (= next's `index - 1`).
        next = task.decoding_next(task.relative_tables(L))
        logits, _, cache = next(token_id, tf.cast(cache, task.compute_dtype), index + 1)
        return {"logits": tf.cast(logits, tf.float32), "cache": tf.cast(cache, tf.float32)}

    @tf.function(
        input_signature=[
            tf.TensorSpec([1, L], tf.int32, name="token_ids"),
            tf.TensorSpec([1, L], tf.int32, name="padding_mask"),
        ]
    )
    def forward(token_ids, padding_mask):
        logits = task({"token_ids": token_ids, "padding_mask": padding_mask})
        return {"logits": tf.cast(logits, tf.float32)}

    module = tf.Module(name="massivetext_litert")
    module.model_variables = [v.value for v in task.variables]
    module.prefill, module.decode, module.forward = prefill, decode, forward
    return module


def convert(saved_model_dir, *, quantize=None):
    """TFLite flatbuffer bytes of the three signatures (builtin ops only)."""
    converter = tf.lite.TFLiteConverter.from_saved_model(
        saved_model_dir, signature_keys=["prefill", "decode", "forward"]
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantize is not None:
        raise ValueError(f"--quantize {quantize!r}: only 'int8' (dynamic-range) is supported.")
    return converter.convert()


def export_tflite(task, out_dir, name, *, tokenizer, max_length, quantize=None, version=None):
    """Write `NAME.float32.tflite` (and `NAME.int8.tflite` with `quantize="int8"`),
    `NAME.json` (shapes, ids, version) and `tokenizer.model` into `out_dir`.

    Returns `{"float32.tflite": path, ["int8.tflite": path,] "json": path, "tokenizer": path}`.
    """
    from massivetext_tf.export.saved_model import local_tmp_dir, model_kind

    if model_kind(task) != "decoder_only":
        raise ValueError("LiteRT export supports decoder-only models (GopherCausalLM) for now.")
    tf.io.gfile.makedirs(out_dir)
    module = build_lite_module(task, max_length)
    files = {}
    with local_tmp_dir() as tmp:
        signatures = {"prefill": module.prefill, "decode": module.decode, "forward": module.forward}
        tf.saved_model.save(module, tmp, signatures=signatures)
        variants = [("float32", None)] + ([("int8", "int8")] if quantize else [])
        for label, q in variants:
            path = tf.io.gfile.join(out_dir, f"{name}.{label}.tflite")
            with tf.io.gfile.GFile(path, "wb") as f:
                f.write(convert(tmp, quantize=q))
            files[f"{label}.tflite"] = path
    tokenizer_path = tf.io.gfile.join(out_dir, "tokenizer.model")
    with tf.io.gfile.GFile(tokenizer_path, "wb") as f:
        f.write(tokenizer)
    files["tokenizer"] = tokenizer_path
    meta = {
        "format": 1,
        "name": name,
        "version": version,
        "max_length": max_length,
        "cache_shape": _cache_shape(task, max_length),
        "vocabulary_size": int(task.backbone.vocabulary_size),
        "pad_id": PAD_ID,
        "eos_id": EOS_ID,
        "bos_id": BOS_ID,
        "signatures": {
            "prefill": {"inputs": ["token_ids", "length"], "outputs": ["logits", "cache"]},
            "decode": {"inputs": ["token_id", "index", "cache"], "outputs": ["logits", "cache"]},
            "forward": {"inputs": ["token_ids", "padding_mask"], "outputs": ["logits"]},
        },
        "files": sorted(os.path.basename(p) for p in files.values()) + [f"{name}.json"],
        "int8_logits_tolerance": INT8_LOGITS_TOLERANCE if quantize else None,
    }
    meta_path = tf.io.gfile.join(out_dir, f"{name}.json")
    io.atomic_write(meta_path, json.dumps(meta, indent=2) + "\n")
    files["json"] = meta_path
    return files
