"""Score text longer than the context window with a sliding window.

Each text is tokenized as `[bos] + tokens`; every text token is predicted exactly once.
The first window scores all its positions; each later window starts `stride` tokens further
and scores only the positions past the previous window's end, so every prediction after the
first window sees at least `window - stride` tokens of context.

    bits per byte = -sum(log-likelihood in nats) / (ln 2 x UTF-8 bytes of the text)
"""
import math

import keras
import numpy as np
from keras import ops


def jit_compile(fn):
    """`fn` compiled with XLA by the active Keras backend: `tf.function(jit_compile=True)` on
    TensorFlow, `jax.jit` on JAX; other backends run it eagerly. Fixed input shapes keep it
    from recompiling."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True, reduce_retracing=True)
    if backend == "jax":
        import jax

        return jax.jit(fn)
    return fn


def window_plan(num_tokens, window, stride):
    """`[(start, first_scored, end)]` windows over a sequence of `num_tokens` (bos included).

    Window `k` covers positions `start..end-1` and scores the predictions of positions
    `first_scored..end-1` (each from the position before it).
    """
    if window < 2:
        raise ValueError(f"`window` must be at least 2, got {window}.")
    if not 0 < stride <= window - 1:
        raise ValueError(f"`stride` must be in [1, window - 1] = [1, {window - 1}], got {stride}.")
    plan, start, scored_to = [], 0, 1
    while scored_to < num_tokens:
        end = min(start + window, num_tokens)
        plan.append((start, scored_to, end))
        scored_to = end
        start += stride
        while start + window <= scored_to and scored_to < num_tokens:
            start += stride
    return plan


class SlidingWindowScorer:
    """Log-likelihood of arbitrarily long token sequences under a causal LM.

    Args:
        model: a `GopherCausalLM` (anything that maps `{"token_ids", "padding_mask"}` to
            logits `[batch, length, vocab]`).
        window: tokens per forward pass (default: the model's context).
        stride: tokens between window starts (default: `window // 2`).
        batch_size: windows per compiled forward pass (fixed, so it never retraces).
    """

    def __init__(self, model, window=None, stride=None, batch_size=8):
        self.model = model
        self.window = window or model.backbone.max_sequence_length
        if self.window > model.backbone.max_sequence_length:
            raise ValueError(
                f"`window={self.window}` is longer than the model's context "
                f"(`max_sequence_length={model.backbone.max_sequence_length}`)."
            )
        self.stride = stride or max(1, self.window // 2)
        self.batch_size = batch_size
        self._forward = jit_compile(self._token_log_probs)

    def _token_log_probs(self, token_ids, padding_mask):
        logits = ops.cast(self.model({"token_ids": token_ids, "padding_mask": padding_mask}), "float32")
        log_probs = ops.log_softmax(logits[:, :-1], axis=-1)
        targets = ops.expand_dims(ops.cast(token_ids[:, 1:], "int32"), -1)
        return ops.squeeze(ops.take_along_axis(log_probs, targets, axis=-1), -1)  # [b, len-1]

    def score_tokens(self, sequences):
        """Sum of log-likelihoods (nats) and number of scored tokens for each sequence.

        Args:
            sequences: list of int lists, each starting with the bos token.
        """
        jobs = []  # (sequence index, window tokens, first_scored - start, end - start)
        for i, seq in enumerate(sequences):
            for start, first, end in window_plan(len(seq), self.window, self.stride):
                jobs.append((i, seq[start:end], first - start, end - start))
        totals = np.zeros(len(sequences), dtype=np.float64)
        counts = np.zeros(len(sequences), dtype=np.int64)
        for b in range(0, len(jobs), self.batch_size):
            chunk = jobs[b : b + self.batch_size]
            ids = np.zeros((self.batch_size, self.window), dtype=np.int32)
            mask = np.zeros_like(ids)
            for row, (_, toks, _, n) in enumerate(chunk):
                ids[row, :n] = toks
                mask[row, :n] = 1
            log_probs = np.asarray(self._forward(ids, mask))
            for row, (i, _, first, n) in enumerate(chunk):
                # log_probs[:, t - 1] is the log-probability of token t.
                totals[i] += float(np.sum(log_probs[row, first - 1 : n - 1], dtype=np.float64))
                counts[i] += n - first
        return totals, counts


def score_text(model, texts, tokenizer=None, window=None, stride=None, batch_size=8):
    """Total log-likelihood, perplexity and bits per byte of `texts` under `model`.

    Args:
        model: a causal LM task; its preprocessor's tokenizer is used unless `tokenizer`.
        texts: a string or a list of strings (each may be longer than the context).
        tokenizer: a keras-hub tokenizer with a `start_token_id`.
        window, stride, batch_size: see `SlidingWindowScorer`.

    Returns:
        dict with `log_likelihood` (nats, summed), `num_tokens`, `num_bytes`, `perplexity`,
        `bits_per_byte`, and per-text `log_likelihoods`.
    """
    if isinstance(texts, str):
        texts = [texts]
    tokenizer = tokenizer or getattr(getattr(model, "preprocessor", None), "tokenizer", None)
    if tokenizer is None:
        raise ValueError("`score_text` needs a tokenizer: pass `tokenizer=` or a model with a preprocessor.")
    bos = tokenizer.start_token_id
    sequences = [[bos] + [int(t) for t in np.asarray(tokenizer.tokenize(t))] for t in texts]
    scorer = SlidingWindowScorer(model, window=window, stride=stride, batch_size=batch_size)
    totals, counts = scorer.score_tokens(sequences)
    total, tokens = float(totals.sum()), int(counts.sum())
    num_bytes = sum(len(t.encode("utf-8")) for t in texts)
    return {
        "log_likelihood": total,
        "num_tokens": tokens,
        "num_bytes": num_bytes,
        "perplexity": math.exp(-total / max(tokens, 1)),
        "bits_per_byte": -total / (math.log(2) * max(num_bytes, 1)),
        "log_likelihoods": totals.tolist(),
    }
