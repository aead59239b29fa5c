"""tf.data input pipelines over prepared shards (see docs/architecture.md, "Input pipeline").

Everything here is graph ops (no `py_function`), so iterators are checkpointable with
`tf.train.Checkpoint(iterator=it)` and a restored iterator continues with exactly the next batch.

Packing: each source's documents become `[bos] + tokens + [eos]` and are concatenated into one
stream that a `scan` cuts into rows of `sequence_length + 1` tokens with a stride of
`sequence_length` (consecutive rows share one token, so every token after the first is a label
exactly once). Documents longer than a row continue in the next row. Per row, `segment_ids`
number the documents 1..k (0 = padding) and `positions` restart at 0 for each segment. Labels
whose segment differs from the input's (a document boundary) or that are padding get
`sample_weight = 0`.

Mixture: each source is packed on its own and rows are drawn with
`tf.data.Dataset.sample_from_datasets(weights, seed)`, so weights are proportions of training
tokens, as in MassiveText's sampling table (`CHINCHILLA_MIXTURE`).

The encoder-decoder inputs (span corruption, seq2seq pairs) are in
`massivetext_tf.data.encoder_decoder`; their names here still work.

Example:
```python
ds = lm_dataset("data/shakespeare", "train", sequence_length=256, batch_size=16)
x, y, w = next(iter(ds))   # x["token_ids"]: int32 [16, 256]
```
"""
from __future__ import annotations

import os
import zlib
from typing import Mapping, Sequence

import tensorflow as tf

from massivetext_tf.data import records
from massivetext_tf.data.tokenizer import BOS_ID, EOS_ID, PAD_ID

AUTOTUNE = tf.data.AUTOTUNE

# MassiveText sampling proportions (Chinchilla Table A1); keys are the source names you give to
# `massivetext prepare-data --source`. Pass as `mixture=`; sources missing from a dataset are an
# error, so select the ones you have: {k: CHINCHILLA_MIXTURE[k] for k in mine}.
CHINCHILLA_MIXTURE = {"massive_web": 0.45, "books": 0.30, "c4": 0.10, "news": 0.10,
                      "github": 0.04, "wikipedia": 0.01}
GOPHER_MIXTURE = {"massive_web": 0.48, "books": 0.27, "c4": 0.10, "news": 0.10,
                  "github": 0.03, "wikipedia": 0.02}

DEFAULT_DOC_SHUFFLE = 1024
DEFAULT_ROW_SHUFFLE = 256


# ------------------------------------------------------------------------------------ reading

def _checked_records(path: tf.Tensor, expected: tf.Tensor) -> tf.data.Dataset:
    """Records of one shard, followed by a check that all `expected` records were read.

    TFRecordDataset reports a CRC failure without the file name and silently stops at a
    truncated tail; here a corrupt record is skipped and the end-of-file check then raises
    `InvalidArgumentError` naming the shard and the counts, so data loss is never silent.
    """
    recs = tf.data.TFRecordDataset(path).ignore_errors()
    recs = recs.map(lambda r: (r, tf.constant(False)))
    end = tf.data.Dataset.from_tensors((tf.constant(b""), tf.constant(True)))

    def count(n, elem):
        r, is_end = elem
        ok = tf.logical_or(tf.logical_not(is_end), tf.equal(n, expected))
        check = tf.debugging.Assert(
            ok, ["Corrupt or truncated shard", path, "read", n, "records but the manifest "
                 "records", expected, "- run massivetext prepare-data --verify on the dataset"])
        with tf.control_dependencies([check]):
            n = n + tf.cast(tf.logical_not(is_end), tf.int64)
        return n, (r, is_end)

    return (recs.concatenate(end).scan(tf.constant(0, tf.int64), count)
            .filter(lambda r, is_end: tf.logical_not(is_end))
            .map(lambda r, is_end: r))


def _source_seed(seed: int, name: str, salt: int = 0) -> int:
    return (int(seed) * 1_000_003 + zlib.crc32(name.encode()) + salt) % (2**31 - 1)


def _documents(data_dir: str, manifest: Mapping, files: Sequence[str], *, name: str,
               seed: int, shuffle: bool, repeat: bool, input_context, doc_shuffle: int
               ) -> tf.data.Dataset:
    """Token arrays (int32 [n], no bos/eos) of one source's shards."""
    records.check_shard_sizes(data_dir, manifest, files)
    info = manifest.get("shards", {})
    paths = [os.path.join(data_dir, f) for f in files]
    counts = [int(info.get(f, {}).get("documents", -1)) for f in files]
    if min(counts) < 0:
        raise records.DataError(f"{data_dir}: manifest has no record counts for {name!r}")
    ds = tf.data.Dataset.from_tensor_slices((paths, tf.constant(counts, tf.int64)))
    record_shard = None
    if input_context is not None and input_context.num_input_pipelines > 1:
        n, i = input_context.num_input_pipelines, input_context.input_pipeline_id
        if len(paths) >= n:
            ds = ds.shard(n, i)
        else:
            record_shard = (n, i)
    if shuffle:
        ds = ds.shuffle(len(paths), seed=_source_seed(seed, name, 1),
                        reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    cycle = min(4, len(paths)) if shuffle else 1  # unshuffled: files in manifest order
    ds = ds.interleave(_checked_records, cycle_length=cycle, block_length=1)
    if record_shard is not None:
        ds = ds.shard(*record_shard)
    ds = ds.map(lambda r: records.parse_example(r)["token_ids"], num_parallel_calls=AUTOTUNE,
                deterministic=True)
    if shuffle:
        ds = ds.shuffle(doc_shuffle, seed=_source_seed(seed, name, 2),
                        reshuffle_each_iteration=True)
    return ds


# ------------------------------------------------------------------------------------ packing

def pack_stream(docs: tf.data.Dataset, row_length: int, stride: int, *, flush: bool = False
                ) -> tf.data.Dataset:
    """Cuts a stream of 1-D int32 token arrays into rows; returns `(tokens, doc_index)` rows.

    Row r covers stream positions `[r * stride, r * stride + row_length)`. `doc_index` tells
    documents apart (consecutive documents always differ) and is -1 on padding. With
    `flush=True` the remaining tokens are emitted as a final row padded with `PAD_ID` if they
    hold any label not yet covered; otherwise an incomplete tail is dropped.
    """
    overlap = row_length - stride
    if not 0 <= overlap < row_length:
        raise ValueError(f"stride {stride} must be in [1, row_length={row_length}]")
    elems = docs.map(lambda t: (t, tf.constant(False)))
    if flush:
        elems = elems.concatenate(tf.data.Dataset.from_tensors(
            (tf.zeros([0], tf.int32), tf.constant(True))))
    init = (tf.zeros([0], tf.int32), tf.zeros([0], tf.int32), tf.constant(0, tf.int32))

    def step(state, elem):
        buf_tok, buf_doc, k = state
        tok, is_end = elem
        toks = tf.concat([buf_tok, tok], 0)
        docs_ = tf.concat([buf_doc, tf.fill(tf.shape(tok), k)], 0)
        size = tf.shape(toks)[0]
        nrows = tf.maximum((size - row_length) // stride + 1, 0)
        idx = tf.range(nrows)[:, None] * stride + tf.range(row_length)[None, :]
        rows_tok = tf.gather(toks, idx)
        rows_doc = tf.gather(docs_, idx)
        rest_tok = toks[nrows * stride:]
        rest_doc = docs_[nrows * stride:]
        if flush:
            emit_tail = tf.logical_and(is_end, tf.shape(rest_tok)[0] > overlap)
            pad = row_length - tf.shape(rest_tok)[0]
            tail_tok = tf.concat([rest_tok, tf.fill([pad], PAD_ID)], 0)[None]
            tail_doc = tf.concat([rest_doc, tf.fill([pad], -1)], 0)[None]
            n_tail = tf.cast(emit_tail, tf.int32)
            rows_tok = tf.concat([rows_tok, tail_tok[:n_tail]], 0)
            rows_doc = tf.concat([rows_doc, tail_doc[:n_tail]], 0)
        k = tf.math.floormod(k + 1, 1 << 30)
        return (rest_tok, rest_doc, k), (rows_tok, rows_doc)

    rows = elems.scan(init, step).unbatch()
    return rows.map(lambda t, d: (tf.ensure_shape(t, [row_length]),
                                  tf.ensure_shape(d, [row_length])))


def _with_bos_eos(t):
    return tf.concat([[BOS_ID], t, [EOS_ID]], 0)


def row_features(tokens: tf.Tensor, doc_index: tf.Tensor):
    """[batch, L+1] packed rows -> `(x, y, sample_weight)` with `L` columns."""
    length = tokens.shape[1] - 1
    valid = doc_index >= 0
    change = tf.cast(tf.not_equal(doc_index[:, 1:], doc_index[:, :-1]), tf.int32)
    seg = tf.concat([tf.ones_like(change[:, :1]), 1 + tf.cumsum(change, axis=1)], 1)
    start = tf.searchsorted(seg, seg, side="left")
    pos = tf.range(tf.shape(seg)[1], dtype=start.dtype)[None, :] - start
    seg = tf.where(valid, seg, 0)
    pos = tf.cast(tf.where(valid, pos, 0), tf.int32)
    seg_x, seg_y = seg[:, :length], seg[:, 1:]
    x = {
        "token_ids": tokens[:, :length],
        "padding_mask": seg_x,
        "segment_ids": seg_x,
        "positions": pos[:, :length],
    }
    y = tokens[:, 1:]
    weight = tf.cast(tf.logical_and(seg_x > 0, tf.equal(seg_x, seg_y)), tf.float32)
    return x, y, weight


def _pad_batch(batch_size: int, fill_values: Sequence):
    """Pads a possibly short final batch to `batch_size` rows (static shapes)."""

    def pad(*tensors):
        out = []
        for t, v in zip(tensors, fill_values):
            n = batch_size - tf.shape(t)[0]
            paddings = [[0, n]] + [[0, 0]] * (t.shape.rank - 1)
            t = tf.pad(t, paddings, constant_values=v)
            out.append(tf.ensure_shape(t, [batch_size] + t.shape[1:].as_list()))
        return tuple(out)

    return pad


# --------------------------------------------------------------------------- public datasets

def _options() -> tf.data.Options:
    opts = tf.data.Options()
    opts.deterministic = True
    return opts


def _resolve_mixture(entry: Mapping, mixture: Mapping[str, float] | None, data_dir: str,
                     split: str) -> dict[str, float]:
    sources = entry.get("sources", {})
    if mixture is None:
        weights = {k: float(v["tokens"]) for k, v in sources.items() if v.get("files")}
    else:
        unknown = sorted(set(mixture) - set(sources))
        if unknown:
            raise ValueError(f"mixture names source(s) {unknown} that {data_dir} split "
                             f"{split!r} does not have; it has {sorted(sources)}")
        bad = {k: v for k, v in mixture.items() if not float(v) >= 0}
        if bad:
            raise ValueError(f"mixture weights must be >= 0, got {bad}")
        weights = {k: float(v) for k, v in mixture.items() if float(v) > 0}
    total = sum(weights.values())
    if not weights or total <= 0:
        raise ValueError(f"{data_dir} split {split!r}: mixture selects no data ({mixture})")
    return {k: weights[k] / total for k in sorted(weights)}


def _mixed_rows(data_dir, split, row_length, stride, *, mixture, seed, input_context,
                repeat, shuffle, doc_shuffle, doc_fn):
    manifest = records.read_manifest(data_dir)
    entry = records.split_entry(manifest, split, data_dir=data_dir)
    weights = _resolve_mixture(entry, mixture, data_dir, split)
    streams = []
    for name in weights:
        docs = _documents(data_dir, manifest, entry["sources"][name]["files"], name=name,
                          seed=seed, shuffle=shuffle, repeat=repeat,
                          input_context=input_context, doc_shuffle=doc_shuffle)
        docs = docs.map(doc_fn, num_parallel_calls=AUTOTUNE, deterministic=True)
        streams.append(pack_stream(docs, row_length, stride))
    if len(streams) == 1:
        return streams[0]
    return tf.data.Dataset.sample_from_datasets(
        streams, weights=list(weights.values()), seed=_source_seed(seed, "mixture"))


def lm_dataset(data_dir: str, split: str, sequence_length: int, batch_size: int, *,
               mixture: Mapping[str, float] | None = None, seed: int = 0,
               input_context: tf.distribute.InputContext | None = None, repeat: bool = True,
               shuffle: bool = True, doc_shuffle_buffer: int = DEFAULT_DOC_SHUFFLE,
               row_shuffle_buffer: int = DEFAULT_ROW_SHUFFLE) -> tf.data.Dataset:
    """Packed decoder-only LM batches `(x, y, sample_weight)`.

    Args:
        data_dir: a directory written by massivetext prepare-data (local or gs://).
        split: "train" or "eval".
        sequence_length: `L`, the model's input length; rows hold `L + 1` tokens.
        batch_size: rows per batch (per input pipeline when `input_context` is given).
        mixture: `{source: weight}` proportions of tokens; default: each source's share of the
            split's tokens. See `CHINCHILLA_MIXTURE`.
        seed: makes file order, document/row shuffles and mixture draws reproducible.
        input_context: `tf.distribute.InputContext`; each pipeline reads a disjoint part (by
            file when there are enough files per source, by record otherwise).
        repeat: loop forever (training) or stop after one pass.
        shuffle: shuffle files, documents (`doc_shuffle_buffer`) and rows
            (`row_shuffle_buffer`).

    Returns:
        A dataset of `(x, y, sample_weight)`: `x` has int32 `[batch, L]` `token_ids`,
        `padding_mask` (= segment ids, 0 on padding), `segment_ids`, `positions`; `y` int32
        `[batch, L]` next tokens; `sample_weight` float32 `[batch, L]`. Static shapes.
    """
    _check_lengths(sequence_length=sequence_length, batch_size=batch_size)
    rows = _mixed_rows(data_dir, split, sequence_length + 1, sequence_length, mixture=mixture,
                       seed=seed, input_context=input_context, repeat=repeat, shuffle=shuffle,
                       doc_shuffle=doc_shuffle_buffer, doc_fn=_with_bos_eos)
    if shuffle and row_shuffle_buffer > 1:
        rows = rows.shuffle(row_shuffle_buffer, seed=_source_seed(seed, "rows"),
                            reshuffle_each_iteration=True)
    ds = rows.batch(batch_size, drop_remainder=True)
    ds = ds.map(row_features, num_parallel_calls=AUTOTUNE, deterministic=True)
    return ds.prefetch(AUTOTUNE).with_options(_options())


def eval_dataset(data_dir: str, split: str, sequence_length: int, batch_size: int, *,
                 sources: Sequence[str] | None = None,
                 input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
    """Like `lm_dataset` for evaluation: one pass, no shuffle, every token kept.

    Sources are read in name order and packed into one stream. The last row is padded and the
    last batch filled with padding rows (`sample_weight` 0), so shapes stay static and the sum of
    `sample_weight` equals `tokens + documents` of the selected data (each document's tokens and
    its eos are predicted; bos is never a label). Use `split_stats` for bits-per-byte.
    """
    _check_lengths(sequence_length=sequence_length, batch_size=batch_size)
    manifest = records.read_manifest(data_dir)
    entry = records.split_entry(manifest, split, data_dir=data_dir)
    names = sorted(entry["sources"]) if sources is None else list(sources)
    missing = sorted(set(names) - set(entry["sources"]))
    if missing:
        raise ValueError(f"{data_dir} split {split!r} has no source(s) {missing}; "
                         f"it has {sorted(entry['sources'])}")
    files = [f for n in names for f in entry["sources"][n]["files"]]
    docs = _documents(data_dir, manifest, files, name="eval", seed=0, shuffle=False,
                      repeat=False, input_context=input_context, doc_shuffle=0)
    docs = docs.map(_with_bos_eos)
    rows = pack_stream(docs, sequence_length + 1, sequence_length, flush=True)
    ds = rows.batch(batch_size).map(_pad_batch(batch_size, [PAD_ID, -1]))
    ds = ds.map(row_features, num_parallel_calls=AUTOTUNE, deterministic=True)
    return ds.prefetch(AUTOTUNE).with_options(_options())


def split_stats(data_dir: str, split: str) -> dict:
    """`{"documents", "tokens", "bytes", "sources": {...}}` of a split, from the manifest.

    bits per byte = sum of label NLL in nats / (ln 2 * bytes).
    """
    entry = records.split_entry(records.read_manifest(data_dir), split, data_dir=data_dir)
    return {
        "documents": entry["documents"], "tokens": entry["tokens"], "bytes": entry["bytes"],
        "sources": {k: {kk: v[kk] for kk in ("documents", "tokens", "bytes")}
                    for k, v in entry["sources"].items()},
    }


def _check_lengths(**kw):
    for k, v in kw.items():
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{k} must be a positive int, got {v!r}")


# The encoder-decoder inputs live in massivetext_tf.data.encoder_decoder; their old names here
# resolve on first use (that module imports this one).
_ENCODER_DECODER = ("span_corruption_lengths", "random_spans_noise_mask",
                    "span_corruption_dataset", "seq2seq_pairs_dataset")


def __getattr__(name):
    if name in _ENCODER_DECODER:
        from massivetext_tf.data import encoder_decoder

        return getattr(encoder_decoder, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
