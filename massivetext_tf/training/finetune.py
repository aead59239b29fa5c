"""Fine-tuning: continued pretraining, text classification and seq2seq from JSONL, LoRA.

`finetune(cfg)` picks the `Task` of `task.type` and runs it through the same `Trainer` and
`Controller` as pretraining (same strategies, checkpoints, metrics):

- `lm`: continued pretraining (`PretrainTask`) on new shards from `model.init_from` (a
  checkpoint or a keras-hub preset dir) with a fresh optimizer and the new schedule.
- `classification`, `seq2seq`: `training/finetune_tasks.py` (examples laid out by
  `training/finetune_data.py`); the task metrics come from `massivetext_tf.evaluation.metrics`
  and sacrebleu / rouge-score.

`model.lora_rank > 0` trains LoRA adapters only (`backbone.enable_lora`).
"""
from __future__ import annotations

import logging

import numpy as np

from massivetext_tf.training.finetune_data import (  # noqa: F401  (re-exported)
    BOS, EOS, PAD, TaskData, read_jsonl,
)
from massivetext_tf.training.finetune_tasks import (  # noqa: F401  (re-exported)
    TASKS, ClassificationTask, FinetuneTask, Seq2SeqTask, greedy_decode, score_candidates,
)

log = logging.getLogger(__name__)


def macro_f1(true, pred, labels) -> float:
    """The mean over `labels` of each label's F1 of predictions `pred` against `true`."""
    f1s = []
    for lab in labels:
        tp = sum(t == lab and p == lab for t, p in zip(true, pred))
        fp = sum(t != lab and p == lab for t, p in zip(true, pred))
        fn = sum(t == lab and p != lab for t, p in zip(true, pred))
        denom = 2 * tp + fp + fn
        f1s.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(f1s))


def qa_scores(hyps, answers) -> dict:
    """Mean SQuAD exact match and token F1 (`massivetext_tf.evaluation.metrics`) of each
    hypothesis against its accepted answers."""
    from massivetext_tf.evaluation import metrics

    return {"exact_match": metrics.mean(metrics.exact_match(h, a) for h, a in zip(hyps, answers)),
            "f1": metrics.mean(metrics.token_f1(h, a) for h, a in zip(hyps, answers))}


def bleu_rouge(hyps, refs) -> dict:
    """Corpus BLEU (sacrebleu) and mean ROUGE-L F-measure of hypotheses against references."""
    import sacrebleu
    from rouge_score import rouge_scorer

    bleu = sacrebleu.corpus_bleu(hyps, [refs]).score
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    rouge = np.mean([scorer.score(r, h)["rougeL"].fmeasure for r, h in zip(refs, hyps)])
    return {"bleu": float(bleu), "rouge_l": float(rouge)}


def finetune(cfg, *, strategy=None) -> dict:
    """Fine-tunes per `cfg.task` and returns `train`'s result dict plus the task metrics
    (`eval_accuracy`, `eval_macro_f1`, or `eval_bleu`, `eval_rouge_l`, `eval_exact_match`,
    `eval_f1`). `strategy` replaces the one of `cfg.runtime`."""
    if cfg.runtime.backend != "tensorflow":
        raise ValueError("runtime.backend: fine-tuning runs on tensorflow (the JAX trainer is "
                         "for pretraining: massivetext train --backend jax)")
    from massivetext_tf.training.train_lib import train
    from massivetext_tf.training.trainer import Trainer

    if cfg.task.type == "lm":
        if not cfg.model.init_from:
            log.warning("task.type=lm without model.init_from: training from scratch")
        return train(cfg, strategy=strategy)
    task = TASKS[cfg.task.type](cfg)
    return Trainer(cfg, task=task, strategy=strategy).fit()
