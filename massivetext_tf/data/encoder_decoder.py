"""tf.data inputs for encoder-decoder models: T5 span corruption over the packed shards
(`span_corruption_dataset`, pretraining) and (source, target) pairs from JSONL files
(`seq2seq_pairs_dataset`, fine-tuning). Also importable from `massivetext_tf.data.pipeline`.

Like the decoder-only pipeline, everything is graph ops with static shapes, so iterators are
checkpointable and restored iterators continue with exactly the next batch.
"""
from __future__ import annotations

import json
import os
from typing import Mapping, Sequence

import tensorflow as tf

from massivetext_tf.data import records
from massivetext_tf.data.pipeline import (AUTOTUNE, DEFAULT_DOC_SHUFFLE, DEFAULT_ROW_SHUFFLE,
                                          _check_lengths, _mixed_rows, _options, _source_seed)
from massivetext_tf.data.tokenizer import BOS_ID, EOS_ID, PAD_ID


def span_corruption_lengths(encoder_length: int, decoder_length: int, noise_density: float,
                            mean_span_length: float) -> tuple[int, int, int]:
    """Largest raw chunk length whose T5 span corruption fits both lengths (with eos / bos).

    Returns `(raw_length, num_noise_tokens, num_spans)`.
    """
    def lengths(n):
        noise = min(max(int(round(n * noise_density)), 1), n - 1)
        spans = max(int(round(noise / mean_span_length)), 1)
        return noise, spans, (n - noise) + spans + 1, noise + spans + 1

    best = None
    n = 2
    while True:
        noise, spans, enc, dec = lengths(n)
        if enc > encoder_length or dec > decoder_length:
            if n > encoder_length + decoder_length:
                break
        else:
            best = (n, noise, spans)
        n += 1
    if best is None:
        raise ValueError(f"encoder_length={encoder_length}, decoder_length={decoder_length} "
                         "are too short for span corruption")
    return best


def _random_segmentation(num_items: int, num_segments: int, seed) -> tf.Tensor:
    """Lengths of `num_segments` non-empty random segments summing to `num_items`."""
    first = tf.cast(tf.range(num_items - 1) < num_segments - 1, tf.int32)
    first = tf.random.experimental.stateless_shuffle(first, seed=seed)
    first = tf.concat([[0], first], 0)
    seg = tf.cumsum(first)
    return tf.math.unsorted_segment_sum(tf.ones_like(seg), seg, num_segments)


def random_spans_noise_mask(length: int, num_noise: int, num_spans: int, seed) -> tf.Tensor:
    """T5's noise mask: alternating non-noise/noise spans, starting with non-noise."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    noise_lengths = _random_segmentation(num_noise, num_spans, seeds[0])
    keep_lengths = _random_segmentation(length - num_noise, num_spans, seeds[1])
    interleaved = tf.reshape(tf.stack([keep_lengths, noise_lengths], 1), [num_spans * 2])
    starts = tf.cumsum(interleaved)[:-1]
    indicator = tf.math.unsorted_segment_sum(tf.ones_like(starts), starts, length)
    return tf.equal(tf.math.floormod(tf.cumsum(indicator), 2), 1)


def _replace_spans(tokens, mask, sentinels):
    prev = tf.concat([[False], mask[:-1]], 0)
    first = tf.logical_and(mask, tf.logical_not(prev))
    later = tf.logical_and(mask, prev)
    span = tf.cumsum(tf.cast(first, tf.int32)) - 1
    out = tf.where(first, tf.gather(sentinels, tf.maximum(span, 0)), tokens)
    return tf.boolean_mask(out, tf.logical_not(later))


def span_corruption_dataset(data_dir: str, split: str, encoder_length: int,
                            decoder_length: int, batch_size: int, *,
                            noise_density: float = 0.15, mean_span_length: float = 3.0,
                            sentinel_ids: Sequence[int] | None = None, seed: int = 0,
                            input_context: tf.distribute.InputContext | None = None,
                            mixture: Mapping[str, float] | None = None, repeat: bool = True,
                            shuffle: bool = True,
                            doc_shuffle_buffer: int = DEFAULT_DOC_SHUFFLE) -> tf.data.Dataset:
    """T5 span-corruption batches for encoder-decoder pretraining (in-graph, deterministic).

    Documents (`tokens + [eos]`) are concatenated per source and cut into chunks of the largest
    length whose corrupted form fits; each chunk's noise mask comes from a stateless RNG seeded
    by `(seed, chunk index)`. Noise spans become sentinels `<extra_id_0>`, ... in the encoder
    input (`sentinel_ids`, default: read by name from the dataset's tokenizer).

    Returns `(x, y, sample_weight)` with `x = {"encoder_token_ids", "encoder_padding_mask",
    "decoder_token_ids", "decoder_padding_mask"}` (int32); the decoder input is `[bos] +
    targets`, `y` is `targets + [eos]`, `sample_weight` is 0 on padding.
    """
    _check_lengths(encoder_length=encoder_length, decoder_length=decoder_length,
                   batch_size=batch_size)
    raw, num_noise, num_spans = span_corruption_lengths(encoder_length, decoder_length,
                                                        noise_density, mean_span_length)
    if sentinel_ids is None:
        from massivetext_tf.data.tokenizer import sentinel_ids as _sentinels

        sentinel_ids = _sentinels(os.path.join(data_dir, records.TOKENIZER_FILE))
    if len(sentinel_ids) < num_spans:
        raise ValueError(f"span corruption needs {num_spans} sentinel pieces for "
                         f"encoder_length={encoder_length}, but the tokenizer has "
                         f"{len(sentinel_ids)}; retrain it with --num-sentinels {num_spans} "
                         "or more")
    sentinels = tf.constant(list(sentinel_ids)[:num_spans], tf.int32)
    rows = _mixed_rows(data_dir, split, raw, raw, mixture=mixture, seed=seed,
                       input_context=input_context, repeat=repeat, shuffle=shuffle,
                       doc_shuffle=doc_shuffle_buffer,
                       doc_fn=lambda t: tf.concat([t, [EOS_ID]], 0))
    if shuffle:
        rows = rows.shuffle(DEFAULT_ROW_SHUFFLE, seed=_source_seed(seed, "rows"),
                            reshuffle_each_iteration=True)
    pipeline_id = input_context.input_pipeline_id if input_context is not None else 0

    def corrupt(index, row):
        tokens, _ = row
        rng = tf.stack([tf.cast(seed, tf.int64) * 65_537 + pipeline_id, index])
        mask = random_spans_noise_mask(raw, num_noise, num_spans, rng)
        enc = tf.concat([_replace_spans(tokens, mask, sentinels), [EOS_ID]], 0)
        targets = _replace_spans(tokens, tf.logical_not(mask), sentinels)
        dec_in = tf.concat([[BOS_ID], targets], 0)
        labels = tf.concat([targets, [EOS_ID]], 0)
        return _seq2seq_example(enc, dec_in, labels, encoder_length, decoder_length)

    ds = rows.enumerate().map(corrupt, num_parallel_calls=AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=True)
    return ds.prefetch(AUTOTUNE).with_options(_options())


def _seq2seq_example(enc, dec_in, labels, encoder_length, decoder_length):
    enc = enc[:encoder_length]
    dec_in, labels = dec_in[:decoder_length], labels[:decoder_length]

    def pad(t, n):
        t = tf.pad(t, [[0, n - tf.shape(t)[0]]], constant_values=PAD_ID)
        return tf.ensure_shape(t, [n])

    enc_mask = pad(tf.ones_like(enc), encoder_length)
    dec_mask = pad(tf.ones_like(dec_in), decoder_length)
    x = {
        "encoder_token_ids": pad(enc, encoder_length),
        "encoder_padding_mask": enc_mask,
        "decoder_token_ids": pad(dec_in, decoder_length),
        "decoder_padding_mask": dec_mask,
    }
    return x, pad(labels, decoder_length), tf.cast(dec_mask, tf.float32)


def _read_pairs(jsonl_files, source_field, target_field):
    paths = [jsonl_files] if isinstance(jsonl_files, str) else list(jsonl_files)
    expanded = []
    for p in paths:
        matches = sorted(tf.io.gfile.glob(p)) if any(c in p for c in "*?[") else [p]
        if not matches or not all(tf.io.gfile.exists(m) for m in matches):
            raise FileNotFoundError(f"seq2seq_pairs_dataset: no file matches {p!r}")
        expanded.extend(matches)
    sources, targets = [], []
    for path in expanded:
        with tf.io.gfile.GFile(path, "rb") as f:
            for lineno, raw in enumerate(f, 1):
                if not raw.strip():
                    continue
                try:
                    obj = json.loads(raw.decode("utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError) as e:
                    raise records.DataError(f"{path}:{lineno}: not a JSON line ({e})") from None
                for field in (source_field, target_field):
                    if not isinstance(obj, dict) or not isinstance(obj.get(field), str):
                        raise records.DataError(
                            f"{path}:{lineno}: field {field!r} missing or not a string")
                sources.append(obj[source_field])
                targets.append(obj[target_field])
    if not sources:
        raise records.DataError(f"seq2seq_pairs_dataset: no examples in {expanded}")
    return sources, targets


def _tf_text_tokenizer(tokenizer):
    import tensorflow_text as tf_text

    from massivetext_tf.data.tokenizer import read_model_proto

    proto = getattr(tokenizer, "proto", tokenizer)
    return tf_text.SentencepieceTokenizer(model=read_model_proto(proto), out_type=tf.int32)


def seq2seq_pairs_dataset(jsonl_files, tokenizer, encoder_length: int, decoder_length: int,
                          batch_size: int, source_field: str = "source",
                          target_field: str = "target", *, shuffle: bool = False,
                          seed: int = 0, repeat: bool = False) -> tf.data.Dataset:
    """(source, target) pairs from JSONL for fine-tuning, tokenized in-graph.

    `tokenizer` is a SentencePiece model path, its serialized proto, or a keras-hub
    `SentencePieceTokenizer`. Encoder input is `source[:encoder_length-1] + [eos]`; decoder
    input is `[bos] + target`, `y` is `target + [eos]` (truncated to `decoder_length`). The last
    batch is padded with all-padding examples (`sample_weight` 0) so shapes stay static.
    """
    _check_lengths(encoder_length=encoder_length, decoder_length=decoder_length,
                   batch_size=batch_size)
    srcs, tgts = _read_pairs(jsonl_files, source_field, target_field)
    sp = _tf_text_tokenizer(tokenizer)
    ds = tf.data.Dataset.from_tensor_slices((srcs, tgts))
    if shuffle:
        ds = ds.shuffle(len(srcs), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()

    def example(s, t):
        s_ids = sp.tokenize(s)[:encoder_length - 1]
        t_ids = sp.tokenize(t)[:decoder_length - 1]
        enc = tf.concat([s_ids, [EOS_ID]], 0)
        return _seq2seq_example(enc, tf.concat([[BOS_ID], t_ids], 0),
                                tf.concat([t_ids, [EOS_ID]], 0), encoder_length,
                                decoder_length)

    ds = ds.map(example, num_parallel_calls=AUTOTUNE, deterministic=True)
    if repeat:
        ds = ds.batch(batch_size, drop_remainder=True)
    else:
        ds = ds.batch(batch_size).map(_pad_seq2seq_batch(batch_size))
    return ds.prefetch(AUTOTUNE).with_options(_options())


def _pad_seq2seq_batch(batch_size):
    def pad(x, y, w):
        def p(t):
            n = batch_size - tf.shape(t)[0]
            t = tf.pad(t, [[0, n], [0, 0]])
            return tf.ensure_shape(t, [batch_size, t.shape[1]])
        return {k: p(v) for k, v in x.items()}, p(y), p(w)
    return pad
