"""Fine-tuning: continued pretraining, text classification and seq2seq from JSONL, LoRA.

All three go through the same `Trainer` (same strategies, checkpoints, metrics):

- `task.type: lm`: continued pretraining on new shards from `model.init_from` (a checkpoint
  or a keras-hub preset dir) with a fresh optimizer and the new schedule.
- `task.type: classification`: JSONL `{"text": ..., "label": ...}`. The label is generated
  as text after the prompt (loss on the label tokens + eos only); evaluation is rank
  classification: the label whose tokens the model scores highest. Accuracy and macro-F1.
- `task.type: seq2seq`: JSONL `{"input": ..., "target": ...}`; loss on the target; evaluation
  decodes greedily and reports BLEU (sacrebleu) and ROUGE-L (rouge-score) for translation and
  summarization, and SQuAD exact match and token F1 for generative QA
  (`massivetext_tf.evaluation.metrics`; a target may be a list of accepted answers, the first
  is trained on).

Decoder-only models see `[bos] prompt target [eos]` with the prompt built from
`task.prompt_template`; encoder-decoder models get the prompt in the encoder and
`[start] target` in the decoder, where `start` is the model's decoder start token: `<s>` for
the toolkit's tokenizers, `<pad>` = 0 for a T5 checkpoint (`T5Tokenizer`, e.g. a preset from
`massivetext convert --from hf`). `model.lora_rank > 0` trains LoRA adapters only
(`backbone.enable_lora`).
"""
from __future__ import annotations

import json
import logging

import numpy as np
import tensorflow as tf

from massivetext_tf.training import data as data_lib
from massivetext_tf.training import loop as loop_lib

log = logging.getLogger(__name__)

PAD, EOS, BOS = 0, 1, 2


def read_jsonl(path: str) -> list[dict]:
    if not path:
        raise ValueError("task.train_file: required for classification / seq2seq")
    if not tf.io.gfile.exists(path):
        raise ValueError(f"task file not found: {path}")
    rows = []
    with tf.io.gfile.GFile(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as e:
                raise ValueError(f"{path}:{lineno}: not a JSON line ({e})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object, got {line.strip()[:80]}")
            rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no examples (empty file)")
    return rows


def _processor(cfg, model):
    import sentencepiece as spm

    path = data_lib.tokenizer_path(cfg)
    if path:
        with tf.io.gfile.GFile(path, "rb") as f:
            return spm.SentencePieceProcessor(model_proto=f.read())
    tok = getattr(getattr(model, "preprocessor", None), "tokenizer", None)
    proto = getattr(tok, "proto", None)
    if proto is None:
        raise ValueError(
            "task.tokenizer: a SentencePiece model is needed (task.tokenizer, the data dir's "
            "tokenizer.model, or a model.init_from preset with a tokenizer)"
        )
    return spm.SentencePieceProcessor(model_proto=proto)


def _token_conventions(model) -> dict:
    """The decoder start token of `model`'s tokenizer class: `<pad>` = 0 for a `T5Tokenizer`
    (T5 checkpoints), else the toolkit's `<s>`."""
    from massivetext_tf.models.encoder_decoder.t5 import T5Tokenizer

    tokenizer = getattr(getattr(model, "preprocessor", None), "tokenizer", None)
    if isinstance(tokenizer, T5Tokenizer):
        return {"start_id": int(tokenizer.start_token_id), "t5": True}
    return {"start_id": BOS, "t5": False}


def is_seq2seq_model(model) -> bool:
    bb = getattr(model, "backbone", None)
    inp = getattr(bb, "input", {})
    return isinstance(inp, dict) and "encoder_token_ids" in inp


class TaskData:
    """Tokenized examples as fixed-length arrays, and the datasets built from them."""

    def __init__(self, cfg, sp, examples, *, seq2seq: bool, start_id: int = BOS, t5: bool = False):
        t = cfg.task
        self.cfg, self.sp, self.seq2seq = cfg, sp, seq2seq
        self.start_id, self.t5 = start_id, t5
        self.L = cfg.data.sequence_length
        self.Ld = cfg.data.decoder_sequence_length or max(t.max_target_length + 1, 2)
        in_key = t.input_key
        tgt_key = t.target_key
        for i, ex in enumerate(examples):
            if in_key not in ex or tgt_key not in ex:
                raise ValueError(f"example {i} lacks task.input_key {in_key!r} or "
                                 f"task.target_key {tgt_key!r}: {str(ex)[:200]}")
        self.prompts = [t.prompt_template.format(input=ex[in_key]) for ex in examples]
        # QA: a list of accepted answers; the first is the training target.
        self.answers = [[str(a) for a in ex[tgt_key]] if isinstance(ex[tgt_key], list) and ex[tgt_key]
                        else [str(ex[tgt_key])] for ex in examples]
        self.targets = [answers[0] for answers in self.answers]

    def _ids(self, text: str):
        if self.t5:  # sentinels spaced as transformers' T5 tokenizers see them
            from massivetext_tf.models.encoder_decoder.t5 import normalize_sentinels_text

            text = normalize_sentinels_text(text)
        return self.sp.encode(text)

    def decode(self, ids) -> str:
        """Text of generated ids; ids past the SentencePiece vocabulary (T5's embedding has
        more rows than tokens) have none."""
        size = self.sp.get_piece_size()
        return self.sp.decode([i for i in ids if i < size])

    def encode(self, prompt: str, target: str):
        """-> (x dict of int32 arrays, y, w) for one example."""
        p = self._ids(prompt)
        tgt = self._ids(target)[: self.cfg.task.max_target_length] + [EOS]
        if self.seq2seq:
            enc = p[: self.L - 1] + [EOS]
            dec = [self.start_id] + tgt[:-1]
            return (
                {
                    "encoder_token_ids": _pad(enc, self.L),
                    "encoder_padding_mask": _pad([1] * len(enc), self.L),
                    "decoder_token_ids": _pad(dec[: self.Ld], self.Ld),
                    "decoder_padding_mask": _pad([1] * min(len(dec), self.Ld), self.Ld),
                },
                _pad(tgt[: self.Ld], self.Ld),
                _pad([1.0] * min(len(tgt), self.Ld), self.Ld, np.float32),
            )
        room = self.L + 1 - len(tgt)
        prompt_toks = ([BOS] + p)[-room:] if room > 0 else [BOS]
        row = (prompt_toks + tgt)[: self.L + 1]
        weights = [0.0] * (len(prompt_toks) - 1) + [1.0] * (len(row) - len(prompt_toks))
        n = len(row) - 1
        return (
            {
                "token_ids": _pad(row[:-1], self.L),
                "padding_mask": _pad([1] * n, self.L),
                "segment_ids": _pad([1] * n, self.L),
                "positions": _pad(list(range(n)), self.L),
            },
            _pad(row[1:], self.L),
            _pad(weights, self.L, np.float32),
        )

    def arrays(self, prompts, targets):
        rows = [self.encode(p, t) for p, t in zip(prompts, targets)]
        x = {k: np.stack([r[0][k] for r in rows]) for k in rows[0][0]}
        return x, np.stack([r[1] for r in rows]), np.stack([r[2] for r in rows])

    def input_fn(self, *, shuffle: bool):
        arrays = self.arrays(self.prompts, self.targets)
        gbs = self.cfg.data.global_batch_size
        seed = self.cfg.runtime.seed

        def fn(ctx):
            bs = ctx.get_per_replica_batch_size(gbs)
            ds = tf.data.Dataset.from_tensor_slices(arrays)
            if shuffle:
                ds = ds.shuffle(len(self.prompts), seed=seed, reshuffle_each_iteration=True)
            ds = ds.repeat().batch(bs, drop_remainder=True)
            if ctx.num_input_pipelines > 1:
                ds = ds.shard(ctx.num_input_pipelines, ctx.input_pipeline_id)
            return ds.prefetch(2)

        return fn


def _pad(values, length, dtype=np.int32):
    out = np.zeros([length], dtype)
    values = list(values)[:length]
    out[: len(values)] = values
    return out


def _forward_fn(model, keys):
    @tf.function
    def forward(x):
        return tf.cast(model({k: x[k] for k in keys if k in x}, training=False), tf.float32)

    return forward


def score_candidates(trainer, data: TaskData, prompts, labels, batch_size: int = 32):
    """[len(prompts), len(labels)] sum of log-probs of each label (+eos) after each prompt."""
    model = trainer.model
    forward = _forward_fn(model, loop_lib.model_input_keys(model) or [])
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


def macro_f1(true, pred, labels) -> float:
    f1s = []
    for lab in labels:
        tp = sum(t == lab and p == lab for t, p in zip(true, pred))
        fp = sum(t != lab and p == lab for t, p in zip(true, pred))
        fn = sum(t == lab and p != lab for t, p in zip(true, pred))
        denom = 2 * tp + fp + fn
        f1s.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(f1s))


def greedy_decode(trainer, data: TaskData, prompts, batch_size: int = 16) -> list[str]:
    """Greedy decoding by full recomputation at fixed shapes (small models, eval only)."""
    model = trainer.model
    forward = _forward_fn(model, loop_lib.model_input_keys(model) or [])
    T = data.cfg.task.max_target_length
    outs = []
    for i in range(0, len(prompts), batch_size):
        chunk = list(prompts[i: i + batch_size])
        n = len(chunk)
        chunk += [chunk[-1]] * (batch_size - n)
        x, _, _ = data.arrays(chunk, [""] * len(chunk))
        generated = [[] for _ in chunk]
        done = np.zeros(len(chunk), bool)
        if data.seq2seq:
            dec = np.zeros_like(x["decoder_token_ids"])
            dec[:, 0] = data.start_id
            for t in range(min(T, data.Ld - 1)):
                x["decoder_token_ids"] = dec
                x["decoder_padding_mask"] = (np.arange(data.Ld)[None] <= t).astype(np.int32).repeat(len(chunk), 0)
                nxt = forward(x).numpy()[:, t].argmax(-1)
                for b, tok in enumerate(nxt):
                    if not done[b]:
                        if tok == EOS:
                            done[b] = True
                        else:
                            generated[b].append(int(tok))
                dec[:, t + 1] = nxt
                if done.all():
                    break
        else:
            toks = x["token_ids"].copy()
            # Rows hold [bos] + prompt + eos (the empty target's eos) shifted into labels; the
            # input row is [bos] + prompt, so its length is the number of real positions.
            lens = (x["padding_mask"] > 0).sum(-1)
            for b in range(len(chunk)):
                toks[b, lens[b]:] = PAD
            for _ in range(T):
                if (lens >= data.L).all() or done.all():
                    break
                mask = (np.arange(data.L)[None] < lens[:, None]).astype(np.int32)
                logits = forward({"token_ids": toks, "padding_mask": mask, "segment_ids": mask,
                                  "positions": np.tile(np.arange(data.L, dtype=np.int32), (len(chunk), 1))}).numpy()
                for b in range(len(chunk)):
                    if done[b] or lens[b] >= data.L:
                        done[b] = True
                        continue
                    tok = int(logits[b, lens[b] - 1].argmax())
                    if tok == EOS:
                        done[b] = True
                        continue
                    toks[b, lens[b]] = tok
                    generated[b].append(tok)
                    lens[b] += 1
        outs.extend(data.decode(g) for g in generated[:n])
    return outs


def qa_scores(hyps, answers) -> dict:
    """Mean SQuAD exact match and token F1 (`massivetext_tf.evaluation.metrics`) of each
    hypothesis against its accepted answers."""
    from massivetext_tf.evaluation import metrics

    return {"exact_match": metrics.mean(metrics.exact_match(h, a) for h, a in zip(hyps, answers)),
            "f1": metrics.mean(metrics.token_f1(h, a) for h, a in zip(hyps, answers))}


def bleu_rouge(hyps, refs) -> dict:
    import sacrebleu
    from rouge_score import rouge_scorer

    bleu = sacrebleu.corpus_bleu(hyps, [refs]).score
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    rouge = np.mean([scorer.score(r, h)["rougeL"].fmeasure for r, h in zip(refs, hyps)])
    return {"bleu": float(bleu), "rouge_l": float(rouge)}


def finetune(cfg, **kwargs) -> dict:
    """Fine-tunes per `cfg.task` and returns `train`'s result dict plus the task metrics
    (`eval_accuracy`, `eval_macro_f1` or `eval_bleu`, `eval_rouge_l`)."""
    t = cfg.task
    if t.type == "lm":
        if not cfg.model.init_from:
            log.warning("task.type=lm without model.init_from: training from scratch")
        return loop_lib.train(cfg, **kwargs)

    train_examples = read_jsonl(t.train_file)
    eval_examples = read_jsonl(t.eval_file) if t.eval_file else train_examples

    # The tokenizer may come from the model (a preset) and decides the input layout, and the
    # Trainer opens its input iterator in __init__: read it from a throwaway build first.
    from massivetext_tf.training import strategy as strategy_lib

    holder = {}

    def train_fn(ctx):
        return holder["train"](ctx)

    def eval_fn(ctx):
        return holder["eval"](ctx)

    rt = cfg.runtime
    strategy = kwargs.pop("strategy", None) or strategy_lib.get_strategy(
        rt.strategy, tpu=rt.tpu, devices=rt.devices,
        collective_timeout_s=rt.collective_timeout_s, heartbeat_timeout_s=rt.heartbeat_timeout_s,
    )
    with strategy.scope():
        probe = loop_lib.build_model(cfg, tokenizer=data_lib.tokenizer_path(cfg))
    sp = _processor(cfg, probe)
    seq2seq = is_seq2seq_model(probe)
    conventions = _token_conventions(probe)
    del probe
    train_data = TaskData(cfg, sp, train_examples, seq2seq=seq2seq, **conventions)
    eval_data = TaskData(cfg, sp, eval_examples, seq2seq=seq2seq, **conventions)
    holder["train"] = train_data.input_fn(shuffle=True)
    holder["eval"] = eval_data.input_fn(shuffle=False)

    labels = None
    if t.type == "classification":
        labels = [str(x) for x in (t.labels or sorted({d for d in train_data.targets}))]

    def task_metrics(trainer) -> dict:
        if t.type == "classification":
            scores = score_candidates(trainer, eval_data, eval_data.prompts, labels)
            pred = [labels[i] for i in scores.argmax(-1)]
            from massivetext_tf.evaluation import metrics

            report = metrics.classification_report(zip(eval_data.targets, pred), labels)
            return {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"]}
        hyps = greedy_decode(trainer, eval_data, eval_data.prompts)
        return {**bleu_rouge(hyps, eval_data.targets), **qa_scores(hyps, eval_data.answers)}

    trainer = loop_lib.Trainer(cfg, strategy=strategy, train_input_fn=train_fn,
                               eval_input_fn=eval_fn, **kwargs)
    return trainer.fit(evaluate_fn=task_metrics)
