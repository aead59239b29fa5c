"""Language identification per document, for sources with `language="auto"` (`lang=auto`).

The identifier is py3langid (`py3langid`, the maintained NumPy port of langid.py): its model
ships inside the PyPI package, so nothing is downloaded at run time. It covers 97 languages
and answers ISO 639-1 codes (`en`, `zh`, `ja`, ...). Probabilities are normalized
(`norm_probs=True`), so `language_score` is in [0, 1].

For a document of an "auto" source, `identify_document` sets `Document.language` to the
identified code and `Document.language_score` to its probability; the curation rules of
that language then apply (spaced or unspaced, stop words, segmenter). Only the first
`LanguageIdConfig.max_chars` characters are classified (cost bounded per document).

Stage `langid` (before quality; `skip` it to keep every document):
- `langid:low_confidence`  score < `min_confidence` (0.65 by default, FineWeb's threshold);
  the document is counted under language `und` (undetermined).
- `langid:language`        `languages` is a non-empty list and the identified language is
  not in it (e.g. `["en"]` to keep English pages only).
"""

from __future__ import annotations

import functools

from massivetext_tf.data.curate.document import Document

AUTO = "auto"
UNDETERMINED = "und"


@functools.lru_cache(maxsize=1)
def _identifier():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_pickled_model(MODEL_FILE, norm_probs=True)


def identify(text: str, max_chars: int = 10_000) -> tuple[str, float]:
    """(ISO 639-1 code, probability) of the text's language."""
    lang, score = _identifier().classify(text[:max_chars])
    return str(lang), float(score)


def is_auto(doc: Document, config) -> bool:
    """Whether `doc`'s language is to be identified under `config` (a CurationConfig)."""
    return doc.source not in config.languages and doc.language == AUTO


def identify_document(doc: Document, config) -> tuple[str, str] | None:
    """Identify the language of an "auto" document in place; returns the langid verdict
    (stage, rule) that removes it, or None. Documents of fixed-language sources (and ones
    already identified) are left alone."""
    if doc.language_score is not None or not is_auto(doc, config):
        return None
    lc = config.langid
    lang, score = identify(doc.text, lc.max_chars)
    doc.language_score = score
    if score < lc.min_confidence:
        doc.language = UNDETERMINED
        return None if "langid" in config.skip else ("langid", "low_confidence")
    doc.language = lang
    if lc.languages and lang not in lc.languages and "langid" not in config.skip:
        return "langid", "language"
    return None
