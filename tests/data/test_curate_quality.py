"""Gopher quality filters: both edges of every threshold (just inside keeps, just outside
rejects), with the paper's default thresholds."""

import pytest

from massivetext_tf.data.curate import QualityConfig, quality_filter_reason, quality_signals

# Ordinary lowercase words, none a stop word, 4..7 letters.
FILLER = ("river", "stone", "garden", "window", "morning", "letter", "bridge", "market",
          "silver", "candle", "harbor", "forest", "pepper", "violin", "castle", "meadow")


def words(n, stop=("the", "of")):
    """n words: the given stop words first, then filler."""
    out = list(stop)[:n]
    out += [FILLER[i % len(FILLER)] for i in range(n - len(out))]
    return out


def text(n, **kw):
    return " ".join(words(n, **kw))


def reason(t, **kw):
    return quality_filter_reason(t, QualityConfig(**kw) if kw else None)


def test_good_english_text_is_kept():
    assert reason(text(200)) is None


@pytest.mark.parametrize("n, expected", [(50, None), (49, "min_words"),
                                         (100_000, None), (100_001, "max_words")])
def test_word_count_edges(n, expected):
    assert reason(text(n)) == expected


def test_word_count_is_whitespace_tokens():
    # punctuation stays attached to its word: 50 tokens, not more
    t = ", ".join(words(50)) + "."
    assert quality_signals(t)["min_words"] == 50
    assert reason(t) is None


def test_mean_word_length_lower_edge():
    base = ["the", "and"] * 25                       # 50 words of 3 chars: mean 3.0
    assert reason(" ".join(base)) is None
    base[-1] = "to"                                   # 149 / 50 = 2.98
    assert reason(" ".join(base)) == "min_mean_word_length"


def test_mean_word_length_upper_edge():
    ws = ["the", "with"] + ["abcdefghij"] * 47 + ["x" * 23]   # 7 + 470 + 23 = 500 chars
    assert quality_signals(" ".join(ws))["max_mean_word_length"] == 10.0
    assert reason(" ".join(ws)) is None
    ws[-1] += "y"                                               # 501 / 50
    assert reason(" ".join(ws)) == "max_mean_word_length"


def test_hash_ratio_edges():
    ws = words(100)
    for i in range(10):
        ws[10 + i] = "#" + ws[10 + i]                 # 10 / 100 = 0.1
    assert reason(" ".join(ws)) is None
    ws[30] = "#" + ws[30]                             # 11 / 100
    assert reason(" ".join(ws)) == "hash_ratio"


def test_ellipsis_ratio_edges_counts_both_forms():
    ws = words(100)
    for i in range(5):
        ws[10 + i] += "..."
        ws[20 + i] += "…"                             # 10 / 100 = 0.1
    assert reason(" ".join(ws)) is None
    ws[40] += "…"
    assert reason(" ".join(ws)) == "ellipsis_ratio"


def bulleted(n_bullets, n_lines=100):
    lines = []
    for i in range(n_lines):
        body = " ".join(words(5, stop=("the", "of") if i == 0 else ()))
        marker = ("• " if i % 2 else "- ") if i < n_bullets else ""
        lines.append(marker + body)
    return "\n".join(lines)


def test_bullet_lines_edges():
    assert quality_signals(bulleted(90))["bullet_lines"] == pytest.approx(0.9)
    assert reason(bulleted(90)) is None
    assert reason(bulleted(91)) == "bullet_lines"


def test_markdown_bold_is_not_a_bullet():
    t = "\n".join("**SPEAKER** " + " ".join(words(6)) for _ in range(20))
    assert quality_signals(t)["bullet_lines"] == 0.0


def ellipsis_lines(n_ellipsis, n_lines=100):
    lines = [" ".join(words(5, stop=("the", "of") if i == 0 else ())) for i in range(n_lines)]
    for i in range(n_ellipsis):
        lines[i] += "..." if i % 2 else "…"
    return "\n".join(lines)


def test_ellipsis_lines_edges():
    assert reason(ellipsis_lines(30)) is None
    assert reason(ellipsis_lines(31)) == "ellipsis_lines"


def test_alpha_words_edges():
    ws = words(100)
    for i in range(20):
        ws[10 + i] = "1,234"                          # 80 of 100 words contain a letter
    assert reason(" ".join(ws)) is None
    ws[50] = "--"
    assert reason(" ".join(ws)) == "alpha_words"


def test_alpha_counts_non_ascii_letters():
    ws = words(100)
    for i in range(30):
        ws[10 + i] = "déjà" if i % 2 else "Ωmega"
    assert quality_signals(" ".join(ws))["alpha_words"] == 1.0


def test_stop_words_edges_case_and_punctuation():
    ws = words(50, stop=())
    assert reason(" ".join(ws)) == "stop_words"
    ws[3] = "The"
    assert reason(" ".join(ws)) == "stop_words"      # one is not enough
    ws[7] = "(of,"
    assert reason(" ".join(ws)) is None               # "The" and "(of," count
    ws2 = words(50, stop=())
    ws2[3], ws2[4] = "theory", "often"                # substrings do not count
    assert reason(" ".join(ws2)) == "stop_words"


def test_stop_words_rule_only_for_languages_with_a_list():
    t = text(60, stop=())
    assert quality_filter_reason(t, QualityConfig(), "en") == "stop_words"
    assert quality_filter_reason(t, QualityConfig(), "de") is None


def test_every_threshold_is_configurable():
    t = text(60)
    assert quality_filter_reason(t, QualityConfig(min_words=61)) == "min_words"
    assert quality_filter_reason(t, QualityConfig(max_words=59)) == "max_words"
    assert quality_filter_reason(t, QualityConfig(min_stop_words=3)) == "stop_words"
    assert quality_filter_reason(t, QualityConfig(max_mean_word_length=4.0)) == \
        "max_mean_word_length"


# Unspaced languages without a segmenter (zh has jieba by default: segmenters={} turns it off).
CHARS = {"segmenters": {}}


def test_unspaced_languages_count_characters():
    zh = "天下大事分久必合合久必分" * 7                 # 84 chars, no spaces
    cfg = QualityConfig(**CHARS)
    assert quality_filter_reason(zh, cfg, "zh") is None
    assert quality_filter_reason(zh, cfg, "en") == "min_words"
    assert quality_filter_reason(zh[:74], cfg, "zh") == "min_chars"
    assert quality_filter_reason(zh[:75], cfg, "zh") is None
    assert quality_filter_reason(zh[:75], QualityConfig(min_chars=76, **CHARS),
                                 "zh-Hant") == "min_chars"
    assert quality_filter_reason(zh, QualityConfig(max_chars=83), "ja") == "max_chars"
    assert quality_filter_reason(zh[:74], QualityConfig(), "ja") == "min_chars"


def test_unspaced_alpha_rule_is_per_character():
    zh = "天下大事分久必合合久必分" * 7 + "1" * 84     # half letters, half digits
    assert quality_filter_reason(zh, QualityConfig(**CHARS), "zh") is None
    assert quality_filter_reason(zh + "1", QualityConfig(**CHARS), "zh") == "alpha_chars"
    assert quality_filter_reason(zh + "1", QualityConfig(), "ja") == "alpha_chars"


def test_chinese_words_come_from_jieba_by_default():
    from massivetext_tf.data.curate import quality_signals
    zh = "我们在这里学习中文的写作，这是一个很好的机会。" * 4
    signals = quality_signals(zh, language="zh")
    assert signals["min_words"] == 4 * 13 and 1.0 <= signals["min_mean_word_length"] <= 2.0
    assert signals["stop_words"] >= 8
    assert quality_filter_reason(zh, QualityConfig(), "zh") is None
    assert quality_filter_reason(zh[:46], QualityConfig(), "zh") == "min_words"


def test_line_rules_match_their_regex_definitions_on_odd_whitespace():
    # The line rules count on the stripped lines; they must agree with the per-line regexes
    # on the original text, including lone dashes with trailing whitespace and \r, \x85, ...
    import random
    import re

    from massivetext_tf.data.curate.quality import _line_checks
    from massivetext_tf.data.curate.text import TextView

    line = re.compile(r"^[^\S\n]*(\S(?:[^\n]*\S)?)", re.M)
    bullet = re.compile(r"^[^\S\n]*(?:[•‣⁃◦●○▪▫■□➢➤►▶✓✔·]|[-*+–—](?=[^\S\n]))", re.M)
    ellipsis = re.compile(r"(?:\.\.\.|…)[^\S\n]*$", re.M)
    pieces = ["a", "b", " ", "\n", "\n\n", "\t", "\r", "\x0b", "\x85", "\u2028", "\u3000",
              "-", "*", "+", "–", "—", "•", "·", ".", "...", "…"]
    rng = random.Random(0)
    config = QualityConfig()
    for _ in range(5000):
        t = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 25)))
        view = TextView(t)
        lines = line.findall(t)
        assert view.lines == lines
        got = {rule: value for rule, value, _ in _line_checks(view, config)}
        expected = {"bullet_lines": len(bullet.findall(t)) / len(lines),
                    "ellipsis_lines": len(ellipsis.findall(t)) / len(lines)} if lines else {}
        assert got == expected, repr(t)


def test_ascii_words_without_letter_count_matches_the_regex():
    import random

    from massivetext_tf.data.curate.quality import _count_words_without_letter
    from massivetext_tf.data.curate.text import WORD_WITHOUT_LETTER

    pieces = [chr(c) for c in range(128)] + ["ab", "  ", "12", "_x", "--"]
    rng = random.Random(0)
    for _ in range(20000):
        t = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 20)))
        assert _count_words_without_letter(t, len(t.split())) == \
            len(WORD_WITHOUT_LETTER.findall(t)), repr(t)
