"""Metrics and standard errors against hand computations and the reference libraries."""
import math

import numpy as np
import pytest

from massivetext_tf.evaluation import metrics as M


def test_squad_normalization_exact_match_and_f1():
    assert M.normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert M.normalize_answer("an Apple a day") == "apple day"
    assert M.exact_match("the Paris.", ["London", "paris"]) == 1.0
    assert M.exact_match("Paris France", "Paris") == 0.0
    # pred {paris, france}, gold {paris}: precision 1/2, recall 1 -> F1 2/3
    assert M.token_f1("Paris, France", "the Paris") == pytest.approx(2 / 3)
    assert M.token_f1("Paris, France", ["London", "France Paris"]) == 1.0
    assert M.token_f1("", "") == 1.0 and M.token_f1("x", "") == 0.0


def test_mean_stderr_is_sample_std_over_sqrt_n():
    values = [1.0, 0.0, 1.0, 1.0, 0.0]
    p, n = 0.6, 5
    direct = math.sqrt(sum((v - p) ** 2 for v in values) / (n - 1)) / math.sqrt(n)
    assert M.mean_stderr(values) == pytest.approx(direct)
    assert math.isnan(M.mean_stderr([1.0]))


def test_bootstrap_stderr_of_the_mean_matches_the_analytic_one_and_is_seeded():
    rng = np.random.default_rng(0)
    values = list(rng.normal(size=400))
    boot = M.bootstrap_stderr(M.mean, values, iters=500, seed=3)
    assert boot == pytest.approx(M.mean_stderr(values), rel=0.15)
    assert boot == M.bootstrap_stderr(M.mean, values, iters=500, seed=3)
    assert boot != M.bootstrap_stderr(M.mean, values, iters=500, seed=4)


def test_classification_report_per_class_and_macro():
    pairs = [("pos", "pos"), ("pos", "neg"), ("neg", "neg"), ("neg", "neg"), ("neu", "pos")]
    r = M.classification_report(pairs, ["pos", "neg", "neu"])
    assert r["accuracy"] == pytest.approx(3 / 5)
    # pos: tp 1, predicted 2, gold 2; neg: tp 2, predicted 3, gold 2; neu: never predicted
    assert (r["precision[pos]"], r["recall[pos]"], r["f1[pos]"]) == pytest.approx((0.5, 0.5, 0.5))
    assert (r["precision[neg]"], r["recall[neg]"]) == pytest.approx((2 / 3, 1.0))
    assert r["f1[neg]"] == pytest.approx(0.8)
    assert (r["precision[neu]"], r["recall[neu]"], r["f1[neu]"]) == (0.0, 0.0, 0.0)
    assert r["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert r["macro_precision"] == pytest.approx((0.5 + 2 / 3) / 3)


def test_bleu_is_sacrebleu_and_rouge_is_rouge_score():
    import sacrebleu
    from rouge_score import rouge_scorer

    preds = ["the cat sat on the mat", "a dog ran in the park today"]
    refs = ["the cat sat on a mat", "the dog ran in the park"]
    assert M.corpus_bleu(preds, refs) == pytest.approx(sacrebleu.corpus_bleu(preds, [refs]).score)
    assert M.corpus_bleu(preds, [[r] for r in refs]) == pytest.approx(sacrebleu.corpus_bleu(preds, [refs]).score)
    assert M.corpus_bleu(refs, refs) == pytest.approx(100.0)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    assert M.rouge(preds[0], refs[0], "rougeL") == pytest.approx(100 * scorer.score(refs[0], preds[0])["rougeL"].fmeasure)
    assert M.rouge("x y", ["a b", "x y"], "rouge1") == pytest.approx(100.0)


def test_vectorized_bootstrap_equals_the_item_bootstrap():
    rng = np.random.default_rng(1)
    docs = [(-float(rng.uniform(10, 100)), int(rng.integers(5, 50)), int(rng.integers(20, 200))) for _ in range(30)]
    ratio = lambda sample: -sum(d[0] for d in sample) / sum(d[2] for d in sample)  # noqa: E731
    slow = M.bootstrap_stderr(ratio, docs, iters=200, seed=5)
    fast = M.bootstrap_sums_stderr(np.array(docs), lambda s: -s[0] / s[2], iters=200, seed=5)
    assert fast > 0 and fast == pytest.approx(slow, rel=1e-9)  # same seed, same resamples


def test_bleu_with_stderr_is_sacrebleu_and_a_bootstrap():
    import sacrebleu

    preds = ["the cat sat on the mat", "a dog ran in the park today", "to be or not", "who is there"]
    refs = ["the cat sat on a mat", "the dog ran in the park", "to be or not to be", "who is there"]
    value, se = M.bleu_with_stderr(preds, refs, iters=100)
    assert value == pytest.approx(sacrebleu.corpus_bleu(preds, [refs]).score)
    slow = M.bootstrap_stderr(lambda s: M.corpus_bleu([p for p, _ in s], [r for _, r in s]),
                              list(zip(preds, refs)), iters=100)
    assert se > 0 and se == pytest.approx(slow, rel=1e-9)


def test_confusion_report_and_its_bootstrap_equal_the_pairwise_ones():
    rng = np.random.default_rng(2)
    labels = ["a", "b", "c"]
    pairs = [(labels[rng.integers(3)], labels[rng.integers(3)]) for _ in range(40)]
    columns = M.confusion_columns(pairs, labels)
    assert M.confusion_report(columns.sum(0), labels) == pytest.approx(M.classification_report(pairs, labels))
    slow = M.bootstrap_stderr(lambda s: M.classification_report(s, labels)["macro_f1"], pairs, iters=100, seed=9)
    fast = M.bootstrap_sums_stderr(columns, lambda s: M.confusion_report(s, labels)["macro_f1"], iters=100, seed=9)
    assert fast > 0 and fast == pytest.approx(slow, rel=1e-9)
