"""One decoding loop for every model kind, shaped like keras-hub's sampler.

keras-hub's `Sampler.__call__(next, prompt, cache, index, mask, stop_token_ids)` runs one
`while_loop` over a token buffer allocated at full length; the model only supplies
`next(tokens, cache, index) -> (logits, hidden_states, cache)`, the logits of position `index`
given `tokens[:, :index]`. `decode` below is that loop, in `keras.ops`, with what serving
needs on top: a token-choice function that sees the position (so a stateless sampler can
seed each step), per-row ends (`prompt length + max_new_tokens`), and rows that stop at the
end token and are padded after it. Each task provides its closure
(`GopherCausalLM.decoding_next`, `EncoderDecoderSeq2SeqLM.decoding_next`), and the same
closure serves keras-hub's `generate()`, the SavedModel `generate` signature
(`massivetext_tf.export.signatures`), the LiteRT `decode` signature
(`massivetext_tf.export.tflite`) and `greedy_generate` (fine-tuning evaluation).

`generate_uncached` on each task stays the reference implementation the loop is tested
against (tests/models/test_decoding.py).

The module itself imports only Keras and numpy (no TensorFlow unless the Keras backend is
TensorFlow); the package `massivetext_tf.models` around it imports keras-hub.
"""
import weakref

import keras
import numpy as np
from keras import ops

# The toolkit's SentencePiece ids (massivetext_tf.data.tokenizer); T5 checkpoints start the
# decoder from <pad> instead (see `decoder_start_id`).
PAD_ID, EOS_ID, BOS_ID = 0, 1, 2


def decode(next, choose, tokens, cache, index, *, mask=None, ends=None, end_id=None, pad_id=PAD_ID):
    """Fill `tokens` from position `index` on, one `keras.ops.while_loop` step per position.

    Args:
        next: `next(tokens, cache, index) -> (logits [batch, vocab], hidden_states, cache)`,
            the logits of position `index` given `tokens[:, :index]` (keras-hub's closure).
        choose: `choose(logits, index) -> int [batch]`, the token written at `index`
            (`argmax` for greedy decoding; the position lets a stateless sampler seed the step).
        tokens: int `[batch, length]`, the buffer: prompts written, anything elsewhere.
        cache: whatever `next` threads through (a tensor or a tuple of tensors), holding
            positions `< index - 1`.
        index: scalar int, the first position to fill (keras-hub: the shortest prompt length).
        mask: optional bool `[batch, length]`, True at the prompt positions, which keep their
            token while the loop passes them (rows with longer prompts).
        ends: optional int `[batch]` or scalar: row `i` fills positions `< ends[i]` (default
            `length`).
        end_id: optional end token: a row that chooses it (outside its prompt) stops.
        pad_id: what stopped rows write after their end.

    Returns:
        int `[batch, length]`: the prompts, each row's new tokens up to its end token or
        `ends[i]`, and `pad_id` after those (positions the loop never reached keep their
        input value).
    """
    length = ops.shape(tokens)[1]
    batch = ops.shape(tokens)[0]
    index = ops.cast(index, "int32")
    if mask is None:
        mask = ops.zeros_like(tokens, dtype="bool")
    mask = ops.cast(mask, "bool")
    if ends is None:
        ends = length
    ends = ops.broadcast_to(ops.cast(ends, "int32"), (batch,))
    last = ops.max(ends)
    cache = () if cache is None else cache

    def cond(tokens, cache, index, done):
        return ops.logical_and(index < last, ops.logical_not(ops.all(done)))

    def body(tokens, cache, index, done):
        logits, _, cache = next(tokens, cache, index)
        chosen = ops.cast(choose(logits, index), tokens.dtype)
        in_prompt = ops.take(mask, index, axis=1)
        generating = ops.logical_and(ops.logical_not(in_prompt), ops.logical_not(done))
        new = ops.where(
            in_prompt,
            ops.take(tokens, index, axis=1),
            ops.where(generating, chosen, ops.cast(pad_id, tokens.dtype)),
        )
        tokens = ops.slice_update(tokens, [0, index], new[:, None])
        finished = index >= ends - 1
        if end_id is not None:
            finished = ops.logical_or(finished, ops.logical_and(generating, ops.equal(chosen, end_id)))
        return tokens, cache, index + 1, ops.logical_or(done, finished)

    done = ops.zeros((batch,), dtype="bool")
    tokens, _, _, _ = ops.while_loop(
        cond, body, (tokens, cache, index, done), maximum_iterations=length
    )
    return tokens


def argmax(logits, index=None):
    """Greedy choice: the highest logit (ties: the lowest id), as `generate_uncached`."""
    return ops.cast(ops.argmax(logits, axis=-1), "int32")


def decoder_start_id(model):
    """The encoder-decoder decoder's first token: the preset tokenizer's start token for a
    T5 checkpoint (`<pad>` = 0), else the toolkit's `<s>` = 2."""
    from massivetext_tf.models.encoder_decoder.t5 import T5Tokenizer

    tokenizer = getattr(getattr(model, "preprocessor", None), "tokenizer", None)
    if isinstance(tokenizer, T5Tokenizer):
        return int(tokenizer.start_token_id)
    return BOS_ID


# ----------------------------------------------------------------------------------------
# Greedy decoding of token-id lists (fine-tuning evaluation and anything host-side)
# ----------------------------------------------------------------------------------------


def _compile(fn):
    """`fn` compiled for the Keras backend (XLA on TensorFlow and JAX; eager otherwise)."""
    backend = keras.config.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True, reduce_retracing=True)
    if backend == "jax":
        import jax

        return jax.jit(fn)
    return fn


# Compiled functions per model, so a second call with the same shapes does not retrace (the
# functions hold the model weakly).
_COMPILED = weakref.WeakKeyDictionary()


def compiled_method(model, name):
    """`model.<name>` compiled once per model (`_compile`), holding the model weakly."""
    per_model = _COMPILED.setdefault(model, {})
    if name not in per_model:
        ref = weakref.ref(model)
        per_model[name] = _compile(lambda *args: getattr(ref(), name)(*args))
    return per_model[name]


def recompute_greedy(logits_fn, token_ids, lengths, max_new_tokens):
    """Greedy decoding by full recomputation, the reference of the cached loop:
    `logits_fn(token_ids) -> [batch, length, vocab]`; row `i` writes `max_new_tokens` argmax
    tokens from position `lengths[i]` on (none past the buffer's end)."""
    length = ops.shape(token_ids)[1]

    def body(step, token_ids):
        logits = logits_fn(token_ids)
        position = lengths + step
        last = ops.take_along_axis(logits, ops.maximum(position - 1, 0)[:, None, None], axis=1)[:, 0, :]
        next_token = ops.cast(ops.argmax(last, axis=-1), "int32")
        write = ops.one_hot(position, length, dtype="int32")  # all zeros past the end
        return step + 1, token_ids * (1 - write) + next_token[:, None] * write

    _, token_ids = ops.while_loop(
        lambda step, _: step < max_new_tokens, body, (ops.convert_to_tensor(0, "int32"), token_ids)
    )
    return token_ids


def _decoder_only_fn(model):
    model = weakref.ref(model)

    def run(tokens, lengths, ends, end_id):
        lm = model()
        tables = lm.relative_tables(ops.shape(tokens)[1])
        _, cache = lm._build_cache(tokens, tables)
        mask = ops.arange(ops.shape(tokens)[1])[None, :] < lengths[:, None]
        return decode(lm.decoding_next(tables), argmax, tokens, cache, ops.min(lengths),
                      mask=mask, ends=ends, end_id=end_id)

    return run


def _encoder_decoder_fn(model):
    model = weakref.ref(model)

    def run(encoder_tokens, encoder_mask, tokens, ends, end_id):
        lm = model()
        length = ops.shape(tokens)[1]
        cache = lm.initial_decoding_cache(encoder_tokens, encoder_mask, length)
        return decode(lm.decoding_next(lm.relative_tables(length)), argmax, tokens, cache, 1,
                      ends=ends, end_id=end_id)

    return run


def _compiled(model, kind):
    per_model = _COMPILED.setdefault(model, {})
    if kind not in per_model:
        builder = _decoder_only_fn if kind == "decoder_only" else _encoder_decoder_fn
        per_model[kind] = _compile(builder(model))
    return per_model[kind]


def _check_int(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"greedy_generate: `{name}` must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def greedy_generate(model, prompts, *, max_new_tokens, end_id, batch_size=16, max_length=None):
    """Greedy new tokens for each prompt, KV-cached, through `decode` (XLA-compiled).

    Args:
        model: a `GopherCausalLM` or an `EncoderDecoderSeq2SeqLM` (`massivetext_tf.models.kind`
            tells them apart).
        prompts: a list of token-id lists. Decoder-only: the whole prompt, `<s>` included;
            encoder-decoder: the encoder input ids (the decoder starts from
            `decoder_start_id(model)`).
        max_new_tokens: the most tokens generated per prompt.
        end_id: the end token (usually `</s>` = 1): a row stops when it chooses it.
        batch_size: rows per compiled call (the last batch is padded with copies).
        max_length: the longest sequence (decoder-only: prompt + new tokens; encoder-decoder:
            the decoder's start token + new tokens); default and maximum: the model's context.

    Returns:
        Per prompt, the new token ids up to and excluding `end_id`: the tokens
        `generate_uncached` picks.
    """
    from massivetext_tf.models import kind as model_kind

    kind = model_kind(model)
    max_new_tokens = _check_int(max_new_tokens, "max_new_tokens", 1)
    batch_size = _check_int(batch_size, "batch_size", 1)
    end_id = _check_int(end_id, "end_id", 0)
    context = int(model.backbone.max_sequence_length)
    if max_length is None:
        max_length = context
    max_length = _check_int(max_length, "max_length", 2)
    if max_length > context:
        raise ValueError(f"greedy_generate: `max_length={max_length}` exceeds the model's context "
                         f"(max_sequence_length={context}).")
    prompts = [[int(t) for t in p] for p in prompts]
    if not prompts:
        return []
    for i, p in enumerate(prompts):
        if not p:
            raise ValueError(f"greedy_generate: prompt {i} is empty (decoder-only prompts start "
                             "with <s>; encoder inputs need at least one token).")
        limit = max_length - 1 if kind == "decoder_only" else context
        if len(p) > limit:
            raise ValueError(f"greedy_generate: prompt {i} has {len(p)} tokens; at most {limit} fit "
                             f"(max_length={max_length}, context={context}).")
    fn = _compiled(model, kind)
    end = np.array(end_id, np.int32)
    if kind == "decoder_only":
        length = min(max(len(p) for p in prompts) + max_new_tokens, max_length)
    else:
        length = min(max_new_tokens + 1, max_length)
        source_length = max(len(p) for p in prompts)
        start = decoder_start_id(model)
    outputs = []
    for first in range(0, len(prompts), batch_size):
        chunk = prompts[first: first + batch_size]
        rows = chunk + [chunk[-1]] * (batch_size - len(chunk))
        lengths = np.array([len(p) for p in rows], np.int32)
        if kind == "decoder_only":
            tokens = np.zeros([batch_size, length], np.int32)
            for i, p in enumerate(rows):
                tokens[i, : len(p)] = p
            ends = np.minimum(lengths + max_new_tokens, length).astype(np.int32)
            out = np.asarray(fn(tokens, lengths, ends, end))
        else:
            source = np.zeros([batch_size, source_length], np.int32)
            for i, p in enumerate(rows):
                source[i, : len(p)] = p
            tokens = np.zeros([batch_size, length], np.int32)
            tokens[:, 0] = start
            lengths = np.ones([batch_size], np.int32)
            ends = np.full([batch_size], length, np.int32)
            out = np.asarray(fn(source, _source_mask(rows, source_length), tokens, ends, end))
        for i in range(len(chunk)):
            new = [int(t) for t in out[i, lengths[i]: ends[i]]]
            outputs.append(new[: new.index(end_id)] if end_id in new else new)
    return outputs


def _source_mask(rows, length):
    mask = np.zeros([len(rows), length], np.int32)
    for i, p in enumerate(rows):
        mask[i, : len(p)] = 1
    return mask
