"""Language identification per document, for sources with `language="auto"` (`lang=auto`).

The identifier is py3langid (`py3langid`, the maintained NumPy port of langid.py): its model
ships inside the PyPI package, so nothing is downloaded at run time. It covers 97 languages
and answers ISO 639-1 codes (`en`, `zh`, `ja`, ...). Probabilities are normalized
(`norm_probs=True`), so `language_score` is in [0, 1].

For a document of an "auto" source, `identify_document` sets `Document.language` to the
identified code and `Document.language_score` to its probability; the curation rules of
that language then apply (spaced or unspaced, stop words, segmenter). Only the first
`LanguageIdConfig.max_chars` characters are classified (cost bounded per document).

Classification is py3langid's model and arithmetic, computed faster (`_FastClassifier`):
its byte n-gram automaton has states at most 4 bytes deep, so the state after each byte is a
function of the last 4 bytes and is found for all positions at once with four array lookups
(feature counts identical to `instance2fv`); the naive Bayes product then runs over the
features present only (a few hundred of 7,480) instead of the dense vector. Same language;
the score can differ from py3langid's in the last float32 bits (summation order), which
changed no decision on the benchmark's 356 pages (docs/benchmarks.md) or in the tests.

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


class _FastClassifier:
    """py3langid's `LanguageIdentifier.classify`, vectorized (see the module docstring)."""

    def __init__(self, model):
        import numpy as np

        self.model = model
        self.next_move = np.asarray(model.tk_nextmove, dtype=np.int64)
        self.num_states = len(self.next_move) // 256
        pairs = [(s, f) for s, outputs in model.tk_output.items() for f in outputs]
        self.output_states = np.array([s for s, _ in pairs], dtype=np.int64)
        self.output_features = np.array([f for _, f in pairs], dtype=np.int64)

    def features(self, text: str):
        """py3langid's `instance2fv(text)` (uint16 feature counts)."""
        import numpy as np

        nm = self.next_move
        b = np.frombuffer(text.encode("utf8", errors="surrogatepass"), dtype=np.uint8)
        b = b.astype(np.int64)
        states = np.empty(len(b), dtype=np.int64)
        state = 0
        for i in range(min(3, len(b))):  # fewer than 4 bytes read: from the start state
            state = states[i] = nm[(state << 8) + b[i]]
        if len(b) > 3:  # the state after bytes[i - 3 : i + 1] read from the start state
            s = nm[b[:-3]]
            s = nm[(s << 8) + b[1:-2]]
            s = nm[(s << 8) + b[2:-1]]
            states[3:] = nm[(s << 8) + b[3:]]
        visits = np.bincount(states, minlength=self.num_states)
        counts = np.bincount(self.output_features, weights=visits[self.output_states],
                             minlength=self.model.nb_numfeats)
        return counts.astype(np.uint16)

    def classify(self, text: str) -> tuple[str, float]:
        import numpy as np

        m = self.model
        fv = self.features(text)
        present = np.flatnonzero(fv)
        log_probs = np.dot(fv[present].astype(m.nb_ptc.dtype), m.nb_ptc[present]) + m.nb_pc
        probs = m.norm_probs(log_probs)
        best = int(np.argmax(probs))
        return m.nb_classes[best], probs[best]


@functools.lru_cache(maxsize=1)
def _identifier():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return _FastClassifier(LanguageIdentifier.from_pickled_model(MODEL_FILE, norm_probs=True))


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
