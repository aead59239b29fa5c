"""The unit of curation (`Document`) and the description of where documents come from
(`SourceSpec`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

FORMATS = ("auto", "text", "jsonl", "warc", "html")
NORMALIZATIONS = ("auto", "none", "nfkc", "ftfy")
WEB_FORMATS = ("warc", "html")
TEXT_UNITS = ("file", "line", "paragraph")


@dataclass
class Document:
    """One document.

    Attributes:
        text: the document text.
        source: the name of the `SourceSpec` it was read from (used for per-source counts,
            mixture weights and the per-source language).
        id: a stable id: the record's `id` field for JSONL when present, else
            `path:line` (JSONL, text_unit="line"/"paragraph") or the path (one file, one doc).
        fields: every other field of the input record (JSONL), preserved as read.
        path: the file it came from.
        language: the language of its source (`SourceSpec.language`), or None; for a
            source with `language="auto"`, the identified language once `langid` ran.
        language_score: the language identifier's confidence, or None when the language was
            not identified (then reports do not count the document per language).
    """

    text: str
    source: str = ""
    id: str = ""
    fields: dict = field(default_factory=dict)
    path: str = ""
    language: str | None = None
    language_score: float | None = None

    @property
    def num_bytes(self) -> int:
        """UTF-8 size of the text (lone surrogates are counted as 3 bytes each)."""
        return len(self.text.encode("utf-8", "surrogatepass"))

    def to_record(self, text_field: str = "text") -> dict:
        """A JSON-serialisable dict: the original fields plus text, id, source, path (and
        `language`, `language_score` when the language was identified)."""
        record = dict(self.fields)
        if self.language_score is not None:
            record.setdefault("language", self.language)
            record.setdefault("language_score", round(self.language_score, 4))
        record[text_field] = self.text
        record.setdefault("id", self.id)
        record.setdefault("source", self.source)
        record.setdefault("path", self.path)
        return record


@dataclass
class SourceSpec:
    """Where one named source's documents live and how to read them.

    Attributes:
        name: the source name (e.g. "massiveweb", "books").
        patterns: files, directories (read recursively, hidden files skipped) and globs
            (`tf.io.gfile.glob` syntax); any `gs://` path works. A single string is accepted.
        format: "jsonl" (one JSON object per line), "text" (plain UTF-8), "warc" (WARC
            response records with HTML payloads), "html" (one page per file) or "auto" (by
            extension after any .gz/.zst: .jsonl/.ndjson/.json are JSONL, .warc/.arc WARC,
            .html/.htm/.xhtml HTML, anything else text).
        text_field: the JSONL field holding the text.
        language: the source's language code ("en", "zh", ...); selects the filter rules.
            "auto": each document's language is identified (`langid.py`) and selects them.
        text_unit: for plain text: "file" (one document per file, the default), "line"
            (one per non-blank line) or "paragraph" (blocks separated by blank lines).
        normalize: text normalization applied when reading, so every stage (dedup keys
            included) sees it: "none", "nfkc" (Unicode NFKC), "ftfy" (mojibake repair with
            ftfy, then NFKC) or "auto" (the default: "ftfy" for warc/html, "none" otherwise,
            so text and JSONL sources are read exactly as before).
        blocklist: a file of blocked domains and URLs (`urlfilter.py`), or None; documents
            whose `url` field matches are removed as `read:blocked_url:<rule>`.
    """

    name: str
    patterns: list = field(default_factory=list)
    format: str = "auto"
    text_field: str = "text"
    language: str = "en"
    text_unit: str = "file"
    normalize: str = "auto"
    blocklist: str | None = None

    def normalization(self, fmt: str) -> str:
        """The normalization for a file of format `fmt` (resolves "auto")."""
        if self.normalize != "auto":
            return self.normalize
        return "ftfy" if fmt in WEB_FORMATS else "none"

    def __post_init__(self):
        if isinstance(self.patterns, (str, os.PathLike)):
            self.patterns = [self.patterns]
        self.patterns = [os.fspath(p) for p in self.patterns]
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"SourceSpec.name must be a non-empty string, got {self.name!r}")
        if not self.patterns:
            raise ValueError(f"SourceSpec {self.name!r}: patterns is empty")
        if self.format not in FORMATS:
            raise ValueError(f"SourceSpec {self.name!r}: format must be one of {FORMATS}, "
                             f"got {self.format!r}")
        if self.text_unit not in TEXT_UNITS:
            raise ValueError(f"SourceSpec {self.name!r}: text_unit must be one of {TEXT_UNITS}, "
                             f"got {self.text_unit!r}")
        if self.normalize not in NORMALIZATIONS:
            raise ValueError(f"SourceSpec {self.name!r}: normalize must be one of "
                             f"{NORMALIZATIONS}, got {self.normalize!r}")
        if not isinstance(self.text_field, str) or not self.text_field:
            raise ValueError(f"SourceSpec {self.name!r}: text_field must be a non-empty string")

    @classmethod
    def from_pattern(cls, pattern: str, **kwargs) -> "SourceSpec":
        """A spec for one pattern, named after its file or directory (extensions removed)."""
        base = os.path.basename(os.fspath(pattern).rstrip("/")) or "default"
        name = base.split(".")[0].replace("*", "").strip("-_") or "default"
        return cls(name=kwargs.pop("name", name), patterns=[pattern], **kwargs)
