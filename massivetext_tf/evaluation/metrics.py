"""Metrics and their standard errors.

Per-item metrics (accuracy, exact match, token F1, ROUGE) are means over items; their
standard error is analytic, the sample standard deviation over sqrt(n)
(`mean_stderr`, lm-evaluation-harness's formula). Corpus-level metrics (BLEU, macro F1,
per-class precision/recall/F1, perplexity, bits per byte: ratios of sums) get a seeded
bootstrap over items (`bootstrap_stderr`: resample the items with replacement
`iters` times, recompute the metric, take the standard deviation).

SQuAD normalization (`normalize_answer`) is the official SQuAD v1.1 script's: lower case,
punctuation removed, articles a/an/the removed, whitespace collapsed.
"""
from __future__ import annotations

import collections
import math
import re
import string

import numpy as np

DEFAULT_BOOTSTRAP_ITERS = 1000


# ------------------------------------------------------------------------------ stderr

def mean(values) -> float:
    values = list(values)
    return float(sum(values) / len(values)) if values else float("nan")


def safe_exp(x: float) -> float:
    """exp(x), inf instead of an OverflowError (perplexity of a very bad model)."""
    try:
        return math.exp(x)
    except OverflowError:
        return float("inf")


def mean_stderr(values) -> float:
    """Standard error of the mean: sample std (ddof=1) / sqrt(n); nan for fewer than 2."""
    values = np.asarray(list(values), dtype=np.float64)
    if values.size < 2:
        return float("nan")
    return float(values.std(ddof=1) / math.sqrt(values.size))


def bootstrap_stderr(metric_fn, items, *, iters=DEFAULT_BOOTSTRAP_ITERS, seed=1234) -> float:
    """Bootstrap standard error of `metric_fn(list_of_items)`: `iters` resamples of the items
    with replacement (numpy generator seeded with `seed`), std (ddof=1) of the metric."""
    items = list(items)
    if len(items) < 2 or iters < 2:
        return float("nan")
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(iters):
        idx = rng.integers(0, len(items), len(items))
        value = metric_fn([items[i] for i in idx])
        if value is not None and math.isfinite(value):
            stats.append(value)
    return float(np.std(stats, ddof=1)) if len(stats) > 1 else float("nan")


def bootstrap_sums_stderr(columns, statistic, *, iters=DEFAULT_BOOTSTRAP_ITERS, seed=1234) -> float:
    """Bootstrap standard error of a statistic of column sums, vectorized: `columns` is
    `[n_items, k]` per-item sufficient statistics; each resample sums the rows drawn with
    replacement and `statistic(sums [k]) -> float` (same generator and seed as
    `bootstrap_stderr`). Used for bits per byte (ratio of sums), BLEU (n-gram counts) and
    classification (confusion counts), so a large corpus costs numpy sums, not Python loops."""
    columns = np.asarray(columns, dtype=np.float64)
    n = columns.shape[0]
    if n < 2 or iters < 2:
        return float("nan")
    rng = np.random.default_rng(seed)
    stats = []
    for start in range(0, iters, 64):
        block = min(64, iters - start)
        idx = rng.integers(0, n, (block, n))
        sums = np.stack([np.bincount(idx[b], minlength=n) @ columns for b in range(block)])
        for row in sums:
            value = statistic(row)
            if value is not None and math.isfinite(value):
                stats.append(value)
    return float(np.std(stats, ddof=1)) if len(stats) > 1 else float("nan")


# ------------------------------------------------------------------------------ SQuAD

def normalize_answer(text: str) -> str:
    """SQuAD v1.1 normalization: lower, drop punctuation and articles, collapse whitespace."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, answers) -> float:
    """1.0 if the normalized prediction equals any normalized answer."""
    answers = [answers] if isinstance(answers, str) else list(answers)
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(a) for a in answers))


def _f1(prediction: str, answer: str) -> float:
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(answer).split()
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    common = collections.Counter(pred_tokens) & collections.Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, answers) -> float:
    """SQuAD token F1, the maximum over the gold answers."""
    answers = [answers] if isinstance(answers, str) else list(answers)
    return max(_f1(prediction, a) for a in answers)


# ------------------------------------------------------------------------------ classification

def classification_report(pairs, labels) -> dict:
    """Accuracy, per-class and macro precision/recall/F1 of `(gold, predicted)` pairs.

    A class never predicted has precision 0 (and never present, recall 0); macro averages
    are unweighted means over `labels`."""
    pairs = list(pairs)
    out = {"accuracy": mean(float(g == p) for g, p in pairs)}
    precisions, recalls, f1s = [], [], []
    for label in labels:
        tp = sum(1 for g, p in pairs if g == label and p == label)
        predicted = sum(1 for _, p in pairs if p == label)
        gold = sum(1 for g, _ in pairs if g == label)
        precision = tp / predicted if predicted else 0.0
        recall = tp / gold if gold else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[f"precision[{label}]"], out[f"recall[{label}]"], out[f"f1[{label}]"] = precision, recall, f1
        precisions.append(precision)
        recalls.append(recall)
        f1s.append(f1)
    out["macro_precision"] = mean(precisions)
    out["macro_recall"] = mean(recalls)
    out["macro_f1"] = mean(f1s)
    return out


def confusion_columns(pairs, labels):
    """One row per `(gold, predicted)` pair: the one-hot cell of a `len(labels)^2` confusion
    matrix (gold-major), the sufficient statistics of `confusion_report`."""
    index = {label: i for i, label in enumerate(labels)}
    columns = np.zeros((len(pairs), len(labels) ** 2))
    for row, (gold, predicted) in enumerate(pairs):
        columns[row, index[gold] * len(labels) + index[predicted]] = 1.0
    return columns


def confusion_report(counts, labels) -> dict:
    """`classification_report` from summed `confusion_columns` (flattened confusion matrix)."""
    k = len(labels)
    conf = np.asarray(counts, dtype=np.float64).reshape(k, k)
    out = {"accuracy": float(np.trace(conf) / conf.sum()) if conf.sum() else float("nan")}
    precisions, recalls, f1s = [], [], []
    for i, label in enumerate(labels):
        tp, predicted, gold = conf[i, i], conf[:, i].sum(), conf[i, :].sum()
        precision = tp / predicted if predicted else 0.0
        recall = tp / gold if gold else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[f"precision[{label}]"], out[f"recall[{label}]"], out[f"f1[{label}]"] = precision, recall, f1
        precisions.append(precision)
        recalls.append(recall)
        f1s.append(f1)
    out["macro_precision"] = mean(precisions)
    out["macro_recall"] = mean(recalls)
    out["macro_f1"] = mean(f1s)
    return {k2: float(v) for k2, v in out.items()}


# ------------------------------------------------------------------------------ generation

def _reference_streams(references):
    refs = [[r] if isinstance(r, str) else list(r) for r in references]
    width = max(len(r) for r in refs)
    return [[r[k] if k < len(r) else r[0] for r in refs] for k in range(width)]


def corpus_bleu(predictions, references) -> float:
    """sacrebleu corpus BLEU (default 13a tokenization); `references[i]` is one string or a
    list of strings (items with fewer references repeat their first)."""
    import sacrebleu

    return float(sacrebleu.corpus_bleu(list(predictions), _reference_streams(references)).score)


def bleu_with_stderr(predictions, references, *, iters=DEFAULT_BOOTSTRAP_ITERS, seed=1234):
    """(corpus BLEU, bootstrap stderr): resampling items' n-gram statistics (sacrebleu's own
    per-sentence statistics, summed), the same BLEU as `corpus_bleu` for every resample."""
    from sacrebleu.metrics import BLEU

    bleu = BLEU()
    stats = np.asarray(bleu._extract_corpus_statistics(list(predictions), _reference_streams(references)),
                       dtype=np.float64)
    score = lambda sums: float(bleu._compute_score_from_stats([int(round(x)) for x in sums]).score)  # noqa: E731
    return score(stats.sum(0)), bootstrap_sums_stderr(stats, score, iters=iters, seed=seed)


_ROUGE_SCORERS = {}


def rouge(prediction: str, references, kind: str) -> float:
    """rouge-score F-measure (x100, with the Porter stemmer) of `kind` in rouge1/rouge2/rougeL,
    the maximum over the references."""
    from rouge_score import rouge_scorer

    if kind not in _ROUGE_SCORERS:
        _ROUGE_SCORERS[kind] = rouge_scorer.RougeScorer([kind], use_stemmer=True)
    references = [references] if isinstance(references, str) else list(references)
    return max(100.0 * _ROUGE_SCORERS[kind].score(r, prediction)[kind].fmeasure for r in references)
