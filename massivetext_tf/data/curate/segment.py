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

Speed: jieba's `cut` splits the text into blocks (runs of Han characters, Latin letters and
digits) and segments each block on its own with a dictionary DAG and an HMM for unknown
words, a pure function of the block. `_CachedJieba` runs that same loop (jieba 0.42's
`Tokenizer.cut`, default mode) and remembers the words of blocks up to 64 characters
(`BLOCK_CACHE_SIZE` blocks, then the cache starts over; emptied when jieba's dictionary
changes): web pages repeat many blocks, and the words are those of `jieba.lcut` (tested).
`clear_cache()` empties it (the web benchmark does, before each timed run).
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


BLOCK_CACHE_SIZE = 1 << 16
_BLOCK_MAX_CHARS = 64


class _CachedJieba:
    """`jieba.lcut(text)` (default mode, HMM on) with the words of short blocks remembered."""

    def __init__(self, jieba):
        self.tokenizer = jieba.dt
        self.re_han, self.re_skip = jieba.re_han_default, jieba.re_skip_default
        self.cache: dict = {}
        self.dictionary_total = None

    def lcut(self, text: str) -> list[str]:
        tokenizer = self.tokenizer
        tokenizer.check_initialized()
        if tokenizer.total != self.dictionary_total:  # loaded, or words added: start over
            self.cache.clear()
            self.dictionary_total = tokenizer.total
        cut_block = tokenizer._Tokenizer__cut_DAG
        cache, re_han, re_skip = self.cache, self.re_han, self.re_skip
        out: list[str] = []
        for block in re_han.split(text):
            if not block:
                continue
            if re_han.match(block):
                words = cache.get(block)
                if words is None:
                    words = list(cut_block(block))
                    if len(block) <= _BLOCK_MAX_CHARS:
                        if len(cache) >= BLOCK_CACHE_SIZE:
                            cache.clear()
                        cache[block] = words
                out.extend(words)
            else:
                for x in re_skip.split(block):
                    if re_skip.match(x):
                        out.append(x)
                    else:
                        out.extend(x)  # one token per character, as jieba
        return out


@functools.lru_cache(maxsize=1)
def _cached_jieba() -> _CachedJieba:
    return _CachedJieba(_jieba())


def clear_cache() -> None:
    """Forget the remembered block segmentations."""
    if _cached_jieba.cache_info().currsize:
        _cached_jieba().cache.clear()


def segment(text: str, segmenter: str) -> list[str]:
    """The words of `text` (see the module docstring)."""
    if segmenter != "jieba":
        raise ValueError(f"unknown segmenter {segmenter!r}; known: {list(SEGMENTERS)}")
    words: list[str] = []
    after_space = True
    for token in _cached_jieba().lcut(text):
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
