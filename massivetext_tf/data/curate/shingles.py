"""Normalized words, exact keys and deterministic n-gram (shingle) hashes for dedup and the
contamination filter, one document at a time or for many at once.

Normalization: lowercase, delete punctuation and symbols (`[^\\w\\s]`), split on
whitespace. Word hashes are CRC32 (high 32 bits) and Adler-32 (low 32 bits) of the UTF-8
bytes, combined into n-gram hashes polynomially, so every process and machine agrees.
See `massivetext_tf.data.curate.dedup` for the rules that use them.
"""
from __future__ import annotations

import hashlib
import re
import zlib

import numpy as np

from massivetext_tf.data.curate.text import ngram_hashes

_PUNCTUATION = re.compile(r"[^\w\s]+")
_SHIFT32 = np.uint64(32)


# The ASCII characters that _PUNCTUATION deletes, for the str.translate fast path.
_ASCII_PUNCTUATION = str.maketrans(
    "", "", "".join(c for c in map(chr, range(128)) if _PUNCTUATION.fullmatch(c)))


def normalize_words(text: str) -> list[str]:
    """Lowercase, punctuation removed, whitespace-split."""
    if text.isascii():  # same result as the regex, faster (see the "Decisions" of docs/architecture.md)
        return text.lower().translate(_ASCII_PUNCTUATION).split()
    return _PUNCTUATION.sub("", text.lower()).split()


def exact_key(words: list[str]) -> bytes:
    return hashlib.blake2b(" ".join(words).encode("utf-8", "surrogatepass"),
                           digest_size=16).digest()


# Word -> 64-bit hash memo shared by all documents of the process (word frequencies are
# Zipfian, so most lookups hit); cleared when it reaches _WORD_CACHE_SIZE entries.
_WORD_CACHE: dict[str, int] = {}
_WORD_CACHE_SIZE = 1 << 20


def _word_hash(w: str) -> int:
    b = w.encode("utf-8", "surrogatepass")
    h = (zlib.crc32(b) << 32) | zlib.adler32(b)
    if len(_WORD_CACHE) >= _WORD_CACHE_SIZE:
        _WORD_CACHE.clear()
    _WORD_CACHE[w] = h
    return h


def word_hashes(words: list[str]) -> np.ndarray:
    """Deterministic 64-bit hashes of words (uint64): CRC32 of the UTF-8 bytes in the high
    32 bits, Adler-32 in the low 32 bits."""
    try:
        return np.fromiter(map(_WORD_CACHE.get, words), dtype=np.uint64, count=len(words))
    except TypeError:  # a word not in the memo yet (None)
        get = _WORD_CACHE.get
        return np.fromiter([h if (h := get(w)) is not None else _word_hash(w) for w in words],
                           dtype=np.uint64, count=len(words))


def shingle_hashes(words: list[str], n: int) -> np.ndarray:
    """Sorted unique 64-bit hashes of the word n-grams (one shingle if fewer than n words)."""
    if not words:
        return np.zeros(0, dtype=np.uint64)
    h = word_hashes(words)
    g = np.sort(ngram_hashes(h, min(n, len(h))))
    if len(g) < 2:
        return g
    keep = np.empty(len(g), dtype=bool)   # == np.unique(g), without its overhead
    keep[0] = True
    np.not_equal(g[1:], g[:-1], out=keep[1:])
    return g[keep]


# -- many documents at once --------------------------------------------------------------
#
# `sketch_batch` computes what `Sketch` computes (exact key, MinHash signature) for many
# documents with a few numpy calls over all of them, from the UTF-8 bytes of the normalized
# text: words are runs of non-whitespace bytes, and their CRC32 / Adler-32 are computed
# arithmetically for all words together (no per-word Python call, no memo).

# The whitespace of str.split() below 0x80; other whitespace is replaced by " " first.
_SPACE_BYTES = np.zeros(256, dtype=bool)
_SPACE_BYTES[[9, 10, 11, 12, 13, 28, 29, 30, 31, 32]] = True
_NON_ASCII_SPACE = re.compile(r"[^\S\x00-\x7f]")
_ASCII_PUNCTUATION_BYTES = bytes(c for c in range(128) if _PUNCTUATION.fullmatch(chr(c)))


def normalized_bytes(text: str) -> bytes:
    """The normalized text as UTF-8 (surrogatepass), before splitting: its runs of
    non-whitespace bytes are the UTF-8 of `normalize_words(text)`."""
    if text.isascii():
        return text.encode("ascii").lower().translate(None, _ASCII_PUNCTUATION_BYTES)
    normalized = _PUNCTUATION.sub("", text.lower())
    if not normalized.isascii():
        normalized = _NON_ASCII_SPACE.sub(" ", normalized)
    return normalized.encode("utf-8", "surrogatepass")


def _crc32_table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(0xEDB88320), table >> 1)
    return table.astype(np.uint32)


class _Crc32Tables:
    """zlib.crc32 as a sum over bytes. One step of the CRC register is linear over GF(2):
    r -> A(r) ^ T[byte] with A(r) = T[r & 0xFF] ^ (r >> 8), so for bytes b_0..b_{n-1}
    crc32 = final[n] ^ xor_k zeros[n - 1 - k][b_k], where zeros[j][b] = A^j(T[b]) (a byte
    followed by j zero bytes) and final[n] = A^n(0xFFFFFFFF) ^ 0xFFFFFFFF. Rows are built on
    demand up to `MAX_ROWS`; longer words are hashed by zlib."""

    MAX_ROWS = 1 << 12

    def __init__(self):
        self.table = _crc32_table()
        # (zeros (rows, 256), final (rows + 1,)), replaced together when grown.
        self.tables = (self.table[None, :].copy(), np.zeros(2, dtype=np.uint32))
        self.tables[1][1] = self._step(np.uint32(0xFFFFFFFF)) ^ np.uint32(0xFFFFFFFF)

    def _step(self, r):
        return self.table[r & np.uint32(0xFF)] ^ (r >> np.uint32(8))

    def get(self, rows: int) -> tuple[np.ndarray, np.ndarray]:
        """Tables with at least min(rows, MAX_ROWS) rows."""
        zeros, final = self.tables
        if rows <= len(zeros) or len(zeros) >= self.MAX_ROWS:
            return zeros, final
        rows = min(max(rows, 2 * len(zeros)), self.MAX_ROWS)
        more = [zeros]
        last = zeros[-1]
        for _ in range(rows - len(zeros)):
            last = self._step(last)
            more.append(last[None, :])
        register = final[-1] ^ np.uint32(0xFFFFFFFF)  # A^n(0xFFFFFFFF)
        finals = [final]
        for _ in range(rows + 1 - len(final)):
            register = self._step(register)
            finals.append(np.asarray([register ^ np.uint32(0xFFFFFFFF)], dtype=np.uint32))
        self.tables = (np.concatenate(more), np.concatenate(finals))
        return self.tables


_CRC32 = _Crc32Tables()


def bytes_word_hashes(values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """`_word_hash` (CRC32 << 32 | Adler-32) of consecutive words: `values` (uint8) is
    their bytes back to back and `lengths` (>= 1 each) their sizes. All words at once, with
    prefix sums (per-word sums are differences of them at the word boundaries)."""
    if not len(lengths):
        return np.zeros(0, dtype=np.uint64)
    size = len(values)
    ends = np.cumsum(lengths)
    firsts = ends - lengths
    longest = int(lengths.max())
    zeros, final = _CRC32.get(longest)
    rows = len(zeros)
    # Bytes left to the end of the word, per byte (0 for its last byte): the index of the
    # word's last byte, spread by a cumulative sum of its increments, minus the byte's index.
    to_end = np.zeros(size, dtype=np.int64)
    to_end[firsts] = np.diff(ends - 1, prepend=0)
    np.cumsum(to_end, out=to_end)
    to_end -= np.arange(size, dtype=np.int64)
    prefix = np.zeros(size + 1, dtype=np.int64)
    # Adler-32: a = 1 + sum(b_k), b = sum over k of (n - k) * b_k + n, modulo 65521.
    np.cumsum(values, out=prefix[1:])
    byte_sums = prefix[ends] - prefix[firsts]
    np.cumsum(to_end * values, out=prefix[1:])
    weighted = prefix[ends] - prefix[firsts]
    adler = (((weighted + byte_sums + lengths) % 65521) << 16) | ((1 + byte_sums) % 65521)
    # CRC32 from the per-byte tables (see _Crc32Tables), xor-ed over each word by a
    # cumulative xor.
    if longest > rows:
        np.minimum(to_end, rows - 1, out=to_end)  # long words: redone by zlib below
    to_end <<= 8
    to_end += values
    xor = np.zeros(size + 1, dtype=np.uint32)
    np.bitwise_xor.accumulate(zeros.ravel()[to_end], out=xor[1:])
    crc = xor[ends] ^ xor[firsts] ^ final[np.minimum(lengths, rows)]
    out = (crc.astype(np.uint64) << _SHIFT32) | adler.astype(np.uint64)
    if longest > rows:
        raw = values.tobytes()
        for i in np.flatnonzero(lengths > rows).tolist():
            word = raw[firsts[i]:firsts[i] + lengths[i]]
            out[i] = (zlib.crc32(word) << 32) | zlib.adler32(word)
    return out
