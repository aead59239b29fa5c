"""The web pipeline's faster computations give the libraries' own answers: the vectorized
py3langid classifier (`langid._FastClassifier`), ftfy's line loop with plain lines passed
through (`web._fix_text`) and jieba with remembered blocks (`segment._CachedJieba`), on the
committed web fixtures and on edge cases."""
import gzip
import json
import pathlib

import pytest

from massivetext_tf.data.curate import SourceSpec, read_documents
from massivetext_tf.data.curate import langid, segment, web

WEB = pathlib.Path(__file__).parent / "fixtures" / "web"


@pytest.fixture(scope="module")
def texts():
    out = [d.text for d in read_documents(SourceSpec(
        "web", [str(WEB / "edu-en.warc.gz"), str(WEB / "edu-zh.warc.gz")], format="warc",
        language="en", normalize="none"))]
    for name in ("man-en.jsonl.gz", "man-zh.jsonl.gz"):
        with gzip.open(WEB / name, "rt") as f:
            out += [json.loads(line)["text"][:3000] for line in f][:10]
    return out


def test_fast_langid_equals_py3langid(texts):
    fast = langid._identifier()
    model = fast.model  # py3langid's LanguageIdentifier
    edge = ["", "a", "ab", "abc", "abcd", "这是一个", "日本語のテキスト", "x" * 5000,
            "Ceci est une phrase en français.", "\ud800 surrogate"]
    for text in texts + edge:
        text = text[:10_000]
        assert (fast.features(text) == model.instance2fv(text)).all()
        lang, score = fast.classify(text)
        ref_lang, ref_score = model.classify(text)
        assert lang == ref_lang
        assert score == pytest.approx(ref_score, rel=1e-5, abs=1e-6)
    assert langid.identify(texts[0])[0] == "en" and langid.identify(texts[30])[0] == "zh"


def test_fix_text_equals_ftfy(texts):
    ftfy = web._ftfy()
    edge = ["a &amp; b\n<p>x &amp; y\nz &lt;\n", "caf\u00c3\u00a9 &amp;\n&amp; ok\n",
            "line\r\nnext\x1b[31m red\n\x00ctl é", "“quoted” ﬁ ＡＢ\n&amp;\n",
            "é" + "a" * 1_000_010 + "\n&amp;"]  # a segment cut at max_decode_length
    for text in texts + edge + [t.replace("\n", " &amp; <b>\n", 3) for t in texts[:20]]:
        assert web._fix_text(text) == ftfy.fix_text(text, normalization="NFC")


def test_cached_jieba_equals_jieba(texts):
    import jieba

    segment.clear_cache()
    cached = segment._cached_jieba()
    edge = ["", "\r\n", "a\r\nb  c\t\u3000中文", "我们，你们。", "123abc中文ABC 。。",
            "x" * 100 + "中文" * 50]
    for _ in range(2):  # the second time from the cache
        for text in texts + edge:
            assert cached.lcut(text) == jieba.lcut(text)
    assert cached.cache
    segment.clear_cache()
    assert not cached.cache
