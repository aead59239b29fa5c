"""Shared text analysis for the quality and repetition filters.

Definitions used by every rule (the paper does not pin them down):

- word: a maximal run of non-whitespace characters, i.e. `text.split()` (Unicode
  whitespace). Punctuation stays attached ("end." is one word of 4 characters).
- line: the text between "\\n" characters, stripped of surrounding whitespace; blank lines are
  not lines (they count neither as lines nor as duplicates).
- paragraph: the text between runs of one or more blank lines, stripped; blank ones dropped.
- letter: a character matched by `[^\\W\\d_]` (a Unicode letter; CJK ideographs are letters,
  digits, underscores, punctuation and symbols are not).
- unspaced language: a language code whose primary subtag is in the config's
  `unspaced_languages` (zh, ja, th, ...); its length unit is the non-whitespace character and
  its repetition n-grams are character n-grams, unless the language has a segmenter
  (`segmenters`, by default jieba for zh; `segment.py`): then its words are the segmenter's
  and every word rule applies to them.

`TextView` computes each of these at most once per document so that the quality and
repetition stages share the work.
"""

from __future__ import annotations

import re

import numpy as np

WHITESPACE_RUN = re.compile(r"\s+")
NON_WHITESPACE_RUN = re.compile(r"\S+")
# A stripped, non-blank line (group 1).
LINE = re.compile(r"^[^\S\n]*(\S(?:[^\n]*\S)?)", re.M)
PARAGRAPH_BREAK = re.compile(r"\n[^\S\n]*\n\s*")
# A word without any letter (possessive: linear time even for huge tokens).
WORD_WITHOUT_LETTER = re.compile(r"(?<!\S)(?:[^\w\s]|[\d_])++(?!\S)")
NON_LETTER_RUN = re.compile(r"(?:[^\w\s]|[\d_])+")

# Documents longer than this many characters are word-counted lazily first, so a 100 MB
# single-line document is rejected by the word count without being split into a list.
LAZY_COUNT_CHARS = 1 << 22

_HASH_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
# _HASH_MULTIPLIER ** (2 ** k) modulo 2 ** 64, for composing n-gram hashes by doubling.
_MULTIPLIER_POWERS = [np.uint64(pow(0x9E3779B97F4A7C15, 1 << k, 1 << 64)) for k in range(64)]


def primary_language(language: str | None) -> str:
    return (language or "").replace("_", "-").split("-")[0].lower()


def is_unspaced(language: str | None, unspaced_languages) -> bool:
    return primary_language(language) in set(unspaced_languages)


def count_matches_capped(pattern: re.Pattern, text: str, cap: int) -> int:
    """Number of matches of `pattern`, counting no further than `cap` (so cost is O(cap))."""
    n = 0
    for _ in pattern.finditer(text):
        n += 1
        if n >= cap:
            break
    return n


def count_words_capped(text: str, cap: int) -> int:
    """Number of words, counting no further than `cap` (so cost is O(cap) words)."""
    return count_matches_capped(NON_WHITESPACE_RUN, text, cap)


class TextView:
    """Lazily computed, cached views of one document's text."""

    __slots__ = ("text", "_words", "_lines", "_paragraphs", "_nonspace", "_segmented",
                 "_reading_words")

    def __init__(self, text: str):
        self.text = text
        self._words = self._lines = self._paragraphs = self._nonspace = None
        self._segmented = self._reading_words = None

    def reading_words(self, reading: str, language: str | None) -> list[str]:
        """The words of a datatrove reading (`datatrove_reading.py`), computed once per
        document."""
        key = (reading, primary_language(language))
        if self._reading_words is None or self._reading_words[0] != key:
            from massivetext_tf.data.curate.datatrove_reading import reading_words
            self._reading_words = (key, reading_words(self.text, reading, language))
        return self._reading_words[1]

    def segmented(self, segmenter: str) -> list[str]:
        """The words from a segmenter (`segment.py`), computed once per document."""
        if self._segmented is None or self._segmented[0] != segmenter:
            from massivetext_tf.data.curate.segment import segment
            self._segmented = (segmenter, segment(self.text, segmenter))
        return self._segmented[1]

    @property
    def words(self) -> list[str]:
        if self._words is None:
            self._words = self.text.split()
        return self._words

    @property
    def lines(self) -> list[str]:
        if self._lines is None:
            # == LINE.findall(text): str.strip() and the regex's \s are the same whitespace.
            self._lines = [s for line in self.text.split("\n") if (s := line.strip())]
        return self._lines

    @property
    def paragraphs(self) -> list[str]:
        if self._paragraphs is None:
            parts = PARAGRAPH_BREAK.split(self.text)
            self._paragraphs = [s for p in parts if (s := p.strip())]
        return self._paragraphs

    @property
    def nonspace(self) -> str:
        """The text with all whitespace removed."""
        if self._nonspace is None:
            self._nonspace = WHITESPACE_RUN.sub("", self.text)
        return self._nonspace

    def units(self, unspaced: bool, segmenter: str | None = None):
        """(hashes, lengths) of the repetition units: words (a segmenter's words when one is
        given), or non-whitespace characters.

        hashes: uint64 array, equal units have equal values (within this document).
        lengths: int64 array of the units' character lengths.
        """
        if segmenter is not None:
            words = self.segmented(segmenter)
            n = len(words)
            hashes = np.fromiter(map(hash, words), dtype=np.int64, count=n).view(np.uint64)
            return hashes, np.fromiter(map(len, words), dtype=np.int64, count=n)
        if unspaced:
            codes = np.frombuffer(self.nonspace.encode("utf-32-le"), dtype=np.uint32)
            return codes.astype(np.uint64), np.ones(len(codes), dtype=np.int64)
        words = self.words
        n = len(words)
        hashes = np.fromiter(map(hash, words), dtype=np.int64, count=n).view(np.uint64)
        lengths = np.fromiter(map(len, words), dtype=np.int64, count=n)
        return hashes, lengths


def ngram_hashes(hashes: np.ndarray, n: int, previous: np.ndarray | None = None) -> np.ndarray:
    """Polynomial hashes of all n-grams of `hashes` (uint64, wrapping).

    `previous` may hold the (n-1)-gram hashes to extend them in one step.
    """
    if previous is None:
        if n <= 1:
            return hashes.copy()
        # sum_k hashes[i + k] * M ** (n - 1 - k), by doubling: the hashes of 2 ** k-grams
        # are combined for the set bits of n (O(log n) array passes instead of n - 1;
        # identical values, the arithmetic is exact modulo 2 ** 64).
        result, length = None, 0
        block, size, k = hashes, 1, 0
        while True:
            if n & size:
                if result is None:
                    result, length = block, size
                else:
                    result = result[:len(result) - size] * _MULTIPLIER_POWERS[k] + block[length:]
                    length += size
            if size * 2 > n:
                break
            block = block[:-size] * _MULTIPLIER_POWERS[k] + block[size:]
            size, k = size * 2, k + 1
        return result
    return previous[:-1] * _HASH_MULTIPLIER + hashes[n - 1:]


def covered_mask(starts: np.ndarray, n: int, total: int) -> np.ndarray:
    """Boolean mask over `total` units: covered by an n-gram starting at a `starts` index
    (overlapping n-grams cover each unit once)."""
    diff = np.zeros(total + 1, dtype=np.int32)
    diff[starts] += 1
    diff[starts + n] -= 1
    return np.cumsum(diff[:total]) > 0


def duplicate_mask(values: np.ndarray) -> np.ndarray:
    """Boolean mask: True where the value occurs more than once in `values`."""
    if len(values) < 2:
        return np.zeros(len(values), dtype=bool)
    order = np.argsort(values, kind="quicksort")
    s = values[order]
    eq = s[1:] == s[:-1]
    dup_sorted = np.zeros(len(values), dtype=bool)
    dup_sorted[1:] |= eq
    dup_sorted[:-1] |= eq
    out = np.empty(len(values), dtype=bool)
    out[order] = dup_sorted
    return out


_SORT_SENTINEL = np.uint64(0xFFFFFFFFFFFFFFFF)


def ragged_arange(counts: np.ndarray) -> np.ndarray:
    """concatenate([arange(c) for c in counts])."""
    total = int(counts.sum())
    firsts = np.cumsum(counts) - counts
    return np.arange(total, dtype=np.int64) - np.repeat(firsts, counts)


def max_multiplicity(values: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """For each segment values[s:s + c] (c >= 1), the largest number of times one value
    occurs in it (int64).

    Segments of similar length (up to the next power of two) are padded into the rows of one
    matrix and sorted row by row, so there are a few numpy calls per group instead of several
    per segment; the runs of equal values are then read off the run boundaries.
    """
    out = np.ones(len(starts), dtype=np.int64)
    widths = np.maximum(8, 1 << np.ceil(np.log2(np.maximum(counts, 1))).astype(np.int64))
    for width in np.unique(widths):
        width = int(width)
        sel = np.flatnonzero(widths == width)
        n_rows, c = len(sel), counts[sel]
        within = ragged_arange(c)
        rows = np.full(n_rows * width, _SORT_SENTINEL, dtype=np.uint64)
        rows[np.repeat(np.arange(n_rows, dtype=np.int64) * width, c) + within] = \
            values[np.repeat(starts[sel], c) + within]
        rows = rows.reshape(n_rows, width)
        rows.sort(axis=1)  # the padding (the largest value) sorts after the segment's values
        # Run boundaries in a (rows, width + 1) grid: column 0, every change of value inside
        # the segment, and an end marker at column c.
        bounds = np.zeros((n_rows, width + 1), dtype=bool)
        np.not_equal(rows[:, 1:], rows[:, :-1], out=bounds[:, 1:width])
        bounds[:, 1:width] &= np.arange(1, width) < c[:, None]
        bounds[:, 0] = True
        bounds[np.arange(n_rows), c] = True
        positions = np.flatnonzero(bounds)
        run_lengths = np.diff(positions)
        firsts = np.searchsorted(positions, np.arange(n_rows, dtype=np.int64) * (width + 1))
        run_lengths[firsts[1:] - 1] = 0  # from an end marker to the next row: not a run
        out[sel] = np.maximum.reduceat(run_lengths, firsts)
    return out


def segment_max(values: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """max(values[s:s + c]) for each segment (c >= 1, segments in increasing order)."""
    bounds = np.empty(2 * len(starts), dtype=np.int64)
    bounds[0::2] = starts
    bounds[1::2] = starts + counts
    padded = np.concatenate([values, values[:1]])  # every bound is a valid index
    return np.maximum.reduceat(padded, bounds)[0::2]
