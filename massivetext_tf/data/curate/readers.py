"""Readers: plain text, JSONL, WARC and HTML files, directories and globs, gzip/zstd
transparently (WARC and HTML: see `web.py`).

All file access goes through `tf.io.gfile`, so `gs://` (and any other filesystem TensorFlow
knows) works; compressed files are decompressed from the `GFile` stream in 1 MiB chunks, so
only the current document is held in memory.

Nothing is dropped silently. A unit that cannot be read (a file, or a line of a JSONL file)
is counted in `stats` (a `CurationReport`) under its source with one of these rules, and
with `on_error="raise"` raises `ReadError` (a `ValueError`) naming the file and line:

- `read:empty`          empty file, blank text, or an empty text field
- `read:binary`         NUL bytes in the first 8 KiB (a binary file)
- `read:invalid_utf8`   bytes that are not UTF-8 (or a JSON string with a lone surrogate)
- `read:truncated_gzip` / `read:corrupt_gzip`, `read:truncated_zstd` / `read:corrupt_zstd`
- `read:bad_json`       a JSONL line that is not a JSON object
- `read:missing_field`  a JSONL record without the text field
- `read:bad_field`      a JSONL record whose text field is not a string
- `read:io_error`       the file system refused the file
- web formats (`warc`, `html`) add `read:not_html`, `read:undecodable`, `read:too_large`,
  `read:truncated_record` and `read:malformed_warc` (see `web.py`), counted per record with
  the file and byte offset, and `read:blocked_url:<rule>` for a URL on the source's blocklist
  (see `urlfilter.py`).
Blank lines of a JSONL file separate nothing and are not documents; they are not counted.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from typing import Callable, Iterator

import zstandard

from massivetext_tf.data.curate.document import Document, SourceSpec

CHUNK_SIZE = 1 << 20
_SNIFF_SIZE = 8192
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_JSONL_EXTENSIONS = (".jsonl", ".ndjson", ".json")
_GLOB_CHARS = set("*?[")


def _tf():
    # Imported on first file access, so the filters can be used without loading TensorFlow.
    import tensorflow as tf

    return tf


class ReadError(ValueError):
    """A file (or one line of it) could not be read. `rule` is the `read:...` rule name."""

    def __init__(self, message: str, *, path: str, rule: str, line: int | None = None,
                 offset: int | None = None):
        super().__init__(message)
        self.path, self.rule, self.line, self.offset = path, rule, line, offset


class _Failure(Exception):
    def __init__(self, rule: str, message: str):
        super().__init__(message)
        self.rule, self.message = rule, message


# ---------------------------------------------------------------------------------------
# Files and patterns


def strip_compression(path: str) -> str:
    for ext in (".gz", ".zst", ".zstd"):
        if path.endswith(ext):
            return path[: -len(ext)]
    return path


def file_format(path: str, fmt: str = "auto") -> str:
    """"jsonl", "text", "warc" or "html" for a path under format `fmt` (by extension after
    any .gz/.zst for "auto": .jsonl/.ndjson/.json, .warc/.arc, .html/.htm/.xhtml, else text)."""
    from massivetext_tf.data.curate.web import HTML_EXTENSIONS, WARC_EXTENSIONS

    if fmt != "auto":
        return fmt
    lower = strip_compression(path).lower()
    if lower.endswith(_JSONL_EXTENSIONS):
        return "jsonl"
    if lower.endswith(WARC_EXTENSIONS):
        return "warc"
    if lower.endswith(HTML_EXTENSIONS):
        return "html"
    return "text"


def _walk(directory: str) -> list[str]:
    tf = _tf()
    out = []
    for root, dirs, files in tf.io.gfile.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out.extend(os.path.join(root, f) for f in sorted(files) if not f.startswith("."))
    return sorted(out)


def list_files(spec: SourceSpec) -> list[str]:
    """The files of a source, in a deterministic order (patterns in order, each sorted).

    Raises ValueError when a pattern matches nothing (almost always a typo)."""
    tf = _tf()
    seen, out = set(), []
    for pattern in spec.patterns:
        if tf.io.gfile.isdir(pattern):
            matches = _walk(pattern)
        elif _GLOB_CHARS & set(pattern):
            matches = []
            for m in sorted(tf.io.gfile.glob(pattern)):
                matches.extend(_walk(m) if tf.io.gfile.isdir(m) else [m])
        elif tf.io.gfile.exists(pattern):
            matches = [pattern]
        else:
            raise ValueError(f"source {spec.name!r}: {pattern!r} does not exist")
        if not matches:
            raise ValueError(f"source {spec.name!r}: pattern {pattern!r} matched no files")
        for m in matches:
            if m not in seen:
                seen.add(m)
                out.append(m)
    return out


def _iter_chunks(path: str) -> Iterator[bytes]:
    """Decompressed byte chunks of a file; raises _Failure for broken compression."""
    tf = _tf()
    try:
        f = tf.io.gfile.GFile(path, "rb")
        head = f.read(4)
        f.seek(0)
    except tf.errors.OpError as e:
        raise _Failure("read:io_error", f"cannot open: {e.message}") from None
    with f:
        lower = path.lower()
        if lower.endswith(".gz") or head[:2] == _GZIP_MAGIC:
            try:
                with gzip.GzipFile(fileobj=f, mode="rb") as g:
                    while chunk := g.read1(CHUNK_SIZE):
                        yield chunk
            except EOFError as e:
                raise _Failure("read:truncated_gzip", f"truncated gzip stream ({e})") from None
            except (gzip.BadGzipFile, zlib.error, OSError) as e:
                raise _Failure("read:corrupt_gzip", f"corrupt gzip stream ({e})") from None
        elif lower.endswith((".zst", ".zstd")) or head == _ZSTD_MAGIC:
            yield from _iter_zstd(f)
        else:
            try:
                while chunk := f.read(CHUNK_SIZE):
                    yield chunk
            except tf.errors.OpError as e:
                raise _Failure("read:io_error", f"read failed: {e.message}") from None


def _iter_zstd(f) -> Iterator[bytes]:
    # stream_reader() returns a short read on a truncated frame without complaint, so the
    # frames are decoded by hand and a frame still open at the end of the input is an error.
    decompressor = zstandard.ZstdDecompressor()
    dobj, started = decompressor.decompressobj(), False
    try:
        while data := f.read(CHUNK_SIZE):
            while data:
                started = True
                out = dobj.decompress(data)
                if out:
                    yield out
                if dobj.eof:
                    data = dobj.unused_data
                    dobj, started = decompressor.decompressobj(), False
                else:
                    data = b""
    except zstandard.ZstdError as e:
        raise _Failure("read:corrupt_zstd", f"corrupt zstd stream ({e})") from None
    if started:
        raise _Failure("read:truncated_zstd", "truncated zstd stream (frame not finished)")


def _iter_lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Split a chunk stream on b"\\n" without quadratic copying for very long lines."""
    pending: list[bytes] = []
    for chunk in chunks:
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                if start < len(chunk):
                    pending.append(chunk[start:])
                break
            piece = chunk[start:end]
            if pending:
                pending.append(piece)
                piece = b"".join(pending)
                pending = []
            yield piece
            start = end + 1
    if pending:
        yield b"".join(pending)


def _decode(data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _Failure("read:invalid_utf8", f"invalid UTF-8 at byte {e.start}") from None
    return text[1:] if text.startswith("\ufeff") else text


def _check_binary(chunk: bytes):
    if b"\x00" in chunk[:_SNIFF_SIZE]:
        raise _Failure("read:binary", "binary data (NUL bytes)")


def _with_binary_check(chunks: Iterator[bytes]) -> Iterator[bytes]:
    first = True
    for chunk in chunks:
        if first:
            _check_binary(chunk)
            first = False
        yield chunk


# ---------------------------------------------------------------------------------------
# Documents


def read_documents(
    spec: SourceSpec | str,
    *,
    on_error: str = "skip",
    stats=None,
    on_reject: Callable[[Document, str, str], None] | None = None,
    max_page_bytes: int | None = None,
) -> Iterator[Document]:
    """Yield the documents of a source, each tagged with the source name and language.

    Args:
        spec: a `SourceSpec`, or one pattern (the source is named after it).
        on_error: "skip" counts unreadable units under `read:...` rules and goes on;
            "raise" raises `ReadError` (a `ValueError`) naming the file (and line).
        stats: a `CurationReport` (anything with `count_read_error(source, rule, num_bytes)`)
            that receives the read errors.
        on_reject: called as `on_reject(doc, "read", rule)` for each unreadable unit, with an
            empty-text `Document` whose `fields["error"]` holds the message.
        max_page_bytes: WARC payloads larger than this are `read:too_large` without being
            read (`web.DEFAULT_MAX_PAGE_BYTES` when None).
    """
    if max_page_bytes is None:
        from massivetext_tf.data.curate.web import DEFAULT_MAX_PAGE_BYTES
        max_page_bytes = DEFAULT_MAX_PAGE_BYTES
    if isinstance(spec, (str, os.PathLike)):
        spec = SourceSpec.from_pattern(os.fspath(spec))
    if on_error not in ("skip", "raise"):
        raise ValueError(f"read_documents: on_error must be 'skip' or 'raise', got {on_error!r}")

    def fail(path: str, failure: _Failure, line: int | None, num_bytes: int = 0,
             offset: int | None = None):
        where = (f"{path}:{line}" if line is not None else
                 f"{path}@{offset}" if offset is not None else path)
        message = f"{where}: {failure.message} [{failure.rule}] (source {spec.name!r})"
        if on_error == "raise":
            raise ReadError(message, path=path, rule=failure.rule, line=line, offset=offset)
        if stats is not None:
            stats.count_read_error(spec.name, failure.rule, num_bytes)
        if on_reject is not None:
            on_reject(Document(text="", source=spec.name, id=where, path=path,
                               fields={"error": message}, language=spec.language),
                      "read", failure.rule.split(":", 1)[1])

    from massivetext_tf.data.curate.web import normalize_text

    blocklist = None
    if spec.blocklist:
        from massivetext_tf.data.curate.urlfilter import load_blocklist
        blocklist = load_blocklist(spec.blocklist)
    for path in list_files(spec):
        fmt = file_format(path, spec.format)
        if fmt == "jsonl":
            docs = _read_jsonl(path, spec, fail)
        elif fmt == "warc":
            docs = _read_warc(path, spec, fail, max_page_bytes)
        elif fmt == "html":
            docs = _read_html(path, spec, fail)
        elif spec.text_unit == "file":
            docs = _read_text_file(path, spec, fail)
        else:
            docs = _read_text_units(path, spec, fail)
        normalize = spec.normalization(fmt)
        for doc in docs:
            if blocklist is not None:
                url = doc.fields.get("url")
                rule = blocklist.match(url) if isinstance(url, str) else None
                if rule is not None:
                    fail(path, _Failure(f"read:blocked_url:{rule}",
                                        f"URL {url!r} is on the blocklist ({rule})"),
                         None, doc.num_bytes, offset=_offset_of(doc))
                    continue
            if normalize != "none":
                doc.text = normalize_text(doc.text, normalize)
            yield doc


def _offset_of(doc: Document) -> int | None:
    _, at, offset = doc.id.rpartition("@")
    return int(offset) if at and offset.isdigit() else None


def _read_warc(path, spec, fail, max_page_bytes):
    from massivetext_tf.data.curate.web import WebFailure, read_warc

    for item in read_warc(path, spec, max_page_bytes=max_page_bytes):
        if isinstance(item, WebFailure):
            fail(path, _Failure(item.rule, item.message), None, 0, offset=item.offset)
        else:
            yield item


def _read_html(path, spec, fail):
    from massivetext_tf.data.curate.web import WebFailure, read_html_file

    size = 0
    try:
        pieces = []
        for chunk in _iter_chunks(path):
            pieces.append(chunk)
            size += len(chunk)
        data = b"".join(pieces)
        del pieces
        if not data.strip():
            raise _Failure("read:empty", "empty file")
    except _Failure as failure:
        fail(path, failure, None, size)
        return
    item = read_html_file(path, spec, data)
    if isinstance(item, WebFailure):
        fail(path, _Failure(item.rule, item.message), None, size)
    else:
        yield item


def _doc(spec: SourceSpec, text: str, doc_id: str, path: str, fields=None) -> Document:
    return Document(text=text, source=spec.name, id=doc_id, fields=fields or {}, path=path,
                    language=spec.language)


def _read_text_file(path, spec, fail):
    size = 0
    try:
        pieces = []
        for chunk in _with_binary_check(_iter_chunks(path)):
            pieces.append(chunk)
            size += len(chunk)
        data = b"".join(pieces)
        del pieces
        if not data.strip():
            raise _Failure("read:empty", "empty file")
        text = _decode(data)
    except _Failure as failure:
        fail(path, failure, None, size)
        return
    yield _doc(spec, text, path, path)


def _read_text_units(path, spec, fail):
    """text_unit="line" or "paragraph": stream lines, never holding the whole file."""
    by_paragraph = spec.text_unit == "paragraph"
    lineno, emitted = 0, False
    block: list[str] = []
    block_start, block_bytes, block_error = 0, 0, None

    def flush():
        nonlocal block, block_bytes, block_error, emitted
        result = None
        if block_error is not None:
            fail(path, block_error, block_start, block_bytes)
            emitted = True
        elif block:
            result = _doc(spec, "\n".join(block), f"{path}:{block_start}", path)
        block, block_bytes, block_error = [], 0, None
        return result

    try:
        for raw in _iter_lines(_with_binary_check(_iter_chunks(path))):
            lineno += 1
            if not raw.strip():
                if by_paragraph and (doc := flush()) is not None:
                    emitted = True
                    yield doc
                continue
            if not block and block_error is None:
                block_start = lineno
            block_bytes += len(raw) + 1
            try:
                line = _decode(raw)
                if lineno > 1 and line.startswith("\ufeff"):
                    line = line[1:]
                block.append(line.rstrip("\r"))
            except _Failure as failure:
                block_error = block_error or failure
            if not by_paragraph and (doc := flush()) is not None:
                emitted = True
                yield doc
        if (doc := flush()) is not None:
            emitted = True
            yield doc
    except _Failure as failure:
        fail(path, failure, lineno if lineno else None, 0)
        return
    if not emitted:
        fail(path, _Failure("read:empty", "empty file"), None, 0)


def _read_jsonl(path, spec, fail):
    field_name = spec.text_field
    lineno, records = 0, 0
    try:
        for raw in _iter_lines(_with_binary_check(_iter_chunks(path))):
            lineno += 1
            if not raw.strip():
                continue
            records += 1
            try:
                record = json.loads(_decode(raw))
                if not isinstance(record, dict):
                    raise _Failure("read:bad_json",
                                   f"expected a JSON object, got {type(record).__name__}")
                if field_name not in record:
                    raise _Failure("read:missing_field", f"no {field_name!r} field "
                                   f"(fields: {sorted(record)[:10]})")
                text = record.pop(field_name)
                if not isinstance(text, str):
                    raise _Failure("read:bad_field", f"field {field_name!r} is "
                                   f"{type(text).__name__}, not a string")
                if not text.strip():
                    raise _Failure("read:empty", f"field {field_name!r} is empty")
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError as e:
                    raise _Failure("read:invalid_utf8",
                                   f"field {field_name!r} holds a lone surrogate at {e.start}") from None
            except json.JSONDecodeError as e:
                fail(path, _Failure("read:bad_json", f"bad JSON ({e.msg} at column {e.colno})"),
                     lineno, len(raw) + 1)
                continue
            except RecursionError:
                fail(path, _Failure("read:bad_json", "bad JSON (nested too deeply)"),
                     lineno, len(raw) + 1)
                continue
            except _Failure as failure:
                fail(path, failure, lineno, len(raw) + 1)
                continue
            doc_id = record.get("id")
            doc_id = str(doc_id) if isinstance(doc_id, (str, int)) else f"{path}:{lineno}"
            yield _doc(spec, text, doc_id, path, record)
    except _Failure as failure:
        fail(path, failure, lineno if lineno else None, 0)
        return
    if records == 0:
        fail(path, _Failure("read:empty", "empty file"), None, 0)
