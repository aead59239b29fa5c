"""TFRecord shards and the dataset manifest (the contract in docs/architecture.md).

A prepared dataset directory `DIR` holds:
- `DIR/shards/{split}-{source}-{index:05d}.tfrecord`: `tf.train.Example`s with `token_ids`
  (int64 list, the document's tokens without bos/eos), `num_bytes` (int64, UTF-8 bytes of the
  document) and `source` (bytes);
- `DIR/tokenizer.model`, `DIR/manifest.json`, `DIR/report.json`.

Shards are written to a temporary name and renamed when complete, so a file with the final name
is always whole; a done marker under `DIR/.progress/` records its stats for resumption.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Iterable, Iterator, Mapping, Sequence

import tensorflow as tf

from massivetext_tf import io
from massivetext_tf.data.source_args import validate_source_name  # noqa: F401  (re-exported)

FORMAT_VERSION = 1
SPLITS = ("train", "eval")
SHARD_DIR = "shards"
MANIFEST = "manifest.json"
REPORT = "report.json"
TOKENIZER_FILE = "tokenizer.model"


class DataError(ValueError):
    """Bad or corrupt input data; the message names the file (and record or field)."""


def shard_path(split: str, source: str, index: int) -> str:
    """Path of a shard relative to the dataset directory."""
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: expected one of {SPLITS}")
    return f"{SHARD_DIR}/{split}-{source}-{index:05d}.tfrecord"


def serialize_example(token_ids: Sequence[int], num_bytes: int, source: str) -> bytes:
    """One `tf.train.Example`, serialized with its features in key order (`deterministic=True`:
    the map order of a plain `SerializeToString()` changes from process to process, and the
    shards' bytes must not). `token_ids` may be a list or a numpy integer array; it is copied
    into the proto with `extend` (8 bytes a token; building an `Int64List(value=array)` costs
    about 50 bytes a token)."""
    ex = tf.train.Example()
    feature = ex.features.feature
    ids = feature["token_ids"].int64_list
    ids.SetInParent()
    ids.value.extend(token_ids)
    feature["num_bytes"].int64_list.value.append(int(num_bytes))
    feature["source"].bytes_list.value.append(source.encode())
    return ex.SerializeToString(deterministic=True)


FEATURE_SPEC = {
    "token_ids": tf.io.RaggedFeature(tf.int64),
    "num_bytes": tf.io.FixedLenFeature([], tf.int64),
    "source": tf.io.FixedLenFeature([], tf.string),
}


def parse_example(serialized: tf.Tensor) -> dict:
    """In-graph parse of one record: `token_ids` int32 [n], `num_bytes` int64, `source`."""
    ex = tf.io.parse_single_example(serialized, FEATURE_SPEC)
    ex["token_ids"] = tf.cast(ex["token_ids"], tf.int32)
    return ex


def decode_example(serialized: bytes) -> dict:
    """Python-side parse (tests, verification)."""
    ex = tf.train.Example.FromString(serialized)
    f = ex.features.feature
    return {
        "token_ids": list(f["token_ids"].int64_list.value),
        "num_bytes": f["num_bytes"].int64_list.value[0],
        "source": f["source"].bytes_list.value[0].decode(),
    }


# ----------------------------------------------------------------------------------- json io

def write_json(path: str, obj) -> None:
    """Atomic, strict JSON write (temp file + rename) through tf.io.gfile (`massivetext_tf.io`)."""
    io.write_json(path, obj)


def read_json(path: str):
    with tf.io.gfile.GFile(path, "r") as f:
        text = f.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: invalid JSON ({e})") from None


# -------------------------------------------------------------------------------- shard io

def write_shard(path: str, records: Iterable[bytes]) -> dict:
    """Writes serialized records to `path` atomically; returns `{"documents", "file_bytes",
    "sha256"}` of the finished file."""
    tf.io.gfile.makedirs(os.path.dirname(path))
    tmp = io.tmp_name(path)
    n = 0
    with tf.io.TFRecordWriter(tmp) as w:
        for r in records:
            w.write(r)
            n += 1
    digest = file_sha256(tmp)
    size = tf.io.gfile.stat(tmp).length
    tf.io.gfile.rename(tmp, path, overwrite=True)
    return {"documents": n, "file_bytes": size, "sha256": digest}


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with tf.io.gfile.GFile(path, "rb") as f:
        while True:
            chunk = f.read(1 << 22)
            if not chunk:
                break
            h.update(chunk)
    return h.hexdigest()


def read_records(path: str) -> Iterator[bytes]:
    """Iterates raw records of one shard; raises DataError naming the file on corruption."""
    if not tf.io.gfile.exists(path):
        raise DataError(f"{path}: shard file is missing")
    try:
        for r in tf.data.TFRecordDataset(path).as_numpy_iterator():
            yield r
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
        raise DataError(f"{path}: corrupt TFRecord shard ({e.message.strip()})") from None


def shard_stats(path: str) -> dict:
    """Counts documents/tokens/bytes of a shard by reading it (checks every record's CRC)."""
    docs = tokens = nbytes = 0
    for r in read_records(path):
        try:
            ex = decode_example(r)
        except Exception as e:  # noqa: BLE001 - protobuf decode errors vary
            raise DataError(f"{path}: record {docs} is not a valid tf.train.Example ({e})") from None
        docs += 1
        tokens += len(ex["token_ids"])
        nbytes += ex["num_bytes"]
    return {"documents": docs, "tokens": tokens, "bytes": nbytes}


# ---------------------------------------------------------------------------------- manifest

def read_manifest(data_dir: str) -> dict:
    path = os.path.join(data_dir, MANIFEST)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path}: no manifest; run massivetext prepare-data first")
    m = read_json(path)
    if m.get("format") != FORMAT_VERSION:
        raise DataError(f"{path}: manifest format {m.get('format')!r} is not {FORMAT_VERSION}")
    return m


def split_entry(manifest: Mapping, split: str, *, data_dir: str = "") -> dict:
    splits = manifest.get("splits", {})
    if split not in splits or not splits[split].get("files"):
        have = sorted(k for k, v in splits.items() if v.get("files"))
        raise ValueError(f"{data_dir or 'dataset'}: split {split!r} has no shards "
                         f"(splits with data: {have})")
    return splits[split]


def build_manifest(shards: Sequence[Mapping], tokenizer_info: Mapping, report: Mapping) -> dict:
    """Builds the manifest from per-shard entries `{"file", "split", "source", "documents",
    "tokens", "bytes", "file_bytes", "sha256"}` (any order; sorted here)."""
    shards = sorted(shards, key=lambda s: s["file"])
    splits: dict = {}
    for split in SPLITS:
        entries = [s for s in shards if s["split"] == split]
        sources: dict = {}
        for s in entries:
            src = sources.setdefault(s["source"], {"files": [], "documents": 0, "tokens": 0,
                                                   "bytes": 0})
            src["files"].append(s["file"])
            for k in ("documents", "tokens", "bytes"):
                src[k] += s[k]
        splits[split] = {
            "files": [s["file"] for s in entries],
            "documents": sum(s["documents"] for s in entries),
            "tokens": sum(s["tokens"] for s in entries),
            "bytes": sum(s["bytes"] for s in entries),
            "sources": sources,
        }
    return {
        "format": FORMAT_VERSION,
        "tokenizer": {"file": TOKENIZER_FILE, **dict(tokenizer_info)},
        "splits": splits,
        "shards": {s["file"]: {k: s[k] for k in ("split", "source", "documents", "tokens",
                                                   "bytes", "file_bytes", "sha256")}
                   for s in shards},
        "report": dict(report),
    }


def check_shard_sizes(data_dir: str, manifest: Mapping, files: Iterable[str]) -> None:
    """Cheap check (one stat per file) that shards exist with the size the manifest recorded;
    catches missing and truncated shards before training starts."""
    info = manifest.get("shards", {})
    for rel in files:
        path = os.path.join(data_dir, rel)
        if not tf.io.gfile.exists(path):
            raise DataError(f"{path}: shard listed in the manifest is missing")
        want = info.get(rel, {}).get("file_bytes")
        if want is not None:
            got = tf.io.gfile.stat(path).length
            if got != want:
                raise DataError(f"{path}: shard is {got} bytes but the manifest recorded {want} "
                                "(truncated or overwritten); re-run massivetext prepare-data")


def verify(data_dir: str, *, check_sha: bool = True) -> list[str]:
    """Reads every shard and compares it with the manifest; returns a list of problems (empty
    when the dataset is intact). Each problem names the shard."""
    problems = []
    manifest = read_manifest(data_dir)
    tok = os.path.join(data_dir, manifest["tokenizer"]["file"])
    if not tf.io.gfile.exists(tok):
        problems.append(f"{tok}: tokenizer file missing")
    elif file_sha256(tok) != manifest["tokenizer"].get("sha256"):
        problems.append(f"{tok}: sha256 does not match the manifest")
    for rel, want in sorted(manifest.get("shards", {}).items()):
        path = os.path.join(data_dir, rel)
        try:
            got = shard_stats(path)
        except DataError as e:
            problems.append(str(e))
            continue
        bad = [f"{path}: {k} = {got[k]} but the manifest recorded {want[k]}"
               for k in ("documents", "tokens", "bytes") if got[k] != want[k]]
        problems.extend(bad)
        if check_sha and not bad and file_sha256(path) != want.get("sha256"):
            problems.append(f"{path}: sha256 does not match the manifest")
    return problems
