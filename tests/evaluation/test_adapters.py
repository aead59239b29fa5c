"""The adapter's log-likelihoods, rolling scores and generations against direct computations
from the same model's logits."""
import math

import numpy as np
import pytest

from massivetext_tf.evaluation import GenerationRequest
from tests.evaluation.conftest import WINDOW, direct_loglikelihood, log_softmax

BOS, EOS = 2, 1


def test_loglikelihood_equals_logits_with_lm_eval_split(adapter, decoder):
    requests = [("To be, or not", " to be"), ("Who's there? ", "Nay, answer me"), ("", " hello")]
    results = adapter.loglikelihood(requests)
    for (context, continuation), r in zip(requests, results):
        ctx, cont = adapter.encode_pair(context, continuation)
        # lm-eval's split: context tokens are a prefix of the whole text's tokens
        whole = adapter.tokenizer.encode(context.rstrip() + context[len(context.rstrip()):] + continuation)
        assert ctx + cont == whole and len(cont) == r.num_tokens > 0
        total, greedy = direct_loglikelihood(decoder, [BOS] + ctx + cont, len(cont))
        assert r.logprob == pytest.approx(total, abs=1e-4)
        assert r.is_greedy == greedy and not r.truncated and not r.skipped


def test_is_greedy_true_for_the_models_own_greedy_continuation(adapter, decoder):
    found = 0
    for context in ["To be, or not to be", "Who's there?", "O Romeo, Romeo", "Good night", "My lord"]:
        ids = [BOS] + adapter.tokenizer.encode(context)
        for _ in range(2):  # two greedy tokens, from the logits
            x = np.asarray([ids], np.int32)
            ids.append(int(np.argmax(np.asarray(decoder({"token_ids": x, "padding_mask": np.ones_like(x)}))[0, -1])))
        continuation = adapter.tokenizer.decode(ids[-2:])
        if adapter.tokenizer.encode(context + continuation) != ids[1:]:
            continue  # the text does not tokenize back to the same pieces
        (r,) = adapter.loglikelihood([(context, continuation)])
        assert r.is_greedy
        found += 1
    assert found >= 1


def test_long_context_is_left_truncated_and_counted(adapter, decoder):
    context = "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer"
    ctx, cont = adapter.encode_pair(context, " the slings")
    assert len(ctx) + len(cont) + 1 > WINDOW
    (r,) = adapter.loglikelihood([(context, " the slings")])
    assert r.truncated
    kept = [BOS] + (ctx + cont)[-(WINDOW - 1):]
    assert r.logprob == pytest.approx(direct_loglikelihood(decoder, kept, len(cont))[0], abs=1e-4)
    (skipped,) = adapter.loglikelihood([("", " word" * 40)])
    assert skipped.skipped and math.isnan(skipped.logprob)


def test_rolling_scores_every_token_once_as_score_text(adapter, decoder):
    from massivetext_tf.models.scoring import score_text

    texts = ["To be, or not to be, that is the question. " * 4, "Who's there?"]
    results = adapter.loglikelihood_rolling(texts)
    reference = score_text(decoder, texts, window=WINDOW, stride=WINDOW // 2)
    assert [r.logprob for r in results] == pytest.approx(reference["log_likelihoods"], abs=1e-3)
    assert [r.num_tokens for r in results] == [len(adapter.tokenizer.encode(t)) for t in texts]
    # short text: one window, the direct sum over every token after <s>
    ids = [BOS] + adapter.tokenizer.encode(texts[1])
    assert results[1].logprob == pytest.approx(direct_loglikelihood(decoder, ids, len(ids) - 1)[0], abs=1e-4)


def _greedy_tokens(decoder, ids, n):
    ids = list(ids)
    for _ in range(n):
        x = np.asarray([ids], np.int32)
        ids.append(int(np.argmax(np.asarray(decoder({"token_ids": x, "padding_mask": np.ones_like(x)}))[0, -1])))
    return ids[-n:]


def test_generate_until_is_greedy_new_text_and_cut_at_stop_strings(adapter, decoder):
    prompts = ["To be, or not to be", "Who's there?"]
    outs = adapter.generate_until([GenerationRequest(p, (), 4) for p in prompts])
    for p, out in zip(prompts, outs):
        tokens = _greedy_tokens(decoder, [BOS] + adapter.tokenizer.encode(p), 4)
        if EOS in tokens:
            tokens = tokens[: tokens.index(EOS)]
        assert out.text == adapter.tokenizer.decode(tokens)
    text = outs[0].text
    assert len(text) >= 2
    stop = text[1:]
    (cut,) = adapter.generate_until([GenerationRequest(prompts[0], ("zzz", stop), 4)])
    assert cut.text == text[: text.index(stop)]


def test_encoder_decoder_scores_the_continuation_with_eos_given_the_source(seq2seq_adapter, encoder_decoder):
    requests = [("To be, or not to be", " that is"), ("Who's there?", "Nay")]
    results = seq2seq_adapter.loglikelihood(requests)
    for (context, continuation), r in zip(requests, results):
        src = seq2seq_adapter.tokenizer.encode(context) + [EOS]
        tgt = seq2seq_adapter.tokenizer.encode(continuation.strip())
        dec = np.asarray([[BOS] + tgt], np.int32)
        enc = np.asarray([src], np.int32)
        logits = np.asarray(encoder_decoder({"encoder_token_ids": enc, "encoder_padding_mask": np.ones_like(enc),
                                             "decoder_token_ids": dec, "decoder_padding_mask": np.ones_like(dec)}))[0]
        lp = log_softmax(logits)
        labels = tgt + [EOS]
        assert r.num_tokens == len(labels)
        assert r.logprob == pytest.approx(sum(lp[i, t] for i, t in enumerate(labels)), abs=1e-4)
        assert r.is_greedy == all(int(np.argmax(logits[i])) == t for i, t in enumerate(labels))
