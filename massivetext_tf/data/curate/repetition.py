"""Gopher repetition removal (Gopher Table A1).

Definitions (lines, paragraphs and words as in `text.py`):

- duplicate_lines: lines that repeat an earlier line of the document / lines > 0.30.
  The first occurrence of a line is not a duplicate; "A, A, B" has 1/3 duplicate lines.
- duplicate_paragraphs: the same over paragraphs, > 0.30.
- duplicate_line_chars: characters of those repeated lines / characters of all lines > 0.20.
- duplicate_paragraph_chars: the same over paragraphs, > 0.20.
- top_{n}gram (n = 2, 3, 4): characters covered by the occurrences of the most frequent word
  n-gram / characters of all words > 0.20, 0.18, 0.16. Only an n-gram seen at least twice
  counts; among tied n-grams the one covering the most characters wins (all of them are
  considered, so the value does not depend on hash order). Characters are word characters (whitespace excluded), and overlapping
  occurrences ("a a a" for the 2-gram "a a") cover each character once.
- duplicate_{n}gram (n = 5..10): characters covered by every occurrence (the first one
  included) of every n-gram that occurs more than once / characters of all words > 0.15,
  0.14, 0.13, 0.12, 0.11, 0.10; overlapping n-grams' characters are counted once. This is
  `duplicate_ngram_counting="all_occurrences"` (the default). With "repeats" (datatrove's
  and FineWeb's reading) the words are scanned left to right: an n-gram seen before adds its
  characters and the scan jumps past it (n words on), any other n-gram is remembered and the
  scan moves one word on; the first occurrence never counts. "a b c d e a b c d e" (5-grams):
  1.0 under "all_occurrences", 0.5 under "repeats".

`RepetitionConfig.reading="datatrove_spacy"` or `"datatrove_whitespace"` reads the rules as
datatrove's GopherRepetitionFilter does instead (its line and paragraph splits, fractions of
`len(text)`, n-grams of spaCy or whitespace tokens): see `datatrove_reading.py`.

For unspaced languages (zh, ja, th, ...) the n-gram rules run over non-whitespace
characters instead of words; the line and paragraph rules are unchanged.

Cost is linear-ish: word hashes are computed once, n-gram hashes are extended in numpy, and
duplicates are found by sorting. Coverage by duplicate n-grams can only shrink as n grows,
so once it is at or below every remaining threshold the larger n are skipped.
`repetition_failures` gives the same verdicts for many documents at once (what `Curator.run`
uses): one row-wise sort of all documents' n-grams settles most of them.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from massivetext_tf.data.curate import datatrove_reading
from massivetext_tf.data.curate.config import RepetitionConfig
from massivetext_tf.data.curate.segment import segmenter_for
from massivetext_tf.data.curate.text import (TextView, covered_mask, is_unspaced,
                                             max_multiplicity, ngram_hashes, segment_max)


def _duplicate_stats(segments: list[str]) -> tuple[float, float]:
    """(fraction of segments repeating an earlier one, fraction of their characters)."""
    if not segments:
        return 0.0, 0.0
    unique = set(segments)
    total_chars = sum(map(len, segments))
    dup_chars = total_chars - sum(map(len, unique))
    return (len(segments) - len(unique)) / len(segments), (
        dup_chars / total_chars if total_chars else 0.0)


def _largest_count_within(limit: float, longest: float, total_chars: int, cap: int) -> int:
    """The largest count t in [0, cap] whose bound min(1, t * longest / total_chars) is
    <= limit (the same float expression as the bound in `_top_ngram_fraction`)."""
    def within(t):
        return min(1.0, float(t) * longest / total_chars) <= limit
    if within(cap):
        return cap
    t = min(cap, int(limit * total_chars / longest))
    while t > 0 and not within(t):
        t -= 1
    while within(t + 1):
        t += 1
    return t


def _top_ngram_fraction(g: np.ndarray, n: int, lengths: np.ndarray, span_chars: np.ndarray,
                        total_chars: int, limit: float | None = None) -> float:
    """Exact fraction, or (when `limit` is given) an upper bound if that bound is <= limit."""
    s = np.sort(g)
    if limit is not None:
        # The most frequent n-gram covers at most top * (longest span) characters. Find the
        # largest count `most` for which that bound is still within the limit; if no run of
        # equal hashes is longer than max(most, 1), the rule passes without counting runs
        # (one comparison of the sorted array with itself shifted, instead of run lengths).
        longest = float(span_chars.max())
        most = _largest_count_within(limit, longest, total_chars, len(s))
        m = max(most, 1)
        if m >= len(s) or not (s[m:] == s[:-m]).any():
            return min(1.0, float(most) * longest / total_chars) if most >= 2 else 0.0
    boundaries = np.flatnonzero(s[1:] != s[:-1]) + 1
    run_starts = np.concatenate([[0], boundaries])
    counts = np.diff(np.concatenate([run_starts, [len(s)]]))
    top = counts.max()
    if top < 2:
        return 0.0
    if limit is not None:
        bound = min(1.0, float(top) * float(span_chars.max()) / total_chars)
        if bound <= limit:
            return bound  # cannot fail: skip the exact coverage
    # Every n-gram tied at the top count, most characters first: an n-gram's occurrences all
    # span the same characters, so count * span is exact unless occurrences overlap ("a a a"),
    # and examining stops once that bound cannot beat the best coverage found. The result is
    # the maximum over all tied n-grams, whatever order the (per-process salted) hashes sort in.
    tied = run_starts[counts == top]
    first = np.argsort(g, kind="stable")[tied]  # a stable sort's run starts: first occurrences
    bounds = span_chars[first] * top
    best_frac = 0.0
    for i in np.lexsort((first, -bounds)):
        if bounds[i] <= best_frac * total_chars:
            break
        starts = np.flatnonzero(g == s[tied[i]])
        covered = covered_mask(starts, n, len(lengths))
        best_frac = max(best_frac, float(lengths[covered].sum()) / total_chars)
    return best_frac


def _duplicate_ngram_fraction(g: np.ndarray, n: int, lengths: np.ndarray,
                              total_chars: int) -> float:
    """Fraction of characters covered by the n-grams (hashes `g`) that occur more than once."""
    order = np.argsort(g, kind="quicksort")
    s = g[order]
    eq = s[1:] == s[:-1]
    if not eq.any():
        return 0.0  # no repeated n-gram (most documents): nothing is covered
    dup_sorted = np.zeros(len(g), dtype=bool)  # == duplicate_mask(g), reusing the sort
    dup_sorted[1:] |= eq
    dup_sorted[:-1] |= eq
    dup = np.empty(len(g), dtype=bool)
    dup[order] = dup_sorted
    starts = np.flatnonzero(dup)
    return float(lengths[covered_mask(starts, n, len(lengths))].sum()) / total_chars


def _repeated_ngram_fraction(g: np.ndarray, n: int, lengths: np.ndarray,
                             total_chars: int) -> float:
    """duplicate_ngram_counting="repeats": datatrove's `find_all_duplicate` on n-gram hashes."""
    cumulative = np.concatenate([[0], np.cumsum(lengths)])
    codes = g.tolist()
    seen: set = set()
    repeated, idx, end = 0, 0, len(codes)
    while idx < end:
        code = codes[idx]
        if code in seen:
            repeated += int(cumulative[idx + n] - cumulative[idx])
            idx += n
        else:
            seen.add(code)
            idx += 1
    return repeated / total_chars


def _first_failure(checks) -> str | None:
    for rule, _, passed in checks:
        if not passed:
            return rule
    return None


def _segment_checks(view: TextView, config: RepetitionConfig):
    """The duplicate line and paragraph rules: yield (rule, value, passed)."""
    line_frac, line_char_frac = _duplicate_stats(view.lines)
    para_frac, para_char_frac = _duplicate_stats(view.paragraphs)
    yield "duplicate_lines", line_frac, line_frac <= config.max_duplicate_line_fraction
    yield ("duplicate_paragraphs", para_frac,
           para_frac <= config.max_duplicate_paragraph_fraction)
    yield ("duplicate_line_chars", line_char_frac,
           line_char_frac <= config.max_duplicate_line_char_fraction)
    yield ("duplicate_paragraph_chars", para_char_frac,
           para_char_frac <= config.max_duplicate_paragraph_char_fraction)


def _ngram_checks(hashes: np.ndarray, lengths: np.ndarray, config: RepetitionConfig,
                  exhaustive: bool = False, tops: bool = True):
    """The top and duplicate n-gram rules over units (`TextView.units`): yield (rule, value,
    passed). tops=False starts at the duplicate n-gram rules."""
    top_limits = config.max_top_ngram_char_fraction
    dup_limits = config.max_duplicate_ngram_char_fraction
    total = len(hashes)
    total_chars = int(lengths.sum())
    if total_chars == 0:
        return
    cumulative = np.concatenate([[0], np.cumsum(lengths)])

    cache: dict[int, np.ndarray] = {}

    def grams(n: int) -> np.ndarray:
        if n not in cache:
            cache[n] = ngram_hashes(hashes, n, cache.get(n - 1))
        return cache[n]

    for n in sorted(top_limits) if tops else ():
        if total < n:
            yield f"top_{n}gram", 0.0, True
            continue
        span_chars = cumulative[n:] - cumulative[:-n]
        frac = _top_ngram_fraction(grams(n), n, lengths, span_chars, total_chars,
                                   None if exhaustive else top_limits[n])
        yield f"top_{n}gram", frac, frac <= top_limits[n]

    order = sorted(dup_limits)
    repeats = config.duplicate_ngram_counting == "repeats"
    for i, n in enumerate(order):
        if total < n:
            yield f"duplicate_{n}gram", 0.0, True
            continue
        if repeats:
            frac = _repeated_ngram_fraction(grams(n), n, lengths, total_chars)
        else:
            frac = _duplicate_ngram_fraction(grams(n), n, lengths, total_chars)
        yield f"duplicate_{n}gram", frac, frac <= dup_limits[n]
        rest = order[i + 1:]
        if not exhaustive and (not rest or (not repeats and
                                            frac <= min(dup_limits[m] for m in rest))):
            return  # coverage only shrinks as n grows: every larger n passes too
        cache.pop(n - 1, None)


def repetition_checks(view: TextView, config: RepetitionConfig, language: str = "en",
                      exhaustive: bool = False):
    """Yield (rule, value, passed) lazily, in checking order."""
    if config.reading != "gopher":
        yield from datatrove_reading.repetition_checks(view, config, language)
        return
    yield from _segment_checks(view, config)
    if not config.max_top_ngram_char_fraction and not config.max_duplicate_ngram_char_fraction:
        return
    hashes, lengths = view.units(is_unspaced(language, config.unspaced_languages),
                                 segmenter_for(language, config.segmenters))
    yield from _ngram_checks(hashes, lengths, config, exhaustive)


# Documents with more units than this are checked one at a time by `repetition_failures`.
BATCH_MAX_UNITS = 1 << 12


def repetition_failures(views: Sequence[TextView], config: RepetitionConfig,
                        languages: Sequence[str]) -> list[str | None]:
    """The first repetition rule that rejects each document, or None to keep it: the same
    answer as `repetition_filter_reason` for every view, computed for many at once.

    The n-gram rules are where the time goes, in many small numpy calls per document. Here
    they run over all documents together (`_batch_ngram_status`), which proves for most
    documents that every n-gram rule passes; only the others go through `_ngram_checks`.
    """
    out: list[str | None] = [None] * len(views)
    if config.reading != "gopher":
        return [_first_failure(datatrove_reading.repetition_checks(view, config, language))
                for view, language in zip(views, languages)]
    if not config.max_top_ngram_char_fraction and not config.max_duplicate_ngram_char_fraction:
        for i, view in enumerate(views):
            out[i] = _first_failure(_segment_checks(view, config))
        return out
    pending, units = [], []
    for i, (view, language) in enumerate(zip(views, languages)):
        rule = _first_failure(_segment_checks(view, config))
        if rule is not None:
            out[i] = rule
            continue
        hashes, lengths = view.units(is_unspaced(language, config.unspaced_languages),
                                     segmenter_for(language, config.segmenters))
        if len(hashes) > BATCH_MAX_UNITS:
            out[i] = _first_failure(_ngram_checks(hashes, lengths, config))
            continue
        pending.append(i)
        units.append((hashes, lengths))
    if pending:
        tops_pass, dups_pass = _batch_ngram_status(units, config)
        for i, (hashes, lengths), top_ok, dup_ok in zip(pending, units, tops_pass, dups_pass):
            if not top_ok:
                out[i] = _first_failure(_ngram_checks(hashes, lengths, config))
            elif not dup_ok:
                out[i] = _first_failure(_ngram_checks(hashes, lengths, config, tops=False))
    return out


def _batch_ngram_status(units: list, config: RepetitionConfig) -> tuple[np.ndarray, np.ndarray]:
    """For each document's (hashes, lengths): (every top n-gram rule passes, every duplicate
    n-gram rule passes), each True only when proven; False means "check it one by one".

    Proofs, with the exact top count (largest number of occurrences of one n-gram) of every
    document from one sort of all documents' n-grams at once:
    - top_{n}gram passes when its count < 2 (value 0.0) or when the bound `_top_ngram_fraction`
      returns, count * longest span / characters, is within the limit;
    - the duplicate rules pass when the first one has no repeated n-gram (value 0.0, and 0.0
      is within that limit and the later ones, so the checks stop there).
    """
    top_limits = config.max_top_ngram_char_fraction
    dup_order = sorted(config.max_duplicate_ngram_char_fraction)
    dup_limits = config.max_duplicate_ngram_char_fraction
    sizes = np.fromiter((len(h) for h, _ in units), dtype=np.int64, count=len(units))
    hashes = np.concatenate([h for h, _ in units])
    offsets = np.zeros(len(units) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    cumulative = np.zeros(len(hashes) + 1, dtype=np.int64)
    np.cumsum(np.concatenate([l for _, l in units]), out=cumulative[1:])
    total_chars = (cumulative[offsets[1:]] - cumulative[offsets[:-1]]).astype(np.float64)
    tops_pass = np.ones(len(units), dtype=bool)
    dups_pass = np.ones(len(units), dtype=bool)
    first_dup = dup_order[0] if dup_order else None
    grams, grams_n = None, 0
    for n in sorted(set(top_limits) | ({first_dup} if dup_order else set())):
        grams = ngram_hashes(hashes, n, grams if grams_n == n - 1 else None)
        grams_n = n
        docs = np.flatnonzero(sizes >= n)  # shorter documents pass both kinds (value 0.0)
        if not len(docs):
            continue
        starts, counts = offsets[docs], sizes[docs] - (n - 1)
        top = max_multiplicity(grams, starts, counts)
        if n in top_limits:
            limit = top_limits[n]
            longest = segment_max(cumulative[n:] - cumulative[:-n], starts, counts)
            bound = np.minimum(1.0, top.astype(np.float64) * longest.astype(np.float64)
                               / total_chars[docs])
            ok = np.where(top < 2, 0.0 <= limit, bound <= limit)
            tops_pass[docs[~ok]] = False
        if n == first_dup:
            rest = [dup_limits[m] for m in dup_order[1:]]
            zero_passes = 0.0 <= dup_limits[n] and (not rest or 0.0 <= min(rest))
            dups_pass[docs[(top >= 2) | (not zero_passes)]] = False
    return tops_pass, dups_pass


def repetition_filter_reason(text: str | TextView, config: RepetitionConfig | None = None,
                             language: str = "en") -> str | None:
    """The name of the first repetition rule that rejects `text`, or None to keep it."""
    view = text if isinstance(text, TextView) else TextView(text)
    for rule, _, passed in repetition_checks(view, config or RepetitionConfig(), language):
        if not passed:
            return rule
    return None


def repetition_signals(text: str, config: RepetitionConfig | None = None,
                       language: str = "en") -> dict:
    """Every repetition rule's value for `text`."""
    return {rule: value for rule, value, _ in
            repetition_checks(TextView(text), config or RepetitionConfig(), language,
                              exhaustive=True)}
