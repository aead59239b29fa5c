"""Writing prepare_data's outputs: TFRecord shards with their done markers (a rerun skips a
finished shard), curated JSONL shards, rejected documents, the report, and `finalize`
(report.json, tokenizer.model, manifest.json or curated/index.json)."""
from __future__ import annotations

import hashlib
import json
import os
from typing import Iterable

import tensorflow as tf

from massivetext_tf import io
from massivetext_tf.data import records
from massivetext_tf.data.prepare.encoder import Encoder
from massivetext_tf.data.prepare.output_dir import _record_outputs
from massivetext_tf.data.prepare.plan import (CURATED_DIR, PROGRESS_DIR, SPLITS, PrepareConfig,
                                              _progress_path)
from massivetext_tf.data.prepare.steps import Rejected, shard_name


def doc_fingerprint(texts: Iterable[str], extra: str = "") -> str:
    """SHA-256 over the documents of a shard (and `extra`, the tokenizer's hash): a done
    marker whose fingerprint matches lets a rerun skip the shard."""
    h = hashlib.sha256(extra.encode())
    for t in texts:
        h.update(hashlib.sha256(t.encode("utf-8", "surrogatepass")).digest())
    return h.hexdigest()


def _done(output: str, name: str, rel: str, fingerprint: str) -> dict | None:
    marker = _progress_path(output, name)
    path = os.path.join(output, rel)
    if not (tf.io.gfile.exists(marker) and tf.io.gfile.exists(path)):
        return None
    try:
        entry = records.read_json(marker)
    except records.DataError:
        return None
    if entry.get("fingerprint") != fingerprint:
        return None
    if tf.io.gfile.stat(path).length != entry.get("file_bytes"):
        return None
    return entry


def write_tfrecord_shard(output: str, split: str, source: str, index: int, texts: list[str],
                         encoder: Encoder, tokenizer_sha: str, *, batch: int = 256) -> dict:
    """Tokenizes and writes one shard unless an identical finished one exists; returns its
    manifest entry."""
    name = shard_name(split, source, index)
    rel = records.shard_path(split, source, index)
    fp = doc_fingerprint(texts, tokenizer_sha)
    done = _done(output, name, rel, fp)
    if done is not None:
        done["resumed"] = True
        return done

    def examples():
        for text, ids in zip(texts, encoder.encode_documents(texts, batch=batch)):
            stats["tokens"] += len(ids)
            nb = len(text.encode("utf-8", "surrogatepass"))
            stats["bytes"] += nb
            yield records.serialize_example(ids, nb, source)

    stats = {"tokens": 0, "bytes": 0}
    info = records.write_shard(os.path.join(output, rel), examples())
    entry = {"file": rel, "split": split, "source": source, "tokens": stats["tokens"],
             "bytes": stats["bytes"], "fingerprint": fp, **info}
    tf.io.gfile.makedirs(os.path.join(output, PROGRESS_DIR))
    records.write_json(_progress_path(output, name), entry)
    return dict(entry)


def write_jsonl_shard(output: str, split: str, source: str, index: int, recs: list[dict]
                      ) -> dict:
    """Curated documents as JSONL (`--curate-only`), atomically."""
    rel = f"{CURATED_DIR}/{shard_name(split, source, index)}.jsonl"
    path = os.path.join(output, rel)
    tf.io.gfile.makedirs(os.path.dirname(path))
    tmp = io.tmp_name(path)
    with tf.io.gfile.GFile(tmp, "w") as f:
        for r in recs:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    tf.io.gfile.rename(tmp, path, overwrite=True)
    return {"file": rel, "split": split, "source": source, "documents": len(recs)}


def rejected_path(keep_dir: str, split: str, source: str) -> str:
    """`KEEP_DIR/rejected-{split}-{source}.jsonl`."""
    return os.path.join(keep_dir, f"rejected-{split}-{source}.jsonl")


def write_rejected(keep_dir: str, split: str, source: str, recs: Iterable[dict]) -> int:
    """Writes rejected documents as JSONL (atomically); returns how many."""
    tf.io.gfile.makedirs(keep_dir)
    path = rejected_path(keep_dir, split, source)
    n = 0
    tmp = io.tmp_name(path)
    with tf.io.gfile.GFile(tmp, "w") as f:
        for r in recs:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
            n += 1
    tf.io.gfile.rename(tmp, path, overwrite=True)
    return n


class _RejectedWriters:
    """One JSONL file per (split, source) under --keep-rejected, in document order."""

    def __init__(self, keep_dir: str):
        self.keep_dir, self.files = keep_dir, {}
        tf.io.gfile.makedirs(keep_dir)

    def write(self, r: Rejected) -> None:
        f = self.files.get((r.split, r.source))
        if f is None:
            tmp = io.tmp_name(rejected_path(self.keep_dir, r.split, r.source))
            f = self.files[(r.split, r.source)] = (tf.io.gfile.GFile(tmp, "w"), tmp)
        f[0].write(json.dumps(r.record, ensure_ascii=False) + "\n")

    def close(self) -> None:
        for (split, source), (f, tmp) in sorted(self.files.items()):
            f.close()
            tf.io.gfile.rename(tmp, rejected_path(self.keep_dir, split, source), overwrite=True)


def merge_reports(reports: Iterable[dict]) -> dict:
    """{split: CurationReport} pieces -> {split: report dict} (addition, order-free)."""
    from massivetext_tf.data.curate import CurationReport

    total = {s: CurationReport() for s in SPLITS}
    for piece in reports:
        for split, rep in piece.items():
            total[split].merge(rep if isinstance(rep, CurationReport)
                               else CurationReport.from_dict(rep))
    return {s: total[s].to_dict() for s in SPLITS}


def format_report(report: dict) -> str:
    """The curation table of each split of a `{split: report dict}` (what prepare-data
    prints); "(no documents)" when no split has any."""
    from massivetext_tf.data.curate import CurationReport

    parts = []
    for split in SPLITS:
        rep = CurationReport.from_dict(report.get(split, {}))
        if rep.sources:
            parts.append(f"== {split} ==\n{rep.format_table()}")
    return "\n\n".join(parts) or "(no documents)"


def finalize(cfg: PrepareConfig, shard_entries: list[dict], report: dict) -> dict:
    """Writes report.json, tokenizer.model and manifest.json (or curated/index.json), removes
    stale files of earlier runs (only those recorded in the directory's marker) and records
    the files written in the marker."""
    io.makedirs(cfg.output)
    written = [records.REPORT] + [e["file"] for e in shard_entries]
    records.write_json(os.path.join(cfg.output, records.REPORT), report)
    if cfg.curate_only:
        index = {"format": 1, "files": sorted(shard_entries, key=lambda e: e["file"]),
                 "report": report}
        io.write_json(os.path.join(cfg.output, CURATED_DIR, "index.json"), index)
        _record_outputs(cfg.output, written + [f"{CURATED_DIR}/index.json"], CURATED_DIR)
        return index
    from massivetext_tf.data.tokenizer import model_info

    tok_dst = os.path.join(cfg.output, records.TOKENIZER_FILE)
    if os.path.normpath(cfg.tokenizer) != os.path.normpath(tok_dst):
        tf.io.gfile.copy(cfg.tokenizer, tok_dst, overwrite=True)
    info = model_info(tok_dst)
    entries = [{k: v for k, v in e.items() if k not in ("fingerprint", "resumed")}
               for e in shard_entries]
    manifest = records.build_manifest(entries, info, report)
    records.write_json(os.path.join(cfg.output, records.MANIFEST), manifest)
    _record_outputs(cfg.output, written + [records.TOKENIZER_FILE, records.MANIFEST],
                    records.SHARD_DIR)
    return manifest
