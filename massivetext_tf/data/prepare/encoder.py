"""SentencePiece encoding of whole documents with memory bounded by a piece size: `Encoder`
and the cut rule (`split_for_encoding`) that keeps the ids those of whole-document encoding."""
from __future__ import annotations

import re
from typing import Iterator

import numpy as np

# Long documents are tokenized in pieces of at most this many characters; short ones in
# batches of at most ENCODE_BATCH_CHARS characters.
ENCODE_PIECE_CHARS = 1 << 18
ENCODE_BATCH_CHARS = 1 << 20


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
