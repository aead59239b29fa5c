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

Every shape is static, so no input sizes an allocation. Positions out of range fail instead of
returning plausible logits: `prefill` with `length` outside `[1, L]` and `decode` with `index`
outside `[0, L)` stop with the interpreter's "gather index out of bounds" error (a negative
`index`, which the cache write would clamp to 0, is mapped to `L` first), and
`LiteRTGenerator` checks both on the host with a readable `ValueError`.
* `forward(token_ids int32 [1, L], padding_mask int32 [1, L])` -> `logits [1, L, vocab]`.

Greedy decoding: `prefill` once, then `decode(argmax, length, cache)`,
`decode(argmax, length + 1, cache)`, ... (see `LiteRTGenerator`). Tokenization happens on the
host with the SentencePiece model copied next to the `.tflite` files.

Only TFLite builtin ops are used (no SELECT_TF_OPS): the relative-position gather converts to
GATHER_ND / GATHER and the cache write (`XlaDynamicUpdateSlice`) to DYNAMIC_UPDATE_SLICE.
`--quantize int8` adds a dynamic-range quantized copy (int8 weights, float activations).
"""
import json
import os

import numpy as np
import tensorflow as tf

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

    def step(token_ids, cache, index):
        tables = task.relative_tables(L)
        logits, _, cache = task.call_with_cache(
            token_ids, tf.cast(cache, task.compute_dtype), index, tables
        )
        return tf.cast(logits, tf.float32), tf.cast(cache, tf.float32)

    @tf.function(
        input_signature=[
            tf.TensorSpec([1, L], tf.int32, name="token_ids"),
            tf.TensorSpec([], tf.int32, name="length"),
        ]
    )
    def prefill(token_ids, length):
        logits, cache = step(token_ids, tf.zeros(cache_shape, tf.float32), 0)
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
        logits, cache = step(token_id, cache, index)
        return {"logits": logits[:, 0, :], "cache": cache}

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
    with tf.io.gfile.GFile(meta_path, "w") as f:
        f.write(json.dumps(meta, indent=2) + "\n")
    files["json"] = meta_path
    return files


class LiteRTGenerator:
    """Greedy decoding through a LiteRT file's `prefill` + `decode` signatures.

    Example:
    >>> gen = LiteRTGenerator("saved_models/tiny/tflite/tiny.float32.tflite")  # doctest: +SKIP
    >>> gen.generate([2, 101, 7], max_new_tokens=16)                           # doctest: +SKIP
    """

    def __init__(self, path, num_threads=None):
        from ai_edge_litert.interpreter import Interpreter

        with tf.io.gfile.GFile(path, "rb") as f:
            self.interpreter = Interpreter(model_content=f.read(), num_threads=num_threads)
        self.prefill_runner = self.interpreter.get_signature_runner("prefill")
        self.decode_runner = self.interpreter.get_signature_runner("decode")
        self.forward_runner = self.interpreter.get_signature_runner("forward")
        details = self.prefill_runner.get_input_details()["token_ids"]
        self.max_length = int(details["shape"][1])

    def prefill(self, prompt_ids):
        if not 1 <= len(prompt_ids) <= self.max_length:
            raise ValueError(
                f"prefill: the prompt has {len(prompt_ids)} tokens; this LiteRT file takes 1 to "
                f"{self.max_length} (its static length)"
            )
        ids = np.zeros([1, self.max_length], np.int32)
        ids[0, : len(prompt_ids)] = prompt_ids
        out = self.prefill_runner(token_ids=ids, length=np.array(len(prompt_ids), np.int32))
        return out["logits"], out["cache"]

    def decode(self, token_id, index, cache):
        if not 0 <= index < self.max_length:
            raise ValueError(
                f"decode: index {index} is outside [0, {self.max_length}) (the file's static length)"
            )
        out = self.decode_runner(
            token_id=np.array([[token_id]], np.int32), index=np.array(index, np.int32), cache=cache
        )
        return out["logits"], out["cache"]

    def forward(self, token_ids, padding_mask):
        return self.forward_runner(
            token_ids=np.asarray(token_ids, np.int32), padding_mask=np.asarray(padding_mask, np.int32)
        )["logits"]

    def generate(self, prompt_ids, max_new_tokens, stop_at_eos=True):
        """Greedy new token ids (`</s>` included when reached) after `prompt_ids`
        (which should start with `<s>`)."""
        prompt_ids = list(prompt_ids)
        if not 1 <= len(prompt_ids) < self.max_length:
            raise ValueError(f"prompt must have 1..{self.max_length - 1} tokens")
        max_new_tokens = min(max_new_tokens, self.max_length - len(prompt_ids))
        logits, cache = self.prefill(prompt_ids)
        tokens = []
        index = len(prompt_ids)
        while True:
            token = int(np.argmax(logits[0]))
            tokens.append(token)
            if (stop_at_eos and token == EOS_ID) or len(tokens) >= max_new_tokens:
                return tokens
            logits, cache = self.decode(token, index, cache)
            index += 1
