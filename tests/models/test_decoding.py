"""The one decoding loop (`models.decoding`): greedy output equals each task's
`generate_uncached` reference, for both model kinds, ragged prompts and an early end token."""
import keras
import numpy as np
import pytest

from harness import tf_function_traces
from massivetext_tf import models
from massivetext_tf.models import decoding

VOCAB = 97
DECODER_ONLY = dict(max_sequence_length=32, vocabulary_size=VOCAB)
ENCODER_DECODER = dict(
    max_sequence_length=32, vocabulary_size=VOCAB, hidden_dim=32, intermediate_dim=64, num_heads=2, key_value_dim=16
)
PROMPTS = [[2, 11, 12, 13, 14, 15, 16], [2, 40], [2, 7, 8, 9]]


def _randomize(lm, seed=0):
    """Independent random weights, so greedy choices are far from float ties."""
    rng = np.random.default_rng(seed)
    for v in lm.trainable_variables:
        if len(v.shape) >= 2:
            v.assign(rng.normal(0.0, 0.15, v.shape).astype("float32"))
    return lm


def _until(tokens, end_id):
    tokens = [int(t) for t in tokens]
    return tokens[: tokens.index(end_id)] if end_id in tokens else tokens


def _decoder_only_reference(lm, prompts, max_new_tokens):
    """`generate_uncached` on the prompts padded into one buffer: per prompt, its new tokens."""
    length = max(map(len, prompts)) + max_new_tokens
    ids = np.zeros([len(prompts), length], np.int32)
    for i, p in enumerate(prompts):
        ids[i, : len(p)] = p
    mask = (ids != 0).astype(np.int32)
    out = np.asarray(lm.generate_uncached({"token_ids": ids, "padding_mask": mask}, max_new_tokens))
    return [out[i, len(p): len(p) + max_new_tokens].tolist() for i, p in enumerate(prompts)]


def _encoder_decoder_reference(lm, sources, max_new_tokens):
    length = max(map(len, sources))
    enc = np.zeros([len(sources), length], np.int32)
    for i, p in enumerate(sources):
        enc[i, : len(p)] = p
    dec = np.zeros([len(sources), max_new_tokens + 1], np.int32)
    dec[:, 0] = decoding.BOS_ID
    dec_mask = np.zeros_like(dec)
    dec_mask[:, 0] = 1
    out = lm.generate_uncached(
        {"encoder_token_ids": enc, "encoder_padding_mask": (enc != 0).astype(np.int32),
         "decoder_token_ids": dec, "decoder_padding_mask": dec_mask},
        max_new_tokens,
    )
    return np.asarray(out)[:, 1:].tolist()


@pytest.fixture(scope="module")
def causal_lm():
    keras.utils.set_random_seed(0)
    return _randomize(models.build("gopher_tiny", **DECODER_ONLY))


@pytest.fixture(scope="module")
def seq2seq_lm():
    keras.utils.set_random_seed(0)
    return _randomize(models.build("t5_tiny", **ENCODER_DECODER), seed=1)


def test_decoder_only_greedy_generate_equals_uncached_with_an_early_end(causal_lm):
    reference = _decoder_only_reference(causal_lm, PROMPTS, 8)
    # No end token reached: every row gets its 8 new tokens, exactly the reference.
    unused = next(t for t in range(4, VOCAB) if all(t not in r for r in reference))
    assert decoding.greedy_generate(causal_lm, PROMPTS, max_new_tokens=8, end_id=unused, batch_size=2) == reference
    # The first row's 4th new token as the end: that row stops before it (and the end token
    # is left out), the others stop at their own first occurrence, if any. Batches of 2 rows
    # (the last one padded) give the same answer.
    end_id = reference[0][3]
    got = decoding.greedy_generate(causal_lm, PROMPTS, max_new_tokens=8, end_id=end_id, batch_size=2)
    assert got == [_until(r, end_id) for r in reference]
    assert len(got[0]) <= 3
    # Both calls (different end tokens, same shapes) ran one compiled program: no retrace.
    assert tf_function_traces(decoding._compiled(causal_lm, "decoder_only")) == 1


def test_encoder_decoder_greedy_generate_equals_uncached_with_an_early_end(seq2seq_lm):
    sources = [[11, 12, 13, 14, 15, 16, 1], [40, 1], [7, 8, 9, 1]]
    reference = _encoder_decoder_reference(seq2seq_lm, sources, 8)
    assert len({tuple(r) for r in reference}) > 1, "the outputs should depend on the source"
    unused = next(t for t in range(4, VOCAB) if all(t not in r for r in reference))
    assert decoding.greedy_generate(seq2seq_lm, sources, max_new_tokens=8, end_id=unused, batch_size=2) == reference
    end_id = reference[1][2]
    got = decoding.greedy_generate(seq2seq_lm, sources, max_new_tokens=8, end_id=end_id, batch_size=2)
    assert got == [_until(r, end_id) for r in reference]
    assert len(got[1]) <= 2


def test_loop_keeps_prompts_stops_rows_at_their_ends_and_pads_after_the_end_token(causal_lm):
    """`decode` directly: longer prompts pass through untouched, each row stops at its own
    `ends`, and a row that chose the end token writes `pad_id` after it."""
    reference = _decoder_only_reference(causal_lm, PROMPTS, 8)
    length = 7 + 8
    ids = np.zeros([3, length], np.int32)
    for i, p in enumerate(PROMPTS):
        ids[i, : len(p)] = p
    lengths = np.array([len(p) for p in PROMPTS], np.int32)
    ends = np.minimum(lengths + np.array([8, 3, 8]), length).astype(np.int32)
    # Row 2's second new token as the end, one that rows 0 and 1 do not write.
    others = set(reference[0][:8]) | set(reference[1][:3])
    candidates = [t for j, t in enumerate(reference[2][:4]) if j >= 1 and t not in others
                  and t not in reference[2][:j]]
    assert candidates, "pick other weights: no end token separates the rows"
    end_id = candidates[0]
    stop = reference[2].index(end_id)
    tables = causal_lm.relative_tables(length)
    _, cache = causal_lm._build_cache(ids, tables)
    mask = np.arange(length)[None, :] < lengths[:, None]
    out = np.asarray(decoding.decode(causal_lm.decoding_next(tables), decoding.argmax, ids, cache,
                                     int(lengths.min()), mask=mask, ends=ends, end_id=end_id, pad_id=-1))
    for i, p in enumerate(PROMPTS):
        assert out[i, : len(p)].tolist() == p
    assert out[0, 7:15].tolist() == reference[0][:8]
    assert out[1, 2:5].tolist() == reference[1][:3]  # its own end: 3 new tokens
    assert out[1, 5:].tolist() == [-1] * (length - 5)  # padded after its own end
    assert out[2, 4: 5 + stop].tolist() == reference[2][: stop + 1] and out[2, 4 + stop] == end_id
    assert out[2, 5 + stop:].tolist() == [-1] * (length - 5 - stop)  # padded after its end token


def test_greedy_generate_rejects_bad_prompts_with_a_clear_error(causal_lm):
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        decoding.greedy_generate(causal_lm, [[2, 5], []], max_new_tokens=2, end_id=1)
    with pytest.raises(ValueError, match="prompt 0 has 32 tokens; at most 31"):
        decoding.greedy_generate(causal_lm, [[2] * 32], max_new_tokens=2, end_id=1)
    with pytest.raises(ValueError, match="max_new_tokens"):
        decoding.greedy_generate(causal_lm, [[2]], max_new_tokens=0, end_id=1)
    assert decoding.greedy_generate(causal_lm, [], max_new_tokens=2, end_id=1) == []
