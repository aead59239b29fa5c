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

The hashing lives in `shingles.py` (normalization, exact keys, n-gram hashes) and
`minhash.py` (signatures, LSH index); their names are re-exported here.
"""

from __future__ import annotations

import hashlib

import numpy as np

from massivetext_tf.data.curate.minhash import MinHasher, NearDuplicateIndex
from massivetext_tf.data.curate.shingles import (  # noqa: F401  (re-exported)
    _SPACE_BYTES, bytes_word_hashes, exact_key, normalize_words, normalized_bytes,
    shingle_hashes, word_hashes)
from massivetext_tf.data.curate.text import ngram_hashes

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
