"""An imported HuggingFace T5 checkpoint exports to a SavedModel whose `generate` and `score`
give the Keras model's tokens and log-likelihoods, with T5's conventions (decoder starts from
`<pad>` = 0, no `<s>`, sentinels spaced as transformers does)."""
import os

import numpy as np
import pytest
import tensorflow as tf

from tests.export.conftest import until_eos

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
V1_0 = os.path.join(ROOT, "tests", "models", "fixtures", "t5", "v1_0")
LENGTH = 24


@pytest.fixture(scope="module")
def t5_export(tmp_path_factory):
    from massivetext_tf import models
    from massivetext_tf.export import export_saved_model
    from massivetext_tf.models.convert import checkpoint

    preset = str(tmp_path_factory.mktemp("t5") / "preset")
    checkpoint.hf_to_preset(V1_0, preset, sequence_length=LENGTH)
    lm = models.load(preset)  # the converted preset, as tools/export.py reads it
    lm.compile(sampler="greedy")
    path = str(tmp_path_factory.mktemp("t5_export") / "1")
    info = export_saved_model(lm, path, max_length=LENGTH, default_max_new_tokens=8)
    return lm, tf.saved_model.load(path), info


def _encoder_inputs(tokenizer, text):
    tokens = [int(t) for t in tokenizer(text)][: LENGTH - 1] + [1]
    ids = np.zeros([1, LENGTH], np.int32)
    ids[0, : len(tokens)] = tokens
    return ids, (np.arange(LENGTH) < len(tokens)).astype(np.int32)[None]


@pytest.mark.slow
def test_t5_checkpoint_export_matches_keras(t5_export):
    lm, loaded, info = t5_export
    assert info["decoder_start_id"] == 0 and info["bos_id"] is None and info["t5_sentinels"]
    sources = ["translate English to German: the quick brown fox", "the <extra_id_0> dog <extra_id_1>"]
    out = loaded.signatures["generate_all_inputs"](
        prompts=tf.constant(sources), max_new_tokens=tf.constant(10), temperature=tf.constant(0.0),
        top_k=tf.constant(0), top_p=tf.constant(1.0), seed=tf.constant(0, tf.int64),
    )
    preprocessor, lm.preprocessor = lm.preprocessor, None
    try:
        for row, source in enumerate(sources):
            enc, enc_mask = _encoder_inputs(preprocessor.tokenizer, source)
            dec = np.zeros([1, LENGTH], np.int32)  # T5's decoder starts from <pad> = 0
            dec_mask = np.zeros_like(dec)
            dec_mask[0, 0] = 1
            ref = lm.generate({"encoder_token_ids": enc, "encoder_padding_mask": enc_mask,
                               "decoder_token_ids": dec, "decoder_padding_mask": dec_mask}, stop_token_ids=None)
            expected = until_eos(np.asarray(ref["decoder_token_ids"])[0, 1:11])
            assert until_eos(out["token_ids"][row].numpy()) == expected
    finally:
        lm.preprocessor = preprocessor

    targets = ["the lazy dog", "<extra_id_0> fox"]
    score = loaded.signatures["score"](texts=tf.constant(sources), targets=tf.constant(targets))
    for row, (source, target) in enumerate(zip(sources, targets)):
        enc, enc_mask = _encoder_inputs(preprocessor.tokenizer, source)
        target_ids = [int(t) for t in preprocessor.tokenizer(target)]
        dec = np.array([[0] + target_ids], np.int32)
        labels = target_ids + [1]
        logits = np.asarray(lm({"encoder_token_ids": enc, "encoder_padding_mask": enc_mask,
                                "decoder_token_ids": dec, "decoder_padding_mask": np.ones_like(dec)}), np.float64)[0]
        log_probs = logits - logits.max(-1, keepdims=True)
        log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
        expected = sum(log_probs[i, t] for i, t in enumerate(labels))
        np.testing.assert_allclose(score["log_likelihood"][row].numpy(), expected, rtol=1e-4)
        assert score["num_tokens"][row].numpy() == len(labels)

