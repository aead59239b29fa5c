"""Input functions for the loop: the real pipeline (`massivetext_tf.data.pipeline`) or a
synthetic one of the same shapes and dtypes (tests, benchmarks, tuning smoke runs).

Batch sizes: the loop uses `strategy.distribute_datasets_from_function`, so every input
function returns batches of the *per-replica* size
`input_context.get_per_replica_batch_size(global_batch_size)`, and shards by
`input_context.input_pipeline_id`. One input pipeline runs per worker.
"""
from __future__ import annotations

import re

import tensorflow as tf

SYNTHETIC = "synthetic"
_RESERVED = 4  # pad, eos, bos, unk


def synthetic_lm_dataset(
    sequence_length: int,
    batch_size: int,
    *,
    vocabulary_size: int = 512,
    seed: int = 0,
    input_context: tf.distribute.InputContext | None = None,
    repeat: bool = True,
    num_rows: int | None = None,
) -> tf.data.Dataset:
    """Rows of arithmetic progressions mod the vocabulary (learnable: a model that sees two
    tokens knows the next), with the `lm_dataset` structure:
    `({"token_ids", "padding_mask", "segment_ids", "positions"}, labels, sample_weight)`.

    Row r is a pure function of (seed, r), and batches are sharded across input pipelines in
    round-robin, so any replica layout sees the same global batches in the same order.
    """
    span = vocabulary_size - _RESERVED
    L = sequence_length

    def row(r):
        s = tf.random.stateless_uniform([2], seed=[seed, r], maxval=span, dtype=tf.int64)
        start, stride = s[0], 1 + s[1] % 7
        toks = (start + stride * tf.range(L + 1, dtype=tf.int64)) % span + _RESERVED
        toks = tf.cast(toks, tf.int32)
        x = {
            "token_ids": toks[:-1],
            "padding_mask": tf.ones([L], tf.int32),
            "segment_ids": tf.ones([L], tf.int32),
            "positions": tf.range(L, dtype=tf.int32),
        }
        return x, toks[1:], tf.ones([L], tf.float32)

    ds = tf.data.Dataset.range(num_rows) if num_rows else tf.data.Dataset.range(2**62)
    ds = ds.map(row)
    ds = ds.batch(batch_size, drop_remainder=True)
    if input_context is not None and input_context.num_input_pipelines > 1:
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    if repeat and num_rows:
        ds = ds.repeat()
    return ds.prefetch(2)


def synthetic_span_corruption_dataset(
    sequence_length: int,
    decoder_sequence_length: int,
    batch_size: int,
    *,
    vocabulary_size: int = 512,
    seed: int = 0,
    input_context: tf.distribute.InputContext | None = None,
    repeat: bool = True,
) -> tf.data.Dataset:
    """Encoder-decoder batches in keras-hub's names; the target is the first
    `decoder_sequence_length` encoder tokens (a copy task)."""
    lm = synthetic_lm_dataset(
        sequence_length, batch_size, vocabulary_size=vocabulary_size, seed=seed,
        input_context=input_context, repeat=repeat,
    )
    Ld = decoder_sequence_length

    def to_seq2seq(x, y, w):
        enc = x["token_ids"]
        target = enc[:, :Ld]
        bos = tf.fill([tf.shape(enc)[0], 1], 2)
        dec_in = tf.concat([bos, target[:, :-1]], axis=1)
        ones = tf.ones_like(target)
        return (
            {
                "encoder_token_ids": enc,
                "encoder_padding_mask": tf.ones_like(enc),
                "decoder_token_ids": dec_in,
                "decoder_padding_mask": ones,
            },
            target,
            tf.cast(ones, tf.float32),
        )

    return lm.map(to_seq2seq)


def make_input_fn(cfg, split: str, *, training: bool):
    """`fn(input_context) -> tf.data.Dataset` for `distribute_datasets_from_function`."""
    d = cfg.data
    seed = cfg.runtime.seed
    Ld = d.decoder_sequence_length or max(d.sequence_length // 4, 2)

    def fn(ctx: tf.distribute.InputContext):
        bs = ctx.get_per_replica_batch_size(d.global_batch_size)
        if d.dir == SYNTHETIC:
            split_seed = seed if split == d.train_split else seed + 7919
            if d.objective == "span_corruption":
                return synthetic_span_corruption_dataset(
                    d.sequence_length, Ld, bs, vocabulary_size=d.vocabulary_size,
                    seed=split_seed, input_context=ctx,
                )
            return synthetic_lm_dataset(
                d.sequence_length, bs, vocabulary_size=d.vocabulary_size, seed=split_seed,
                input_context=ctx,
            )
        from massivetext_tf.data import pipeline

        if d.objective == "span_corruption":
            return pipeline.span_corruption_dataset(
                d.dir, split, d.sequence_length, Ld, bs, seed=seed, input_context=ctx,
                mixture=d.mixture if training else None, repeat=True, shuffle=training,
            )
        if not training:
            # One ordered pass with every token weighted, repeated so that a fixed number of
            # eval steps never runs dry (and every worker runs the same number of steps).
            return pipeline.eval_dataset(
                d.dir, split, d.sequence_length, bs, input_context=ctx
            ).repeat()
        return pipeline.lm_dataset(
            d.dir, split, d.sequence_length, bs, mixture=d.mixture, seed=seed,
            input_context=ctx, repeat=True, shuffle=True,
        )

    return fn


def bytes_per_token(cfg, split: str) -> float | None:
    """UTF-8 bytes per weighted label token of `split` (`split_stats`); None if unknown.

    `eval_dataset` weights every document token and its eos, so a split's bytes are spread over
    `tokens + documents` labels; bits per byte = sum nll / (ln 2 * labels * this ratio), exact
    when the evaluated batches cover the split once.
    """
    if cfg.data.dir == SYNTHETIC:
        return None
    try:
        from massivetext_tf.data.pipeline import split_stats
    except ImportError:
        return None
    stats = split_stats(cfg.data.dir, split)
    tokens, nbytes = stats.get("tokens"), stats.get("bytes")
    if not tokens or not nbytes:
        return None
    labels = tokens + (stats.get("documents", 0) if cfg.data.objective == "lm" else 0)
    return float(nbytes) / float(labels)


def tokenizer_path(cfg) -> str | None:
    """task.tokenizer, else the data dir's SentencePiece model, if any."""
    if cfg.task.tokenizer:
        return cfg.task.tokenizer
    if cfg.data.dir == SYNTHETIC:
        return None
    path = f"{cfg.data.dir}/tokenizer.model"
    return path if tf.io.gfile.exists(path) else None


def worker_info(strategy) -> tuple[int, int]:
    """(number of workers, this worker's index) of a strategy (1, 0 unless multi-worker)."""
    ext = strategy.extended
    return int(getattr(ext, "_num_workers", 1) or 1), int(getattr(ext, "_id_in_cluster", 0) or 0)


class DistributedInput:
    """A checkpointable input iterator for `strategy.run(step, args=(next(iterator),))`.

    tf.distribute's own distributed iterators cannot be checkpointed in TF 2.20/2.21, so:
    - one replica per worker (one_device; multi_worker_mirrored on one device per worker):
      a plain per-worker `tf.data` iterator, sharded by worker; `strategy.run` hands the
      worker's batch to its one replica.
    - mirrored: `InputReplicationMode.PER_REPLICA`, one pipeline per replica, each a plain
      `tf.data` iterator.
    Both are `tf.data` iterators whose full state (shuffle buffers included) goes into the
    checkpoint (`trackables`).
    - anything else (TPU; several devices per worker with several workers): the strategy's
      distributed iterator, resumed by position: the pipelines are rebuilt and skip the
      batches already consumed (`skip_steps`), which needs a deterministic pipeline.
    """

    def __init__(self, strategy, input_fn, *, skip_steps: int = 0):
        self.strategy = strategy
        workers, worker = worker_info(strategy)
        local = len(strategy.extended.worker_devices)
        replicas = strategy.num_replicas_in_sync
        is_tpu = isinstance(strategy, tf.distribute.TPUStrategy)
        if local == 1 and not is_tpu:
            self.mode = "local"
        elif workers == 1 and isinstance(strategy, tf.distribute.MirroredStrategy) and not is_tpu:
            self.mode = "per_replica"
        else:
            self.mode = "distributed"
        # Batches each pipeline hands out per step (one per replica it feeds).
        per_pipeline = replicas // workers if self.mode == "distributed" else 1

        def fn(ctx):
            ds = input_fn(ctx)
            return ds.skip(skip_steps * per_pipeline) if skip_steps else ds

        if self.mode == "local":
            ctx = tf.distribute.InputContext(
                num_input_pipelines=workers, input_pipeline_id=worker, num_replicas_in_sync=replicas
            )
            host = strategy.extended.worker_devices[0].rsplit("/device:", 1)[0] + "/device:CPU:0"
            with tf.device(host):
                self.iterator = iter(fn(ctx))
            self.trackables = [self.iterator]
        elif self.mode == "per_replica":
            options = tf.distribute.InputOptions(
                experimental_replication_mode=tf.distribute.InputReplicationMode.PER_REPLICA,
                experimental_fetch_to_device=False,
            )
            self.iterator = iter(strategy.distribute_datasets_from_function(fn, options=options))
            self.trackables = [w._iterator for w in self.iterator._iterators]
        else:
            self.iterator = iter(strategy.distribute_datasets_from_function(fn))
            self.trackables = []

    @property
    def checkpointable(self) -> bool:
        return bool(self.trackables)


# ---------------------------------------------------------------------------------------------
# Data errors: one line naming the file and the fix (the CLI exits 2 on them)

_VERIFY_HINT = "check the dataset with tools/prepare_data.py --verify {dir}"


def _data_error(message: str):
    from massivetext_tf.data.records import DataError

    return DataError(message)


def check_data(cfg, *, evaluate: bool) -> None:
    """Before training starts: the data dir has a manifest, and the train (and, when
    `evaluate`, the eval) split has shards. Raises a `DataError` (a `ValueError`) naming the
    directory, the split and the config field to change."""
    d = cfg.data
    if d.dir == SYNTHETIC:
        return
    from massivetext_tf.data import records

    manifest_path = f"{d.dir.rstrip('/')}/{records.MANIFEST}"
    if not tf.io.gfile.exists(manifest_path):
        raise _data_error(f"data.dir: {manifest_path} does not exist; point --data at a "
                          "tools/prepare_data.py output directory (or use --data synthetic)")
    try:
        manifest = records.read_manifest(d.dir)
    except ValueError as e:  # DataError, JSONFileError
        raise _data_error(f"data.dir: {str(e).splitlines()[0]}") from None
    splits = manifest.get("splits", {})
    have = sorted(k for k, v in splits.items() if isinstance(v, dict) and v.get("files"))
    wanted = [("data.train_split", d.train_split)]
    if evaluate:
        wanted.append(("data.eval_split", d.eval_split))
    for field, split in wanted:
        if split not in have:
            extra = " or --set trainer.eval_steps=0 to train without evaluation" \
                if field == "data.eval_split" else ""
            raise _data_error(
                f"{field}: {manifest_path} has no shards for split {split!r} (splits with "
                f"shards: {have or 'none'}); set --set {field}=SPLIT{extra}, or re-run "
                "tools/prepare_data.py to write that split")


def _tensor_text(message: str, marker: str) -> str:
    """The part of a tf.debugging.Assert message from `marker` on, on one line."""
    text = message[message.index(marker):]
    for stop in ("\n\t [[", " [[", "\n\n"):
        if stop in text:
            text = text[: text.index(stop)]
    return " ".join(text.split())


def explain_data_error(e: Exception, cfg, field: str, *, step=None, checkpoint=None):
    """A one-line `DataError` for a data failure met while reading (`e`: a tf.errors.OpError or
    a DataError/FileNotFoundError from building the pipeline); None if `e` is not about data."""
    from massivetext_tf.data.records import DataError

    d = cfg.data
    fix = _VERIFY_HINT.format(dir=d.dir) + " and re-run tools/prepare_data.py for bad shards"
    where = ""
    step = step() if callable(step) else step
    if step is not None:
        where = (f" (training stopped at step {step}; the checkpoint {checkpoint} is intact and"
                 " a rerun resumes from it)" if checkpoint else
                 f" (training stopped at step {step}; no checkpoint yet, a rerun starts over)")
    msg = str(e)
    if isinstance(e, (DataError, FileNotFoundError)):
        first = msg.splitlines()[0] if msg else type(e).__name__
        if "prepare_data" in first:
            return DataError(f"{field}: {first}{where}")
        return DataError(f"{field}: {first}; {fix}{where}")
    if not isinstance(e, tf.errors.OpError):
        return None
    if "Corrupt or truncated shard" in msg:
        text = _tensor_text(msg, "Corrupt or truncated shard")
        m = re.search(r"shard\W*\[([^\]]+)\]\W*\[read\]\W*\[(\d+)\]\W*\[records but the "
                      r"manifest records\]\W*\[(\d+)\]", text)
        if m:  # the pipeline's tf.debugging.Assert, printed as [a] [b] ...
            text = (f"{m.group(1)}: corrupt or truncated shard (read {m.group(2)} records, "
                    f"the manifest records {m.group(3)})")
        return DataError(f"{field}: {text}; {fix}{where}")
    if isinstance(e, (tf.errors.NotFoundError, tf.errors.DataLossError)) or (
            "corrupted record" in msg):
        first = " ".join(msg.splitlines()[0].split()) if msg else type(e).__name__
        return DataError(f"{field}: data.dir {d.dir}: {first}; {fix}{where}")
    return None


class explained_data_errors:
    """Context manager: data failures inside become one-line `DataError`s (see
    `explain_data_error`); anything else passes through unchanged."""

    def __init__(self, cfg, field: str, *, step=None, checkpoint=None):
        self.cfg, self.field, self.step, self.checkpoint = cfg, field, step, checkpoint

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None or self.cfg.data.dir == SYNTHETIC:
            return False
        err = explain_data_error(exc, self.cfg, self.field, step=self.step,
                                 checkpoint=self.checkpoint)
        if err is None or err is exc:
            return False
        raise err from None
