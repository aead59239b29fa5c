"""Run tasks and language-modelling corpora on a `ModelAdapter`; one result row per metric.

A result row: `{"task", "kind", "metric", "value", "stderr", "stderr_method", "num_items",
"num_scored", "num_skipped", "num_truncated", "num_fewshot"}` (plus protocol fields for
language modelling). `num_items` is every item of the task, `num_scored` those that count in
the metric, `num_skipped` the rest (a continuation longer than the model's window cannot be
scored), `num_truncated` the items whose context was left-truncated to fit.
"""
from __future__ import annotations

import math

import numpy as np

from massivetext_tf.evaluation import metrics as M
from massivetext_tf.evaluation.protocol import GenerationRequest
from massivetext_tf.evaluation.tasks import Task


def _row(task: Task, metric, value, stderr, method, *, n_items, n_scored, n_truncated, **extra):
    return {"task": task.name, "kind": task.kind, "metric": metric, "value": float(value),
            "stderr": float(stderr), "stderr_method": method, "num_items": n_items,
            "num_scored": n_scored, "num_skipped": n_items - n_scored, "num_truncated": n_truncated,
            "num_fewshot": task.config["num_fewshot"], **extra}


def _context(task: Task, item) -> str:
    return task.fewshot_prefix(item) + task.render(item)


def evaluate_task(adapter, task: Task, *, bootstrap_iters=M.DEFAULT_BOOTSTRAP_ITERS, seed=1234,
                  details=None) -> list:
    """Every metric of `task` on `adapter`. `details`, if a list, receives one dict per item
    (the prompt, the scores, the prediction)."""
    fn = {"multiple_choice": _multiple_choice, "classification": _multiple_choice,
          "cloze": _cloze, "last_word": _last_word, "generative_qa": _generative,
          "translation": _generative, "summarization": _generative}[task.kind]
    return fn(adapter, task, bootstrap_iters, seed, details if details is not None else [])


# ------------------------------------------------------------------------------ log-likelihood kinds

def choice_scores(results, choices, unconditional=None):
    """The four multiple-choice scores of each choice: `none` (summed log-likelihood),
    `per_token` (/ scored tokens), `per_byte` (/ UTF-8 bytes of the choice),
    `unconditional` (minus the choice's log-likelihood after `<s>` alone)."""
    ll = np.array([r.logprob for r in results])
    scores = {"none": ll,
              "per_token": ll / np.array([max(r.num_tokens, 1) for r in results]),
              "per_byte": ll / np.array([max(len(c.encode("utf-8")), 1) for c in choices])}
    if unconditional is not None:
        scores["unconditional"] = ll - np.array([r.logprob for r in unconditional])
    return scores


_NORMALIZATION = {"accuracy": "none", "accuracy_per_token": "per_token",
                  "accuracy_per_byte": "per_byte", "accuracy_unconditional": "unconditional"}


def _multiple_choice(adapter, task, iters, seed, details):
    classification = task.kind == "classification"
    delim = task.config["target_delimiter"]
    want_uncond = not classification and "accuracy_unconditional" in task.metrics
    requests, layout = [], []
    for item in task.items:
        context = _context(task, item)
        choices = task.label_texts() if classification else [str(c) for c in task.choices(item)]
        start = len(requests)
        requests += [(context, delim + c) for c in choices]
        if want_uncond:
            requests += [("", delim + c) for c in choices]
        layout.append((item, context, choices, start))
    results = adapter.loglikelihood(requests)
    correct = {m: [] for m in _NORMALIZATION}
    pairs, truncated = [], 0
    for item, context, choices, start in layout:
        res = results[start: start + len(choices)]
        unc = results[start + len(choices): start + 2 * len(choices)] if want_uncond else None
        all_res = res + (unc or [])
        truncated += any(r.truncated for r in all_res)
        if any(r.skipped for r in all_res):
            details.append({"line": item.line, "skipped": True})
            continue
        scores = choice_scores(res, choices, unc)
        if classification:
            gold = task.config["labels"].index(task.gold_label(item))
        else:
            gold = task.gold_index(item)
        predictions = {k: int(np.argmax(v)) for k, v in scores.items()}
        for metric, norm in _NORMALIZATION.items():
            if norm in predictions:
                correct[metric].append(float(predictions[norm] == gold))
        if classification:
            labels = task.config["labels"]
            pairs.append((labels[gold], labels[predictions["none"]]))
        details.append({"line": item.line, "context": context, "gold": gold, "prediction": predictions["none"],
                        "loglikelihoods": [r.logprob for r in res], "truncated": any(r.truncated for r in all_res)})
    n_items, n_scored = len(task.items), len(correct["accuracy"])
    common = dict(n_items=n_items, n_scored=n_scored, n_truncated=truncated)
    rows = []
    if not classification:
        for metric in task.metrics:
            values = correct[metric]
            rows.append(_row(task, metric, M.mean(values), M.mean_stderr(values), "analytic", **common))
        return rows
    labels = task.config["labels"]
    report = M.classification_report(pairs, labels)
    for metric in task.metrics:
        if metric == "accuracy":
            values = correct["accuracy"]
            rows.append(_row(task, metric, M.mean(values), M.mean_stderr(values), "analytic", **common))
            continue
        names = [f"{k}[{label}]" for label in labels for k in ("precision", "recall", "f1")] \
            if metric == "per_class" else [metric]
        columns = M.confusion_columns(pairs, labels)
        for name in names:
            se = M.bootstrap_sums_stderr(columns, lambda sums, name=name: M.confusion_report(sums, labels)[name],
                                         iters=iters, seed=seed)
            rows.append(_row(task, name, report[name], se, f"bootstrap({iters})", **common))
    return rows


def _cloze(adapter, task, iters, seed, details):
    requests, layout = [], []
    for item in task.items:
        prefix = task.fewshot_prefix(item)
        choices = [str(c) for c in task.choices(item)]
        start = len(requests)
        for c in choices:
            context, continuation = task.cloze_parts(item, c)
            requests.append((prefix + context, continuation))
        layout.append((item, start, len(choices)))
    results = adapter.loglikelihood(requests)
    correct, truncated = [], 0
    for item, start, n in layout:
        res = results[start: start + n]
        truncated += any(r.truncated for r in res)
        if any(r.skipped for r in res):
            details.append({"line": item.line, "skipped": True})
            continue
        prediction = int(np.argmax([r.logprob for r in res]))
        correct.append(float(prediction == task.gold_index(item)))
        details.append({"line": item.line, "gold": task.gold_index(item), "prediction": prediction,
                        "loglikelihoods": [r.logprob for r in res]})
    return [_row(task, "accuracy", M.mean(correct), M.mean_stderr(correct), "analytic",
                 n_items=len(task.items), n_scored=len(correct), n_truncated=truncated)]


def last_word_split(text: str):
    """LAMBADA's split: (everything before the last space, " " + the last word)."""
    context, word = text.rstrip().rsplit(" ", 1)
    return context, " " + word


def _last_word(adapter, task, iters, seed, details):
    requests = []
    for item in task.items:
        context, word = last_word_split(task.render(item))
        requests.append((task.fewshot_prefix(item) + context, word))
    results = adapter.loglikelihood(requests)
    scored = [r for r in results if not r.skipped]
    for item, (context, word), r in zip(task.items, requests, results):
        details.append({"line": item.line, "word": word, "loglikelihood": r.logprob, "greedy": r.is_greedy,
                        "skipped": r.skipped})
    common = dict(n_items=len(task.items), n_scored=len(scored), n_truncated=sum(r.truncated for r in results))
    rows = []
    lls = [r.logprob for r in scored]
    for metric in task.metrics:
        if metric == "accuracy":
            values = [float(r.is_greedy) for r in scored]
            rows.append(_row(task, metric, M.mean(values), M.mean_stderr(values), "analytic", **common))
        else:  # perplexity of the last word: exp(-mean log-likelihood), lm-evaluation-harness's
            ppl = lambda sample: M.safe_exp(-M.mean(sample)) if sample else float("nan")  # noqa: E731
            rows.append(_row(task, metric, ppl(lls), M.bootstrap_stderr(ppl, lls, iters=iters, seed=seed),
                             f"bootstrap({iters})", **common))
    return rows


# ------------------------------------------------------------------------------ generation kinds

def _generative(adapter, task, iters, seed, details):
    gen = task.config["generation"]
    requests = [GenerationRequest(_context(task, item), tuple(gen["until"]), gen["max_new_tokens"])
                for item in task.items]
    outputs = adapter.generate_until(requests)
    predictions = [o.text.strip() for o in outputs]
    references = [task.references(item) for item in task.items]
    for item, p, o in zip(task.items, predictions, outputs):
        details.append({"line": item.line, "prediction": p, "references": task.references(item),
                        "truncated": o.truncated})
    common = dict(n_items=len(task.items), n_scored=len(task.items), n_truncated=sum(o.truncated for o in outputs))
    rows = []
    for metric in task.metrics:
        if metric == "bleu":
            value, se = M.bleu_with_stderr(predictions, references, iters=iters, seed=seed)
            rows.append(_row(task, metric, value, se, f"bootstrap({iters})", **common))
            continue
        if metric == "exact_match":
            values = [M.exact_match(p, r) for p, r in zip(predictions, references)]
        elif metric == "f1":
            values = [M.token_f1(p, r) for p, r in zip(predictions, references)]
        else:  # rouge1 / rouge2 / rougeL, per item, mean
            values = [M.rouge(p, r, metric) for p, r in zip(predictions, references)]
        rows.append(_row(task, metric, M.mean(values), M.mean_stderr(values), "analytic", **common))
    return rows


# ------------------------------------------------------------------------------ language modelling

class _ReadCounts:
    """Counts the units `read_documents` could not read (rule -> count), per source."""

    def __init__(self):
        self.counts = {}
        self.first = {}

    def count_read_error(self, source, rule, num_bytes=0):
        self.counts[rule] = self.counts.get(rule, 0) + 1


LM_METRICS = ("bits_per_byte", "perplexity", "loss")


def lm_metrics(per_doc) -> dict:
    """`per_doc`: `(log-likelihood nats, tokens, bytes)` of each document ->
    bits per byte (-sum ll / (ln 2 x sum bytes)), token perplexity exp(-sum ll / sum tokens)
    and loss (-sum ll / sum tokens, nats per token)."""
    ll = sum(d[0] for d in per_doc)
    tokens = sum(d[1] for d in per_doc)
    nbytes = sum(d[2] for d in per_doc)
    loss = -ll / tokens if tokens else float("nan")
    return {"bits_per_byte": -ll / (math.log(2) * nbytes) if nbytes else float("nan"),
            "perplexity": M.safe_exp(loss) if tokens else float("nan"), "loss": loss}


def evaluate_source(adapter, spec, *, stride=None, bootstrap_iters=M.DEFAULT_BOOTSTRAP_ITERS, seed=1234,
                    chunk=256, log=None, windows="stride") -> list:
    """Bits per byte, perplexity and loss of one source (`SourceSpec`, read with the
    curation readers: text/JSONL, gzip/zstd, gs://), sliding-window protocol of
    `ModelAdapter.loglikelihood_rolling` (`windows="stride"`, or lm-evaluation-harness's
    windows with `windows="lm-eval"`). Unreadable units are skipped and counted
    (`num_skipped`, `read_errors`); the standard errors are a bootstrap over documents."""
    from massivetext_tf.data.curate.readers import read_documents

    counts = _ReadCounts()
    per_doc, batch = [], []

    def flush():
        for text, r in zip(batch, adapter.loglikelihood_rolling(batch, stride=stride, windows=windows)):
            per_doc.append((r.logprob, r.num_tokens, len(text.encode("utf-8"))))
        batch.clear()

    for doc in read_documents(spec, on_error="skip", stats=counts):
        batch.append(doc.text)
        if len(batch) >= chunk:
            flush()
    if batch:
        flush()
    values = lm_metrics(per_doc)
    skipped = sum(counts.counts.values())
    if log and skipped:
        log(f"source {spec.name}: {skipped} unreadable units skipped {counts.counts}")
    window = adapter.max_length
    stride = stride or adapter.stride or max(1, window // 2)
    rows = []
    columns = np.asarray(per_doc, dtype=np.float64).reshape(-1, 3)  # [documents, (ll, tokens, bytes)]
    for metric in LM_METRICS:
        se = M.bootstrap_sums_stderr(columns, lambda sums, m=metric: lm_metrics([tuple(sums)])[m],
                                     iters=bootstrap_iters, seed=seed)
        rows.append({"task": f"lm/{spec.name}", "kind": "language_modelling", "source": spec.name,
                     "metric": metric, "value": values[metric], "stderr": se,
                     "stderr_method": f"bootstrap({bootstrap_iters}) over documents",
                     "num_items": len(per_doc) + skipped, "num_scored": len(per_doc), "num_skipped": skipped,
                     "num_truncated": 0, "num_fewshot": 0, "read_errors": dict(counts.counts),
                     "tokens": int(sum(d[1] for d in per_doc)), "bytes": int(sum(d[2] for d in per_doc)),
                     "window": window, "windows": windows,
                     "stride": (stride if windows == "stride" else window) if adapter.kind == "decoder_only"
                     else window - 1})
    return rows
