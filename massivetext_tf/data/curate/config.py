"""Curation configuration: nested dataclasses whose defaults are the Gopher paper's numbers.

Every threshold of Gopher Appendix A.1.1 / Table A1 is a field here, so a config file (or a
flag) can change any of them. `CurationConfig.from_dict` rejects unknown fields with a
`ValueError` naming the field, and `to_dict` gives back plain JSON.

Example:

```python
config = CurationConfig.from_dict({
    "quality": {"min_words": 20},
    "dedup": {"minhash": False},
    "contamination": {"eval_files": ["gs://bucket/eval/*.jsonl"]},
    "skip": ["repetition"],
    "languages": {"zh_wiki": "zh"},
})
```
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

STAGES = ("quality", "repetition", "contamination", "dedup", "langid")
DUPLICATE_NGRAM_COUNTINGS = ("all_occurrences", "repeats")
# How the quality and repetition rules are read (`datatrove_reading.py`).
READINGS = ("gopher", "datatrove_spacy", "datatrove_whitespace")

ENGLISH_STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
# Frequent Chinese function words (the role Gopher's English list plays): the eight most
# frequent of modern prose, de (possessive), shi (be), zai (at), le (aspect), he (and),
# you (have), bu (not), zhe (this), and three of the written/classical register, zhi
# (possessive), er (and/but), ye (sentence-final), which modern formal prose uses too.
CHINESE_STOP_WORDS = ("的", "是", "在", "了", "和", "有", "不", "这", "之", "而", "也")
# Languages whose words come from a segmenter (`segment.py`) instead of characters.
SEGMENTERS = {"zh": "jieba"}
# Per-language quality thresholds (QualityConfig fields) that differ from the paper's English
# ones. Chinese words from jieba are 1-2 characters long on average (English: 4-6), so the
# mean word length bounds move down; measured on Debian's Chinese documentation (see
# docs/data.md): jieba words average 1.4-2.2 characters per document.
PER_LANGUAGE_QUALITY = {"zh": {"min_mean_word_length": 1.0, "max_mean_word_length": 5.0}}

# Scripts written without spaces between words. For these, length is measured in
# non-whitespace characters and the repetition n-grams are character n-grams.
UNSPACED_LANGUAGES = ("zh", "ja", "th", "lo", "km", "my", "bo", "yue", "wuu", "dz")


@dataclass
class QualityConfig:
    """Gopher MassiveWeb quality filters (Gopher Appendix A.1.1).

    A document is kept when every rule passes. Bounds are inclusive: a value equal to a
    threshold is kept (`min_words <= words <= max_words`, ratio `<= max_...`, `>= min_...`).

    Spaced languages (English and others): `min_words`..`max_words`, mean word length,
    `#` and ellipsis to word ratios, bullet/ellipsis lines, alphabetic words, and the stop
    word rule for languages that have a list in `stop_words` (only English by default).

    Languages with a segmenter (`segmenters`, by default {"zh": "jieba"}): the spaced rules
    run on the segmenter's words, with the thresholds of `per_language[code]` where given
    (Chinese: mean word length 1..5) and the stop word list of `stop_words[code]`.

    Other unspaced languages (`unspaced_languages`: ja, th, ...): length is counted in
    non-whitespace characters (`min_chars`..`max_chars`), symbol ratios are per character,
    the alphabetic rule is per character (`min_alpha_chars_fraction`), and there is no mean
    word length or stop word rule. The defaults translate the paper's word bounds with the
    usual ratio of about 1.5 Chinese characters per English word of the same content:
    50 words -> 75 characters, 100,000 words -> 150,000 characters.

    `reading` chooses how the rules are read: "gopher" (the default, as above);
    "datatrove_spacy", datatrove's GopherQualityFilter with its words (spaCy's tokenizer,
    punctuation split off; needs the `spacy` extra); "datatrove_whitespace", the same rules
    with `text.split()` words. Under a datatrove reading the word count and mean length are
    over non-symbol words, "#" and ellipsis counts per token, bullets are lines starting with
    "•" or "-" among all `splitlines()` lines, and stop words count distinct, case-sensitive
    tokens ("The cat... sat on the mat." has 6 gopher words of mean length 3.5 but 8 spaCy
    tokens, 6 of them non-symbol, of mean length 2.83); `datatrove_reading.py` lists every
    difference. Set `RepetitionConfig.reading` too for datatrove's repetition rules.

    Attributes:
        min_words, max_words: Word count bounds (spaced languages and segmented ones).
        min_mean_word_length, max_mean_word_length: Mean word length bounds, characters.
        max_hash_word_ratio, max_ellipsis_word_ratio: "#" and "..." per word, at most.
        max_bullet_lines_fraction: Lines starting with a bullet, at most this fraction.
        max_ellipsis_lines_fraction: Lines ending with an ellipsis, at most this fraction.
        min_alpha_words_fraction: Words with an alphabetic character, at least this fraction.
        min_stop_words: Stop words needed, for languages listed in `stop_words`.
        stop_words: Language code -> stop word list.
        unspaced_languages: Languages measured in characters (no segmenter).
        min_chars, max_chars: Length bounds of unspaced languages, non-whitespace characters.
        min_alpha_chars_fraction: Alphabetic characters of unspaced languages, at least.
        segmenters: Language code -> word segmenter ("jieba" for zh).
        per_language: Language code -> threshold overrides (see `for_language`).
        reading: "gopher", "datatrove_spacy" or "datatrove_whitespace" (above).
    """

    min_words: int = 50
    max_words: int = 100_000
    min_mean_word_length: float = 3.0
    max_mean_word_length: float = 10.0
    max_hash_word_ratio: float = 0.1
    max_ellipsis_word_ratio: float = 0.1
    max_bullet_lines_fraction: float = 0.9
    max_ellipsis_lines_fraction: float = 0.3
    min_alpha_words_fraction: float = 0.8
    min_stop_words: int = 2
    stop_words: dict = field(default_factory=lambda: {"en": list(ENGLISH_STOP_WORDS),
                                                      "zh": list(CHINESE_STOP_WORDS)})
    unspaced_languages: list = field(default_factory=lambda: list(UNSPACED_LANGUAGES))
    min_chars: int = 75
    max_chars: int = 150_000
    min_alpha_chars_fraction: float = 0.5
    segmenters: dict = field(default_factory=lambda: dict(SEGMENTERS))
    per_language: dict = field(default_factory=lambda: {
        k: dict(v) for k, v in PER_LANGUAGE_QUALITY.items()})
    reading: str = "gopher"

    def for_language(self, language: str | None) -> "QualityConfig":
        """This config with `per_language[language]`'s thresholds applied."""
        from massivetext_tf.data.curate.text import primary_language

        overrides = self.per_language.get(primary_language(language)) if self.per_language else None
        if not overrides:
            return self
        return dataclasses.replace(self, per_language={}, **overrides)


@dataclass
class RepetitionConfig:
    """Gopher Table A1 repetition removal. A document is removed when a fraction is above
    its threshold (equal is kept).

    `max_top_ngram_char_fraction` maps n (2..4) to the largest allowed fraction of word
    characters covered by the most frequent n-gram; `max_duplicate_ngram_char_fraction`
    maps n (5..10) to the largest allowed fraction covered by all n-grams that occur more
    than once. For unspaced languages the n-grams are over non-whitespace characters, except
    for languages with a segmenter (`segmenters`), whose n-grams are over its words.

    `duplicate_ngram_counting` chooses the reading of the duplicate n-gram rule:
    "all_occurrences" (the default): every occurrence of a repeated n-gram counts, the first
    included, overlapping occurrences once; "repeats" (datatrove's / FineWeb's): scanning
    left to right, an n-gram seen before counts and the scan jumps past it, the first
    occurrence does not count. In "a b c d e a b c d e" (n = 5) the first reading covers all
    ten words, the second five.

    `reading`: "gopher" (the default, above) or datatrove's GopherRepetitionFilter's reading,
    "datatrove_spacy" (spaCy tokens; needs the `spacy` extra) or "datatrove_whitespace"
    (`text.split()` words): paragraphs split on `\n{2,}` of the stripped text and lines on
    `\n+` (unstripped, checked after the paragraphs), every character fraction divided by
    `len(text)`, the top n-gram's characters counted on its words joined by spaces (its count
    may be 1) and duplicate n-grams keyed by their words joined without spaces. In
    "A\n\nB\n\nA" the repeated line "A" is 1 of the lines' 3 characters under "gopher"
    (duplicate_line_chars 1/3) and 1 of len(text) = 7 under datatrove's (1/7).
    `datatrove_reading.py` lists every difference. With `duplicate_ngram_counting="repeats"`
    this reproduces datatrove's decisions.

    Attributes:
        max_duplicate_line_fraction: Lines that occur more than once, at most this fraction.
        max_duplicate_paragraph_fraction: The same for paragraphs.
        max_duplicate_line_char_fraction: Characters in duplicated lines, at most.
        max_duplicate_paragraph_char_fraction: Characters in duplicated paragraphs, at most.
        max_top_ngram_char_fraction: n (2..4) -> largest fraction of the top n-gram (above).
        max_duplicate_ngram_char_fraction: n (5..10) -> largest duplicate fraction (above).
        unspaced_languages: Languages whose n-grams are over characters (no segmenter).
        duplicate_ngram_counting: "all_occurrences" or "repeats" (above).
        segmenters: Language code -> word segmenter, whose words make the n-grams.
        reading: "gopher", "datatrove_spacy" or "datatrove_whitespace" (above).
    """

    max_duplicate_line_fraction: float = 0.30
    max_duplicate_paragraph_fraction: float = 0.30
    max_duplicate_line_char_fraction: float = 0.20
    max_duplicate_paragraph_char_fraction: float = 0.20
    max_top_ngram_char_fraction: dict = field(
        default_factory=lambda: {2: 0.20, 3: 0.18, 4: 0.16})
    max_duplicate_ngram_char_fraction: dict = field(
        default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10})
    unspaced_languages: list = field(default_factory=lambda: list(UNSPACED_LANGUAGES))
    duplicate_ngram_counting: str = "all_occurrences"
    segmenters: dict = field(default_factory=lambda: dict(SEGMENTERS))
    reading: str = "gopher"


@dataclass
class LanguageIdConfig:
    """Language identification for sources with language "auto" (see `langid.py`).

    Attributes:
        min_confidence: Documents identified with a lower probability are removed
            (`langid:low_confidence`).
        languages: When not empty, documents identified as another language are removed
            (`langid:language`).
        max_chars: Characters classified per document.
    """

    min_confidence: float = 0.65
    languages: list = field(default_factory=list)
    max_chars: int = 10_000


@dataclass
class DedupConfig:
    """Exact and near-duplicate removal inside the training set.

    `exact`: hash of the normalized text (lowercase, punctuation removed, whitespace
    collapsed). `minhash`: MinHash over word `ngram`-grams of that same normalized text,
    indexed with MinHashLSH banding; a document is a near duplicate when its estimated
    Jaccard similarity with an earlier kept document is above `threshold`. The first-seen
    document is kept (the paper drops one of the pair at random; first-seen is deterministic).

    Attributes:
        exact: Remove exact duplicates (of the normalized text).
        minhash: Remove near duplicates.
        ngram: Words per shingle.
        threshold: Estimated Jaccard similarity above which a document is a near duplicate.
        num_perm: MinHash permutations.
        seed: MinHash seed (datasketch's).
    """

    exact: bool = True
    minhash: bool = True
    ngram: int = 13
    threshold: float = 0.8
    num_perm: int = 128
    seed: int = 1


@dataclass
class ContaminationConfig:
    """Test-set filtering: drop training documents too close to an evaluation document.

    Rules (each can be turned off):
    - `minhash`: estimated 13-gram Jaccard with any eval document above `threshold`
      (the paper's test, the same MinHash as dedup).
    - `max_ngram_overlap`: more than this fraction of the training document's distinct
      13-grams occur somewhere in the eval set (None = off, the paper's setting).
    - `max_eval_containment`: the training document contains more than this fraction of
      one eval document's distinct 13-grams. This catches an eval passage pasted inside a
      much longer page, which Jaccard misses (None = off, the paper's setting).
    Eval files are read like any source (`eval_format`, `eval_text_field`, `eval_language`);
    an unreadable eval file is an error, not a skip, since it would weaken the filter.

    Attributes:
        eval_files: Files, directories or globs of the evaluation texts.
        eval_format, eval_text_field, eval_language: How to read them.
        ngram: Words per n-gram (13, the paper's).
        threshold: Estimated Jaccard similarity above which a document is removed.
        num_perm, seed: MinHash permutations and seed.
        minhash: Apply the Jaccard rule.
        max_ngram_overlap: See above (None = off).
        max_eval_containment: See above (None = off).
    """

    eval_files: list = field(default_factory=list)
    eval_format: str = "auto"
    eval_text_field: str = "text"
    eval_language: str = "en"
    ngram: int = 13
    threshold: float = 0.8
    num_perm: int = 128
    seed: int = 1
    minhash: bool = True
    max_ngram_overlap: float | None = None
    max_eval_containment: float | None = None


@dataclass
class CurationConfig:
    """Everything the `Curator` needs.

    Stages run in the order langid (sources with language "auto" only) -> quality ->
    repetition -> contamination -> dedup; names in
    `skip` are not run. `languages` maps a source name to its language code; a source not
    in the map uses the document's own language (from its `SourceSpec`) or
    `default_language`.

    Attributes:
        quality: `QualityConfig`.
        repetition: `RepetitionConfig`.
        dedup: `DedupConfig`.
        contamination: `ContaminationConfig`.
        langid: `LanguageIdConfig`.
        skip: Stage names not to run (`STAGES`).
        languages: Source name -> language code.
        default_language: Language of documents whose source and spec name none.
    """

    quality: QualityConfig = field(default_factory=QualityConfig)
    repetition: RepetitionConfig = field(default_factory=RepetitionConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    contamination: ContaminationConfig = field(default_factory=ContaminationConfig)
    langid: LanguageIdConfig = field(default_factory=LanguageIdConfig)
    skip: set = field(default_factory=set)
    languages: dict = field(default_factory=dict)
    default_language: str = "en"

    def __post_init__(self):
        self.skip = set(self.skip or ())
        unknown = self.skip - set(STAGES)
        if unknown:
            raise ValueError(
                f"CurationConfig.skip: unknown stage(s) {sorted(unknown)}; "
                f"expected a subset of {list(STAGES)}")
        validate(self)

    def language_for(self, source: str, document_language: str | None = None) -> str:
        if source in self.languages:
            return self.languages[source]
        return document_language or self.default_language

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["skip"] = sorted(self.skip)
        return out

    @classmethod
    def from_dict(cls, data: dict | None) -> "CurationConfig":
        return _from_dict(cls, data or {}, "curation")


def _int_keys(mapping: dict, where: str) -> dict:
    try:
        return {int(k): float(v) for k, v in mapping.items()}
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: expected a mapping of n -> fraction, got {mapping!r}") from e


def _from_dict(cls, data: Any, where: str):
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}; known: {sorted(fields)}")
    kwargs = {}
    for name, value in data.items():
        sub = {"quality": QualityConfig, "repetition": RepetitionConfig, "dedup": DedupConfig,
               "contamination": ContaminationConfig,
               "langid": LanguageIdConfig}.get(name) if cls is CurationConfig else None
        if sub is not None:
            value = _from_dict(sub, value, f"{where}.{name}")
        elif name in ("max_top_ngram_char_fraction", "max_duplicate_ngram_char_fraction"):
            value = _int_keys(value, f"{where}.{name}")
        kwargs[name] = value
    return cls(**kwargs)


def _check_fraction(value, where):
    if value is None:
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{where}: expected a fraction in [0, 1], got {value!r}")


def validate(config: CurationConfig) -> None:
    """Raise ValueError naming the first bad field."""
    q, r, d, c = config.quality, config.repetition, config.dedup, config.contamination
    if not 0 <= q.min_words <= q.max_words:
        raise ValueError(f"curation.quality: need 0 <= min_words <= max_words, got "
                         f"{q.min_words}..{q.max_words}")
    if not 0 <= q.min_chars <= q.max_chars:
        raise ValueError(f"curation.quality: need 0 <= min_chars <= max_chars, got "
                         f"{q.min_chars}..{q.max_chars}")
    if not 0 <= q.min_mean_word_length <= q.max_mean_word_length:
        raise ValueError("curation.quality: need 0 <= min_mean_word_length <= max_mean_word_length")
    for name in ("max_bullet_lines_fraction", "max_ellipsis_lines_fraction",
                 "min_alpha_words_fraction", "min_alpha_chars_fraction"):
        _check_fraction(getattr(q, name), f"curation.quality.{name}")
    for name in ("max_duplicate_line_fraction", "max_duplicate_paragraph_fraction",
                 "max_duplicate_line_char_fraction", "max_duplicate_paragraph_char_fraction"):
        _check_fraction(getattr(r, name), f"curation.repetition.{name}")
    for name in ("max_top_ngram_char_fraction", "max_duplicate_ngram_char_fraction"):
        mapping = getattr(r, name)
        if not isinstance(mapping, dict):
            raise ValueError(f"curation.repetition.{name}: expected a mapping n -> fraction")
        for n, v in mapping.items():
            if not isinstance(n, int) or n < 1:
                raise ValueError(f"curation.repetition.{name}: n must be a positive int, got {n!r}")
            _check_fraction(v, f"curation.repetition.{name}[{n}]")
    for where, cfg in (("dedup", d), ("contamination", c)):
        if not isinstance(cfg.ngram, int) or cfg.ngram < 1:
            raise ValueError(f"curation.{where}.ngram: expected a positive int, got {cfg.ngram!r}")
        _check_fraction(cfg.threshold, f"curation.{where}.threshold")
        if not isinstance(cfg.num_perm, int) or cfg.num_perm < 2:
            raise ValueError(f"curation.{where}.num_perm: expected an int >= 2, got {cfg.num_perm!r}")
    from massivetext_tf.data.curate.segment import SEGMENTERS as known
    for where, segs in (("quality", q.segmenters), ("repetition", r.segmenters)):
        if not isinstance(segs, dict) or any(v not in known for v in segs.values()):
            raise ValueError(f"curation.{where}.segmenters: expected a mapping language -> "
                             f"one of {list(known)}, got {segs!r}")
    if not isinstance(q.per_language, dict):
        raise ValueError("curation.quality.per_language: expected a mapping language -> fields")
    names = {f.name for f in dataclasses.fields(QualityConfig)} - {"per_language"}
    for code, overrides in q.per_language.items():
        bad = set(overrides) - names if isinstance(overrides, dict) else {"<not a mapping>"}
        if bad:
            raise ValueError(f"curation.quality.per_language[{code!r}]: unknown field(s) "
                             f"{sorted(bad)}")
    if r.duplicate_ngram_counting not in DUPLICATE_NGRAM_COUNTINGS:
        raise ValueError(f"curation.repetition.duplicate_ngram_counting: expected one of "
                         f"{list(DUPLICATE_NGRAM_COUNTINGS)}, got {r.duplicate_ngram_counting!r}")
    for where, cfg in (("quality", q), ("repetition", r)):
        if cfg.reading not in READINGS:
            raise ValueError(f"curation.{where}.reading: expected one of {list(READINGS)}, "
                             f"got {cfg.reading!r}")
    lc = config.langid
    _check_fraction(lc.min_confidence, "curation.langid.min_confidence")
    if not isinstance(lc.languages, list) or not all(isinstance(x, str) for x in lc.languages):
        raise ValueError(f"curation.langid.languages: expected a list of language codes, "
                         f"got {lc.languages!r}")
    if not isinstance(lc.max_chars, int) or lc.max_chars < 1:
        raise ValueError(f"curation.langid.max_chars: expected a positive int, got {lc.max_chars!r}")
    _check_fraction(c.max_ngram_overlap, "curation.contamination.max_ngram_overlap")
    _check_fraction(c.max_eval_containment, "curation.contamination.max_eval_containment")
    if isinstance(c.eval_files, str):
        c.eval_files = [c.eval_files]
