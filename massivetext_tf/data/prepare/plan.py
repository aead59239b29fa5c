"""prepare_data's settings and plan: `PrepareConfig`, the output layout, and the list of input
files with their order keys (`plan_files`) and each document's split (`doc_split`)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field

from massivetext_tf.data import records
from massivetext_tf.data.source_args import (DEFAULT_MAX_DOCUMENT_MB, DEFAULT_SHARD_SIZE,
                                             parse_shard_size)

SPLITS = records.SPLITS
PROGRESS_DIR = ".progress"
CURATED_DIR = "curated"
OWNER_MARKER = ".prepare_data.json"
# Everything prepare_data itself puts in an output directory (a directory holding only these
# plus the pre-marker `.progress/config.json` is an older prepare_data output).
_OUTPUT_LAYOUT = {records.SHARD_DIR, PROGRESS_DIR, CURATED_DIR, records.MANIFEST,
                  records.REPORT, records.TOKENIZER_FILE, OWNER_MARKER}


@dataclass
class PrepareConfig:
    """Everything prepare_data needs; plain data, picklable for Beam workers.

    Attributes:
        output: Output directory (local or gs://); prepare_data's own (see `claim_output`).
        sources: `SourceSpec`s of the train split (`--input`, `--source`).
        eval_sources: `SourceSpec`s written whole to the eval split (`--eval-source`); their
            files are also the contamination eval set of the train split.
        tokenizer: SentencePiece model to tokenize with (copied to `OUTPUT/tokenizer.model`).
        eval_fraction: Fraction of train-source documents sent to eval by a hash of the text.
        shard_size: Documents per shard ("10000") or text per shard ("64MB").
        curation: `CurationConfig`; None means the defaults (Gopher's rules).
        keep_rejected: Directory for rejected documents as JSONL with their stage and rule.
        curate_only: Write kept documents as JSONL under `OUTPUT/curated/`, no tokenizing.
        on_error: Unreadable inputs: "skip" (count them) or "raise" (stop, naming the file).
        train_tokenizer_vocab: With no `tokenizer`: train one of this size on the curated
            train split first.
        tokenizer_options: Extra `train_tokenizer` arguments (e.g. `num_sentinels`).
        encode_batch: Documents per SentencePiece encode call.
        max_document_mb: Documents larger than this (UTF-8 MB) are removed as
            `read:too_large` before any stage.
    """

    output: str
    sources: list = field(default_factory=list)
    eval_sources: list = field(default_factory=list)
    tokenizer: str | None = None
    eval_fraction: float = 0.0
    shard_size: str = DEFAULT_SHARD_SIZE
    curation: object = None
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


@dataclass(frozen=True)
class FileTask:
    """One input file with its order key `(source_index, file_index)` and split."""

    source_index: int
    file_index: int
    path: str
    split: str          # "train" (maybe hash-split by eval_fraction) or "eval"


def all_specs(cfg: PrepareConfig) -> list[tuple[str, object]]:
    """`(split, SourceSpec)` of every source: train sources first, then eval sources."""
    return [("train", s) for s in cfg.sources] + [("eval", s) for s in cfg.eval_sources]


def plan_files(cfg: PrepareConfig) -> list[FileTask]:
    """Every input file of every source, in order-key order (the plan both runners share)."""
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
    """The split of one document: its file's, or "eval" for a hash of the text below
    `eval_fraction` (so exact duplicates share a split)."""
    if task.split == "eval" or eval_fraction <= 0:
        return task.split
    return "eval" if _text_hash(text) < eval_fraction * 2.0**64 else "train"


def _text_field(cfg: PrepareConfig, source: str) -> str:
    for _, spec in all_specs(cfg):
        if spec.name == source:
            return spec.text_field
    return "text"


def _progress_path(output: str, name: str) -> str:
    return os.path.join(output, PROGRESS_DIR, name + ".json")
