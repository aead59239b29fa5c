"""`reading="datatrove_spacy"` / `"datatrove_whitespace"`: the Gopher rules as datatrove's
GopherQualityFilter and GopherRepetitionFilter read them (`datatrove_reading.py`).

Hand-made documents where the readings differ, with values computed by hand (whitespace
words need nothing beyond the project; spaCy ones are skipped without spaCy), and, when
datatrove is installed, decisions compared with its filters on the committed web fixtures.
"""
import pathlib
import sys

import pytest

from massivetext_tf.data.curate import (CurationConfig, Curator, QualityConfig,
                                        RepetitionConfig, SourceSpec, read_documents,
                                        repetition_signals)
from massivetext_tf.data.curate import datatrove_reading
from massivetext_tf.data.curate.quality import quality_signals

WEB = pathlib.Path(__file__).parent / "fixtures" / "web"
WS = "datatrove_whitespace"


def _q(text, reading, **fields):
    return quality_signals(text, QualityConfig(reading=reading, **fields), "en")


def _r(text, reading, **fields):
    return repetition_signals(text, RepetitionConfig(reading=reading, **fields), "en")


def test_word_count_and_mean_length_over_non_symbol_words():
    text = "alpha beta - gamma -- delta"
    gopher, dt = _q(text, "gopher"), _q(text, WS)
    assert gopher["min_words"] == 6 and gopher["min_mean_word_length"] == pytest.approx(22 / 6)
    # "-" and "--" are symbols: 4 words of 5 + 4 + 5 + 5 characters
    assert dt["min_words"] == 4 and dt["min_mean_word_length"] == pytest.approx(19 / 4)


def test_hash_and_ellipsis_per_token_bullets_and_ellipsis_lines():
    text = "- a #x\n-b\n* c\n• d ...\n\ne"
    gopher, dt = _q(text, "gopher"), _q(text, WS)
    # tokens: - a #x -b * c • d ... e = 10 (gopher: the same 10 whitespace words)
    assert dt["hash_ratio"] == pytest.approx(1 / 10) == gopher["hash_ratio"]
    assert dt["ellipsis_ratio"] == pytest.approx(1 / 10)
    # datatrove: 6 splitlines() lines (the blank one too), bullets "- a", "-b", "• d" -> 3/6;
    # gopher: 5 non-blank lines, bullets "- a", "* c", "• d" ("-b" has no space) -> 3/5
    assert dt["bullet_lines"] == pytest.approx(3 / 6)
    assert gopher["bullet_lines"] == pytest.approx(3 / 5)
    assert dt["ellipsis_lines"] == pytest.approx(1 / 6)
    assert gopher["ellipsis_lines"] == pytest.approx(1 / 5)


def test_distinct_case_sensitive_stop_words():
    assert _q("the the the The of", WS)["stop_words"] == 2  # {"the", "of"}
    assert _q("the the the The", WS)["stop_words"] == 1  # "The" is not "the"
    assert _q("the the the The", "gopher")["stop_words"] == 4  # every occurrence, any case
    config = CurationConfig.from_dict({"quality": {"reading": WS, "min_words": 0},
                                       "skip": ["repetition", "dedup"]})
    doc = "the the the the cat sat"
    assert Curator(config).check(_doc(doc)) == ("quality", "stop_words")
    assert Curator(CurationConfig.from_dict(
        {"quality": {"min_words": 0}, "skip": ["repetition", "dedup"]})).check(_doc(doc)) is None


def test_repetition_denominators_and_splits():
    gopher, dt = _r("A\n\nB\n\nA", "gopher"), _r("A\n\nB\n\nA", WS)
    assert gopher["duplicate_lines"] == dt["duplicate_lines"] == pytest.approx(1 / 3)
    assert gopher["duplicate_line_chars"] == pytest.approx(1 / 3)  # of the lines' 3 chars
    assert dt["duplicate_line_chars"] == pytest.approx(1 / 7)  # of len(text)
    assert dt["duplicate_paragraph_chars"] == pytest.approx(1 / 7)
    # unstripped lines: an empty first and last line are two equal lines
    assert _r("\nx\ny\n", WS)["duplicate_lines"] == pytest.approx(1 / 4)
    assert _r("\nx\ny\n", "gopher")["duplicate_lines"] == 0.0


def test_top_ngram_joined_with_spaces_even_when_seen_once():
    assert _r("aaaa bbbb", WS)["top_2gram"] == pytest.approx(9 / 9)  # "aaaa bbbb" x 1
    assert _r("aaaa bbbb", "gopher")["top_2gram"] == 0.0  # only repeated n-grams count
    # "x y" twice: 3 characters (space included) x 2 / len(text) 11
    assert _r("x y x y zzz", WS)["top_2gram"] == pytest.approx(6 / 11)


def test_duplicate_ngrams_joined_without_spaces_and_counting():
    text = "ab c d e f a bc d e f"  # 5-grams "abcdef" at words 0 and 5 once joined
    dt = _r(text, WS, duplicate_ngram_counting="repeats")
    assert dt["duplicate_5gram"] == pytest.approx(6 / 21)
    assert _r(text, "gopher", duplicate_ngram_counting="repeats")["duplicate_5gram"] == 0.0
    text = "a b c d e a b c d e"
    assert _r(text, WS, duplicate_ngram_counting="repeats")["duplicate_5gram"] == \
        pytest.approx(5 / 19)
    assert _r(text, WS)["duplicate_5gram"] == pytest.approx(10 / 19)  # all occurrences


def test_empty_text_and_bad_reading():
    assert _r("", WS) == {"empty": 0}
    with pytest.raises(ValueError, match="curation.quality.reading"):
        CurationConfig.from_dict({"quality": {"reading": "fineweb"}})
    with pytest.raises(ValueError, match="curation.repetition.reading"):
        CurationConfig.from_dict({"repetition": {"reading": "spacy"}})


def test_missing_spacy_names_the_setting(monkeypatch):
    datatrove_reading._spacy_tokenizer.cache_clear()
    monkeypatch.setitem(sys.modules, "spacy", None)
    try:
        with pytest.raises(ValueError, match=r"datatrove_spacy.*massivetext_tf\[spacy\]"):
            _q("some words here", "datatrove_spacy")
    finally:
        datatrove_reading._spacy_tokenizer.cache_clear()


def test_spacy_words_split_punctuation_off():
    pytest.importorskip("spacy", reason="the datatrove_spacy reading needs spaCy")
    gopher, dt = _q("Done. Go!", "gopher"), _q("Done. Go!", "datatrove_spacy")
    assert gopher["alpha_words"] == 1.0  # "Done." and "Go!" contain letters
    assert dt["alpha_words"] == pytest.approx(2 / 4)  # Done . Go !
    dt = _q("The cat... sat on the mat with the hat.", "datatrove_spacy")
    # The cat ... sat on the mat with the hat . : 11 tokens, 9 non-symbol of 27 characters
    assert dt["min_words"] == 9 and dt["min_mean_word_length"] == pytest.approx(27 / 9)
    assert dt["ellipsis_ratio"] == pytest.approx(1 / 11)
    assert dt["stop_words"] == 2  # the, with
    assert _q("Hello, world. #tag", "datatrove_spacy")["hash_ratio"] == pytest.approx(1 / 6)


def _doc(text):
    from massivetext_tf.data.curate import Document

    return Document(text=text, source="t", id="0")


def _fixture_documents(max_chars=12_000):
    """The Debian Edu sections (WARC) and the shorter manual pages, English and Chinese, all
    read with the English rules as datatrove's filters are by default (short enough for a
    test: spaCy tokenizes some 100 KB a second)."""
    docs = []
    for name in ("edu-en.warc.gz", "edu-zh.warc.gz"):
        docs += read_documents(SourceSpec("web", [str(WEB / name)], format="warc",
                                          language="en"))
    for name in ("man-en.jsonl.gz", "man-zh.jsonl.gz"):
        docs += read_documents(SourceSpec("man", [str(WEB / name)], language="en"))
    return [d for d in docs if len(d.text) <= max_chars]


@pytest.mark.parametrize("reading", ["datatrove_spacy", WS])
def test_decisions_equal_datatrove_filters_on_web_fixtures(reading):
    pytest.importorskip("spacy", reason="datatrove's filters tokenize with spaCy")
    pytest.importorskip("datatrove", reason="the comparison needs datatrove installed")
    from datatrove.data import Document as DTDocument
    from datatrove.pipeline.filters import GopherQualityFilter, GopherRepetitionFilter

    from massivetext_tf.data.curate.webbench import _whitespace_tokenizer

    docs = _fixture_documents()
    assert len(docs) >= 80
    language = "en" if reading == "datatrove_spacy" else _whitespace_tokenizer()
    rep = GopherRepetitionFilter(language=language)
    qual = GopherQualityFilter(language=language)
    theirs = [rep.filter(DTDocument(text=d.text, id=str(i))) is True
              and qual.filter(DTDocument(text=d.text, id=str(i))) is True
              for i, d in enumerate(docs)]
    config = CurationConfig.from_dict({
        "quality": {"reading": reading},
        "repetition": {"reading": reading, "duplicate_ngram_counting": "repeats"},
        "skip": ["dedup"]})
    kept = {id(d) for d in Curator(config).run(docs)}  # the batched path
    ours = [id(d) in kept for d in docs]
    assert ours == theirs
    assert 0 < sum(ours) < len(docs)  # both kinds of decision are exercised


def test_web_benchmark_parts_on_fixtures():
    from massivetext_tf.data.curate import webbench

    warcs = [str(WEB / "edu-en.warc.gz"), str(WEB / "edu-zh.warc.gz")]
    ours = webbench.run_ours_once(warcs)
    assert ours["documents"] == 56 and 0 < ours["kept"] <= 56
    assert ours["mb_per_cpu_second"] > 0
    pytest.importorskip("spacy", reason="datatrove's filters tokenize with spaCy")
    pytest.importorskip("datatrove", reason="the agreement needs datatrove installed")
    for reading in ("datatrove_spacy", WS):
        agree = webbench.agreement(warcs, reading)
        assert agree["documents"] == 56
        assert agree["agreement"] == 1.0 and agree["disagreements"] == []
