"""In-graph sampling and input validation shared by the serving signatures.

Everything here is plain TensorFlow (no Keras), XLA-compilable with static shapes, and
stateless: the same `seed` and batch give the same tokens on every call and every server.
"""
import tensorflow as tf

PAD_ID, EOS_ID, BOS_ID, UNK_ID = 0, 1, 2, 3


def is_greedy(temperature, top_k):
    """`temperature <= 0` or `top_k == 1` means greedy decoding."""
    return tf.logical_or(temperature <= 0.0, tf.equal(top_k, 1))


def sample_next_token(logits, temperature, top_k, top_p, seed, step):
    """Next token ids `[batch]` from `logits` `[batch, vocab]`.

    Order of the filters (as Hugging Face and keras-hub do): divide by `temperature`,
    keep the `top_k` highest logits (`top_k <= 0`: all), then keep the smallest set of
    those whose probabilities (renormalized over the top-k) sum to at least `top_p`
    (`top_p == 1`: all), then draw with `tf.random.stateless_categorical` seeded from
    `(seed, step)`. Greedy (`temperature <= 0` or `top_k == 1`) is `argmax(softmax(logits))`,
    exactly keras-hub's `GreedySampler`.
    """
    logits = tf.cast(logits, tf.float32)
    vocab = logits.shape[-1] or tf.shape(logits)[-1]
    greedy_tokens = tf.argmax(tf.nn.softmax(logits, axis=-1), axis=-1, output_type=tf.int32)

    scaled = logits / tf.maximum(temperature, 1e-6)
    sorted_logits = tf.sort(scaled, axis=-1, direction="DESCENDING")
    k = tf.where(top_k <= 0, vocab, tf.minimum(top_k, vocab))
    rank = tf.range(vocab)[None, :]
    in_top_k = rank < k
    sorted_probs = tf.nn.softmax(tf.where(in_top_k, sorted_logits, float("-inf")), axis=-1)
    mass_before = tf.cumsum(sorted_probs, axis=-1, exclusive=True)
    keep_sorted = tf.logical_and(in_top_k, mass_before < top_p)
    keep_sorted = tf.logical_or(keep_sorted, rank == 0)  # the top token always survives
    threshold = tf.reduce_min(tf.where(keep_sorted, sorted_logits, float("inf")), axis=-1)
    filtered = tf.where(scaled >= threshold[:, None], scaled, float("-inf"))
    step_seed = tf.stack([fold_seed(seed), tf.cast(step, tf.int32)])
    sampled = tf.random.stateless_categorical(filtered, 1, seed=step_seed, dtype=tf.int32)[:, 0]
    return tf.where(is_greedy(temperature, top_k), greedy_tokens, sampled)


def token_sampler(temperature, top_k, top_p, seed):
    """`choose(logits, index)` for `massivetext_tf.models.decoding.decode`: `sample_next_token`
    with these (tensor) settings, seeded from `(seed, index)`."""

    def choose(logits, index):
        return sample_next_token(logits, temperature, top_k, top_p, seed, index)

    return choose


def fold_seed(seed):
    """An int64 seed folded into int32 (XLA's stateless RNG kernels take int32 seeds)."""
    seed = tf.cast(seed, tf.int64)
    low = tf.bitwise.bitwise_and(seed, 0xFFFFFFFF)
    high = tf.bitwise.right_shift(seed, 32)
    folded = tf.bitwise.bitwise_xor(low, tf.bitwise.bitwise_and(high, 0xFFFFFFFF))
    return tf.cast(folded - tf.cast(folded >= 2**31, tf.int64) * 2**32, tf.int32)


def check_sampling_args(max_new_tokens, temperature, top_k, top_p, *, max_new_limit):
    """`tf.debugging` assertions with readable messages; returns control dependencies."""
    return [
        tf.debugging.assert_greater_equal(
            max_new_tokens, 1, message="`max_new_tokens` must be at least 1"
        ),
        tf.debugging.assert_less_equal(
            max_new_tokens,
            tf.constant(max_new_limit, tf.int32),
            message=(
                f"`max_new_tokens` must be at most {max_new_limit} (the exported context "
                "length minus the one `<s>` token)"
            ),
        ),
        tf.debugging.assert_greater_equal(
            temperature, 0.0, message="`temperature` must be >= 0 (0 means greedy)"
        ),
        tf.debugging.assert_greater_equal(
            top_k, 0, message="`top_k` must be >= 0 (0 turns top-k filtering off, 1 is greedy)"
        ),
        tf.debugging.assert_greater(top_p, 0.0, message="`top_p` must be in (0, 1]"),
        tf.debugging.assert_less_equal(top_p, 1.0, message="`top_p` must be in (0, 1]"),
        tf.debugging.assert_equal(
            tf.math.is_finite(temperature), True, message="`temperature` must be finite"
        ),
    ]


def valid_utf8(texts):
    """Replace malformed UTF-8 byte sequences with U+FFFD (never fails)."""
    return tf.strings.unicode_transcode(
        texts, input_encoding="UTF-8", output_encoding="UTF-8", errors="replace"
    )


def keep_before_eos(token_ids):
    """Bool mask of the tokens before the first `</s>`, padding excluded."""
    is_eos = tf.cast(tf.equal(token_ids, EOS_ID), tf.int32)
    before = tf.equal(tf.cumsum(is_eos, axis=-1), 0)
    return tf.logical_and(before, tf.not_equal(token_ids, PAD_ID))


def left_truncate(ragged_ids, keep):
    """Keep at most the last `keep` tokens of every row of a ragged `[batch, (tokens)]`."""
    starts = ragged_ids.row_starts()
    limits = ragged_ids.row_limits()
    new_starts = tf.maximum(starts, limits - tf.cast(keep, limits.dtype))
    index = tf.ragged.range(new_starts, limits)
    return tf.gather(ragged_ids.values, index)


def right_truncate(ragged_ids, keep):
    """Keep at most the first `keep` tokens of every row."""
    starts = ragged_ids.row_starts()
    limits = tf.minimum(ragged_ids.row_limits(), starts + tf.cast(keep, starts.dtype))
    return tf.gather(ragged_ids.values, tf.ragged.range(starts, limits))


def add_bos(ragged_ids, start_id=BOS_ID):
    """Prepend `<s>` (or another start token, e.g. T5's decoder start `<pad>`) to every row."""
    batch = ragged_ids.nrows(out_type=tf.int32)
    bos = tf.RaggedTensor.from_tensor(tf.fill([batch, 1], tf.constant(start_id, ragged_ids.dtype)))
    return tf.concat([bos, ragged_ids], axis=1)


def add_eos(ragged_ids):
    """Append `</s>` to every row."""
    batch = ragged_ids.nrows(out_type=tf.int32)
    eos = tf.RaggedTensor.from_tensor(tf.fill([batch, 1], tf.constant(EOS_ID, ragged_ids.dtype)))
    return tf.concat([ragged_ids, eos], axis=1)
