"""The SavedModel signature functions of each model kind: `generate`, `score`, `forward`.

`generate` tokenizes in the graph, prefills the key/value cache, runs the one decoding loop
(`massivetext_tf.models.decoding.decode`, XLA-compiled) with the task's `decoding_next`
closure and the stateless sampler of `export.sampling`, and detokenizes. `score` and `forward`
are one forward pass. Every request input is checked first (`export.requests`).
"""
import math

import tensorflow as tf

from massivetext_tf.export.requests import (
    assert_ids_in_vocabulary,
    batch_checks,
    checked_generate_args,
    first_chars,
    gated,
    last_chars,
    padded_within,
    within_chars,
)
from massivetext_tf.export.sampling import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    add_bos,
    add_eos,
    keep_before_eos,
    left_truncate,
    right_truncate,
    token_sampler,
    valid_utf8,
)
from massivetext_tf.models import decoding


def token_conventions(task):
    """`{"decoder_start_id", "bos_id", "t5_sentinels"}` of `task`, a property of its tokenizer
    class: a `T5Tokenizer` (T5 checkpoints) starts the decoder from `<pad>` = 0, has no `<s>`
    and spaces `<extra_id_N>` as transformers does; otherwise the toolkit's `<s>` = 2."""
    start_id = decoding.decoder_start_id(task)
    if start_id != BOS_ID:
        return {"decoder_start_id": start_id, "bos_id": None, "t5_sentinels": True}
    return {"decoder_start_id": BOS_ID, "bos_id": BOS_ID, "t5_sentinels": False}


def backbone_dims(task):
    """`(decoder layers, heads, key/value dim)`: the self-attention cache's dimensions."""
    backbone = task.backbone
    layers = getattr(backbone, "num_layers", None) or backbone.num_decoder_layers
    return layers, backbone.num_heads, backbone.key_value_dim


def tokenize_fn(tokenizer, conventions):
    """`tokenizer.tokenize`, after spacing `<extra_id_N>` as transformers does when the model
    follows T5's conventions (`token_conventions`)."""
    if not conventions["t5_sentinels"]:
        return tokenizer.tokenize

    def tokenize(texts):
        from massivetext_tf.models.encoder_decoder.t5 import normalize_sentinels

        return tokenizer.tokenize(normalize_sentinels(texts))

    return tokenize


def decoder_only_functions(
    task, tokenizer, max_length, default_max_new_tokens, jit_compile, max_batch_size, max_chars
):
    """The decoder-only signature bodies over `task` at the static length `max_length`:
    `((generate, generate_all_inputs), score, (forward, forward_input_spec))`.

    `generate` keeps `<s>` and the most recent prompt tokens that leave room for
    `max_new_tokens`, prefills the cache over the positions every row shares, then runs the
    XLA-compiled loop; `score` sums log-likelihoods of `<s> text </s>`; `forward` returns logits.
    """
    L = max_length
    num_layers, num_heads, key_dim = backbone_dims(task)
    cache_dtype = task.compute_dtype
    max_new_limit = L - 1

    def empty_cache(batch):
        return tf.zeros([batch, num_layers, 2, L, num_heads, key_dim], dtype=cache_dtype)

    @tf.function(jit_compile=jit_compile, reduce_retracing=True)
    def decode(tokens, cache, lengths, ends, temperature, top_k, top_p, seed):
        """The XLA-compiled sampling loop. `tokens` `[batch, L]` holds the right-padded prompts
        (`lengths`), `cache` is prefilled up to `min(lengths) - 1`; row `i` samples positions
        `lengths[i] .. ends[i] - 1` or stops at `</s>`."""
        next = task.decoding_next(task.relative_tables(L))
        return decoding.decode(
            next,
            token_sampler(temperature, top_k, top_p, seed),
            tokens,
            cache,
            tf.reduce_min(lengths),
            mask=tf.range(L)[None, :] < lengths[:, None],
            ends=ends,
            end_id=EOS_ID,
            pad_id=PAD_ID,
        )

    def generate(prompts, max_new_tokens, temperature, top_k, top_p, seed):
        prompts, max_new_tokens, temperature, top_k, top_p, seed = checked_generate_args(
            prompts, max_new_tokens, temperature, top_k, top_p, seed, max_new_limit, max_batch_size
        )
        # Context policy: keep `<s>` + the most recent `L - max_new_tokens - 1` prompt tokens
        # (of the last `max_chars` characters: more could not add a token to those).
        ids = tokenizer.tokenize(last_chars(prompts, max_chars))
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
        (texts,) = gated(batch_checks(texts, "texts", max_batch_size), texts)
        texts = within_chars(
            valid_utf8(texts),
            max_chars,
            f"score: a text of more than {max_chars} characters is longer than the exported "
            f"context of {L} tokens; split it into pieces",
        )
        tokens, mask = padded_within(
            add_eos(add_bos(tokenizer.tokenize(texts))),
            L,
            f"score: a text is longer than the exported context of {L} tokens "
            "(counting <s> and </s>); split it into pieces",
        )
        logits = tf.cast(task({"token_ids": tokens, "padding_mask": mask}), tf.float32)
        return sequence_scores(logits, tokens, mask, texts)

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
            assert_ids_in_vocabulary(token_ids, task.backbone.vocabulary_size),
        ] + batch_checks(token_ids, "token_ids", max_batch_size, nonempty=False)
        token_ids, padding_mask = gated(checks, token_ids, padding_mask)
        logits = task({"token_ids": token_ids, "padding_mask": padding_mask})
        return {"logits": tf.cast(logits, tf.float32)}

    forward_spec = [
        tf.TensorSpec([None, None], tf.int32, name="token_ids"),
        tf.TensorSpec([None, None], tf.int32, name="padding_mask"),
    ]
    return wrap_generate(generate, default_max_new_tokens), score, (forward, forward_spec)


def sequence_scores(logits, tokens, mask, texts):
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


def assert_ids_in_vocabulary(token_ids, vocabulary_size):
    return tf.debugging.assert_equal(
        tf.reduce_all((token_ids >= 0) & (token_ids < vocabulary_size)),
        True,
        message=f"token ids must be in [0, {vocabulary_size})",
    )


def generate_specs():
    return {
        "max_new_tokens": tf.TensorSpec([], tf.int32, name="max_new_tokens"),
        "temperature": tf.TensorSpec([], tf.float32, name="temperature"),
        "top_k": tf.TensorSpec([], tf.int32, name="top_k"),
        "top_p": tf.TensorSpec([], tf.float32, name="top_p"),
        "seed": tf.TensorSpec([], tf.int64, name="seed"),
    }


def wrap_generate(generate, default_max_new_tokens):
    """Two tf.functions over one body: with tensor defaults (-> SignatureDef.defaults) and
    without (every input required)."""
    specs = generate_specs()
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


def encoder_decoder_functions(
    task, tokenizer, max_length, default_max_new_tokens, jit_compile, max_batch_size, max_chars
):
    """The encoder-decoder signature bodies, as `decoder_only_functions`: `generate` encodes
    the source once (cross-attention keys/values included) and decodes from the model's start
    token; `score` takes `texts` (sources) and `targets`; `forward` keras-hub's four inputs."""
    L = max_length
    num_layers, num_heads, key_dim = backbone_dims(task)
    cache_dtype = task.compute_dtype
    max_new_limit = L - 1
    conventions = token_conventions(task)
    start_id = conventions["decoder_start_id"]  # <s> = 2, or T5's <pad> = 0

    tokenize = tokenize_fn(tokenizer, conventions)

    def encode(texts):
        """Source packing as the training preprocessor: `tokens[:L-1] + [</s>]`, padded to L
        (static, so the decoding loop compiles once per batch size). Only the first
        `max_chars` characters are tokenized: more could not add a token to those."""
        ids = add_eos(right_truncate(tokenize(first_chars(texts, max_chars)), L - 1))
        lengths = tf.cast(ids.row_lengths(), tf.int32)
        tokens = ids.to_tensor(default_value=PAD_ID, shape=[None, L])
        mask = tf.sequence_mask(lengths, L, dtype=tf.int32)
        return tokens, mask

    @tf.function(jit_compile=jit_compile, reduce_retracing=True)
    def decode(encoder_states, encoder_mask, cross_cache, max_new_tokens, temperature, top_k, top_p, seed):
        """The XLA-compiled sampling loop: the decoder starts from `start_id` at position 0
        and samples positions 1 .. `max_new_tokens` or stops at `</s>`."""
        batch = tf.shape(encoder_states)[0]
        tokens = tf.where(tf.equal(tf.range(L)[None, :], 0), start_id, tf.zeros([batch, L], tf.int32))
        self_cache = tf.zeros([batch, num_layers, 2, L, num_heads, key_dim], dtype=cache_dtype)
        return decoding.decode(
            task.decoding_next(task.relative_tables(L)),
            token_sampler(temperature, top_k, top_p, seed),
            tokens,
            (self_cache, encoder_states, encoder_mask, cross_cache),
            1,
            ends=max_new_tokens + 1,
            end_id=EOS_ID,
            pad_id=PAD_ID,
        )

    def generate(prompts, max_new_tokens, temperature, top_k, top_p, seed):
        prompts, max_new_tokens, temperature, top_k, top_p, seed = checked_generate_args(
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
        checks = batch_checks(texts, "texts", max_batch_size) + [
            tf.debugging.assert_equal(
                tf.size(texts), tf.size(targets), message="`texts` and `targets` must have the same length"
            ),
        ]
        texts, targets = gated(checks, texts, targets)
        texts = valid_utf8(texts)
        targets = within_chars(
            valid_utf8(targets),
            max_chars,
            f"score: a target of more than {max_chars} characters is longer than the exported "
            f"decoder context of {L} tokens; split it into pieces",
        )
        encoder_tokens, encoder_mask = encode(texts)
        tokens, mask = padded_within(
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
        return sequence_scores(tf.cast(logits, tf.float32), tokens, mask, targets)

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
            assert_ids_in_vocabulary(encoder_token_ids, vocab),
            assert_ids_in_vocabulary(decoder_token_ids, vocab),
        ] + batch_checks(encoder_token_ids, "encoder_token_ids", max_batch_size, nonempty=False)
        encoder_token_ids, encoder_padding_mask, decoder_token_ids, decoder_padding_mask = gated(
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
    return wrap_generate(generate, default_max_new_tokens), score, (forward, forward_spec)
