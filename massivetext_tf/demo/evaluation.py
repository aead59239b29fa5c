"""Held-out evaluation for the demo: bits per byte of the trained model, of a unigram baseline
and of the untrained model over the same tokens, and the bundled Shakespeare tasks."""
from __future__ import annotations

import math


def read_split_tokens(data_dir: str, split: str) -> tuple[list[list[int]], int]:
    """Token ids of every document of `split` (shard order) and their total UTF-8 bytes."""
    from massivetext_tf.data import records

    manifest = records.read_manifest(data_dir)
    entry = manifest["splits"][split]
    docs, num_bytes = [], 0
    for rel in entry["files"]:
        for raw in records.read_records(f"{data_dir}/{rel}"):
            ex = records.decode_example(raw)
            docs.append([int(t) for t in ex["token_ids"]])
            num_bytes += int(ex["num_bytes"])
    return docs, num_bytes


def unigram_bits_per_byte(train_docs, eval_docs, eval_bytes: int, vocabulary_size: int) -> dict:
    """Per-token unigram model of the training tokens with add-one smoothing over the whole
    vocabulary, scored on the eval tokens (no bos/eos, as the model is scored), per byte."""
    import numpy as np

    counts = np.ones(vocabulary_size, dtype=np.float64)
    for d in train_docs:
        counts += np.bincount(np.asarray(d, dtype=np.int64), minlength=vocabulary_size)
    logp = np.log(counts) - np.log(counts.sum())
    nll = -sum(float(logp[np.asarray(d, dtype=np.int64)].sum()) for d in eval_docs)
    tokens = sum(len(d) for d in eval_docs)
    return {"bits_per_byte": nll / (math.log(2) * eval_bytes), "nll_nats": nll,
            "tokens": tokens, "bytes": eval_bytes}


def model_bits_per_byte(model, eval_docs, eval_bytes: int, *, bos_id: int, window: int,
                        stride: int | None = None, batch_size: int = 16) -> dict:
    """Sliding-window bits per byte (`massivetext_tf.models.scoring`): every document token is
    predicted once, from `[bos] + tokens`, with at least `window - stride` tokens of context
    after the first window."""
    from massivetext_tf.models.scoring import SlidingWindowScorer

    scorer = SlidingWindowScorer(model, window=window, stride=stride or window // 2,
                                 batch_size=batch_size)
    totals, counts = scorer.score_tokens([[bos_id] + d for d in eval_docs])
    nll = -float(totals.sum())
    return {"bits_per_byte": nll / (math.log(2) * eval_bytes), "nll_nats": nll,
            "tokens": int(counts.sum()), "bytes": eval_bytes, "window": window,
            "stride": stride or window // 2}


def bundled_tasks(model, *, held_out, items: int, out_dir: str, batch_size: int) -> dict:
    """The bundled Shakespeare tasks (`massivetext_tf.evaluation.bundled`, built from the
    held-out plays into `out_dir`, as `massivetext make-eval-tasks` writes them) on `model`:
    `{task: {metric: {"value", "stderr", "items"}}}`; `{}` when `items` is 0."""
    if not items:
        return {}
    from massivetext_tf.evaluation import bundled, evaluate_task, from_task, load_task

    bundled.write(out_dir, bundled.build(held_out, items=items))
    adapter = from_task(model, jit_compile=False, batch_size=batch_size)
    out = {}
    for name, metrics in ((bundled.LAST_WORD, ("accuracy", "perplexity")),
                          (bundled.NEXT_LINE, ("accuracy", "accuracy_per_byte"))):
        task = load_task(f"{out_dir}/{name}.yaml")
        task.config["metrics"] = list(metrics)
        rows = evaluate_task(adapter, task, bootstrap_iters=200)
        out[name] = {r["metric"]: {"value": r["value"], "stderr": r["stderr"],
                                   "items": r["num_scored"]} for r in rows}
    return out


def evaluate(model, fresh_model, data_dir: str, *, window: int, stride: int | None,
             batch_size: int, held_out, task_items: int, tasks_dir: str) -> dict:
    """Every figure of the evaluate stage: `{"unigram", "model", "untrained", "tasks",
    "eval_documents", "held_out"}` (bits per byte over the eval split of `data_dir`)."""
    from massivetext_tf.data import records

    manifest = records.read_manifest(data_dir)
    vocab = int(manifest["tokenizer"]["vocabulary_size"])
    bos = int(manifest["tokenizer"]["bos_id"])
    train_docs, _ = read_split_tokens(data_dir, "train")
    eval_docs, eval_bytes = read_split_tokens(data_dir, "eval")
    res = {"unigram": unigram_bits_per_byte(train_docs, eval_docs, eval_bytes, vocab)}
    res["model"] = model_bits_per_byte(model, eval_docs, eval_bytes, bos_id=bos,
                                       window=window, stride=stride, batch_size=batch_size)
    res["untrained"] = model_bits_per_byte(fresh_model(vocab), eval_docs, eval_bytes,
                                           bos_id=bos, window=window, stride=stride,
                                           batch_size=batch_size)
    res["tasks"] = bundled_tasks(model, held_out=held_out, items=task_items, out_dir=tasks_dir,
                                 batch_size=batch_size)
    res["eval_documents"] = len(eval_docs)
    res["held_out"] = list(held_out)
    return res


def eval_lines(res: dict) -> list[str]:
    """The evaluate stage's table: bits per byte of the model and both baselines, then the
    bundled tasks with their standard errors."""
    m = res["model"]
    lines = [f"held-out plays ({', '.join(res['held_out'])}): {m['tokens']:,} tokens, "
             f"{m['bytes']:,} bytes; sliding window {m['window']}, stride {m['stride']}",
             f"  {'model':34s} bits/byte",
             f"  {'trained model':34s} {m['bits_per_byte']:.3f}",
             f"  {'unigram over tokens (add-one)':34s} {res['unigram']['bits_per_byte']:.3f}",
             f"  {'untrained model':34s} {res['untrained']['bits_per_byte']:.3f}"]
    tasks = res.get("tasks") or {}
    if tasks:
        lines.append("bundled tasks from the held-out plays (massivetext make-eval-tasks), "
                     "trained model:")
        chance = {"shakespeare_next_line": "chance 0.250"}
        for name, metrics in tasks.items():
            for metric, r in metrics.items():
                extra = (f"  ({chance[name]})" if name in chance and metric.startswith("accuracy")
                         else "")
                lines.append(f"  {name + ' ' + metric:34s} {json_float(r['value']):.3f} ± "
                             f"{json_float(r['stderr']):.3f}"
                             f"  [{r['items']} items]{extra}")
    return lines


def json_float(value) -> float:
    """A figure read back from JSON, where a non-finite float was written as null."""
    return float("nan") if value is None else float(value)
