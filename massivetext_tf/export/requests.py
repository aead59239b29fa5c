"""Request checks and text handling inside the serving graph (`export.signatures`).

Every request input is validated with a readable `InvalidArgumentError` before anything sized
by it is allocated (`gated`), rows are capped per request (`batch_checks`), and strings are cut
to what the exported context can hold before they are tokenized (`max_text_chars`).
"""
import tensorflow as tf

from massivetext_tf.export.sampling import PAD_ID, check_sampling_args, valid_utf8


def gated(checks, *tensors):
    """`tensors` passed through `tf.identity` under control dependencies on `checks`.

    A `tf.debugging.assert_*` op only orders the ops that depend on it: inside a graph an op
    that reads a request input directly (`tf.range(max_new_tokens)`, a cache of `batch` rows)
    runs in parallel with the assertion and may allocate gigabytes before it fails. Every use
    of a request input therefore goes through its gated copy, so nothing sized by an input
    exists until the input has been checked."""
    with tf.control_dependencies(checks):
        return [tf.identity(t) for t in tensors]


def batch_checks(tensor, name, max_batch_size, *, nonempty=True):
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


def checked_generate_args(
    prompts, max_new_tokens, temperature, top_k, top_p, seed, max_new_limit, max_batch_size
):
    """Validate a generate request (readable InvalidArgumentErrors) and return every input
    gated on the checks (see `gated`), the prompts with invalid UTF-8 replaced."""
    checks = check_sampling_args(
        max_new_tokens, temperature, top_k, top_p, max_new_limit=max_new_limit
    )
    checks += batch_checks(prompts, "prompts", max_batch_size)
    prompts, max_new_tokens, temperature, top_k, top_p, seed = gated(
        checks, prompts, max_new_tokens, temperature, top_k, top_p, seed
    )
    return valid_utf8(prompts), max_new_tokens, temperature, top_k, top_p, seed


def max_text_chars(proto, max_length):
    """The most characters of a string worth tokenizing for a context of `max_length` tokens:
    twice `max_length` times the longest piece of the SentencePiece model (byte-fallback and
    control pieces excluded; the factor 2 leaves room for normalization that merges
    characters). Fewer characters can never make `max_length` tokens, so cutting a string to
    this length first loses no token the context could hold, and it bounds the work (and
    memory, many times a string's size while tokenizing) one huge string can cause."""
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


def last_chars(texts, n):
    """The last `n` characters of each (valid UTF-8) string."""
    length = tf.strings.length(texts, unit="UTF8_CHAR")
    start = tf.maximum(length - n, 0)
    return tf.strings.substr(texts, start, tf.fill(tf.shape(start), n), unit="UTF8_CHAR")


def first_chars(texts, n):
    """The first `n` characters of each (valid UTF-8) string."""
    return tf.strings.substr(texts, 0, n, unit="UTF8_CHAR")


def within_chars(texts, n, message):
    """`texts` gated on every string having at most `n` characters (else `message`)."""
    longest = tf.reduce_max(tf.strings.length(texts, unit="UTF8_CHAR"))
    return gated([tf.debugging.assert_less_equal(longest, n, message=message)], texts)[0]


def padded_within(ids, max_length, message):
    """Ragged ids -> dense `(tokens, mask)`, failing with `message` when a row is longer than
    `max_length` (an InvalidArgumentError the serving signature returns, not a crash)."""
    lengths = tf.cast(ids.row_lengths(), tf.int32)
    check = tf.debugging.assert_less_equal(tf.reduce_max(lengths), max_length, message=message)
    with tf.control_dependencies([check]):
        tokens = ids.to_tensor(default_value=PAD_ID)
    return tokens, tf.sequence_mask(lengths, tf.shape(tokens)[1], dtype=tf.int32)

def assert_ids_in_vocabulary(token_ids, vocabulary_size):
    return tf.debugging.assert_equal(
        tf.reduce_all((token_ids >= 0) & (token_ids < vocabulary_size)),
        True,
        message=f"token ids must be in [0, {vocabulary_size})",
    )
