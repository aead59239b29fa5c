"""The per-document steps that the local runner and the Beam runner share, so both write the
same shards: `FileProcessor` (read one file, split, per-document stages, dedup keys),
`Deduper` (global exact + MinHash dedup in key order) and `ShardAssigner` (consecutive kept
documents of one (split, source) fill shards of at most `--shard-size`)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from massivetext_tf.data.prepare.plan import (SPLITS, FileTask, PrepareConfig, _text_field,
                                              all_specs, doc_split)
from massivetext_tf.data.source_args import parse_shard_size


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
    """A removed document as it is written under `--keep-rejected`, with its order key."""

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
    """`{split}-{source}-{index:05d}`: a shard's name without directory or extension."""
    return f"{split}-{source}-{index:05d}"


def dedup_rejected(cfg: PrepareConfig, s: Survivor, doc, rule: str) -> Rejected:
    """The `Rejected` record of a document that dedup removed (`rule`: exact or minhash)."""
    rec = doc.to_record(_text_field(cfg, s.source))
    rec["stage"], rec["rule"] = "dedup", rule
    return Rejected(s.key, s.split, s.source, rec)
