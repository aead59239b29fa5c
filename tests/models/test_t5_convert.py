"""`massivetext convert` (tools/convert_checkpoint.py) and T5's token conventions.

Fixtures: tests/models/fixtures/t5/v1_0 (a tiny HF T5 checkpoint with a tiny T5-convention
`spiece.model` + `tokenizer_config.json` (extra_ids 10) as transformers' `save_pretrained`
writes them) and `tokenizer_reference.json`: transformers' ids of a few strings
(tools/make_t5_fixtures.py, run once with transformers 4.57).
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from massivetext_tf.models.convert import checkpoint, hf_t5
from massivetext_tf.models.encoder_decoder import t5

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "models", "fixtures", "t5")
V1_0, V1_1 = os.path.join(FIXTURES, "v1_0"), os.path.join(FIXTURES, "v1_1")
TOOL = os.path.join(ROOT, "tools", "convert_checkpoint.py")


def _reference():
    with open(os.path.join(V1_0, "tokenizer_reference.json")) as f:
        return json.load(f)


def _spiece():
    with open(os.path.join(V1_0, "spiece.model"), "rb") as f:
        return f.read()


def _tool(*args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True, env=env, timeout=300)


def test_t5_tokenizer_gives_transformers_ids():
    ref = _reference()
    proto = t5.with_extra_ids(_spiece(), ref["extra_ids"])
    assert t5.check_t5_proto(proto) == ref["pieces"] + ref["extra_ids"]
    tokenizer = t5.T5Tokenizer(proto=proto)
    assert (tokenizer.pad_token_id, tokenizer.end_token_id, tokenizer.start_token_id) == (0, 1, 0)
    assert tokenizer.token_to_id("<unk>") == 2 and tokenizer.bos_token_id is None
    # `<extra_id_N>` counts down from the top, as transformers numbers it.
    assert [tokenizer.sentinel_id(n) for n in range(ref["extra_ids"])] == ref["sentinel_ids"]
    for text, expected in zip(ref["strings"], ref["fast"]):  # fast == slow legacy (the default)
        assert [int(i) for i in tokenizer(text)] + [1] == expected, text
    assert ref["fast"] == ref["slow_legacy"]
    # The reverse gives back the spiece.model byte for byte.
    assert t5.without_extra_ids(proto) == (_spiece(), ref["extra_ids"])
    assert t5.with_extra_ids(proto, 5) == proto  # already there: unchanged


def test_t5_preprocessor_starts_the_decoder_from_pad():
    tokenizer = t5.T5Tokenizer(proto=t5.with_extra_ids(_spiece(), 10))
    preprocessor = t5.T5Seq2SeqLMPreprocessor(tokenizer, encoder_sequence_length=8, decoder_sequence_length=6)
    x, y, w = preprocessor({"encoder_text": ["the fox"], "decoder_text": ["the dog"]})
    target = [int(i) for i in tokenizer("the dog")]
    source = [int(i) for i in tokenizer("the fox")]
    assert np.asarray(x["encoder_token_ids"])[0, : len(source) + 1].tolist() == source + [1]
    assert np.asarray(x["decoder_token_ids"])[0, : len(target) + 1].tolist() == [0] + target
    assert np.asarray(x["decoder_padding_mask"])[0, 0] == 1  # the pad start is a real position
    assert np.asarray(y)[0, : len(target) + 1].tolist() == target + [1]
    generate_inputs = preprocessor.generate_preprocess({"encoder_text": ["the fox"], "decoder_text": [""]})
    assert np.asarray(generate_inputs["decoder_token_ids"])[0, :2].tolist() == [0, 0]
    assert np.asarray(generate_inputs["decoder_padding_mask"])[0, :2].tolist() == [1, 0]


def test_t5_proto_with_other_ids_is_refused(tmp_path):
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(["the quick brown fox jumps over the lazy dog"] * 50),
        model_prefix=str(tmp_path / "gopher"), vocab_size=32, hard_vocab_limit=False, pad_id=0, eos_id=1, bos_id=2, unk_id=3,
        character_coverage=1.0, minloglevel=2,
    )
    with pytest.raises(ValueError, match=r"gopher.model: SentencePiece ids .* do not follow T5's convention"):
        t5.check_t5_proto((tmp_path / "gopher.model").read_bytes(), source=str(tmp_path / "gopher.model"))


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("convert") / "preset")
    result = _tool("--from", "hf", V1_0, "--output", out)
    assert result.returncode == 0, result.stderr
    assert "70 tokens, 100 embedding rows" in result.stdout
    return out


@pytest.mark.slow
def test_convert_from_hf_writes_a_preset_that_models_load_reads(converted):
    from massivetext_tf import models

    ref = np.load(os.path.join(V1_0, "reference.npz"))
    lm = models.load(converted)
    assert models.kind(converted) == "encoder_decoder"
    assert isinstance(lm.preprocessor, t5.T5Seq2SeqLMPreprocessor)
    # The embedding keeps config.json's vocab_size rows, not the tokenizer's 70 ids.
    assert lm.backbone.vocabulary_size == 100 and lm.preprocessor.tokenizer.vocabulary_size() == 70
    logits = np.asarray(lm({k: ref[k] for k in ("encoder_token_ids", "encoder_padding_mask")}
                           | {"decoder_token_ids": ref["decoder_token_ids"],
                              "decoder_padding_mask": np.ones_like(ref["decoder_token_ids"])}))
    expected = ref["logits"]
    assert np.abs(logits - expected).max() / np.abs(expected).max() < 1e-4
    # Strings in, strings out, with T5's ids.
    lm.compile(sampler="greedy")
    out = lm.generate(["the quick brown fox"], max_length=8)
    assert isinstance(out[0], str)


@pytest.mark.slow
def test_convert_to_hf_gives_back_the_checkpoint(converted, tmp_path):
    out = str(tmp_path / "hf")
    result = _tool("--to", "hf", converted, "--output", out)
    assert result.returncode == 0, result.stderr
    original = hf_t5.read_hf_state_dict(V1_0)
    back = hf_t5.read_hf_state_dict(out)
    assert set(back) == set(original)
    for name in original:
        np.testing.assert_array_equal(back[name], original[name], err_msg=name)
    with open(os.path.join(out, "spiece.model"), "rb") as f:
        assert f.read() == _spiece()
    with open(os.path.join(out, "tokenizer_config.json")) as f:
        assert json.load(f)["extra_ids"] == 10
    with open(os.path.join(out, "config.json")) as f, open(os.path.join(V1_0, "config.json")) as g:
        mine, theirs = json.load(f), json.load(g)
    for field in ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_decoder_layers", "num_heads",
                  "relative_attention_num_buckets", "relative_attention_max_distance", "feed_forward_proj",
                  "tie_word_embeddings", "decoder_start_token_id", "pad_token_id", "eos_token_id"):
        assert mine[field] == theirs.get(field, hf_t5.HF_DEFAULTS.get(field)), field


def test_convert_refuses_bad_input_with_one_line(tmp_path):
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "mine.txt").write_text("keep me")
    result = _tool("--from", "hf", V1_0, "--output", str(occupied))
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]  # TF logs aside
    assert len(errors) == 1 and "already exists and is not empty" in errors[0]
    assert result.stderr.strip().splitlines()[-1] == errors[0]
    assert (occupied / "mine.txt").read_text() == "keep me"


def test_convert_errors_name_the_file(tmp_path):
    # v1_1 has no spiece.model: the error says so and names the flag; nothing is written.
    with pytest.raises(hf_t5.CheckpointError, match=r"spiece.model \(--from\): no SentencePiece model"):
        checkpoint.hf_to_preset(V1_1, str(tmp_path / "a"))
    assert not (tmp_path / "a").exists()
    # A tokenizer with more ids than the model has rows.
    big = t5.with_extra_ids(_spiece(), 50)
    (tmp_path / "big.model").write_bytes(t5.without_extra_ids(big)[0])
    (tmp_path / "ckpt").mkdir()
    for name in ("config.json", "model.safetensors"):
        (tmp_path / "ckpt" / name).write_bytes(open(os.path.join(V1_0, name), "rb").read())
    (tmp_path / "ckpt" / "tokenizer_config.json").write_text('{"extra_ids": 50}')
    with pytest.raises(hf_t5.CheckpointError, match=r"110 tokens .* only 100 embedding rows"):
        checkpoint.hf_to_preset(str(tmp_path / "ckpt"), str(tmp_path / "b"), tokenizer=str(tmp_path / "big.model"))
    assert not (tmp_path / "b").exists()
    # A torch-only directory.
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "config.json").write_text(open(os.path.join(V1_0, "config.json")).read())
    (tmp_path / "torch" / "spiece.model").write_bytes(_spiece())
    (tmp_path / "torch" / "tokenizer_config.json").write_text('{"extra_ids": 10}')
    (tmp_path / "torch" / "pytorch_model.bin").write_bytes(b"\x80\x02")
    with pytest.raises(hf_t5.CheckpointError, match="convert it to safetensors"):
        checkpoint.hf_to_preset(str(tmp_path / "torch"), str(tmp_path / "c"))
    assert checkpoint.main(["--from", "hf", str(tmp_path / "torch"), "--output", str(tmp_path / "c")]) == 2


def test_convert_sharded_bf16(tmp_path):
    """v1.1: gated GELU, untied, bf16 shards; its tokenizer files copied next to it."""
    import shutil

    ref = np.load(os.path.join(V1_1, "reference.npz"))
    ckpt = tmp_path / "v1_1"
    shutil.copytree(V1_1, ckpt)
    # Without tokenizer_config.json, T5Tokenizer's 100 sentinels: 160 ids > 100 rows.
    with pytest.raises(hf_t5.CheckpointError, match=r"160 tokens .* only 100 embedding rows"):
        checkpoint.hf_to_preset(str(ckpt), str(tmp_path / "p"), tokenizer=os.path.join(V1_0, "spiece.model"))
    shutil.copy(os.path.join(V1_0, "tokenizer_config.json"), ckpt)
    lm = checkpoint.hf_to_preset(str(ckpt), str(tmp_path / "p"), tokenizer=os.path.join(V1_0, "spiece.model"),
                                 sequence_length=16)
    assert lm.backbone.activation == "geglu" and not lm.backbone.tie_word_embeddings
    assert lm.preprocessor.tokenizer.vocabulary_size() == 70
    logits = np.asarray(lm({"encoder_token_ids": ref["encoder_token_ids"],
                            "encoder_padding_mask": ref["encoder_padding_mask"],
                            "decoder_token_ids": ref["decoder_token_ids"],
                            "decoder_padding_mask": np.ones_like(ref["decoder_token_ids"])}))
    assert np.abs(logits - ref["logits"]).max() / np.abs(ref["logits"]).max() < 1e-4
    assert (tmp_path / "p" / "model.weights.h5").exists()


@pytest.mark.slow
def test_evaluation_scores_a_converted_t5_from_pad(converted):
    """`tools/evaluate.py`'s adapter scores a T5 continuation as T5 does: the decoder starts
    from `<pad>` = 0 (not the toolkit's `<s>`), labels end with `</s>`."""
    from massivetext_tf.evaluation import adapters

    adapter = adapters.load_model(converted, batch_size=2)
    assert adapter.decoder_start_id == 0
    context, continuation = "the quick brown fox", "the lazy dog"
    [result] = adapter.loglikelihood([(context, continuation)])

    lm = adapter.task if adapter.task is not None else None
    from massivetext_tf import models

    lm = lm or models.load(converted)
    tokenizer = lm.preprocessor.tokenizer
    source = [int(i) for i in tokenizer(context)] + [1]
    target = [int(i) for i in tokenizer(continuation)]
    logits = np.asarray(lm({"encoder_token_ids": np.array([source], np.int32),
                            "encoder_padding_mask": np.ones([1, len(source)], np.int32),
                            "decoder_token_ids": np.array([[0] + target], np.int32),
                            "decoder_padding_mask": np.ones([1, len(target) + 1], np.int32)}),
                        np.float64)[0]
    log_probs = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - logits.max(-1, keepdims=True)
    expected = float(sum(log_probs[i, t] for i, t in enumerate(target + [1])))
    assert result.num_tokens == len(target) + 1
    assert abs(result.logprob - expected) < 1e-3 * max(1.0, abs(expected))
