"""tf.data pipeline: packing, segment ids, mixture, sharding, checkpointing, corruption."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from massivetext_tf.data import pipeline, records, tokenizer

BOS, EOS = tokenizer.BOS_ID, tokenizer.EOS_ID


def make_dataset(root, docs_by_shard, tokenizer_model=None):
    """Writes shards + manifest; docs_by_shard: {(split, source, index): [token lists]}."""
    entries = []
    for (split, source, index), docs in sorted(docs_by_shard.items()):
        rel = records.shard_path(split, source, index)
        stats = records.write_shard(
            os.path.join(root, rel),
            [records.serialize_example(d, 2 * len(d), source) for d in docs])
        entries.append(dict(file=rel, split=split, source=source,
                            tokens=sum(map(len, docs)), bytes=sum(2 * len(d) for d in docs),
                            **stats))
    if tokenizer_model:
        tf.io.gfile.copy(tokenizer_model, os.path.join(root, records.TOKENIZER_FILE), True)
    records.write_json(os.path.join(root, records.MANIFEST),
                       records.build_manifest(entries, {"sha256": ""}, {}))
    return str(root)


def random_docs(rng, n, lo, hi, min_len=1, max_len=40):
    return [rng.integers(lo, hi, size=rng.integers(min_len, max_len)).tolist() for _ in range(n)]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rng = np.random.default_rng(0)
    shards = {}
    for i in range(3):
        shards[("train", "web", i)] = random_docs(rng, 40, 100, 200)
    shards[("train", "books", 0)] = random_docs(rng, 10, 200, 300, 50, 400)  # longer than rows
    shards[("eval", "web", 0)] = random_docs(rng, 23, 100, 200)
    shards[("eval", "books", 0)] = random_docs(rng, 5, 200, 300, 50, 100)
    root = make_dataset(tmp_path_factory.mktemp("ds"), shards)
    return root, shards


def take(ds, n):
    return [tf.nest.map_structure(lambda t: t.numpy(), b) for b in ds.take(n)]


def check_row_invariants(x, y, w):
    tok, seg, pos = x["token_ids"], x["segment_ids"], x["positions"]
    assert np.array_equal(x["padding_mask"], seg)
    assert np.array_equal(tok[:, 1:], y[:, :-1])               # y is x shifted by one
    for b in range(tok.shape[0]):
        s = seg[b]
        real = s > 0
        assert np.all(np.diff(s[real]) >= 0) and (not real.any() or s[real][0] == 1)
        for k in np.unique(s[real]):
            idx = np.where(s == k)[0]
            assert np.array_equal(pos[b, idx], np.arange(len(idx)))  # restart per segment
            if k > 1:
                assert tok[b, idx[0]] == BOS                       # new documents start with bos
        # label weight 0 exactly where the next token starts a new document or is padding
        boundary = (y[b] == BOS) | ~real | (y[b] == tokenizer.PAD_ID)
        assert np.array_equal(w[b] == 0, boundary)


def test_lm_dataset_packs_documents_in_order(data):
    root, shards = data
    web = [d for i in range(3) for d in shards[("train", "web", i)]]
    stream = np.concatenate([[BOS] + d + [EOS] for d in web])
    L, B = 16, 4
    ds = pipeline.lm_dataset(root, "train", L, B, mixture={"web": 1}, shuffle=False,
                             repeat=False)
    batches = take(ds, 100)
    rows = np.concatenate([b[0]["token_ids"] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    # rows tile the stream with stride L; every token after the first is a label once
    got = np.concatenate([rows[:, 0][:1]] + [lab for lab in labels])
    assert np.array_equal(got, stream[:len(got)])
    assert len(got) >= len(stream) - (L * B + L)   # only the incomplete tail is dropped
    for x, y, w in batches:
        assert x["token_ids"].shape == (B, L) and x["token_ids"].dtype == np.int32
        assert w.dtype == np.float32
        check_row_invariants(x, y, w)


def test_long_documents_continue_across_rows(data):
    root, shards = data
    ds = pipeline.lm_dataset(root, "train", 32, 2, mixture={"books": 1}, shuffle=False,
                             repeat=False)
    x, y, w = take(ds, 1)[0]
    # first book is >= 50 tokens: row 0 is one segment, row 1 continues it at position 0
    assert np.all(x["segment_ids"][0] == 1) and np.all(x["segment_ids"][1][:5] == 1)
    assert x["positions"][1][0] == 0 and x["token_ids"][1][0] != BOS
    assert w[0].all()


def test_eval_dataset_keeps_every_token(data):
    root, shards = data
    stats = pipeline.split_stats(root, "eval")
    L, B = 24, 3
    batches = take(pipeline.eval_dataset(root, "eval", L, B), 1000)
    total = sum(float(w.sum()) for _, _, w in batches)
    assert total == stats["tokens"] + stats["documents"]
    for x, y, w in batches:
        assert x["token_ids"].shape == (B, L)
        check_row_invariants(x, y, w)
    assert batches[-1][2][-1].sum() == 0 or batches[-1][2].sum() < B * L  # padded tail
    # labels with weight are exactly each document's tokens + eos, books first (name order)
    labels = np.concatenate([y[w > 0] for _, y, w in batches])
    want = np.concatenate([d + [EOS] for src in ("books", "web")
                           for d in shards[("eval", src, 0)]])
    assert np.array_equal(labels, want)


def test_mixture_weights_and_errors(data):
    root, _ = data
    ds = pipeline.lm_dataset(root, "train", 16, 8, mixture={"web": 0.8, "books": 0.2}, seed=3)
    rows = np.concatenate([b[0]["token_ids"] for b in take(ds, 60)])
    first = rows[:, 1]
    books = np.mean((first >= 200) & (first < 300))
    assert 0.1 < books < 0.3
    with pytest.raises(ValueError, match="news"):
        pipeline.lm_dataset(root, "train", 16, 8, mixture={"news": 1.0})
    with pytest.raises(ValueError, match="sequence_length"):
        pipeline.lm_dataset(root, "train", 0, 8)
    assert pipeline.CHINCHILLA_MIXTURE["massive_web"] == 0.45
    assert abs(sum(pipeline.CHINCHILLA_MIXTURE.values()) - 1) < 1e-9


def test_seeded_order_is_deterministic(data):
    root, _ = data
    a = take(pipeline.lm_dataset(root, "train", 16, 4, seed=1), 6)
    b = take(pipeline.lm_dataset(root, "train", 16, 4, seed=1), 6)
    c = take(pipeline.lm_dataset(root, "train", 16, 4, seed=2), 6)
    tok = lambda bs: np.stack([x["token_ids"] for x, _, _ in bs])
    assert np.array_equal(tok(a), tok(b)) and not np.array_equal(tok(a), tok(c))


@pytest.mark.parametrize("source", ["web", "books"])  # 3 files (by file) / 1 file (by record)
def test_input_context_shards_are_disjoint_and_complete(data, source):
    root, shards = data
    seen = []
    for i in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=i)
        ds = pipeline.eval_dataset(root, "train", 16, 2, sources=[source], input_context=ctx)
        seen.append(np.concatenate([y[w > 0] for _, y, w in take(ds, 10000)]))
    total = sum(len(d) + 1 for (s, src, _), docs in shards.items()
                if s == "train" and src == source for d in docs)
    assert len(seen[0]) + len(seen[1]) == total and len(seen[0]) and len(seen[1])


def test_iterator_checkpoint_resumes_with_the_next_batch(data, tmp_path):
    root, _ = data
    make = lambda: pipeline.lm_dataset(root, "train", 16, 4, seed=5,
                                       mixture={"web": 0.7, "books": 0.3})
    it = iter(make())
    for _ in range(5):
        next(it)
    ckpt = tf.train.Checkpoint(iterator=it)
    path = ckpt.save(str(tmp_path / "ckpt"))
    expected = [tf.nest.map_structure(lambda t: t.numpy(), next(it)) for _ in range(3)]
    it2 = iter(make())
    tf.train.Checkpoint(iterator=it2).restore(path).assert_consumed()
    for want in expected:
        got = tf.nest.map_structure(lambda t: t.numpy(), next(it2))
        tf.nest.map_structure(np.testing.assert_array_equal, got, want)


def _corrupt_copy(root, tmp_path, mutate):
    import shutil
    dst = tmp_path / "copy"
    shutil.copytree(root, dst)
    path = dst / "shards" / "train-web-00001.tfrecord"
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(mutate(data)))
    return str(dst), str(path)


def test_corrupt_shard_error_names_the_file(data, tmp_path):
    root, _ = data

    def flip(b):
        b[len(b) // 2] ^= 0xFF
        return b

    dst, path = _corrupt_copy(root, tmp_path, flip)
    ds = pipeline.lm_dataset(dst, "train", 16, 4, mixture={"web": 1}, shuffle=False,
                             repeat=False)
    with pytest.raises(tf.errors.InvalidArgumentError, match="train-web-00001.tfrecord"):
        for _ in ds:
            pass
    problems = [p for p in records.verify(dst) if "tokenizer" not in p]  # no tokenizer here
    assert len(problems) == 1 and "train-web-00001.tfrecord" in problems[0]
    assert [p for p in records.verify(root) if "tokenizer" not in p] == []


def test_truncated_shard_is_caught_before_reading(data, tmp_path):
    root, _ = data
    dst, path = _corrupt_copy(root, tmp_path, lambda b: b[: len(b) - 7])
    with pytest.raises(records.DataError, match="train-web-00001.tfrecord.*truncated"):
        pipeline.lm_dataset(dst, "train", 16, 4)
    assert any("train-web-00001" in p for p in records.verify(dst))


def test_missing_manifest_and_split(tmp_path, data):
    with pytest.raises(FileNotFoundError, match="prepare-data"):
        pipeline.lm_dataset(str(tmp_path), "train", 16, 4)
    root, _ = data
    m = json.loads(open(os.path.join(root, "manifest.json")).read())
    assert set(m["splits"]) == {"train", "eval"} and m["format"] == 1


# ------------------------------------------------------------------------ encoder-decoder

def test_span_corruption_reconstructs_the_text(data):
    root, shards = data
    sentinels = list(range(1000, 1100))
    enc_len, dec_len = 64, 24
    raw, noise, spans = pipeline.span_corruption_lengths(enc_len, dec_len, 0.15, 3.0)
    ds = pipeline.span_corruption_dataset(root, "train", enc_len, dec_len, 4,
                                          sentinel_ids=sentinels, seed=7, shuffle=False,
                                          repeat=False, mixture={"web": 1})
    web = [d for i in range(3) for d in shards[("train", "web", i)]]
    stream = np.concatenate([d + [EOS] for d in web])
    batches = take(ds, 3)
    for bi, (x, y, w) in enumerate(batches):
        assert x["encoder_token_ids"].shape == (4, enc_len)
        assert x["decoder_token_ids"].shape == (4, dec_len)
        for r in range(4):
            enc = x["encoder_token_ids"][r][x["encoder_padding_mask"][r] > 0]
            dec = x["decoder_token_ids"][r][x["decoder_padding_mask"][r] > 0]
            lab = y[r][w[r] > 0]
            assert dec[0] == BOS and lab[-1] == EOS and enc[-1] == EOS
            assert np.array_equal(dec[1:], lab[:-1])
            # fill each sentinel in the encoder with the span that follows it in the targets
            tgt = lab[:-1]
            spans_ = {}
            cur = None
            for t in tgt:
                if t in sentinels:
                    cur = t
                    spans_[cur] = []
                else:
                    spans_[cur].append(t)
            rebuilt = []
            for t in enc[:-1]:
                rebuilt.extend(spans_[t] if t in sentinels else [t])
            chunk = stream[(bi * 4 + r) * raw:(bi * 4 + r + 1) * raw]
            assert np.array_equal(rebuilt, chunk)
            assert sum(len(v) for v in spans_.values()) == noise and len(spans_) == spans
    again = take(pipeline.span_corruption_dataset(
        root, "train", enc_len, dec_len, 4, sentinel_ids=sentinels, seed=7, shuffle=False,
        repeat=False, mixture={"web": 1}), 3)
    other = take(pipeline.span_corruption_dataset(
        root, "train", enc_len, dec_len, 4, sentinel_ids=sentinels, seed=8, shuffle=False,
        repeat=False, mixture={"web": 1}), 3)
    assert np.array_equal(again[0][0]["encoder_token_ids"], batches[0][0]["encoder_token_ids"])
    assert not np.array_equal(other[0][0]["encoder_token_ids"],
                              batches[0][0]["encoder_token_ids"])
    with pytest.raises(ValueError, match="--num-sentinels"):
        pipeline.span_corruption_dataset(root, "train", 512, 128, 2, sentinel_ids=[5, 6])


@pytest.fixture(scope="module")
def small_tokenizer(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("tok") / "t.model")
    texts = ["the quick brown fox jumps over the lazy dog %d times" % i for i in range(200)]
    tokenizer.train_tokenizer(path, texts=texts, vocab_size=400, hard_vocab_limit=False)
    return path


def test_seq2seq_pairs_dataset(tmp_path, small_tokenizer):
    f = tmp_path / "pairs.jsonl"
    rows = [{"source": "the quick fox", "target": "lazy dog", "id": i} for i in range(5)]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds = pipeline.seq2seq_pairs_dataset([str(f)], small_tokenizer, 16, 16, batch_size=4)
    batches = take(ds, 10)
    assert len(batches) == 2
    proc = tokenizer.load_processor(small_tokenizer)
    src, tgt = proc.encode("the quick fox"), proc.encode("lazy dog")
    x, y, w = batches[0]
    assert list(x["encoder_token_ids"][0][:len(src) + 1]) == src + [EOS]
    assert list(x["decoder_token_ids"][0][:len(tgt) + 1]) == [BOS] + tgt
    assert list(y[0][:len(tgt) + 1]) == tgt + [EOS]
    assert w[0].sum() == len(tgt) + 1
    assert batches[1][2][1:].sum() == 0 and batches[1][0]["encoder_token_ids"].shape == (4, 16)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"source": "a", "target": "b"}\n{"source": "a"}\n')
    with pytest.raises(records.DataError, match=r"bad.jsonl:2.*'target'"):
        pipeline.seq2seq_pairs_dataset([str(bad)], small_tokenizer, 16, 8, 4)
