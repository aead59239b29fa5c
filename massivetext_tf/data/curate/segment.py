"""Words for languages written without spaces, from a maintained segmenter.

`segment(text, "jieba")` splits Chinese (simplified or traditional) with jieba (the
dictionary ships in the PyPI package; the default, HMM-enabled mode). Runs of Latin letters,
digits and other spaced text stay one word each, as jieba returns them. To match how a word
is defined for spaced languages (`text.split()`, where "end." is one word), whitespace
tokens are dropped and a token without any letter or digit (punctuation such as "，" or
"。") is attached to the word before it unless whitespace separates them. So "我们，你们。"
gives ["我们，", "你们。"].

Which languages use a segmenter is `QualityConfig.segmenters` / `RepetitionConfig.segmenters`
(by default {"zh": "jieba"}); the word rules (word count, mean word length, word n-gram
repetition, stop words) then run on these words, with the per-language thresholds of
`QualityConfig.per_language`. Unspaced languages without a segmenter keep the character
rules (`text.py`).
"""

from __future__ import annotations

import functools

SEGMENTERS = ("jieba",)


@functools.lru_cache(maxsize=1)
def _jieba():
    import logging

    try:
        import jieba
    except ImportError:
        raise ValueError("Chinese words need jieba: pip install 'massivetext_tf[data]' (or "
                         "set curation quality.segmenters and repetition.segmenters to {} "
                         "for the character rules)") from None
    jieba.setLogLevel(logging.WARNING)
    return jieba


def segment(text: str, segmenter: str) -> list[str]:
    """The words of `text` (see the module docstring)."""
    if segmenter != "jieba":
        raise ValueError(f"unknown segmenter {segmenter!r}; known: {list(SEGMENTERS)}")
    words: list[str] = []
    after_space = True
    for token in _jieba().lcut(text):
        if token.isspace():
            after_space = True
            continue
        if not after_space and words and not any(c.isalnum() for c in token):
            words[-1] += token
        else:
            words.append(token)
        after_space = False
    return words


def segmenter_for(language: str | None, segmenters: dict) -> str | None:
    from massivetext_tf.data.curate.text import primary_language

    return segmenters.get(primary_language(language)) if segmenters else None
