"""`ModelAdapter`: lm-evaluation-harness-shaped scoring and generation over a serving module.

The serving module is the one an export saves (`massivetext_tf.export.build_serving_module`),
built in memory around a Keras task or restored from a SavedModel (`loading.load_model` picks
which). Token log-likelihoods come from its `forward` signature (logits), generations from
its `generate` signature, so a served model is judged exactly as it serves. Texts are tokenized
on the host with the model's own SentencePiece model.

Token conventions (docs/architecture.md, docs/evaluation.md):

* decoder-only: `[<s>] + context + continuation`; the context's trailing whitespace moves to
  the continuation and the continuation's tokens are those of `context + continuation` past
  the context's own tokens (lm-evaluation-harness's split). A sequence longer than the
  window is left-truncated after `<s>` (the most recent tokens are kept, and counted);
* encoder-decoder: encoder `context + [</s>]` (left-truncated to the window), decoder
  `[<s>] + continuation`, scored labels `continuation + [</s>]` (the target as trained and as
  the `score` signature scores it); the continuation's leading whitespace is dropped.
"""
from __future__ import annotations

import numpy as np

from massivetext_tf.evaluation.protocol import (
    BOS_ID,
    DEFAULT_BATCH_SIZE,
    EOS_ID,
    ROLLING_WINDOWS,
    GenerationResult,
    LoglikelihoodResult,
    RollingResult,
    SentencePiece,
    _bucket,
    lm_eval_plan,
)


class ModelAdapter:
    """lm-eval-shaped scoring and generation over a serving module (in memory or loaded).

    Args:
        module: an object with `forward`, `generate` (and `score`) functions as built by
            `massivetext_tf.export.build_serving_module` or restored by `tf.saved_model.load`.
        tokenizer_proto: serialized SentencePiece model.
        kind: "decoder_only" or "encoder_decoder".
        max_length: the window: longest token sequence one forward pass takes.
        batch_size: rows per forward / generate call.
        info: a dict describing the model (path, format, checkpoint), copied into results.
        task: the Keras decoder-only task behind `module`, if any: then requests that share
            a context are scored from one key/value cache of that context (`share_context`).
        decoder_start_id: the encoder-decoder's first decoder token: `<s>` = 2 for the
            toolkit's own models, `<pad>` = 0 for T5 checkpoints (the export's
            `token_conventions`).
    """

    def __init__(self, module, tokenizer_proto, kind, max_length, *, batch_size=DEFAULT_BATCH_SIZE,
                 info=None, stride=None, task=None, share_context=True, decoder_start_id=BOS_ID):
        if kind not in ("decoder_only", "encoder_decoder"):
            raise ValueError(f"unknown model kind {kind!r}")
        self.module = module
        self.tokenizer = SentencePiece(tokenizer_proto)
        self.kind = kind
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)
        self.stride = stride
        self.decoder_start_id = int(decoder_start_id)
        self.info = dict(info or {})
        self.info.setdefault("kind", kind)
        self.info.setdefault("max_length", self.max_length)
        # A Keras decoder-only task: requests sharing a context compute it once (KV cache).
        self.task = task if kind == "decoder_only" else None
        self.share_context = share_context and self.task is not None
        self._shared_fn = None

    # ------------------------------------------------------------------ forward passes

    def _token_log_probs(self, rows):
        """`rows`: list of dicts with `input` (token ids fed), `targets` (the next-token ids of
        positions 0..len(input)-1) and, for the encoder-decoder, `encoder` ids. Returns per row
        `(log_probs [len], greedy [len])` of each target."""
        import tensorflow as tf

        # Longest rows first (lm-evaluation-harness's order): a batch holds rows of similar
        # length, so little padding and few distinct padded shapes; results in the given order.
        order = sorted(range(len(rows)), key=lambda i: -(len(rows[i]["input"]) + len(rows[i].get("encoder", ()))))
        out = [None] * len(rows)
        for b in range(0, len(order), self.batch_size):
            positions = order[b: b + self.batch_size]
            chunk = [rows[i] for i in positions]
            length = _bucket(max(len(r["input"]) for r in chunk), self.max_length)
            ids = np.zeros([len(chunk), length], np.int32)
            targets = np.zeros_like(ids)
            for i, r in enumerate(chunk):
                ids[i, : len(r["input"])] = r["input"]
                targets[i, : len(r["targets"])] = r["targets"]
            mask = (np.arange(length)[None, :] < np.array([len(r["input"]) for r in chunk])[:, None])
            mask = mask.astype(np.int32)
            if self.kind == "decoder_only":
                logits = self.module.forward(tf.constant(ids), tf.constant(mask))["logits"]
            else:
                enc_len = _bucket(max(len(r["encoder"]) for r in chunk), self.max_length)
                enc = np.zeros([len(chunk), enc_len], np.int32)
                for i, r in enumerate(chunk):
                    enc[i, : len(r["encoder"])] = r["encoder"]
                logits = self.module.forward(tf.constant(enc), tf.constant((enc != 0).astype(np.int32)),
                                             tf.constant(ids), tf.constant(mask))["logits"]
            logits = tf.cast(logits, tf.float32)
            log_probs = tf.nn.log_softmax(logits, axis=-1)
            picked = tf.gather(log_probs, tf.constant(targets), batch_dims=2).numpy()
            greedy = (tf.argmax(logits, axis=-1, output_type=tf.int32).numpy() == targets)
            for i, (position, r) in enumerate(zip(positions, chunk)):
                n = len(r["targets"])
                out[position] = (picked[i, :n].astype(np.float64), greedy[i, :n])
        return out

    # ------------------------------------------------------------------ tokenization

    def encode_pair(self, context: str, continuation: str):
        """(context ids, continuation ids) with lm-evaluation-harness's split (decoder-only)
        or separately (encoder-decoder, continuation stripped of leading whitespace)."""
        if self.kind == "encoder_decoder":
            return self.tokenizer.encode(context), self.tokenizer.encode(continuation.lstrip())
        n_space = len(context) - len(context.rstrip())
        if n_space:
            continuation = context[-n_space:] + continuation
            context = context[:-n_space]
        whole = self.tokenizer.encode(context + continuation)
        context_ids = self.tokenizer.encode(context) if context else []
        return whole[: len(context_ids)], whole[len(context_ids):]

    # ------------------------------------------------------------------ lm-eval interface

    def loglikelihood(self, requests, *, share_context=None):
        """`[(context, continuation)]` -> `[LoglikelihoodResult]`.

        With `share_context` (default: the adapter's; Keras decoder-only models only),
        requests whose context tokens are the same (the choices of a multiple-choice item) run
        the context once into a key/value cache and score every continuation from it; the
        numbers are those of the one-row-per-request path (lm-evaluation-harness's)."""
        share = self.share_context if share_context is None else (share_context and self.task is not None)
        rows, spans, results, groups = [], [], [], {}
        for context, continuation in requests:
            ctx, cont = self.encode_pair(context, continuation)
            row, span, truncated = self._row(ctx, cont)
            if row is None:
                results.append(LoglikelihoodResult(float("nan"), False, len(cont), truncated, True))
                continue
            results.append(LoglikelihoodResult(0.0, False, span[1] - span[0], truncated))
            if share and not truncated:
                groups.setdefault(tuple(ctx), []).append((len(results) - 1, cont))
                continue
            rows.append(row)
            spans.append((len(results) - 1, span))
        for (index, (lo, hi)), (log_probs, greedy) in zip(spans, self._token_log_probs(rows)):
            results[index].logprob = float(np.sum(log_probs[lo:hi], dtype=np.float64))
            results[index].is_greedy = bool(np.all(greedy[lo:hi]))
        for ctx, members in groups.items():
            for (index, _), (log_probs, greedy) in zip(members, self._shared_context_log_probs(
                    list(ctx), [cont for _, cont in members])):
                results[index].logprob = float(np.sum(log_probs, dtype=np.float64))
                results[index].is_greedy = bool(np.all(greedy))
        return results

    def _shared_context_log_probs(self, ctx, conts):
        """Log-probabilities and greedy flags of each continuation after `[<s>] + ctx`: the
        context runs once through `call_with_cache`; the continuations, batched, attend to
        copies of its cache."""
        import tensorflow as tf

        if self._shared_fn is None:
            self._shared_fn = self._build_shared_fn()
        prefix = [BOS_ID] + ctx
        out = []
        for b in range(0, len(conts), self.batch_size):
            chunk = conts[b: b + self.batch_size]
            p_len = _bucket(len(prefix), self.max_length)
            m_len = _bucket(max(len(c) for c in chunk), self.max_length)
            prefix_ids = np.zeros([1, p_len], np.int32)
            prefix_ids[0, : len(prefix)] = prefix
            cont_ids = np.zeros([len(chunk), m_len], np.int32)
            for i, c in enumerate(chunk):
                cont_ids[i, : len(c)] = c
            first, rest = self._shared_fn(tf.constant(prefix_ids), tf.constant(len(prefix), tf.int32),
                                          tf.constant(cont_ids))
            first, rest = np.asarray(first, np.float32), np.asarray(rest, np.float32)
            for i, c in enumerate(chunk):
                logits = np.concatenate([first[None, :], rest[i, : len(c) - 1]], axis=0)  # [len(c), V]
                m = logits.max(-1, keepdims=True)
                lp = (logits - m - np.log(np.exp(logits - m).sum(-1, keepdims=True))).astype(np.float64)
                out.append((lp[np.arange(len(c)), c], np.argmax(logits, -1) == np.asarray(c)))
        return out

    def _build_shared_fn(self):
        import tensorflow as tf

        task = self.task
        backbone = task.backbone
        layers = getattr(backbone, "num_layers", None)

        @tf.function  # one trace per (bucketed prefix length, continuation length, batch)
        def shared(prefix_ids, prefix_length, cont_ids):
            length = prefix_ids.shape[1] + cont_ids.shape[1]
            tables = task.relative_tables(length)
            cache = tf.zeros([1, layers, 2, length, backbone.num_heads, backbone.key_value_dim],
                             dtype=task.compute_dtype)
            logits, _, cache = task.call_with_cache(prefix_ids, cache, 0, tables)
            first = tf.cast(logits[0, prefix_length - 1], tf.float32)
            cache = tf.repeat(cache, tf.shape(cont_ids)[0], axis=0)
            # The continuations overwrite the cache from `prefix_length` on; the padding past
            # them sits at later positions, which the causal mask hides.
            logits, _, _ = task.call_with_cache(cont_ids, cache, prefix_length, tables)
            return first, tf.cast(logits, tf.float32)

        return shared

    def _row(self, ctx, cont):
        """The forward row scoring `cont` after `ctx`, the scored target span, truncated?"""
        window = self.max_length
        if self.kind == "decoder_only":
            if len(cont) + 1 > window or not cont:
                return None, None, False
            body = ctx + cont
            truncated = len(body) + 1 > window
            body = body[-(window - 1):]
            seq = [BOS_ID] + body
            return {"input": seq[:-1], "targets": seq[1:]}, (len(seq) - 1 - len(cont), len(seq) - 1), truncated
        labels = cont + [EOS_ID]
        if len(labels) > window:
            return None, None, False
        truncated = len(ctx) + 1 > window
        encoder = ctx[-(window - 1):] + [EOS_ID] if window > 1 else [EOS_ID]
        return ({"encoder": encoder, "input": [self.decoder_start_id] + cont, "targets": labels},
                (0, len(labels)), truncated)

    def loglikelihood_rolling(self, texts, *, stride=None, windows="stride"):
        """`[text] -> [RollingResult]`: every token of each text scored exactly once.

        Decoder-only, `windows="stride"` (`massivetext evaluate`'s protocol): `[<s>] + tokens`
        in windows of `max_length` tokens starting `stride` tokens apart (default half the
        window); each window scores only positions past the previous one (`window_plan`).
        `windows="lm-eval"`: the windows of lm-evaluation-harness's HuggingFace model
        (`lm_eval_plan`). Encoder-decoder (either setting): consecutive chunks of
        `max_length - 1` tokens, each scored by the decoder (`[<s>] + chunk`, `</s>` not
        scored) with the preceding `max_length - 1` tokens as encoder input."""
        return self.rolling_tokens([self.tokenizer.encode(t) for t in texts], stride=stride, windows=windows)

    def rolling_tokens(self, token_lists, *, stride=None, windows="stride"):
        from massivetext_tf.models.scoring import window_plan

        if windows not in ROLLING_WINDOWS:
            raise ValueError(f"unknown rolling windows {windows!r}; known: {', '.join(ROLLING_WINDOWS)}")
        window = self.max_length
        rows, owners = [], []
        for i, tokens in enumerate(token_lists):
            if self.kind == "decoder_only":
                seq = [BOS_ID] + list(tokens)
                step = stride or self.stride or max(1, window // 2)
                plan = lm_eval_plan(len(seq), window) if windows == "lm-eval" else window_plan(len(seq), window, step)
                for start, first, end in plan:
                    piece = seq[start:end]
                    rows.append({"input": piece[:-1], "targets": piece[1:]})
                    owners.append((i, first - start - 1, end - start - 1))
            else:
                chunk = window - 1
                for s in range(0, len(tokens), chunk):
                    piece = list(tokens[s: s + chunk])
                    encoder = list(tokens[max(0, s - chunk): s]) + [EOS_ID]
                    rows.append({"encoder": encoder, "input": [self.decoder_start_id] + piece[:-1],
                                 "targets": piece})
                    owners.append((i, 0, len(piece)))
        totals = np.zeros(len(token_lists), np.float64)
        counts = np.zeros(len(token_lists), np.int64)
        for (i, lo, hi), (log_probs, _) in zip(owners, self._token_log_probs(rows)):
            totals[i] += float(np.sum(log_probs[lo:hi], dtype=np.float64))
            counts[i] += hi - lo
        return [RollingResult(float(t), int(c)) for t, c in zip(totals, counts)]

    def generate_until(self, requests):
        """`[GenerationRequest]` -> `[GenerationResult]`: greedy from `<s>` + context through the
        `generate` signature, stopped at `</s>`, `max_new_tokens`, or before the first stop
        string; only the new text."""
        import tensorflow as tf

        results = [None] * len(requests)
        by_length = {}
        for i, r in enumerate(requests):
            by_length.setdefault(min(int(r.max_new_tokens), self.max_length - 1), []).append(i)
        for max_new, indices in by_length.items():
            for b in range(0, len(indices), self.batch_size):
                chunk = indices[b: b + self.batch_size]
                prompts = [requests[i].context for i in chunk]
                out = self.module.generate(tf.constant(prompts), tf.constant(max_new, tf.int32))
                texts = [t.decode("utf-8", errors="replace") for t in out["text"].numpy()]
                for i, text in zip(chunk, texts):
                    for stop in requests[i].until:
                        if stop and stop in text:
                            text = text[: text.index(stop)]
                    n = len(self.tokenizer.encode(requests[i].context))
                    truncated = (n + 1 > self.max_length - max_new) if self.kind == "decoder_only" \
                        else (n + 1 > self.max_length)
                    results[i] = GenerationResult(text, truncated)
        return results
