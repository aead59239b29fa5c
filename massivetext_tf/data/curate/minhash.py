"""MinHash signatures compatible with datasketch's "affine32" scheme (`MinHasher`, computed in
numpy blocks for one document or many) and the LSH index that finds near duplicates among
them (`NearDuplicateIndex`). See `massivetext_tf.data.curate.dedup` for the rule."""
from __future__ import annotations

import numpy as np
from datasketch import MinHash, MinHashLSH

from massivetext_tf.data.curate.shingles import _SHIFT32

_MASK32 = np.uint64(0xFFFFFFFF)
_SIGNATURE_BLOCK = 4096
_BATCH_BLOCK = 8192  # shingles per block of `MinHasher.signatures`

# MurmurHash3 32-bit finalizer, as datasketch's affine32 scheme applies to its input hashes.
_FMIX32 = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35),
           np.uint32(16))


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
