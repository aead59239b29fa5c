"""Requests that share a context run it once into a key/value cache: same numbers as one row
per request (lm-evaluation-harness's way), for every position encoding."""
import pytest

REQUESTS = [("To be, or not to be, that is", c) for c in [" the question", " a king", " my lord and master", " no"]] \
    + [("Who's there?", " Nay"), ("Who's there?", " answer me, stand"), ("", " hello"), ("", " night")]


@pytest.mark.parametrize("position_encoding", ["relative", "rotary", "learned", "t5_bias"])
def test_shared_context_matches_one_row_per_choice(spm_model, position_encoding):
    from massivetext_tf import models
    from massivetext_tf.evaluation import from_task
    from tests.evaluation.conftest import randomize

    lm = models.build("gopher_tiny", tokenizer=spm_model, max_sequence_length=32, position_encoding=position_encoding)
    randomize(lm, seed=3)
    adapter = from_task(lm, jit_compile=False, batch_size=3)  # 4 choices: two batches of the cache
    separate = adapter.loglikelihood(REQUESTS, share_context=False)
    assert adapter._shared_fn is None
    shared = adapter.loglikelihood(REQUESTS)
    assert adapter._shared_fn is not None  # the shared path ran
    for a, b in zip(separate, shared):
        assert b.logprob == pytest.approx(a.logprob, abs=2e-5)
        assert (a.is_greedy, a.num_tokens, a.truncated) == (b.is_greedy, b.num_tokens, b.truncated)


def test_truncated_contexts_take_the_row_path(adapter):
    long = "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer"
    requests = [(long, " the slings"), (long, " and arrows")]
    a = adapter.loglikelihood(requests, share_context=False)
    b = adapter.loglikelihood(requests)
    assert all(r.truncated for r in b)
    assert [r.logprob for r in a] == pytest.approx([r.logprob for r in b], abs=1e-5)
