"""Datatrove's (FineWeb's) reading of the Gopher rules, for `reading="datatrove_spacy"` or
`reading="datatrove_whitespace"` in `QualityConfig` and `RepetitionConfig`.

The paper does not pin its rules down, and datatrove's `GopherQualityFilter` and
`GopherRepetitionFilter` (0.10) read them differently from this project's default
("gopher", `quality.py`, `repetition.py`). With the datatrove reading our stages take the
same keep/reject decisions as those filters (99%+ of the web benchmark's pages,
docs/benchmarks.md), with our rule names and thresholds (`QualityConfig`,
`RepetitionConfig`; `per_language` still applies). Differences, rule by rule:

| rule | "gopher" (default) | datatrove reading |
|---|---|---|
| words | `text.split()` (a segmenter's for zh), punctuation attached: "end." is one word | spaCy tokens (`datatrove_spacy`: `spacy.blank(language)`'s tokenizer, zh with jieba, a language spaCy lacks with its multi-language `xx`, as datatrove) or `text.split()` (`datatrove_whitespace`), stripped, empty ones dropped: "end." is "end" and "." |
| min/max_words, mean word length | over all words | over the non-symbol words (a word with a character outside datatrove's punctuation set `PUNCTUATION`) |
| hash_ratio, ellipsis_ratio | count / words | count / all tokens (symbols included) |
| bullet_lines | stripped non-blank lines starting with • ‣ ⁃ ◦ ● ○ ▪ ▫ ■ □ ➢ ➤ ► ▶ ✓ ✔ · or "-", "*", "+", "–", "—" and a space | `text.splitlines()` (blank lines included) starting, after indentation, with "•" or "-" |
| ellipsis_lines | over stripped non-blank lines | over `text.splitlines()` |
| alpha_words | words with a letter (`[^\\W\\d_]`) / words | tokens with a `str.isalpha` character / all tokens |
| stop_words | occurrences, case-insensitive, punctuation around allowed | distinct stop words among the tokens, case-sensitive ("the the the" is 1) |
| duplicate lines | stripped non-blank lines, in order lines, paragraphs | `re.split(r"\\n+", text)` (unstripped; an empty first/last line counts), paragraphs first |
| duplicate paragraphs | split on blank lines, stripped | `re.split(r"\\n{2,}", text.strip())` |
| *_chars fractions | / characters of all lines (paragraphs, words) | / `len(text)` |
| top_{n}gram | most frequent n-gram seen twice or more, overlaps once, word characters | `Counter.most_common(1)` of the n-grams joined by spaces (the first of the tied, even if seen once): len(joined) * count |
| duplicate_{n}gram | per-word hashes | n-grams keyed by their words joined without spaces |
| empty text | quality's min_words | repetition rule `empty` |

Languages: the datatrove reading has no character rules (`unspaced_languages` and
`segmenters` are not used); its stop words are the language's list in
`QualityConfig.stop_words` (no list: no stop word rule). `duplicate_ngram_counting` keeps
its meaning (datatrove's filter is "repeats"). A ratio whose denominator is zero (no tokens,
no lines) is not checked (datatrove divides by zero there). A threshold of 0 is a threshold
here, as in the gopher reading; datatrove's filters read 0 or None as "rule off".

Example, "The cat... sat on the mat." with the stop words "the" and "on": the gopher
words are `The` `cat...` `sat` `on` `the` `mat.` (6 words, mean length 3.5, 3 stop word
occurrences: The, on, the); the datatrove_spacy tokens are `The` `cat` `...` `sat` `on`
`the` `mat` `.` (8 tokens, 6 non-symbol words of mean length 17 / 6 = 2.83, "#" and ellipsis
ratios per 8 tokens, 2 distinct stop words: "the" and "on"; "The" is not "the").

spaCy is imported only when `datatrove_spacy` is chosen (`pip install
'massivetext_tf[spacy]'`); it tokenizes at roughly a tenth of the speed of the rest of the
pipeline, so this reading is for comparing with datatrove, not for throughput.
"""

from __future__ import annotations

import functools
import re
from collections import Counter

READINGS = ("gopher", "datatrove_spacy", "datatrove_whitespace")

_PUNCTUATION_CHARS = (
    "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c\r\x0e\x0f\x10\x11\x12\x13\x14\x15\x16"
    "\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f!\"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~\x7f\x80\x81"
    "\x82\x83\x84\x85\x86\x87\x88\x89\x8a\x8b\x8c\x8d\x8e\x8f\x90\x91\x92\x93\x94\x95\x96"
    "\x97\x98\x99\x9a\x9b\x9c\x9d\x9e\x9f\xab\xb4\xbb\u0589\u061d\u061e\u061f\u06d4\u0700"
    "\u0701\u0702\u07f9\u0837\u0839\u083d\u083e\u0964\u0965\u104a\u104b\u1362\u1367\u1368"
    "\u166e\u1735\u1736\u17d4\u17d5\u17d6\u17d9\u17da\u1803\u1809\u1944\u1945\u1aa8\u1aa9"
    "\u1aaa\u1aab\u1b5a\u1b5b\u1b5e\u1b5f\u1b7d\u1b7e\u1c3b\u1c3c\u1c7e\u1c7f\u2013\u2014"
    "\u2019\u201c\u201d\u201e\u2026\u203c\u203d\u2047\u2048\u2049\u2236\u2501\u25ba\u2e2e"
    "\u2e3c\u2e53\u2e54\u3001\u3002\u3008\u3009\u300a\u300b\u300c\u300d\u3010\u3011\ua4ff"
    "\ua60e\ua60f\ua6f3\ua6f7\ua876\ua877\ua8ce\ua8cf\ua92f\ua9c8\ua9c9\uaa5d\uaa5e\uaa5f"
    "\uaaf0\uaaf1\uabeb\ufe52\ufe56\ufe57\uff01\uff05\uff08\uff09\uff0c\uff0e\uff11\uff1a"
    "\uff1b\uff1f\uff5e\uff61\U00010a56\U00010a57\U00010f55\U00010f56\U00010f57\U00010f58"
    "\U00010f59\U00010f86\U00010f87\U00010f88\U00010f89\U00011047\U00011048\U000110be"
    "\U000110bf\U000110c0\U000110c1\U00011141\U00011142\U00011143\U000111c5\U000111c6"
    "\U000111cd\U000111de\U000111df\U00011238\U00011239\U0001123b\U0001123c\U000112a9"
    "\U0001144b\U0001144c\U000115c2\U000115c3\U000115c9\U000115ca\U000115cb\U000115cc"
    "\U000115cd\U000115ce\U000115cf\U000115d0\U000115d1\U000115d2\U000115d3\U000115d4"
    "\U000115d5\U000115d6\U000115d7\U00011641\U00011642\U0001173c\U0001173d\U0001173e"
    "\U00011944\U00011946\U00011a42\U00011a43\U00011a9b\U00011a9c\U00011c41\U00011c42"
    "\U00011ef7\U00011ef8\U00011f43\U00011f44\U00016a6e\U00016a6f\U00016af5\U00016b37"
    "\U00016b38\U00016b44\U00016e98\U0001bc9f\U0001da88")

# datatrove.utils.text.PUNCTUATION_SET (0.10): a word made only of these is a symbol.
PUNCTUATION = frozenset(_PUNCTUATION_CHARS)
BULLETS = ("•", "-")
_PARAGRAPH_BREAK = re.compile(r"\n{2,}")
_LINE_BREAK = re.compile(r"\n+")


@functools.lru_cache(maxsize=8)
def _spacy_tokenizer(language: str):
    try:
        import spacy
    except ImportError:
        raise ValueError("curation reading 'datatrove_spacy' (quality.reading / "
                         "repetition.reading) needs spaCy: pip install 'massivetext_tf[spacy]' "
                         "(or choose 'datatrove_whitespace')") from None
    config = {"nlp": {"tokenizer": {"segmenter": "jieba"}}} if language == "zh" else None
    try:
        nlp = spacy.blank(language, config=config) if config else spacy.blank(language)
    except ImportError:  # no spacy.lang module for it: the multi-language one, as datatrove
        nlp = spacy.blank("xx")
    return nlp.tokenizer


def reading_words(text: str, reading: str, language: str | None) -> list[str]:
    """The tokens of `text` under a datatrove reading (stripped, empty ones dropped)."""
    if reading == "datatrove_whitespace":
        return text.split()
    if reading != "datatrove_spacy":
        raise ValueError(f"no datatrove words for reading {reading!r}")
    from massivetext_tf.data.curate.text import primary_language

    tokenizer = _spacy_tokenizer(primary_language(language) or "en")
    return [s for token in tokenizer(text) if (s := token.text.strip())]


def _is_symbol(word: str) -> bool:
    return PUNCTUATION.issuperset(word)


def quality_checks(view, config, language: str):
    """Yield (rule, value, passed) in datatrove's order, for a `QualityConfig` already
    specialized to the language."""
    from massivetext_tf.data.curate.text import primary_language

    text = view.text
    words = view.reading_words(config.reading, language)
    n = len(words)
    kept = [w for w in words if not _is_symbol(w)]
    m = len(kept)
    yield "min_words", m, m >= config.min_words
    yield "max_words", m, m <= config.max_words
    mean = sum(map(len, kept)) / m if m else float("nan")  # nan: passes, as in datatrove
    yield "min_mean_word_length", mean, not mean < config.min_mean_word_length
    yield "max_mean_word_length", mean, not mean > config.max_mean_word_length
    if n:
        hashes = text.count("#") / n
        yield "hash_ratio", hashes, hashes <= config.max_hash_word_ratio
        ellipses = (text.count("...") + text.count("…")) / n
        yield "ellipsis_ratio", ellipses, ellipses <= config.max_ellipsis_word_ratio
    lines = text.splitlines()
    if lines:
        bullets = sum(1 for s in lines if s.lstrip().startswith(BULLETS)) / len(lines)
        yield "bullet_lines", bullets, bullets <= config.max_bullet_lines_fraction
        ends = sum(1 for s in lines if s.rstrip().endswith(("...", "…"))) / len(lines)
        yield "ellipsis_lines", ends, ends <= config.max_ellipsis_lines_fraction
    if n:
        alpha = sum(1 for w in words if any(c.isalpha() for c in w)) / n
        yield "alpha_words", alpha, alpha >= config.min_alpha_words_fraction
    stop_words = config.stop_words.get(primary_language(language))
    if stop_words and config.min_stop_words > 0:
        found = len(set(stop_words).intersection(words))
        yield "stop_words", found, found >= config.min_stop_words


def _duplicates(parts: list[str]) -> tuple[int, int]:
    """(elements equal to an earlier one, their characters): datatrove's find_duplicates."""
    seen: set = set()
    count = chars = 0
    for part in parts:
        if part in seen:
            count += 1
            chars += len(part)
        else:
            seen.add(part)
    return count, chars


def _repeated_chars(words: list[str], n: int) -> int:
    """duplicate_ngram_counting="repeats": datatrove's find_all_duplicate."""
    seen: set = set()
    repeated = idx = 0
    end = len(words) - n + 1
    while idx < end:
        gram = "".join(words[idx:idx + n])
        if gram in seen:
            repeated += len(gram)
            idx += n
        else:
            seen.add(gram)
            idx += 1
    return repeated


def _all_occurrence_chars(words: list[str], n: int) -> int:
    """duplicate_ngram_counting="all_occurrences" over the same keys: characters of the words
    covered by any occurrence of an n-gram seen more than once (overlaps once)."""
    grams = ["".join(words[i:i + n]) for i in range(len(words) - n + 1)]
    counts = Counter(grams)
    covered = [False] * len(words)
    for i, gram in enumerate(grams):
        if counts[gram] > 1:
            covered[i:i + n] = [True] * n
    return sum(len(w) for w, c in zip(words, covered) if c)


def repetition_checks(view, config, language: str):
    """Yield (rule, value, passed) in datatrove's order (`RepetitionConfig`)."""
    text = view.text
    if not text:
        yield "empty", 0, False
        return
    size = len(text)
    paragraphs = _PARAGRAPH_BREAK.split(text.strip())
    count, chars = _duplicates(paragraphs)
    frac = count / len(paragraphs)
    yield "duplicate_paragraphs", frac, frac <= config.max_duplicate_paragraph_fraction
    yield ("duplicate_paragraph_chars", chars / size,
           chars / size <= config.max_duplicate_paragraph_char_fraction)
    lines = _LINE_BREAK.split(text)
    count, chars = _duplicates(lines)
    frac = count / len(lines)
    yield "duplicate_lines", frac, frac <= config.max_duplicate_line_fraction
    yield ("duplicate_line_chars", chars / size,
           chars / size <= config.max_duplicate_line_char_fraction)
    words = view.reading_words(config.reading, language)
    for n, limit in sorted(config.max_top_ngram_char_fraction.items()):
        grams = [" ".join(words[i:i + n]) for i in range(len(words) - n + 1)]
        if not grams:
            continue
        gram, count = Counter(grams).most_common(1)[0]
        frac = len(gram) * count / size
        yield f"top_{n}gram", frac, frac <= limit
    repeats = config.duplicate_ngram_counting == "repeats"
    for n, limit in sorted(config.max_duplicate_ngram_char_fraction.items()):
        chars = _repeated_chars(words, n) if repeats else _all_occurrence_chars(words, n)
        yield f"duplicate_{n}gram", chars / size, chars / size <= limit
