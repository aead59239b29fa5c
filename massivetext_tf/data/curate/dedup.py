"""Exact and near-duplicate removal, and the test-set contamination filter.

Normalization (shared by every rule here): lowercase, delete punctuation and symbols
(`[^\\w\\s]`), split on whitespace. "Hello,  World!" and "hello world" are the same text.

- Exact: a 128-bit BLAKE2b digest of the normalized words joined by single spaces.
- Near duplicates: MinHash (datasketch's "affine32" scheme, `num_perm` permutations,
  `seed`) over the set of word `ngram`-grams (13 by default) of the normalized text, indexed
  with LSH banding (`datasketch.MinHashLSH`'s bands; a lookup costs about the same whatever
  the corpus size). LSH candidates are confirmed with the estimated Jaccard similarity: a document is a
  near duplicate when it is *above* `threshold` (0.8). The first-seen document of a pair is
  kept, so the result is deterministic for a given input order (the paper drops one of the
  pair at random). A document shorter than `ngram` words is one shingle of all its words.
- Unspaced languages (zh, ja, th, ...): the "words" are the non-whitespace characters of the
  normalized text, so shingles are character 13-grams.
- n-gram hashes are deterministic across processes and machines (CRC32 + Adler-32 of each
  word, combined polynomially), so workers of a distributed job agree.
- `sketch_batch` computes the exact keys and signatures of many documents at once (what
  `Curator.run` uses), with the same values as `Sketch`, one document at a time.
"""

from __future__ import annotations

import hashlib
import re
import zlib

import numpy as np
from datasketch import MinHash, MinHashLSH

from massivetext_tf.data.curate.text import ngram_hashes

_PUNCTUATION = re.compile(r"[^\w\s]+")
_MASK32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)
_SIGNATURE_BLOCK = 4096
_BATCH_BLOCK = 8192  # shingles per block of `MinHasher.signatures`

# MurmurHash3 32-bit finalizer, as datasketch's affine32 scheme applies to its input hashes.
_FMIX32 = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35),
           np.uint32(16))


# The ASCII characters that _PUNCTUATION deletes, for the str.translate fast path.
_ASCII_PUNCTUATION = str.maketrans(
    "", "", "".join(c for c in map(chr, range(128)) if _PUNCTUATION.fullmatch(c)))


def normalize_words(text: str) -> list[str]:
    """Lowercase, punctuation removed, whitespace-split."""
    if text.isascii():  # same result as the regex, about twice as fast
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


def _fmix32(h: np.ndarray) -> np.ndarray:
    s1, m1, s2, m2, s3 = _FMIX32
    h = h ^ (h >> s1)
    h = h * m1
    h = h ^ (h >> s2)
    h = h * m2
    return h ^ (h >> s3)


class MinHasher:
    """MinHash signatures compatible with `datasketch.MinHash(num_perm, seed)` (affine32)
    fed with the 32-bit shingle hashes; computed in blocks so memory stays bounded."""

    def __init__(self, num_perm: int = 128, seed: int = 1):
        self.num_perm, self.seed = num_perm, seed
        self.permutations = MinHash(num_perm=num_perm, seed=seed).permutations
        # (num_perm, 1) columns: the min is taken along each contiguous row.
        self._a = self.permutations[0].astype(np.uint32)[:, None]
        self._b = self.permutations[1].astype(np.uint32)[:, None]

    @staticmethod
    def fold(shingles: np.ndarray) -> np.ndarray:
        """64-bit shingle hashes -> the 32-bit values fed to MinHash."""
        return ((shingles >> _SHIFT32) ^ (shingles & _MASK32)).astype(np.uint32)

    def signature(self, shingles: np.ndarray) -> np.ndarray:
        sig = np.full(self.num_perm, np.iinfo(np.uint32).max, dtype=np.uint32)
        hv = _fmix32(self.fold(shingles))
        for start in range(0, len(hv), _SIGNATURE_BLOCK):
            values = hv[None, start:start + _SIGNATURE_BLOCK] * self._a   # uint32, wrapping
            values += self._b
            np.minimum(sig, values.min(axis=1), out=sig)
        return sig

    def signatures(self, values: np.ndarray, starts: np.ndarray,
                   counts: np.ndarray) -> np.ndarray:
        """`signature(values[s:s + c])` for every segment (c >= 1, in increasing order,
        not overlapping): an array (segments, num_perm).

        A signature is a minimum, so repeated values change nothing: segments need not be
        unique shingles. The permutations run over blocks of many segments at once (long
        contiguous numpy loops) and `np.minimum.reduceat` takes each segment's minimum.
        """
        out = np.empty((len(starts), self.num_perm), dtype=np.uint32)
        hv = _fmix32(self.fold(values))
        ends = (starts + counts).tolist()
        starts_list = starts.tolist()
        buffer = None
        i = 0
        while i < len(starts_list):
            lo = starts_list[i]
            if ends[i] - lo > _BATCH_BLOCK:  # a long document: on its own
                out[i] = self.signature(values[lo:ends[i]])
                i += 1
                continue
            j = i + 1
            while j < len(starts_list) and ends[j] - lo <= _BATCH_BLOCK:
                j += 1
            if buffer is None:
                buffer = np.empty((self.num_perm, _BATCH_BLOCK), dtype=np.uint32)
            block = buffer[:, :ends[j - 1] - lo]  # (num_perm, values), reused: no page faults
            np.multiply(hv[None, lo:ends[j - 1]], self._a, out=block)  # uint32, wrapping
            block += self._b
            # Segment i starts at bounds[2i] and ends at bounds[2i + 1]; odd results (the
            # gaps between segments) are dropped. The last segment runs to the block's end.
            bounds = np.empty(2 * (j - i) - 1, dtype=np.int64)
            bounds[0::2] = starts[i:j] - lo
            bounds[1::2] = starts[i:j - 1] + counts[i:j - 1] - lo
            out[i:j] = np.minimum.reduceat(block, bounds, axis=1)[:, 0::2].T
            i = j
        return out

    def minhash(self, signature: np.ndarray) -> MinHash:
        return MinHash(num_perm=self.num_perm, seed=self.seed, hashvalues=signature,
                       permutations=self.permutations, scheme="affine32")


class NearDuplicateIndex:
    """LSH banding over signatures, confirmed by estimated Jaccard > threshold.

    The bands (number and width) are `datasketch.MinHashLSH(threshold, num_perm)`'s, and a
    query's candidates are exactly the indexed signatures that agree with it on every value
    of at least one band, as with MinHashLSH; the tables are kept here, keyed by the band's
    bytes, so a lookup needs no `MinHash` object. `best_match` and `add` take a `MinHash` or
    a signature array.
    """

    def __init__(self, threshold: float = 0.8, num_perm: int = 128):
        self.threshold = threshold
        self.num_perm = num_perm
        self.bands = list(MinHashLSH(threshold=threshold, num_perm=num_perm).hashranges)
        self.tables: list[dict[bytes, list[int]]] = [{} for _ in self.bands]
        self.signatures: list[np.ndarray] = []

    def __len__(self):
        return len(self.signatures)

    def _signature(self, minhash) -> np.ndarray:
        sig = np.asarray(getattr(minhash, "hashvalues", minhash), dtype=np.uint32)
        if sig.shape != (self.num_perm,):
            raise ValueError(f"expecting a signature of {self.num_perm} values, got {sig.shape}")
        return sig

    def query(self, minhash) -> set[int]:
        """Keys of the indexed signatures sharing at least one band with `minhash`."""
        sig = self._signature(minhash)
        out: set[int] = set()
        for (start, end), table in zip(self.bands, self.tables):
            keys = table.get(sig[start:end].tobytes())
            if keys:
                out.update(keys)
        return out

    def best_match(self, minhash) -> tuple[int, float] | None:
        """(key, estimated Jaccard) of the most similar indexed set above threshold."""
        best = None
        sig = self._signature(minhash)
        for key in sorted(self.query(sig)):
            jaccard = float(np.mean(self.signatures[key] == sig))
            if jaccard > self.threshold and (best is None or jaccard > best[1]):
                best = (key, jaccard)
        return best

    def add(self, minhash) -> int:
        key = len(self.signatures)
        sig = self._signature(minhash).copy()
        self.signatures.append(sig)
        for (start, end), table in zip(self.bands, self.tables):
            table.setdefault(sig[start:end].tobytes(), []).append(key)
        return key


class Sketch:
    """Per-document cache of normalized words, shingles and signatures, shared by the
    dedup and contamination stages (`sketch_batch` fills the exact key and signature of
    many at once)."""

    __slots__ = ("text", "unspaced", "_words", "_shingles", "_signatures", "_exact", "_empty")

    def __init__(self, text: str, unspaced: bool = False):
        self.text = text
        self.unspaced = unspaced
        self._words = None
        self._shingles: dict[int, np.ndarray] = {}
        self._signatures: dict[tuple, np.ndarray] = {}
        self._exact: bytes | None = None
        self._empty: bool | None = None

    @property
    def words(self) -> list[str]:
        if self._words is None:
            words = normalize_words(self.text)
            self._words = list("".join(words)) if self.unspaced else words
        return self._words

    @property
    def empty(self) -> bool:
        """No normalized words."""
        if self._empty is None:
            self._empty = not self.words
        return self._empty

    def exact_key(self) -> bytes:
        if self._exact is None:
            self._exact = exact_key(self.words)
        return self._exact

    def shingles(self, n: int) -> np.ndarray:
        if n not in self._shingles:
            self._shingles[n] = shingle_hashes(self.words, n)
        return self._shingles[n]

    def signature(self, hasher: MinHasher, n: int) -> np.ndarray:
        key = (n, hasher.num_perm, hasher.seed)
        if key not in self._signatures:
            self._signatures[key] = hasher.signature(self.shingles(n))
        return self._signatures[key]


def sketch_batch(texts, ngram: int = 13, hasher: MinHasher | None = None,
                 exact: bool = True) -> list[Sketch]:
    """`Sketch(text)` (spaced languages) for every text, with the exact key (when `exact`)
    and the signature of `hasher` over word `ngram`-grams (when `hasher` is given) already
    computed, for all texts together: the same values the sketches compute lazily."""
    sketches = [Sketch(t) for t in texts]
    if not sketches:
        return sketches
    buffers = [normalized_bytes(t) for t in texts]
    data = np.frombuffer(b" ".join(buffers), dtype=np.uint8)
    sizes = np.fromiter(map(len, buffers), dtype=np.int64, count=len(buffers))
    doc_starts = np.cumsum(sizes + 1) - (sizes + 1)
    is_word = ~_SPACE_BYTES[data]
    edges = np.diff(is_word.view(np.int8), prepend=np.int8(0), append=np.int8(0))
    word_starts = np.flatnonzero(edges == 1)
    word_ends = np.flatnonzero(edges == -1)
    first_word = np.searchsorted(word_starts, doc_starts)
    n_words = np.diff(np.append(first_word, len(word_starts)))
    for sketch, empty in zip(sketches, (n_words == 0).tolist()):
        sketch._empty = empty
    lengths = word_ends - word_starts
    if exact:
        # The words of each document joined by single spaces: keep the word bytes and the
        # first whitespace byte between two words of the same document, as a space.
        same_doc = np.repeat(np.arange(len(sketches)), n_words)
        between = word_ends[:-1][same_doc[1:] == same_doc[:-1]]
        keep = is_word.copy()
        keep[between] = True
        spaced = data.copy()
        spaced[between] = 32
        joined = memoryview(spaced[keep].tobytes())
        # Each document's share: its word bytes and one space fewer than its words.
        kept = np.zeros(len(sketches), dtype=np.int64)
        has_words = np.flatnonzero(n_words)
        if len(has_words):
            # (the words of consecutive documents are adjacent, so each sum stops at the
            # next document's first word)
            kept[has_words] = np.add.reduceat(lengths, first_word[has_words])
            kept[has_words] += n_words[has_words] - 1
        ends = np.cumsum(kept)
        for sketch, lo, hi in zip(sketches, (ends - kept).tolist(), ends.tolist()):
            sketch._exact = hashlib.blake2b(joined[lo:hi], digest_size=16).digest()
    if hasher is not None:
        hashes = bytes_word_hashes(data[is_word], lengths)
        full = np.flatnonzero(n_words >= ngram)
        short = np.flatnonzero((n_words > 0) & (n_words < ngram))
        # One shingle per window; a document shorter than `ngram` words is one shingle.
        grams = ngram_hashes(hashes, ngram) if len(full) else np.zeros(0, dtype=np.uint64)
        extra = [ngram_hashes(hashes[f:f + c], c) for f, c in
                 zip(first_word[short].tolist(), n_words[short].tolist())]
        values = np.concatenate([grams] + extra) if extra else grams
        docs = np.concatenate([full, short])
        starts = np.concatenate([first_word[full],
                                 len(grams) + np.arange(len(short), dtype=np.int64)])
        counts = np.concatenate([n_words[full] - (ngram - 1),
                                 np.ones(len(short), dtype=np.int64)])
        key = (ngram, hasher.num_perm, hasher.seed)
        for doc, signature in zip(docs.tolist(), hasher.signatures(values, starts, counts)):
            sketches[doc]._signatures[key] = signature
    return sketches


class Deduplicator:
    """Streaming exact + near-duplicate removal; remembers what it has kept.

    `check(sketch)` returns the rule that rejects the document ("exact" or "minhash") or
    None; a kept document is remembered, so later copies of it are removed.
    """

    def __init__(self, config):
        self.config = config
        self.exact_keys: set[bytes] = set()
        if config.minhash:
            self.hasher = MinHasher(config.num_perm, config.seed)
            self.index = NearDuplicateIndex(config.threshold, config.num_perm)

    def check(self, sketch: Sketch) -> str | None:
        key = None
        if self.config.exact:
            key = sketch.exact_key()
            if key in self.exact_keys:
                return "exact"
        signature = None
        if self.config.minhash and not sketch.empty:
            signature = sketch.signature(self.hasher, self.config.ngram)
            if self.index.best_match(signature) is not None:
                return "minhash"
        if key is not None:
            self.exact_keys.add(key)
        if signature is not None:
            self.index.add(signature)
        return None


class ContaminationFilter:
    """Drops training documents too close to the evaluation set (see ContaminationConfig).

    Rules, checked in this order: "minhash" (Jaccard with one eval document above
    `threshold`), "ngram_overlap" (fraction of the document's n-grams found anywhere in the
    eval set above `max_ngram_overlap`), "eval_containment" (fraction of one eval document's
    n-grams found in the training document above `max_eval_containment`).
    """

    def __init__(self, config, eval_texts, unspaced: bool = False):
        self.config = config
        self.hasher = MinHasher(config.num_perm, config.seed)
        self.index = NearDuplicateIndex(config.threshold, config.num_perm)
        self.eval_ids: list[str] = []
        grams, owners, sizes = [], [], []
        for i, (doc_id, text) in enumerate(eval_texts):
            sketch = Sketch(text, unspaced)
            shingles = sketch.shingles(config.ngram)
            if not len(shingles):
                continue
            doc_index = len(self.eval_ids)
            self.eval_ids.append(doc_id)
            if config.minhash:
                self.index.add(sketch.signature(self.hasher, config.ngram))
            grams.append(shingles)
            owners.append(np.full(len(shingles), doc_index, dtype=np.int64))
            sizes.append(len(shingles))
        if grams:
            all_grams, all_owners = np.concatenate(grams), np.concatenate(owners)
            order = np.argsort(all_grams, kind="stable")
            self._grams, self._owners = all_grams[order], all_owners[order]
        else:
            self._grams = np.zeros(0, dtype=np.uint64)
            self._owners = np.zeros(0, dtype=np.int64)
        self._sizes = np.asarray(sizes, dtype=np.int64)

    def __len__(self):
        return len(self.eval_ids)

    def check(self, sketch: Sketch) -> str | None:
        if not self.eval_ids or sketch.empty:
            return None
        c = self.config
        if c.minhash:
            if self.index.best_match(sketch.signature(self.hasher, c.ngram)) is not None:
                return "minhash"
        if c.max_ngram_overlap is None and c.max_eval_containment is None:
            return None
        shingles = sketch.shingles(c.ngram)
        left = np.searchsorted(self._grams, shingles, side="left")
        right = np.searchsorted(self._grams, shingles, side="right")
        found = right > left
        if c.max_ngram_overlap is not None:
            if found.mean() > c.max_ngram_overlap:
                return "ngram_overlap"
        if c.max_eval_containment is not None and found.any():
            lo, hi = left[found], right[found]
            counts = hi - lo
            # indexes lo..hi-1 of every found gram, without a Python loop
            idx = np.repeat(hi - counts.cumsum(), counts) + np.arange(counts.sum())
            per_doc = np.bincount(self._owners[idx], minlength=len(self._sizes))
            if (per_doc / self._sizes).max() > c.max_eval_containment:
                return "eval_containment"
        return None
