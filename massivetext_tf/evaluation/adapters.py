"""Model adapters: one lm-evaluation-harness-shaped interface over every model we can judge.

`load_model(path)` takes a keras-hub preset directory (e.g. `MODEL_DIR/preset`, Keras) or an
exported SavedModel `NAME/VERSION` directory and returns a `ModelAdapter` with

* `loglikelihood(requests)`: `[(context, continuation)] -> [LoglikelihoodResult]` (summed log
  probability of the continuation given the context, natural log, and whether every
  continuation token is the argmax: lm-eval's `(logprob, is_greedy)`),
* `loglikelihood_rolling(texts)`: `[text] -> [RollingResult]` (every token of the text scored
  once, sliding windows, `massivetext_tf.models.scoring.window_plan`),
* `generate_until(requests)`: `[GenerationRequest] -> [str]` (greedy, only the new text).

Both paths run the same functions: a Keras model is wrapped in memory by
`massivetext_tf.export.build_serving_module` (the module an export saves), a SavedModel is
loaded with `tf.saved_model.load`. Token log-likelihoods come from the `forward` signature
(logits), generations from the `generate` signature, so a served model is judged exactly as
it serves. Texts are tokenized on the host with the model's own SentencePiece model (the
preset's tokenizer, or the export's `assets/tokenizer.model`).

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

import dataclasses
import hashlib
import math

import numpy as np

from massivetext_tf import io

PAD_ID, EOS_ID, BOS_ID = 0, 1, 2
DEFAULT_BATCH_SIZE = 8
EXPORT_INFO = "assets.extra/massivetext_export.json"


ROLLING_WINDOWS = ("stride", "lm-eval")


def lm_eval_plan(num_tokens, window):
    """`[(start, first_scored, end)]` (as `window_plan`) of lm-evaluation-harness's rolling
    log-likelihood over `num_tokens` tokens, `<s>` included: `lm_eval.utils.
    get_rolling_token_windows(tokens, <s>, max_seq_len=window, context_len=1)` made disjoint
    (`make_disjoint_window`), as its HuggingFace model runs them. The first window feeds up
    to `window` tokens and scores them all; each later one scores the next `window` tokens
    (fewer at the end) after the `window` tokens before its last one, so the final window
    has the most context. Windows feed `window` tokens, one more than `window_plan`'s."""
    if window < 1:
        raise ValueError(f"`window` must be at least 1, got {window}.")
    n = num_tokens - 1  # tokens to predict (the text's)
    if n <= 0:
        return []
    first = min(window, n)
    plan, predicted = [(0, 1, first + 1)], first
    while predicted < n:
        end = predicted + min(n - predicted, window)  # in text tokens; seq index = text index + 1
        plan.append((end - window, predicted + 1, end + 1))
        predicted = end
    return plan


class ModelLoadError(ValueError):
    """A --model path is neither a preset directory nor a SavedModel."""


@dataclasses.dataclass
class LoglikelihoodResult:
    logprob: float          # natural log, summed over the scored tokens
    is_greedy: bool         # every scored token is the argmax
    num_tokens: int         # scored tokens
    truncated: bool = False  # the context was left-truncated to fit the window
    skipped: bool = False    # the continuation alone does not fit: not scored (logprob nan)


@dataclasses.dataclass
class RollingResult:
    logprob: float
    num_tokens: int


@dataclasses.dataclass
class GenerationRequest:
    context: str
    until: tuple = ()          # stop strings: the text is cut before the first one
    max_new_tokens: int = 32


@dataclasses.dataclass
class GenerationResult:
    text: str
    truncated: bool = False


class SentencePiece:
    """Host-side tokenizer over a serialized SentencePiece model (the model's own)."""

    def __init__(self, proto: bytes):
        import sentencepiece as spm

        self.proto = proto
        self.processor = spm.SentencePieceProcessor(model_proto=proto)

    def encode(self, text: str) -> list[int]:
        return list(self.processor.encode(text))

    def decode(self, ids) -> str:
        return self.processor.decode([int(i) for i in ids])


def _bucket(length: int, maximum: int) -> int:
    """Padded length: the next power of two (at least 16), at most `maximum`."""
    return min(maximum, max(16, 1 << max(0, (length - 1)).bit_length()))


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


# ---------------------------------------------------------------------------------- loading

def _gfile():
    import tensorflow as tf

    return tf.io.gfile


def _join(*parts):
    return "/".join([parts[0].rstrip("/")] + [p.strip("/") for p in parts[1:]])


def is_saved_model(path: str) -> bool:
    return _gfile().exists(_join(path, "saved_model.pb"))


def _sha256(path: str, limit: int = 1 << 62) -> str | None:
    if not _gfile().exists(path):
        return None
    digest = hashlib.sha256()
    with _gfile().GFile(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def load_task(preset_dir: str, dtype: str | None = "float32"):
    """The Keras task of a preset directory (the one place to switch loaders)."""
    from massivetext_tf import models

    if hasattr(models, "load"):
        return models.load(preset_dir, dtype=dtype) if dtype else models.load(preset_dir)
    from massivetext_tf.export.serving import load_task as export_load_task

    return export_load_task(preset_dir)


def model_kind(task) -> str:
    from massivetext_tf import models

    if hasattr(models, "kind"):
        return models.kind(task)
    from massivetext_tf.export.saved_model import model_kind as export_kind

    return export_kind(task)


def from_task(task, *, name=None, batch_size=DEFAULT_BATCH_SIZE, max_length=None, stride=None,
              jit_compile=True, info=None, share_context=True) -> ModelAdapter:
    """An adapter over an in-memory Keras task (its tokenizer attached)."""
    from massivetext_tf.export.saved_model import (build_serving_module, resolve_max_length,
                                                   token_conventions, tokenizer_proto)

    kind = model_kind(task)
    length = resolve_max_length(task, max_length)
    module = build_serving_module(task, max_length=length, jit_compile=jit_compile, max_batch_size=None)
    info = {"name": name or task.name, "format": "keras", "dtype": task.dtype_policy.name,
            **(info or {})}
    return ModelAdapter(module, tokenizer_proto(task), kind, length, batch_size=batch_size,
                        info=info, stride=stride, task=task, share_context=share_context,
                        decoder_start_id=token_conventions(task)["decoder_start_id"])


def load_model(path: str, *, name=None, batch_size=DEFAULT_BATCH_SIZE, dtype="float32",
               max_length=None, stride=None, jit_compile=True) -> ModelAdapter:
    """A `ModelAdapter` for a preset directory (Keras, loaded in `dtype`) or a SavedModel
    `NAME/VERSION` directory (scored through its signatures)."""
    path = str(path).rstrip("/")
    gfile = _gfile()
    checkpoint = _CHECKPOINT.match(path)
    if checkpoint and gfile.exists(f"{path}.index"):
        return _load_checkpoint(path, checkpoint.group(1), int(checkpoint.group(2)), name=name,
                                batch_size=batch_size, max_length=max_length, stride=stride,
                                jit_compile=jit_compile)
    if not gfile.exists(path):
        raise ModelLoadError(f"--model {path}: does not exist")
    if gfile.isdir(path) and not is_saved_model(path) and not gfile.exists(_join(path, "config.json")):
        # saved_models/NAME given without a version: the highest version, as TF Serving serves
        versions = sorted((int(v.strip("/")) for v in gfile.listdir(path) if v.strip("/").isdigit()
                           and is_saved_model(_join(path, v.strip("/")))), reverse=True)
        if versions:
            path = _join(path, str(versions[0]))
    if is_saved_model(path):
        import tensorflow as tf
        import tensorflow_text  # noqa: F401  (registers the SentencePiece kernels)

        info_path = _join(path, EXPORT_INFO)
        export = io.read_json(info_path, default=None)
        if export is None:
            raise ModelLoadError(f"--model {path}: a SavedModel without {EXPORT_INFO}; only "
                                 "massivetext_tf exports (tools/export.py) can be evaluated")
        tok = _join(path, "assets", "tokenizer.model")
        if not gfile.exists(tok):
            raise ModelLoadError(f"--model {path}: no assets/tokenizer.model in the SavedModel")
        with gfile.GFile(tok, "rb") as f:
            proto = f.read()
        loaded = tf.saved_model.load(path)
        length = int(export["max_length"])
        if max_length is not None and max_length < length:
            length = int(max_length)
        cap = export.get("max_batch_size") or batch_size
        version = path.rsplit("/", 1)[-1]
        info = {"name": name or _saved_model_name(path), "path": path,
                "format": "saved_model", "version": version,
                "checkpoint": {"variables_index_sha256": _sha256(_join(path, "variables", "variables.index"))},
                "model_class": export.get("model_class")}
        return ModelAdapter(loaded, proto, export["model_kind"], length,
                            batch_size=min(batch_size, cap), info=info, stride=stride,
                            decoder_start_id=export.get("decoder_start_id", BOS_ID))
    if not gfile.exists(_join(path, "config.json")):
        raise ModelLoadError(f"--model {path}: neither a SavedModel (saved_model.pb) nor a keras-hub "
                             "preset directory (config.json), e.g. MODEL_DIR/preset or saved_models/NAME/1")
    task = load_task(path, dtype=dtype)
    if getattr(getattr(task, "preprocessor", None), "tokenizer", None) is None:
        raise ModelLoadError(f"--model {path}: the preset has no tokenizer (save it with one)")
    info = {"path": path, "checkpoint": {"weights_sha256": _sha256(_join(path, "model.weights.h5"))}}
    run = _run_of_preset(path)
    if run:
        info["checkpoint"].update(run)
    meta = io.read_json(_join(path, "metadata.json"), default=None)
    if isinstance(meta, dict):
        info["checkpoint"]["metadata"] = {k: meta[k] for k in sorted(meta) if not isinstance(meta[k], (dict, list))}
    return from_task(task, name=name or _preset_name(path), batch_size=batch_size,
                     max_length=max_length, stride=stride, jit_compile=jit_compile, info=info)


_CHECKPOINT = __import__("re").compile(r"^(.*)/checkpoints/ckpt-(\d+)$")


def _run_config(model_dir: str):
    from massivetext_tf.training import config as config_lib
    from massivetext_tf.training.run_dir import latest_config_path

    cfg_path = latest_config_path(model_dir)
    return config_lib.read_config(cfg_path) if cfg_path else None


def _training_position(cfg, step: int) -> dict:
    return {"step": int(step), "tokens": int(step) * cfg.data.global_batch_size * cfg.data.sequence_length}


def _run_of_preset(path: str) -> dict | None:
    """A training run's `MODEL_DIR/preset` (saved at the run's end, with its last checkpoint):
    that checkpoint's step and training tokens."""
    if not path.endswith("/preset"):
        return None
    model_dir = path[: -len("/preset")]
    try:
        cfg = _run_config(model_dir)
        import tensorflow as tf

        latest = tf.train.latest_checkpoint(f"{model_dir}/checkpoints") if cfg else None
    except (ValueError, OSError):
        return None
    found = _CHECKPOINT.match(latest or "")
    return _training_position(cfg, int(found.group(2))) if found else None


def _load_checkpoint(path, model_dir, step, *, name, batch_size, max_length, stride, jit_compile):
    """`MODEL_DIR/checkpoints/ckpt-N` of a training run: the run's model (its recorded config
    and the data's tokenizer) with that checkpoint's weights, float32."""
    from massivetext_tf.training import data as data_lib
    from massivetext_tf.training.checkpoint import restore_model_weights
    from massivetext_tf.training.loop import build_model

    cfg = _run_config(model_dir)
    if cfg is None:
        raise ModelLoadError(f"--model {path}: {model_dir} has no config.yaml (not a training run's directory)")
    tokenizer = data_lib.tokenizer_path(cfg)
    if not tokenizer:
        raise ModelLoadError(f"--model {path}: the run's data ({cfg.data.dir}) has no tokenizer.model")
    task = build_model(cfg, tokenizer=tokenizer)
    restore_model_weights(task, path)
    position = _training_position(cfg, step)
    info = {"path": path, "format": "checkpoint", "run": model_dir, "checkpoint": {"path": path, **position}}
    return from_task(task, name=name or f"{_preset_name(model_dir)}@{step}", batch_size=batch_size,
                     max_length=max_length, stride=stride, jit_compile=jit_compile, info=info)


def _saved_model_name(path: str) -> str:
    parts = [p for p in path.split("/") if p]
    return parts[-2] if len(parts) >= 2 and parts[-1].isdigit() else parts[-1]


def _preset_name(path: str) -> str:
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[-1] == "preset":
        return parts[-2]
    return parts[-1] if parts else path


def perplexity(logprob: float, num_tokens: int) -> float:
    return math.exp(-logprob / num_tokens) if num_tokens else float("nan")
