"""SavedModel export: `generate`, `score` and `forward` signatures that need only TensorFlow.

The exported graph holds the whole request path: SentencePiece tokenization
(`tensorflow_text.SentencepieceTokenizer` built from the model proto, so the tokenizer is a
graph resource and not a Python object), a key/value-cached sampling loop over the task's
`call_with_cache` (decoder-only) or `call_decoder_with_cache` (encoder-decoder) in one
`tf.while_loop`, optionally XLA-compiled, and detokenization. The module saved is a plain
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
import math
import os
import re
import tempfile

import tensorflow as tf
import tensorflow_text as tf_text

from massivetext_tf import io

from massivetext_tf.export.sampling import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    add_bos,
    add_eos,
    check_sampling_args,
    keep_before_eos,
    left_truncate,
    right_truncate,
    sample_next_token,
    valid_utf8,
)

DEFAULT_MAX_NEW_TOKENS = 32
# The most rows (prompts, texts, token id rows) one request may carry unless the export says
# otherwise (`max_batch_size=`, `--max-batch-size`; None or 0 = no cap). The decoding cache is
# allocated per row, so without a cap one request with a huge batch can exhaust a server.
DEFAULT_MAX_BATCH_SIZE = 64
# How far past its trained context (`max_sequence_length`) an export's static length may go.
MAX_LENGTH_EXTRAPOLATION = 8
EXPORT_INFO_FILE = "massivetext_export.json"
SIGNATURES = ("serving_default", "generate", "generate_all_inputs", "score", "forward")


# ----------------------------------------------------------------------------------------
# Task inspection
# ----------------------------------------------------------------------------------------




def _gated(checks, *tensors):
    """`tensors` passed through `tf.identity` under control dependencies on `checks`.

    A `tf.debugging.assert_*` op only orders the ops that depend on it: inside a graph an op
    that reads a request input directly (`tf.range(max_new_tokens)`, a cache of `batch` rows)
    runs in parallel with the assertion and may allocate gigabytes before it fails. Every use
    of a request input therefore goes through its gated copy, so nothing sized by an input
    exists until the input has been checked."""
    with tf.control_dependencies(checks):
        return [tf.identity(t) for t in tensors]


def _batch_checks(tensor, name, max_batch_size, *, nonempty=True):
    """`tensor`'s batch (first dimension) must be >= 1 (with `nonempty`) and, with a cap,
    <= `max_batch_size`."""
    batch = tf.shape(tensor)[0]
    checks = []
    if nonempty:
        checks.append(
            tf.debugging.assert_positive(batch, message=f"`{name}` must hold at least one {_ROW[name]}")
        )
    if max_batch_size:
        checks.append(
            tf.debugging.assert_less_equal(
                batch,
                tf.constant(max_batch_size, tf.int32),
                message=(
                    f"`{name}` holds more than {max_batch_size} {_ROW[name]}s, the most one request "
                    f"may carry (export option --max-batch-size {max_batch_size}); split the request"
                ),
            )
        )
    return checks


_ROW = {
    "prompts": "string",
    "texts": "string",
    "token_ids": "row",
    "encoder_token_ids": "row",
}


def _checked_generate_args(
    prompts, max_new_tokens, temperature, top_k, top_p, seed, max_new_limit, max_batch_size
):
    """Validate a generate request (readable InvalidArgumentErrors) and return every input
    gated on the checks (see `_gated`), the prompts with invalid UTF-8 replaced."""
    checks = check_sampling_args(
        max_new_tokens, temperature, top_k, top_p, max_new_limit=max_new_limit
    )
    checks += _batch_checks(prompts, "prompts", max_batch_size)
    prompts, max_new_tokens, temperature, top_k, top_p, seed = _gated(
        checks, prompts, max_new_tokens, temperature, top_k, top_p, seed
    )
    return valid_utf8(prompts), max_new_tokens, temperature, top_k, top_p, seed


def max_text_chars(proto, max_length):
    """The most characters of a string worth tokenizing for a context of `max_length` tokens:
    twice `max_length` times the longest piece of the SentencePiece model (byte-fallback and
    control pieces excluded; the factor 2 leaves room for normalization that merges
    characters). Fewer characters can never make `max_length` tokens, so cutting a string to
    this length first loses no token the context could hold, and it bounds the work (and
    memory: about 100x a string's size while tokenizing) one huge string can cause."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_proto=proto)
    longest = max(
        (
            len(sp.id_to_piece(i))
            for i in range(sp.get_piece_size())
            if not (sp.is_byte(i) or sp.is_control(i) or sp.is_unknown(i))
        ),
        default=1,
    )
    return 2 * max_length * max(longest, 1)


def _last_chars(texts, n):
    """The last `n` characters of each (valid UTF-8) string."""
    length = tf.strings.length(texts, unit="UTF8_CHAR")
    start = tf.maximum(length - n, 0)
    return tf.strings.substr(texts, start, tf.fill(tf.shape(start), n), unit="UTF8_CHAR")


def _first_chars(texts, n):
    """The first `n` characters of each (valid UTF-8) string."""
    return tf.strings.substr(texts, 0, n, unit="UTF8_CHAR")


def _within_chars(texts, n, message):
    """`texts` gated on every string having at most `n` characters (else `message`)."""
    longest = tf.reduce_max(tf.strings.length(texts, unit="UTF8_CHAR"))
    return _gated([tf.debugging.assert_less_equal(longest, n, message=message)], texts)[0]


def _padded_within(ids, max_length, message):
    """Ragged ids -> dense `(tokens, mask)`, failing with `message` when a row is longer than
    `max_length` (an InvalidArgumentError the serving signature returns, not a crash)."""
    lengths = tf.cast(ids.row_lengths(), tf.int32)
    check = tf.debugging.assert_less_equal(tf.reduce_max(lengths), max_length, message=message)
    with tf.control_dependencies([check]):
        tokens = ids.to_tensor(default_value=PAD_ID)
    return tokens, tf.sequence_mask(lengths, tf.shape(tokens)[1], dtype=tf.int32)

def model_kind(task):
    """`"decoder_only"` or `"encoder_decoder"` for a massivetext_tf task model."""
    if hasattr(task, "call_decoder_with_cache"):
        return "encoder_decoder"
    if hasattr(task, "call_with_cache"):
        return "decoder_only"
    raise ValueError(
        f"Cannot export a {type(task).__name__}: expected a GopherCausalLM (with "
        "`call_with_cache`) or an EncoderDecoderSeq2SeqLM (with `call_decoder_with_cache`)."
    )


def token_conventions(task):
    """`{"decoder_start_id", "bos_id", "t5_sentinels"}` of `task`, a property of its tokenizer
    class: a `T5Tokenizer` (T5 checkpoints) starts the decoder from `<pad>` = 0, has no `<s>`
    and spaces `<extra_id_N>` as transformers does; otherwise the toolkit's `<s>` = 2."""
    from massivetext_tf.models.encoder_decoder.t5 import T5Tokenizer

    tokenizer = getattr(getattr(task, "preprocessor", None), "tokenizer", None)
    if isinstance(tokenizer, T5Tokenizer):
        return {"decoder_start_id": int(tokenizer.start_token_id), "bos_id": None, "t5_sentinels": True}
    return {"decoder_start_id": BOS_ID, "bos_id": BOS_ID, "t5_sentinels": False}


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


def _backbone_dims(task):
    backbone = task.backbone
    layers = getattr(backbone, "num_layers", None) or backbone.num_decoder_layers
    return layers, backbone.num_heads, backbone.key_value_dim


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
# Decoder-only
# ----------------------------------------------------------------------------------------


def _tokenize_fn(tokenizer, conventions):
    """`tokenizer.tokenize`, after spacing `<extra_id_N>` as transformers does when the model
    follows T5's conventions (`token_conventions`)."""
    if not conventions["t5_sentinels"]:
        return tokenizer.tokenize

    def tokenize(texts):
        from massivetext_tf.models.encoder_decoder.t5 import normalize_sentinels

        return tokenizer.tokenize(normalize_sentinels(texts))

    return tokenize


def _decoder_only_functions(
    task, tokenizer, max_length, default_max_new_tokens, jit_compile, max_batch_size, max_chars
):
    L = max_length
    num_layers, num_heads, key_dim = _backbone_dims(task)
    cache_dtype = task.compute_dtype
    max_new_limit = L - 1
    conventions = token_conventions(task)
    start_id = conventions["decoder_start_id"]  # <s> = 2, or T5's <pad> = 0

    tokenize = _tokenize_fn(tokenizer, conventions)

    def empty_cache(batch):
        return tf.zeros([batch, num_layers, 2, L, num_heads, key_dim], dtype=cache_dtype)

    @tf.function(jit_compile=jit_compile, reduce_retracing=True)
    def decode(tokens, cache, lengths, ends, temperature, top_k, top_p, seed):
        """The XLA-compiled sampling loop. `tokens` `[batch, L]` holds the right-padded prompts
        (`lengths`), `cache` is prefilled up to `min(lengths) - 1`; row `i` samples positions
        `lengths[i] .. ends[i] - 1` or stops at `</s>`."""
        tables = task.relative_tables(L)
        batch = tf.shape(tokens)[0]
        positions = tf.range(L)[None, :]

        def cond(t, tokens, cache, done):
            return tf.logical_and(t < tf.reduce_max(ends) - 1, tf.logical_not(tf.reduce_all(done)))

        def body(t, tokens, cache, done):
            token = tf.gather(tokens, tf.reshape(t, [1]), axis=1)
            logits, _, cache = task.call_with_cache(token, cache, t, tables)
            pos = t + 1
            sampled = sample_next_token(logits[:, 0, :], temperature, top_k, top_p, seed, pos)
            in_prompt = pos < lengths
            generating = tf.logical_and(tf.logical_not(in_prompt), tf.logical_not(done))
            prompt_token = tf.gather(tokens, pos, axis=1)
            new = tf.where(in_prompt, prompt_token, tf.where(generating, sampled, PAD_ID))
            tokens = tf.where(tf.equal(positions, pos), new[:, None], tokens)
            done = done | (generating & tf.equal(sampled, EOS_ID)) | (pos >= ends - 1)
            return pos, tokens, cache, done

        t0 = tf.reduce_min(lengths) - 1
        done = tf.zeros([batch], tf.bool)
        _, tokens, _, _ = tf.while_loop(
            cond, body, (t0, tokens, cache, done), maximum_iterations=L
        )
        return tokens

    def generate(prompts, max_new_tokens, temperature, top_k, top_p, seed):
        prompts, max_new_tokens, temperature, top_k, top_p, seed = _checked_generate_args(
            prompts, max_new_tokens, temperature, top_k, top_p, seed, max_new_limit, max_batch_size
        )
        # Context policy: keep `<s>` + the most recent `L - max_new_tokens - 1` prompt tokens
        # (of the last `max_chars` characters: more could not add a token to those).
        ids = tokenizer.tokenize(_last_chars(prompts, max_chars))
        ids = add_bos(left_truncate(ids, L - max_new_tokens - 1))
        lengths = tf.cast(ids.row_lengths(), tf.int32)
        tokens = ids.to_tensor(default_value=PAD_ID, shape=[None, L])
        batch = tf.shape(tokens)[0]
        ends = lengths + max_new_tokens

        # Prefill (not compiled: its length varies) the positions every row shares.
        tables = task.relative_tables(L)
        prefill = tf.maximum(tf.reduce_min(lengths) - 1, 1)
        _, _, cache = task.call_with_cache(tokens[:, :prefill], empty_cache(batch), 0, tables)
        tokens = decode(tokens, cache, lengths, ends, temperature, top_k, top_p, seed)

        index = lengths[:, None] + tf.range(max_new_tokens)[None, :]
        new_tokens = tf.gather(tokens, index, batch_dims=1)
        keep = keep_before_eos(new_tokens)
        text = tokenizer.detokenize(tf.ragged.boolean_mask(new_tokens, keep))
        return {"text": valid_utf8(text), "token_ids": new_tokens}

    def score(texts):
        (texts,) = _gated(_batch_checks(texts, "texts", max_batch_size), texts)
        texts = _within_chars(
            valid_utf8(texts),
            max_chars,
            f"score: a text of more than {max_chars} characters is longer than the exported "
            f"context of {L} tokens; split it into pieces",
        )
        tokens, mask = _padded_within(
            add_eos(add_bos(tokenizer.tokenize(texts))),
            L,
            f"score: a text is longer than the exported context of {L} tokens "
            "(counting <s> and </s>); split it into pieces",
        )
        logits = tf.cast(task({"token_ids": tokens, "padding_mask": mask}), tf.float32)
        return _sequence_scores(logits, tokens, mask, texts)

    def forward(token_ids, padding_mask):
        checks = [
            tf.debugging.assert_equal(
                tf.shape(token_ids),
                tf.shape(padding_mask),
                message="`token_ids` and `padding_mask` must have the same shape",
            ),
            tf.debugging.assert_less_equal(
                tf.shape(token_ids)[1], L, message=f"forward: length must be <= {L}"
            ),
            _assert_ids_in_vocabulary(token_ids, task.backbone.vocabulary_size),
        ] + _batch_checks(token_ids, "token_ids", max_batch_size, nonempty=False)
        token_ids, padding_mask = _gated(checks, token_ids, padding_mask)
        logits = task({"token_ids": token_ids, "padding_mask": padding_mask})
        return {"logits": tf.cast(logits, tf.float32)}

    forward_spec = [
        tf.TensorSpec([None, None], tf.int32, name="token_ids"),
        tf.TensorSpec([None, None], tf.int32, name="padding_mask"),
    ]
    return _wrap_generate(generate, default_max_new_tokens), score, (forward, forward_spec)


def _sequence_scores(logits, tokens, mask, texts):
    """Sum of log p(token_t | tokens_<t) over every scored position (mask[:, 1:])."""
    log_probs = tf.nn.log_softmax(logits[:, :-1, :], axis=-1)
    targets = tokens[:, 1:]
    token_log_probs = tf.gather(log_probs, targets, batch_dims=2)
    weights = tf.cast(mask[:, 1:], tf.float32)
    log_likelihood = tf.reduce_sum(token_log_probs * weights, axis=-1)
    num_tokens = tf.reduce_sum(mask[:, 1:], axis=-1)
    num_bytes = tf.cast(tf.strings.length(texts, unit="BYTE"), tf.float32)
    bits_per_byte = tf.math.divide_no_nan(-log_likelihood, math.log(2.0) * num_bytes)
    return {
        "log_likelihood": log_likelihood,
        "num_tokens": num_tokens,
        "bits_per_byte": bits_per_byte,
    }


def _assert_ids_in_vocabulary(token_ids, vocabulary_size):
    return tf.debugging.assert_equal(
        tf.reduce_all((token_ids >= 0) & (token_ids < vocabulary_size)),
        True,
        message=f"token ids must be in [0, {vocabulary_size})",
    )


def _generate_specs():
    return {
        "max_new_tokens": tf.TensorSpec([], tf.int32, name="max_new_tokens"),
        "temperature": tf.TensorSpec([], tf.float32, name="temperature"),
        "top_k": tf.TensorSpec([], tf.int32, name="top_k"),
        "top_p": tf.TensorSpec([], tf.float32, name="top_p"),
        "seed": tf.TensorSpec([], tf.int64, name="seed"),
    }


def _wrap_generate(generate, default_max_new_tokens):
    """Two tf.functions over one body: with tensor defaults (-> SignatureDef.defaults) and
    without (every input required)."""
    specs = _generate_specs()
    prompt_spec = tf.TensorSpec([None], tf.string, name="prompts")
    signature = [prompt_spec] + list(specs.values())

    def with_defaults(
        prompts,
        max_new_tokens=tf.constant(default_max_new_tokens, tf.int32),
        temperature=tf.constant(0.0, tf.float32),
        top_k=tf.constant(0, tf.int32),
        top_p=tf.constant(1.0, tf.float32),
        seed=tf.constant(0, tf.int64),
    ):
        return generate(prompts, max_new_tokens, temperature, top_k, top_p, seed)

    def all_inputs(prompts, max_new_tokens, temperature, top_k, top_p, seed):
        return generate(prompts, max_new_tokens, temperature, top_k, top_p, seed)

    return (
        tf.function(with_defaults, input_signature=signature),
        tf.function(all_inputs, input_signature=signature),
    )


# ----------------------------------------------------------------------------------------
# Encoder-decoder
# ----------------------------------------------------------------------------------------


def _encoder_decoder_functions(
    task, tokenizer, max_length, default_max_new_tokens, jit_compile, max_batch_size, max_chars
):
    L = max_length
    num_layers, num_heads, key_dim = _backbone_dims(task)
    cache_dtype = task.compute_dtype
    max_new_limit = L - 1
    conventions = token_conventions(task)
    start_id = conventions["decoder_start_id"]  # <s> = 2, or T5's <pad> = 0

    tokenize = _tokenize_fn(tokenizer, conventions)

    def encode(texts):
        """Source packing as the training preprocessor: `tokens[:L-1] + [</s>]`, padded to L
        (static, so the decoding loop compiles once per batch size). Only the first
        `max_chars` characters are tokenized: more could not add a token to those."""
        ids = add_eos(right_truncate(tokenize(_first_chars(texts, max_chars)), L - 1))
        lengths = tf.cast(ids.row_lengths(), tf.int32)
        tokens = ids.to_tensor(default_value=PAD_ID, shape=[None, L])
        mask = tf.sequence_mask(lengths, L, dtype=tf.int32)
        return tokens, mask

    @tf.function(jit_compile=jit_compile, reduce_retracing=True)
    def decode(encoder_states, encoder_mask, cross_cache, max_new_tokens, temperature, top_k, top_p, seed):
        tables = task.relative_tables(L)
        batch = tf.shape(encoder_states)[0]
        positions = tf.range(L)[None, :]
        tokens = tf.where(tf.equal(positions, 0), start_id, tf.zeros([batch, L], tf.int32))
        cache = tf.zeros([batch, num_layers, 2, L, num_heads, key_dim], dtype=cache_dtype)

        def cond(t, tokens, cache, done):
            return tf.logical_and(t < max_new_tokens, tf.logical_not(tf.reduce_all(done)))

        def body(t, tokens, cache, done):
            token = tf.gather(tokens, tf.reshape(t, [1]), axis=1)
            logits, _, cache, _ = task.call_decoder_with_cache(
                encoder_hidden_states=encoder_states,
                encoder_padding_mask=encoder_mask,
                decoder_token_ids=token,
                self_attention_cache=cache,
                self_attention_cache_update_index=t,
                cross_attention_cache=cross_cache,
                cross_attention_cache_update_index=None,
                relative_tables=tables,
            )
            pos = t + 1
            sampled = sample_next_token(logits[:, 0, :], temperature, top_k, top_p, seed, pos)
            new = tf.where(done, PAD_ID, sampled)
            tokens = tf.where(tf.equal(positions, pos), new[:, None], tokens)
            done = done | tf.equal(sampled, EOS_ID)
            return pos, tokens, cache, done

        done = tf.zeros([batch], tf.bool)
        _, tokens, _, _ = tf.while_loop(
            cond, body, (tf.constant(0), tokens, cache, done), maximum_iterations=L
        )
        return tokens

    def generate(prompts, max_new_tokens, temperature, top_k, top_p, seed):
        prompts, max_new_tokens, temperature, top_k, top_p, seed = _checked_generate_args(
            prompts, max_new_tokens, temperature, top_k, top_p, seed, max_new_limit, max_batch_size
        )
        encoder_tokens, encoder_mask = encode(prompts)
        encoder_states = task.call_encoder(encoder_tokens, encoder_mask)
        cross_cache = task.cross_attention_key_values(encoder_states)
        tokens = decode(
            encoder_states, encoder_mask, cross_cache, max_new_tokens, temperature, top_k, top_p, seed
        )
        new_tokens = tokens[:, 1 : max_new_tokens + 1]
        # Ids past the SentencePiece vocabulary (T5's 32,128 rows hold 32,100 tokens) have no text.
        keep = keep_before_eos(new_tokens) & (new_tokens < tokenizer.vocab_size())
        text = tokenizer.detokenize(tf.ragged.boolean_mask(new_tokens, keep))
        return {"text": valid_utf8(text), "token_ids": new_tokens}

    def score(texts, targets):
        checks = _batch_checks(texts, "texts", max_batch_size) + [
            tf.debugging.assert_equal(
                tf.size(texts), tf.size(targets), message="`texts` and `targets` must have the same length"
            ),
        ]
        texts, targets = _gated(checks, texts, targets)
        texts = valid_utf8(texts)
        targets = _within_chars(
            valid_utf8(targets),
            max_chars,
            f"score: a target of more than {max_chars} characters is longer than the exported "
            f"decoder context of {L} tokens; split it into pieces",
        )
        encoder_tokens, encoder_mask = encode(texts)
        tokens, mask = _padded_within(
            add_eos(add_bos(tokenize(targets), start_id)),
            L,
            f"score: a target is longer than the exported decoder context of {L} "
            "tokens (counting the start token and </s>)",
        )
        logits = task(
            {
                "encoder_token_ids": encoder_tokens,
                "encoder_padding_mask": encoder_mask,
                "decoder_token_ids": tokens,
                "decoder_padding_mask": mask,
            }
        )
        return _sequence_scores(tf.cast(logits, tf.float32), tokens, mask, targets)

    def forward(encoder_token_ids, encoder_padding_mask, decoder_token_ids, decoder_padding_mask):
        vocab = task.backbone.vocabulary_size
        checks = [
            tf.debugging.assert_equal(
                tf.shape(encoder_token_ids),
                tf.shape(encoder_padding_mask),
                message="`encoder_token_ids` and `encoder_padding_mask` must have the same shape",
            ),
            tf.debugging.assert_equal(
                tf.shape(decoder_token_ids),
                tf.shape(decoder_padding_mask),
                message="`decoder_token_ids` and `decoder_padding_mask` must have the same shape",
            ),
            tf.debugging.assert_equal(
                tf.shape(encoder_token_ids)[0],
                tf.shape(decoder_token_ids)[0],
                message="`encoder_token_ids` and `decoder_token_ids` must have the same batch size",
            ),
            tf.debugging.assert_less_equal(
                tf.shape(encoder_token_ids)[1], L, message=f"forward: encoder length must be <= {L}"
            ),
            tf.debugging.assert_less_equal(
                tf.shape(decoder_token_ids)[1], L, message=f"forward: decoder length must be <= {L}"
            ),
            _assert_ids_in_vocabulary(encoder_token_ids, vocab),
            _assert_ids_in_vocabulary(decoder_token_ids, vocab),
        ] + _batch_checks(encoder_token_ids, "encoder_token_ids", max_batch_size, nonempty=False)
        encoder_token_ids, encoder_padding_mask, decoder_token_ids, decoder_padding_mask = _gated(
            checks, encoder_token_ids, encoder_padding_mask, decoder_token_ids, decoder_padding_mask
        )
        logits = task(
            {
                "encoder_token_ids": encoder_token_ids,
                "encoder_padding_mask": encoder_padding_mask,
                "decoder_token_ids": decoder_token_ids,
                "decoder_padding_mask": decoder_padding_mask,
            }
        )
        return {"logits": tf.cast(logits, tf.float32)}

    forward_spec = [
        tf.TensorSpec([None, None], tf.int32, name=name)
        for name in ("encoder_token_ids", "encoder_padding_mask", "decoder_token_ids", "decoder_padding_mask")
    ]
    return _wrap_generate(generate, default_max_new_tokens), score, (forward, forward_spec)


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
    builder = _decoder_only_functions if kind == "decoder_only" else _encoder_decoder_functions
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
