"""The fine-tuning objectives as `Task`s: each reads its JSONL examples once, builds the model
once, lays the examples out for that model's kind and tokenizer, and reports its own metrics
after each evaluation.

- `ClassificationTask` (`task.type: classification`): JSONL `{"text": ..., "label": ...}`. The
  label is generated as text after the prompt (loss on the label tokens + eos only); evaluation
  is rank classification: the label whose tokens the model scores highest. Accuracy and
  macro-F1 (`massivetext_tf.evaluation.metrics`).
- `Seq2SeqTask` (`task.type: seq2seq`): JSONL `{"input": ..., "target": ...}`; loss on the
  target; evaluation decodes greedily and reports BLEU (sacrebleu) and ROUGE-L (rouge-score)
  for translation and summarization, and SQuAD exact match and token F1 for generative QA (a
  target may be a list of accepted answers, the first is trained on).

Continued pretraining (`task.type: lm`) is `PretrainTask` from `model.init_from`.
"""
from __future__ import annotations

import logging

import numpy as np
import tensorflow as tf

from massivetext_tf.training import finetune_data as fd
from massivetext_tf.training.task import Task, model_input_keys

log = logging.getLogger(__name__)


class FinetuneTask(Task):
    """A JSONL objective: `task.train_file` (and `task.eval_file`, default the training file)
    read at construction; the tokenizer, the layout (decoder-only or encoder-decoder, see
    `models.kind`) and the decoder start token come from the model the trainer builds.

    Attributes:
        train_data, eval_data: `finetune_data.TaskData`, set once the model is built.
    """

    def __init__(self, cfg):
        super().__init__(cfg)
        t = cfg.task
        self.train_examples = fd.read_jsonl(t.train_file)
        self.eval_examples = fd.read_jsonl(t.eval_file) if t.eval_file else self.train_examples
        self.train_data = self.eval_data = None

    def build_model(self):
        from massivetext_tf import models

        model = super().build_model()
        sp = fd.processor(self.cfg, model)
        seq2seq = models.kind(model) == "encoder_decoder"
        conventions = fd.token_conventions(model)
        self.train_data = fd.TaskData(self.cfg, sp, self.train_examples, seq2seq=seq2seq,
                                      **conventions)
        self.eval_data = fd.TaskData(self.cfg, sp, self.eval_examples, seq2seq=seq2seq,
                                     **conventions)
        return model

    def build_inputs(self, split: str, *, training: bool):
        data = self.train_data if training else self.eval_data
        return data.input_fn(shuffle=training)


class ClassificationTask(FinetuneTask):
    """Text classification by rank classification of the label strings (see the module
    docstring); `metrics`: accuracy and macro-F1 on the eval examples."""

    def build_model(self):
        model = super().build_model()
        labels = self.cfg.task.labels or sorted(set(self.train_data.targets))
        self.labels = [str(x) for x in labels]
        return model

    def metrics(self, trainer) -> dict:
        from massivetext_tf.evaluation import metrics

        data = self.eval_data
        scores = score_candidates(trainer, data, data.prompts, self.labels)
        pred = [self.labels[i] for i in scores.argmax(-1)]
        report = metrics.classification_report(zip(data.targets, pred), self.labels)
        return {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"]}


class Seq2SeqTask(FinetuneTask):
    """Generative fine-tuning (translation, summarization, QA); `metrics`: BLEU, ROUGE-L,
    exact match and token F1 of greedy decodes of the eval examples."""

    def metrics(self, trainer) -> dict:
        from massivetext_tf.training.finetune import bleu_rouge, qa_scores

        data = self.eval_data
        hyps = greedy_decode(trainer, data, data.prompts)
        return {**bleu_rouge(hyps, data.targets), **qa_scores(hyps, data.answers)}


TASKS = {"classification": ClassificationTask, "seq2seq": Seq2SeqTask}


def _forward_fn(model, keys):
    @tf.function
    def forward(x):
        return tf.cast(model({k: x[k] for k in keys if k in x}, training=False), tf.float32)

    return forward


def score_candidates(trainer, data: fd.TaskData, prompts, labels, batch_size: int = 32):
    """[len(prompts), len(labels)] sum of log-probs of each label (+eos) after each prompt."""
    model = trainer.model
    forward = _forward_fn(model, model_input_keys(model) or [])
    pairs = [(p, l) for p in prompts for l in labels]
    scores = []
    for i in range(0, len(pairs), batch_size):
        chunk = pairs[i: i + batch_size]
        n = len(chunk)
        chunk = chunk + [chunk[-1]] * (batch_size - n)  # static batch: no retrace
        x, y, w = data.arrays([p for p, _ in chunk], [l for _, l in chunk])
        logp = tf.nn.log_softmax(forward(x)).numpy()
        tok = np.take_along_axis(logp, y[..., None].astype(np.int64), -1)[..., 0]
        scores.extend((tok * w).sum(-1)[:n].tolist())
    return np.array(scores).reshape(len(prompts), len(labels))


def greedy_decode(trainer, data: fd.TaskData, prompts, batch_size: int = 16) -> list[str]:
    """Greedy decodes of `prompts` (texts), laid out as the task trains, with the package's one
    decoding loop (`models.decoding.greedy_generate`: KV-cached, XLA-compiled): decoder-only
    rows continue `[bos] prompt` within data.sequence_length tokens, encoder-decoder rows decode
    from the model's start token; at most task.max_target_length new tokens, up to `</s>`."""
    from massivetext_tf.models.decoding import greedy_generate

    if not prompts:
        return []
    model = trainer.model
    T = data.cfg.task.max_target_length
    x, _, _ = data.arrays(list(prompts), [""] * len(prompts))
    if data.seq2seq:
        rows = [ids[: int(m.sum())].tolist()
                for ids, m in zip(x["encoder_token_ids"], x["encoder_padding_mask"])]
        new = greedy_generate(model, rows, max_new_tokens=min(T, data.Ld - 1), end_id=fd.EOS,
                              batch_size=batch_size)
    else:
        rows = [ids[: int(m.sum())].tolist() for ids, m in zip(x["token_ids"], x["padding_mask"])]
        length = min(data.L, int(model.backbone.max_sequence_length))
        new = [[] for _ in rows]
        live = [i for i, r in enumerate(rows) if len(r) < length]  # a full row has no room
        out = greedy_generate(model, [rows[i] for i in live], max_new_tokens=T, end_id=fd.EOS,
                              batch_size=batch_size, max_length=length)
        for i, ids in zip(live, out):
            new[i] = ids
    return [data.decode(ids) for ids in new]
