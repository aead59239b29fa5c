"""prepare_data: raw text -> curated -> tokenized TFRecord shards + manifest (library logic).

The pipeline is written as small deterministic steps that the local runner (this module) and
the Apache Beam runner (`massivetext_tf.data.beam`) both call, so the two produce the same
shards, manifest and report:

1. `plan_files`: every input file gets an order key `(source_index, file_index)`; train
   sources come first, then `--eval-source`s.
2. `process_file`: read one file, give each document its split (eval sources -> eval;
   `eval_fraction` -> a hash of the text, so exact duplicates share a split), run the
   per-document stages (quality, repetition, contamination for train) and compute the dedup
   keys (exact digest, MinHash signature). Counts go to a per-split `CurationReport`.
3. `Deduper` (global, in key order): exact then MinHash near-duplicate removal per split, the
   first-seen document kept, exactly as `Curator`'s dedup stage.
4. `ShardAssigner` (global, in key order): consecutive kept documents of one (split, source)
   fill `{split}-{source}-{index:05d}` shards of at most `--shard-size` documents or MB.
5. `write_tfrecord_shard`: tokenize and write one shard (temp name + rename), plus a done
   marker under `OUTPUT/.progress/` holding its stats and a fingerprint of its documents; a
   rerun skips every shard whose marker and file match, so an interrupted run resumes.
6. manifest.json, report.json and tokenizer.model.

The output directory belongs to prepare_data: `claim_output` (after every input has been
checked) refuses a non-empty directory without prepare_data's marker `.prepare_data.json`,
and the marker records every file a run wrote, so stale-file cleanup only ever removes files
recorded there (see docs/data.md, "Which files prepare_data touches").
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np
import tensorflow as tf

from massivetext_tf import io
from massivetext_tf.data import records
from massivetext_tf.data.source_args import (  # noqa: F401  (re-exported: the old home)
    DEFAULT_MAX_DOCUMENT_MB, DEFAULT_SHARD_SIZE, add_source_args, parse_shard_size,
    parse_source_flag, sources_from_args, sources_from_flags)

logger = logging.getLogger(__name__)

SPLITS = records.SPLITS
PROGRESS_DIR = ".progress"
CURATED_DIR = "curated"
OWNER_MARKER = ".prepare_data.json"
# Everything prepare_data itself puts in an output directory (a directory holding only these
# plus the pre-marker `.progress/config.json` is an older prepare_data output).
_OUTPUT_LAYOUT = {records.SHARD_DIR, PROGRESS_DIR, CURATED_DIR, records.MANIFEST,
                  records.REPORT, records.TOKENIZER_FILE, OWNER_MARKER}
# Long documents are tokenized in pieces of at most this many characters; short ones in
# batches of at most ENCODE_BATCH_CHARS characters.
ENCODE_PIECE_CHARS = 1 << 18
ENCODE_BATCH_CHARS = 1 << 20


# --------------------------------------------------------------------------------- config

@dataclass
class PrepareConfig:
    """Everything prepare_data needs; plain data, picklable for Beam workers."""

    output: str
    sources: list = field(default_factory=list)          # train SourceSpecs
    eval_sources: list = field(default_factory=list)     # SourceSpecs for the eval split
    tokenizer: str | None = None
    eval_fraction: float = 0.0
    shard_size: str = DEFAULT_SHARD_SIZE
    curation: object = None                              # CurationConfig
    keep_rejected: str | None = None
    curate_only: bool = False
    on_error: str = "skip"
    train_tokenizer_vocab: int | None = None
    tokenizer_options: dict = field(default_factory=dict)
    encode_batch: int = 256
    max_document_mb: float = DEFAULT_MAX_DOCUMENT_MB

    def __post_init__(self):
        from massivetext_tf.data.curate import CurationConfig

        if self.curation is None:
            self.curation = CurationConfig()
        if not self.sources and not self.eval_sources:
            raise ValueError("prepare_data: give at least one --input or --source")
        names = [s.name for s in self.sources + self.eval_sources]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"source name(s) {dup} used for both --source and --eval-source")
        for s in self.sources + self.eval_sources:
            records.validate_source_name(s.name)
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ValueError(f"--eval-fraction {self.eval_fraction}: must be in [0, 1)")
        if self.on_error not in ("skip", "raise"):
            raise ValueError(f"--on-error {self.on_error!r}: expected skip or raise")
        parse_shard_size(self.shard_size)
        if not self.max_document_mb > 0:
            raise ValueError(f"--max-document-mb {self.max_document_mb}: must be > 0")
        if not self.curate_only and not self.tokenizer and not self.train_tokenizer_vocab:
            raise ValueError("prepare_data: give --tokenizer MODEL (or --train-tokenizer-vocab "
                             "N, or --curate-only)")

    @property
    def max_document_bytes(self) -> int:
        return int(self.max_document_mb * (1 << 20))

    def fingerprint(self) -> str:
        """Hash of everything that decides the shards' content (resumption safety)."""
        payload = {
            "sources": [dataclasses.asdict(s) for s in self.sources],
            "eval_sources": [dataclasses.asdict(s) for s in self.eval_sources],
            "eval_fraction": self.eval_fraction, "shard_size": self.shard_size,
            "curation": self.curation.to_dict(),
        }
        if self.max_document_mb != DEFAULT_MAX_DOCUMENT_MB:   # older fingerprints stay valid
            payload["max_document_mb"] = self.max_document_mb
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()
                              ).hexdigest()


# -------------------------------------------------------------------------------- planning

@dataclass(frozen=True)
class FileTask:
    source_index: int
    file_index: int
    path: str
    split: str          # "train" (maybe hash-split by eval_fraction) or "eval"


def all_specs(cfg: PrepareConfig) -> list[tuple[str, object]]:
    return [("train", s) for s in cfg.sources] + [("eval", s) for s in cfg.eval_sources]


def plan_files(cfg: PrepareConfig) -> list[FileTask]:
    from massivetext_tf.data.curate import list_files

    tasks = []
    for si, (split, spec) in enumerate(all_specs(cfg)):
        for fi, path in enumerate(list_files(spec)):
            tasks.append(FileTask(si, fi, path, split))
    return tasks


def _text_hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"),
                                          digest_size=8).digest(), "big")


def doc_split(task: FileTask, text: str, eval_fraction: float) -> str:
    if task.split == "eval" or eval_fraction <= 0:
        return task.split
    return "eval" if _text_hash(text) < eval_fraction * 2.0**64 else "train"


# ------------------------------------------------------------------------- per-file stage

@dataclass
class Survivor:
    """A document that passed the per-document stages; what the global step needs."""

    key: tuple           # (source_index, file_index, doc_index)
    split: str
    source: str
    num_bytes: int
    exact: bytes | None
    signature: np.ndarray | None
    language: str | None = None   # the identified language (lang=auto sources), for reports


@dataclass
class Rejected:
    key: tuple
    split: str
    source: str
    record: dict         # the document as JSON plus "stage", "rule"


class FileProcessor:
    """Per-document work for one worker: curators without dedup, dedup sketches."""

    def __init__(self, cfg: PrepareConfig):
        from massivetext_tf.data.curate import Curator, MinHasher

        cfg_ = cfg.curation
        base_skip = set(cfg_.skip)
        self.cfg = cfg
        self.curators = {
            "train": Curator(dataclasses.replace(cfg_, skip=base_skip | {"dedup"})),
            "eval": Curator(dataclasses.replace(cfg_, skip=base_skip | {"dedup",
                                                                        "contamination"})),
        }
        self.dedup = cfg_.dedup if "dedup" not in base_skip else None
        self.hasher = (MinHasher(self.dedup.num_perm, self.dedup.seed)
                       if self.dedup is not None and self.dedup.minhash else None)

    def process(self, task: FileTask, spec) -> tuple[list, list, dict]:
        """Returns (survivors as (Survivor, Document), rejected, {split: CurationReport})."""
        from massivetext_tf.data.curate import CurationReport, read_documents
        from massivetext_tf.data.curate.dedup import Sketch, exact_key
        from massivetext_tf.data.curate.text import is_unspaced

        reports = {s: CurationReport() for s in SPLITS}
        survivors, rejected = [], []
        file_spec = dataclasses.replace(spec, patterns=[task.path])
        read_errors = []

        def on_read_error(doc, stage, rule):
            read_errors.append((doc, stage, rule))

        docs = read_documents(file_spec, on_error=self.cfg.on_error, stats=reports[task.split],
                              on_reject=on_read_error,
                              max_page_bytes=self.cfg.max_document_bytes)
        index = 0
        for doc in docs:
            for err_doc, stage, rule in read_errors:  # read errors keep their place in order
                rejected.append(self._rejected(task, index, task.split, err_doc, stage, rule))
                index += 1
            read_errors.clear()
            split = doc_split(task, doc.text, self.cfg.eval_fraction)
            key = (task.source_index, task.file_index, index)
            index += 1
            report = reports[split]
            curator = self.curators[split]
            nbytes = doc.num_bytes
            if nbytes > self.cfg.max_document_bytes:
                report.count_in(doc.source, nbytes)
                report.count_removed(doc.source, "read:too_large", nbytes)
                message = (f"{doc.id}: document of {nbytes} bytes is larger than "
                           f"--max-document-mb {self.cfg.max_document_mb:g} [read:too_large] "
                           f"(source {doc.source!r})")
                big = dataclasses.replace(doc, text="", fields={**doc.fields, "error": message})
                rejected.append(self._rejected(task, key[2], split, big, "read", "too_large"))
                continue
            verdict = curator.check(doc)  # identifies the language of an "auto" document
            lang = doc.language if doc.language_score is not None else None
            report.count_in(doc.source, nbytes, lang)
            if verdict is not None:
                stage, rule = verdict
                report.count_removed(doc.source, f"{stage}:{rule}", nbytes, lang)
                rejected.append(self._rejected(task, key[2], split, doc, stage, rule))
                continue
            exact = sig = None
            if self.dedup is not None:
                language = self.cfg.curation.language_for(doc.source, doc.language)
                sketch = Sketch(doc.text, is_unspaced(
                    language, self.cfg.curation.quality.unspaced_languages))
                if self.dedup.exact:
                    exact = exact_key(sketch.words)
                if self.hasher is not None and sketch.words:
                    sig = sketch.signature(self.hasher, self.dedup.ngram)
            survivors.append((Survivor(key, split, doc.source, nbytes, exact, sig, lang), doc))
        for err_doc, stage, rule in read_errors:
            rejected.append(self._rejected(task, index, task.split, err_doc, stage, rule))
            index += 1
        return survivors, rejected, reports

    def _rejected(self, task, index, split, doc, stage, rule) -> Rejected:
        rec = doc.to_record(self.cfg_text_field(doc))
        rec["stage"], rec["rule"] = stage, rule
        return Rejected((task.source_index, task.file_index, index), split, doc.source, rec)

    def cfg_text_field(self, doc) -> str:
        for _, spec in all_specs(self.cfg):
            if spec.name == doc.source:
                return spec.text_field
        return "text"


# ---------------------------------------------------------------------------- global stage

class Deduper:
    """Curator's dedup stage on precomputed keys (see curate.dedup.Deduplicator.check):
    exact digest first, then MinHash LSH against the documents kept so far, per split."""

    def __init__(self, dedup_config):
        from massivetext_tf.data.curate import MinHasher, NearDuplicateIndex

        self.config = dedup_config
        self.state = {}
        for split in SPLITS:
            index = (NearDuplicateIndex(dedup_config.threshold, dedup_config.num_perm)
                     if dedup_config is not None and dedup_config.minhash else None)
            self.state[split] = (set(), index)
        self.hasher = (MinHasher(dedup_config.num_perm, dedup_config.seed)
                       if dedup_config is not None and dedup_config.minhash else None)

    def check(self, s: Survivor) -> str | None:
        if self.config is None:
            return None
        keys, index = self.state[s.split]
        if s.exact is not None and s.exact in keys:
            return "exact"
        minhash = None
        if index is not None and s.signature is not None:
            minhash = self.hasher.minhash(s.signature)
            if index.best_match(minhash) is not None:
                return "minhash"
        if s.exact is not None:
            keys.add(s.exact)
        if minhash is not None:
            index.add(minhash)
        return None


class ShardAssigner:
    """Consecutive documents of a (split, source) fill shards of at most N docs or bytes."""

    def __init__(self, shard_size: str):
        self.max_docs, self.max_bytes = parse_shard_size(shard_size)
        self.state: dict = {}   # (split, source) -> [index, docs, bytes]

    def add(self, split: str, source: str, num_bytes: int) -> tuple[int, bool]:
        """Returns (shard index, whether this document starts a new shard)."""
        st = self.state.get((split, source))
        if st is None:
            st = self.state[(split, source)] = [0, 0, 0]
            new = True
        else:
            full = ((self.max_docs is not None and st[1] >= self.max_docs) or
                    (self.max_bytes is not None and st[2] + num_bytes > self.max_bytes))
            new = bool(full)
            if full:
                st[0], st[1], st[2] = st[0] + 1, 0, 0
        st[1] += 1
        st[2] += num_bytes
        return st[0], new


def shard_name(split: str, source: str, index: int) -> str:
    return f"{split}-{source}-{index:05d}"


# ------------------------------------------------------------------------------ writing

def doc_fingerprint(texts: Iterable[str], extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for t in texts:
        h.update(hashlib.sha256(t.encode("utf-8", "surrogatepass")).digest())
    return h.hexdigest()


def _progress_path(output: str, name: str) -> str:
    return os.path.join(output, PROGRESS_DIR, name + ".json")


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


class Encoder:
    """SentencePiece encoding with memory bounded by the piece size, not the document size.

    A document longer than `piece_chars` characters is encoded in pieces of at most that many
    characters, cut just before a space between two letters or digits. For tokenizers where
    no piece can cross such a cut (checked once by `_cuts_are_exact`: true for every tokenizer
    trained by this package, and for any SentencePiece model whose pieces carry whitespace
    only as a prefix and that either adds a dummy prefix and removes extra whitespace, or
    neither), the ids are exactly those of encoding the whole document. A piece with no such
    space (e.g. Chinese) is cut after a newline or, failing that, at a character; the ids then
    still decode to the same text but may differ from whole-document encoding at that one cut.
    Other tokenizers encode each document whole (memory then grows with the document; the
    `--max-document-mb` limit bounds it). Ids come back as int32 numpy arrays (4 bytes per
    token instead of ~36 for a Python list of ints).
    """

    def __init__(self, model_path: str, *, piece_chars: int = ENCODE_PIECE_CHARS):
        from massivetext_tf.data.tokenizer import check_special_ids, load_processor

        self.proc = load_processor(model_path)
        check_special_ids(self.proc, name=model_path)
        self.piece_chars = int(piece_chars)
        self.exact_cuts = _cuts_are_exact(self.proc)

    def encode(self, texts: list[str]) -> list[list[int]]:
        return self.proc.encode(texts)

    def encode_documents(self, texts: list[str], *, batch: int = 256) -> Iterator[np.ndarray]:
        """Ids of each text (int32 arrays, in order); short texts are encoded in batches of
        at most `batch` texts and ENCODE_BATCH_CHARS characters, long ones in pieces."""
        pending: list[str] = []
        size = 0

        def drain():
            for ids in self.proc.encode(pending):
                yield np.asarray(ids, dtype=np.int32)
            pending.clear()

        for text in texts:
            if len(text) > self.piece_chars and self.exact_cuts is not None:
                yield from drain()
                size = 0
                yield self._encode_long(text)
                continue
            if pending and (len(pending) >= batch or size + len(text) > ENCODE_BATCH_CHARS):
                yield from drain()
                size = 0
            pending.append(text)
            size += len(text)
        yield from drain()

    def _encode_long(self, text: str) -> np.ndarray:
        parts = [np.asarray(self.proc.encode(piece), dtype=np.int32)
                 for piece in split_for_encoding(text, self.piece_chars)]
        return np.concatenate(parts) if parts else np.zeros([0], np.int32)


_SPACE_CUT = re.compile(r"(?<=[^\W_]) (?=[^\W_])")


def split_for_encoding(text: str, piece_chars: int) -> Iterator[str]:
    """Consecutive pieces of `text` (joined they give `text`), each at most `piece_chars`
    characters, cut before a space between two letters/digits where possible (the last such
    space in the window), else after the last newline, else at `piece_chars`."""
    start, n = 0, len(text)
    while n - start > piece_chars:
        end = start + piece_chars
        window = text[start + piece_chars // 2:end + 1]
        cut = None
        for m in _SPACE_CUT.finditer(window):
            cut = m.start()
        if cut is not None:
            cut += start + piece_chars // 2
        else:
            nl = text.rfind("\n", start + 1, end)
            cut = nl + 1 if nl > start else end
        if cut <= start or cut > end:
            cut = end
        yield text[start:cut]
        start = cut
    if start < n or n == 0:
        yield text[start:]


_PROBES = [("ab", " cd"), ("Hello", " world"), ("x1", " y2  z"), ("a.b", " c d"),
           ("\u4e2d\u6587a", " b\u4e2d"), ("caf\u00e9", " \u00e9t\u00e9")]
_WS_AFTER_TEXT = re.compile("[^\u2581]\u2581")


def _cuts_are_exact(proc) -> bool | None:
    """True when encoding the two sides of a cut before a space between letters/digits gives
    the ids of encoding the whole: no vocabulary piece has whitespace after a non-whitespace
    character (so none spans the cut), and probes agree (dummy prefix and whitespace rules).
    None when the tokenizer fails this (documents are then encoded whole)."""
    for i in range(proc.get_piece_size()):
        if _WS_AFTER_TEXT.search(proc.id_to_piece(i)):
            return None
    for left, right in _PROBES:
        if proc.encode(left) + proc.encode(right) != proc.encode(left + right):
            return None
    return True


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
    return os.path.join(keep_dir, f"rejected-{split}-{source}.jsonl")


def write_rejected(keep_dir: str, split: str, source: str, recs: Iterable[dict]) -> int:
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


# ------------------------------------------------------------------- output directory

class OutputDirError(ValueError):
    """The output (or --keep-rejected) directory is not prepare_data's to write; names it."""


def _marker_path(directory: str) -> str:
    return os.path.join(directory, OWNER_MARKER)


def _read_marker(directory: str) -> dict | None:
    path = _marker_path(directory)
    if not tf.io.gfile.exists(path):
        return None
    try:
        marker = io.read_json(path)
    except io.JSONFileError as e:
        raise OutputDirError(f"{e}; it is prepare_data's marker: restore it or use a new "
                             "--output directory") from None
    if not isinstance(marker, dict) or marker.get("tool") != "prepare_data":
        raise OutputDirError(f"{path}: not a prepare_data marker; use a new --output directory")
    return marker


def _write_marker(directory: str, fingerprint: str | None, files) -> None:
    io.write_json(_marker_path(directory), {
        "tool": "prepare_data", "format": 1, "fingerprint": fingerprint,
        "files": sorted(set(files)),
        "note": "files tools/prepare_data.py wrote here; it deletes or overwrites only these"})


def _progress_recorded(output: str, skip: set = frozenset()) -> set:
    """Shard files named by the per-shard done markers under `.progress/` (markers named in
    `skip` are not read: one read per marker adds up on Cloud Storage)."""
    progress = os.path.join(output, PROGRESS_DIR)
    out = set()
    if not tf.io.gfile.isdir(progress):
        return out
    for name in tf.io.gfile.listdir(progress):
        if (name.endswith(".json") and name != "config.json" and not io.is_tmp_name(name)
                and name not in skip):
            try:
                entry = records.read_json(os.path.join(progress, name))
            except records.DataError:
                continue
            if isinstance(entry, dict) and isinstance(entry.get("file"), str):
                out.add(entry["file"])
    return out


def _legacy_files(output: str) -> set | None:
    """An output of prepare_data from before the marker existed: only prepare_data's own
    names at the top level and its `.progress/config.json`. Returns the files that can be
    proven to be its own (shards named by done markers, curated files in the index, the
    manifest, report and tokenizer), or None when the directory is something else."""
    names = {n.rstrip("/") for n in tf.io.gfile.listdir(output)}
    if not names <= _OUTPUT_LAYOUT or not tf.io.gfile.exists(
            os.path.join(output, PROGRESS_DIR, "config.json")):
        return None
    files = _progress_recorded(output)
    files |= {n for n in (records.MANIFEST, records.REPORT, records.TOKENIZER_FILE) if n in names}
    index = os.path.join(output, CURATED_DIR, "index.json")
    if tf.io.gfile.exists(index):
        try:
            files |= {e["file"] for e in records.read_json(index).get("files", [])}
            files.add(f"{CURATED_DIR}/index.json")
        except (records.DataError, KeyError, TypeError, AttributeError):
            pass
    return files


def claim_output(directory: str, fingerprint: str | None, *, flag: str = "--output") -> None:
    """Makes `directory` prepare_data's, or refuses it (`OutputDirError` naming it); see
    `check_output`. Leftover temporaries of a killed run (`*.tmp-*`) are removed."""
    files, old_fp = check_output(directory, fingerprint, flag=flag)
    io.makedirs(directory)
    for sub in ("", PROGRESS_DIR, records.SHARD_DIR, CURATED_DIR):
        io.remove_tmp_leftovers(os.path.join(directory, sub))
    _write_marker(directory, fingerprint if fingerprint is not None else old_fp, files)


def check_output(directory: str, fingerprint: str | None, *, flag: str = "--output"
                 ) -> tuple[set, str | None]:
    """Whether prepare_data may write `directory`; returns (files recorded there, the
    recorded fingerprint) or raises `OutputDirError` naming the directory. Writes nothing.

    Accepted: a missing or empty directory; one with prepare_data's marker (a rerun or a
    resume: refused when `fingerprint` differs and the directory holds more than the marker);
    an older prepare_data output without the marker (only prepare_data's names and its
    `.progress/config.json`), which is adopted. Anything else (a non-empty directory
    prepare_data did not create) is refused, so no file of the user's is ever overwritten or
    deleted.
    """
    gfile = tf.io.gfile
    if gfile.exists(directory) and not gfile.isdir(directory):
        raise OutputDirError(f"{flag} {directory}: is a file, not a directory")
    marker = _read_marker(directory) if gfile.isdir(directory) else None
    if marker is not None:
        files = set(marker.get("files", []))
        old_fp = marker.get("fingerprint")
    elif not gfile.exists(directory) or not gfile.listdir(directory):
        files, old_fp = set(), None
    else:
        files = _legacy_files(directory) if gfile.isdir(directory) else None
        if files is None:
            raise OutputDirError(
                f"{flag} {directory}: directory is not empty and was not written by "
                f"prepare_data (no {OWNER_MARKER}); refusing to overwrite or delete its files. "
                "Give a new or empty directory")
        config = os.path.join(directory, PROGRESS_DIR, "config.json")
        try:
            old_fp = records.read_json(config).get("fingerprint")
        except (records.DataError, AttributeError):
            old_fp = None
    if fingerprint is not None and old_fp is not None and old_fp != fingerprint:
        contents = {n.rstrip("/") for n in gfile.listdir(directory)} - {OWNER_MARKER}
        if contents or files:
            raise OutputDirError(
                f"{flag} {directory} was prepared with different inputs or options; use a new "
                "--output directory (or delete it)")
    return files, old_fp


def _record_outputs(output: str, written: list[str], scope: str) -> None:
    """Removes files under `scope/` that earlier runs recorded and this run did not write
    (with their done markers), warns about files there prepare_data never wrote (left alone),
    and records `written` in the marker."""
    marker = _read_marker(output) or {}
    written = set(written)
    mine = {os.path.splitext(os.path.basename(f))[0] + ".json" for f in written
            if f.startswith(records.SHARD_DIR + "/")}
    recorded = set(marker.get("files", [])) | _progress_recorded(output, skip=mine)
    prefix = scope + "/"
    stale = sorted(f for f in recorded if f.startswith(prefix) and f not in written)
    for rel in stale:
        path = os.path.join(output, rel)
        if tf.io.gfile.exists(path):
            tf.io.gfile.remove(path)
        name = os.path.splitext(os.path.basename(rel))[0]
        if scope == records.SHARD_DIR and tf.io.gfile.exists(_progress_path(output, name)):
            tf.io.gfile.remove(_progress_path(output, name))
    scope_dir = os.path.join(output, scope)
    if tf.io.gfile.isdir(scope_dir):
        foreign = sorted(f"{prefix}{n}" for n in tf.io.gfile.listdir(scope_dir)
                         if f"{prefix}{n}" not in recorded | written and not n.endswith("/"))
        if foreign:
            logger.warning("%s: left %d file(s) prepare_data did not write: %s", scope_dir,
                           len(foreign), ", ".join(foreign[:5]))
    keep = (set(marker.get("files", [])) - set(stale)) | written
    _write_marker(output, marker.get("fingerprint"), keep)


def check_state(cfg: PrepareConfig) -> None:
    """Claims `cfg.output` (refusing a directory prepared with different inputs or options,
    or one prepare_data did not write) and `--keep-rejected`."""
    keep = cfg.keep_rejected and (os.path.normpath(cfg.keep_rejected) !=
                                  os.path.normpath(cfg.output))
    if keep and not _inside(cfg.keep_rejected, cfg.output):
        check_output(cfg.keep_rejected, None, flag="--keep-rejected")  # refuse before writing
    claim_output(cfg.output, cfg.fingerprint())
    if keep:
        claim_output(cfg.keep_rejected, None, flag="--keep-rejected")


def _inside(path: str, directory: str) -> bool:
    path, directory = os.path.normpath(path), os.path.normpath(directory)
    return path.startswith(directory.rstrip("/") + "/")


def validate_inputs(cfg: PrepareConfig) -> list[FileTask]:
    """Everything that can be checked before anything is written: every pattern matches
    files (sources and contamination eval files) and the tokenizer loads. Returns the plan."""
    from massivetext_tf.data.curate import SourceSpec, list_files

    tasks = plan_files(cfg)
    for _, spec in all_specs(cfg):
        if spec.blocklist:
            from massivetext_tf.data.curate.urlfilter import load_blocklist
            load_blocklist(spec.blocklist)  # a missing or bad blocklist fails here, one line
    c = cfg.curation.contamination
    if "contamination" not in cfg.curation.skip and c.eval_files:
        list_files(SourceSpec(name="contamination_eval", patterns=list(c.eval_files)))
    if cfg.tokenizer and not cfg.curate_only:
        Encoder(cfg.tokenizer)
    return tasks


# ---------------------------------------------------------------------------- local runner

def run_local(cfg: PrepareConfig, *, log: Callable[[str], None] = print) -> dict:
    """Runs the whole pipeline in this process; returns the manifest (or curated index).
    Inputs are checked before the output directory is claimed (`validate_inputs`)."""
    tasks = validate_inputs(cfg)
    check_state(cfg)
    if cfg.train_tokenizer_vocab and not cfg.tokenizer and not cfg.curate_only:
        return _run_with_tokenizer_training(cfg, log=log)
    encoder = tok_sha = None
    if not cfg.curate_only:
        encoder = Encoder(cfg.tokenizer)
        tok_sha = records.file_sha256(cfg.tokenizer)
    specs = all_specs(cfg)
    processor = FileProcessor(cfg)
    deduper = Deduper(processor.dedup)
    assigner = ShardAssigner(cfg.shard_size)
    reports, entries = [], []
    buffers: dict = {}       # (split, source) -> (index, [docs])
    rejected_out = _RejectedWriters(cfg.keep_rejected) if cfg.keep_rejected else None

    def flush(split, source):
        index, docs = buffers.pop((split, source))
        if cfg.curate_only:
            entries.append(write_jsonl_shard(cfg.output, split, source, index,
                                             [d.to_record(_text_field(cfg, source))
                                              for d in docs]))
        else:
            e = write_tfrecord_shard(cfg.output, split, source, index, [d.text for d in docs],
                                     encoder, tok_sha, batch=cfg.encode_batch)
            log(f"{'resumed' if e.get('resumed') else 'wrote'} {e['file']}: "
                f"{e['documents']} docs, {e['tokens']} tokens")
            entries.append(e)

    for task in tasks:
        survivors, rejected, rep = processor.process(task, specs[task.source_index][1])
        reports.append(rep)
        for s, doc in survivors:
            verdict = deduper.check(s)
            report = rep[s.split]
            if verdict is None:
                report.count_kept(s.source, s.num_bytes, s.language)
                index, new = assigner.add(s.split, s.source, s.num_bytes)
                if new and (s.split, s.source) in buffers:
                    flush(s.split, s.source)
                buffers.setdefault((s.split, s.source), (index, []))[1].append(doc)
            else:
                report.count_removed(s.source, f"dedup:{verdict}", s.num_bytes, s.language)
                if rejected_out is not None:
                    rejected.append(dedup_rejected(cfg, s, doc, verdict))
        if rejected_out is not None:
            for r in sorted(rejected, key=lambda r: r.key):
                rejected_out.write(r)
    for split, source in sorted(buffers):
        flush(split, source)
    if rejected_out is not None:
        rejected_out.close()
    report = merge_reports(reports)
    return finalize(cfg, entries, report)


def dedup_rejected(cfg: PrepareConfig, s: Survivor, doc, rule: str) -> Rejected:
    rec = doc.to_record(_text_field(cfg, s.source))
    rec["stage"], rec["rule"] = "dedup", rule
    return Rejected(s.key, s.split, s.source, rec)


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


def _text_field(cfg: PrepareConfig, source: str) -> str:
    for _, spec in all_specs(cfg):
        if spec.name == source:
            return spec.text_field
    return "text"


def _run_with_tokenizer_training(cfg: PrepareConfig, *, log) -> dict:
    """--train-tokenizer-vocab: curate to OUTPUT/curated/, train on its train split, then
    tokenize the curated shards (one TFRecord shard per curated shard)."""
    from massivetext_tf.data.curate import SourceSpec
    from massivetext_tf.data.tokenizer import train_tokenizer

    curated = dataclasses.replace(cfg, curate_only=True, train_tokenizer_vocab=None)
    index = run_local(curated, log=log)
    tok_path = os.path.join(cfg.output, records.TOKENIZER_FILE)
    train_files = [(os.path.join(cfg.output, e["file"]), e) for e in index["files"]
                   if e["split"] == "train"]
    if not train_files:
        raise ValueError("--train-tokenizer-vocab: curation kept no training documents")
    specs = [SourceSpec(f"curated{i}", [path], format="jsonl",
                        text_field=_text_field(cfg, e["source"]))
             for i, (path, e) in enumerate(train_files)]
    train_tokenizer(tok_path, sources=specs,
                    vocab_size=cfg.train_tokenizer_vocab, **cfg.tokenizer_options)
    log(f"trained tokenizer {tok_path} (vocab {cfg.train_tokenizer_vocab})")
    encoder = Encoder(tok_path)
    tok_sha = records.file_sha256(tok_path)
    entries = []
    for e in index["files"]:
        texts = []
        with tf.io.gfile.GFile(os.path.join(cfg.output, e["file"]), "r") as f:
            for line in f:
                texts.append(json.loads(line)[_text_field(cfg, e["source"])])
        idx = int(e["file"].rsplit("-", 1)[1].split(".")[0])
        entries.append(write_tfrecord_shard(cfg.output, e["split"], e["source"], idx, texts,
                                            encoder, tok_sha, batch=cfg.encode_batch))
    final = dataclasses.replace(cfg, tokenizer=tok_path)
    return finalize(final, entries, index["report"])
