"""Fine-tuning examples: JSONL rows read, tokenized and laid out as fixed-length arrays for
either model kind (`TaskData`), and the datasets built from them.

Decoder-only models see `[bos] prompt target [eos]` with the prompt built from
`task.prompt_template` (loss on the target and eos only); encoder-decoder models get the prompt
in the encoder and `[start] target` in the decoder, where `start` is the model's decoder start
token: `<s>` for the toolkit's tokenizers, `<pad>` = 0 for a T5 checkpoint (`T5Tokenizer`).
"""
from __future__ import annotations

import json

import numpy as np
import tensorflow as tf

from massivetext_tf.training import data as data_lib

PAD, EOS, BOS = 0, 1, 2


def read_jsonl(path: str) -> list[dict]:
    """The JSON objects of a JSONL file (gs:// ok); `ValueError` naming the file and line."""
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


def processor(cfg, model):
    """The SentencePiece processor: task.tokenizer or the data dir's, else the model's own."""
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


def token_conventions(model) -> dict:
    """The decoder start token of `model`'s tokenizer class: `<pad>` = 0 for a `T5Tokenizer`
    (T5 checkpoints), else the toolkit's `<s>`."""
    from massivetext_tf.models.encoder_decoder.t5 import T5Tokenizer

    tokenizer = getattr(getattr(model, "preprocessor", None), "tokenizer", None)
    if isinstance(tokenizer, T5Tokenizer):
        return {"start_id": int(tokenizer.start_token_id), "t5": True}
    return {"start_id": BOS, "t5": False}


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
        """-> (x dict, y, w) stacked over examples."""
        rows = [self.encode(p, t) for p, t in zip(prompts, targets)]
        x = {k: np.stack([r[0][k] for r in rows]) for k in rows[0][0]}
        return x, np.stack([r[1] for r in rows]), np.stack([r[2] for r in rows])

    def input_fn(self, *, shuffle: bool):
        """`fn(input_context)`: every example, repeated, in per-replica batches (shuffled
        with runtime.seed when `shuffle`)."""
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
