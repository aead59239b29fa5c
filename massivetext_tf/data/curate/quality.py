"""Gopher MassiveWeb quality filters (Gopher Appendix A.1.1).

A "word" is a whitespace-separated token (`text.split()`); see `text.py` for the exact
definitions of word, line and letter. Rules, in the order they are checked (the first one
that fails names the rejection), with the paper's defaults from `QualityConfig`:

| rule                   | keeps when                                                     |
|------------------------|----------------------------------------------------------------|
| min_words / max_words  | 50 <= words <= 100,000                                        |
| min_/max_mean_word_length | 3 <= mean characters per word <= 10                        |
| hash_ratio             | count("#") / words <= 0.1                                      |
| ellipsis_ratio         | (count("...") + count("…")) / words <= 0.1                     |
| bullet_lines           | lines starting with a bullet / lines <= 0.9                    |
| ellipsis_lines         | lines ending with "..." or "…" / lines <= 0.3                  |
| alpha_words            | words containing a letter / words >= 0.8                       |
| stop_words             | occurrences of the language's stop words >= 2 (English: the, be, to, of, and, that, have, with; matched case-insensitively on whole words, surrounding punctuation allowed, every occurrence counts) |

A bullet is a line starting (after indentation) with one of • ‣ ⁃ ◦ ● ○ ▪ ▫ ■ □ ➢ ➤ ► ▶ ✓ ✔ ·
or with -, *, +, – or — followed by whitespace (so markdown "**bold**" is not a bullet).

Languages with a segmenter (`QualityConfig.segmenters`, by default jieba for zh) run the
rules above on the segmenter's words (`segment.py`), with `per_language` thresholds
(Chinese: mean word length 1..5 characters) and their own stop words (Chinese: 的 是 在 了
和 有 不 这, matched as whole words, surrounding punctuation allowed).

`QualityConfig.reading="datatrove_spacy"` or `"datatrove_whitespace"` reads the rules as
datatrove's GopherQualityFilter does instead (spaCy or whitespace tokens, non-symbol words,
distinct stop words, ...): `datatrove_reading.py` lists every difference.

Other unspaced languages (ja, th, ...) use characters: `min_chars` <= non-whitespace
characters <= `max_chars`, "#" and ellipsis counts per character, letters / characters >=
`min_alpha_chars_fraction`, the same bullet and ellipsis line rules, and no mean word length
or stop word rule.
"""

from __future__ import annotations

import functools
import re

from massivetext_tf.data.curate import datatrove_reading
from massivetext_tf.data.curate.config import QualityConfig
from massivetext_tf.data.curate.segment import segmenter_for
from massivetext_tf.data.curate.text import (LAZY_COUNT_CHARS, NON_LETTER_RUN,
                                             WORD_WITHOUT_LETTER, TextView,
                                             count_matches_capped, count_words_capped, is_unspaced,
                                             primary_language)

_BULLET_LINE = re.compile(r"^[^\S\n]*(?:[•‣⁃◦●○▪▫■□➢➤►▶✓✔·]|[-*+–—](?=[^\S\n]))", re.M)
_ELLIPSIS_LINE = re.compile(r"(?:\.\.\.|…)[^\S\n]*$", re.M)


@functools.lru_cache(maxsize=64)
def _stop_word_pattern(words: tuple) -> re.Pattern:
    alternatives = "|".join(sorted((re.escape(w) for w in words), key=len, reverse=True))
    return re.compile(rf"(?<!\S)[^\w\s]*(?:{alternatives})[^\w\s]*(?!\S)", re.I)


# On "\n" + the stripped lines joined by "\n" + "\n", every line starts after and ends before
# a "\n", so the line regexes above become literal-prefixed searches (several times faster).
_BULLET_AFTER_NEWLINE = re.compile(r"\n(?:[•‣⁃◦●○▪▫■□➢➤►▶✓✔·]|[-*+–—][^\S\n])")
# A line that is a single dash: a bullet or not depending on the trailing whitespace that
# stripping removed, so such documents count bullets on the original text.
_LONE_DASH_LINE = re.compile(r"\n[-*+–—]\n")


def _line_checks(view: TextView, config: QualityConfig):
    lines = view.lines  # stripped, non-blank lines (shared with the repetition stage)
    n_lines = len(lines)
    if n_lines:
        joined = "\n" + "\n".join(lines) + "\n"
        if _LONE_DASH_LINE.search(joined):
            n_bullets = len(_BULLET_LINE.findall(view.text))
        else:
            n_bullets = len(_BULLET_AFTER_NEWLINE.findall(joined))
        bullets = n_bullets / n_lines
        yield "bullet_lines", bullets, bullets <= config.max_bullet_lines_fraction
        # A line ends with "..." or "…" (== len(_ELLIPSIS_LINE.findall(text))).
        ellipsis = (joined.count("...\n") + joined.count("…\n")) / n_lines
        yield "ellipsis_lines", ellipsis, ellipsis <= config.max_ellipsis_lines_fraction


# For ASCII-only texts: letters -> "a", whitespace -> " ", every other character deleted.
_ASCII_LETTER_RUNS = str.maketrans({
    c: ("a" if re.fullmatch(r"[^\W\d_]", chr(c)) else " " if chr(c).isspace() else None)
    for c in range(128)})


def _count_words_without_letter(text: str, n_words: int) -> int:
    """len(WORD_WITHOUT_LETTER.findall(text)); for ASCII text: a word with a letter becomes
    one run of "a" after a space once non-letters are deleted, so the words with a letter
    are the occurrences of " a" (plus one if the text starts with "a")."""
    if text.isascii():
        runs = text.translate(_ASCII_LETTER_RUNS)
        return n_words - runs.count(" a") - runs.startswith("a")
    return len(WORD_WITHOUT_LETTER.findall(text))


def _spaced_checks(view: TextView, config: QualityConfig, language: str, exhaustive: bool,
                   full_counts: bool):
    text = view.text
    if len(text) > LAZY_COUNT_CHARS and not exhaustive:
        # Reject an enormous document on its word count before splitting it.
        if count_words_capped(text, config.max_words + 1) > config.max_words:
            yield "max_words", config.max_words + 1, False
            return
    words = view.words
    n = len(words)
    yield from _word_count_checks(view, words, config)
    if n == 0:
        return
    alpha = 1.0 - _count_words_without_letter(text, n) / n
    yield "alpha_words", alpha, alpha >= config.min_alpha_words_fraction
    stop_words = config.stop_words.get(primary_language(language))
    if stop_words and config.min_stop_words > 0:
        cap = n if full_counts else config.min_stop_words
        found = count_matches_capped(_stop_word_pattern(tuple(stop_words)), text, cap)
        yield "stop_words", found, found >= config.min_stop_words


def _word_count_checks(view: TextView, words, config: QualityConfig):
    """The rules every word reading shares: word count, mean word length, `#` and ellipsis
    ratios (when there are words), and the line rules."""
    n = len(words)
    yield "min_words", n, n >= config.min_words
    yield "max_words", n, n <= config.max_words
    if n == 0:
        return
    text = view.text
    mean = sum(map(len, words)) / n
    yield "min_mean_word_length", mean, mean >= config.min_mean_word_length
    yield "max_mean_word_length", mean, mean <= config.max_mean_word_length
    hashes = text.count("#") / n
    yield "hash_ratio", hashes, hashes <= config.max_hash_word_ratio
    ellipses = (text.count("...") + text.count("…")) / n
    yield "ellipsis_ratio", ellipses, ellipses <= config.max_ellipsis_word_ratio
    yield from _line_checks(view, config)


def _segmented_checks(view: TextView, config: QualityConfig, language: str, segmenter: str,
                      full_counts: bool):
    """The spaced rules on a segmenter's words (`segment.py`)."""
    text = view.text
    if len(text) > 4 * config.max_words + LAZY_COUNT_CHARS:
        # far more characters than allowed words: reject before segmenting
        yield "max_words", len(text), False
        return
    words = view.segmented(segmenter)
    n = len(words)
    yield from _word_count_checks(view, words, config)
    if n == 0:
        return
    alpha = sum(1 for w in words if _HAS_LETTER.search(w)) / n
    yield "alpha_words", alpha, alpha >= config.min_alpha_words_fraction
    stop_words = config.stop_words.get(primary_language(language))
    if stop_words and config.min_stop_words > 0:
        stops = set(stop_words)
        found = 0
        cap = n if full_counts else config.min_stop_words
        for w in words:
            if w.strip(_PUNCTUATION) in stops:
                found += 1
                if found >= cap:
                    break
        yield "stop_words", found, found >= config.min_stop_words


_HAS_LETTER = re.compile(r"[^\W\d_]")
_PUNCTUATION = "，。、；：？！…—·「」『』《》（）()[]{}\"'“”‘’,.;:?!-"


def _unspaced_checks(view: TextView, config: QualityConfig):
    text = view.text
    n = len(view.nonspace)
    yield "min_chars", n, n >= config.min_chars
    yield "max_chars", n, n <= config.max_chars
    if n == 0:
        return
    hashes = text.count("#") / n
    yield "hash_ratio", hashes, hashes <= config.max_hash_word_ratio
    ellipses = (text.count("...") + text.count("…")) / n
    yield "ellipsis_ratio", ellipses, ellipses <= config.max_ellipsis_word_ratio
    yield from _line_checks(view, config)
    alpha = 1.0 - sum(map(len, NON_LETTER_RUN.findall(view.nonspace))) / n
    yield "alpha_chars", alpha, alpha >= config.min_alpha_chars_fraction


def quality_checks(view: TextView, config: QualityConfig, language: str = "en",
                   exhaustive: bool = False, full_counts: bool = False):
    """Yield (rule, value, passed) lazily, in checking order.

    exhaustive: also evaluate a huge document's rules after its word count failed.
    full_counts: count every stop word (by default counting stops at `min_stop_words`).
    """
    config = config.for_language(language)
    if config.reading != "gopher":
        return datatrove_reading.quality_checks(view, config, language)
    segmenter = segmenter_for(language, config.segmenters)
    if segmenter is not None:
        return _segmented_checks(view, config, language, segmenter, full_counts)
    if is_unspaced(language, config.unspaced_languages):
        return _unspaced_checks(view, config)
    return _spaced_checks(view, config, language, exhaustive, full_counts)


def quality_filter_reason(text: str | TextView, config: QualityConfig | None = None,
                          language: str = "en") -> str | None:
    """The name of the first quality rule that rejects `text`, or None to keep it.

    Args:
        text: the document text (or a `TextView` of it, to share work with other stages).
        config: thresholds; the paper's defaults when None.
        language: the document's language code; selects spaced or unspaced rules and the
            stop word list.
    """
    view = text if isinstance(text, TextView) else TextView(text)
    for rule, _, passed in quality_checks(view, config or QualityConfig(), language):
        if not passed:
            return rule
    return None


def quality_signals(text: str, config: QualityConfig | None = None,
                    language: str = "en") -> dict:
    """Every quality rule's value for `text` (for analysis and threshold tuning)."""
    view = TextView(text)
    return {rule: value for rule, value, _ in
            quality_checks(view, config or QualityConfig(), language, exhaustive=True,
                           full_counts=True)}
