"""lm-evaluation-harness integration: the model `massivetext_tf` for `lm_eval`.

Importing `massivetext_tf.evaluation` (with the `lm-eval` package installed, extra
`[lmeval]`) registers `MassiveTextLM` under the model name `massivetext_tf`, so

    import massivetext_tf.evaluation, lm_eval
    lm_eval.simple_evaluate(model="massivetext_tf",
                            model_args="pretrained=runs/tiny/preset,batch_size=8", tasks=[...])

judges a keras-hub preset directory or an exported SavedModel `NAME/VERSION` directory
through the same `ModelAdapter` as `massivetext evaluate`, so the numbers are the same:

* `loglikelihood`: `<s>` + context + continuation (lm-eval's split of the context's trailing
  whitespace), batched longest first; requests that share a context run it once (Keras
  decoder-only models).
* `loglikelihood_rolling`: `<s>` is the prefix, and a long text is windowed as lm-eval's own
  HuggingFace model windows it (`lm_eval.utils.get_rolling_token_windows` with one token of
  context and the model's maximum sequence length as the window); `massivetext evaluate
  --rolling-windows lm-eval` gives the same windows.
* `generate_until`: greedy from `<s>` + context, stopped at `</s>`, at `max_gen_toks`
  (default 256, at most the window - 1) or before the first stop string (`until`); only the
  new text. Sampling (`do_sample=True`) is refused: this model decodes greedily.

`model_args`: `pretrained` (required), `batch_size` (default 8; `auto` means 8), `dtype`
(default `float32`), `max_length` (window; default the model's context), `jit_compile`
(default true), `share_context` (default true). `device` is ignored (TensorFlow places the
computation).
"""
from __future__ import annotations

import logging

from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from massivetext_tf.evaluation.loading import load_model
from massivetext_tf.evaluation.protocol import DEFAULT_BATCH_SIZE, GenerationRequest

MODEL_NAME = "massivetext_tf"
DEFAULT_MAX_GEN_TOKS = 256  # lm-eval's HuggingFace default

log = logging.getLogger(__name__)


def _int_arg(name, value, default):
    if value is None or value == "auto" or (isinstance(value, str) and value.startswith("auto")):
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"model_args {name}={value!r}: not an integer") from None
    if number < 1:
        raise ValueError(f"model_args {name}={value!r}: must be at least 1")
    return number


def _bool_arg(name, value):
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ValueError(f"model_args {name}={value!r}: not true or false")


@register_model(MODEL_NAME)
class MassiveTextLM(LM):
    """An `lm_eval.api.model.LM` over `massivetext_tf.evaluation.load_model(pretrained)`."""

    def __init__(self, pretrained=None, batch_size=DEFAULT_BATCH_SIZE, dtype="float32", max_length=None,
                 jit_compile=True, share_context=True, adapter=None, **unused):
        super().__init__()
        unused = {k: v for k, v in unused.items() if v is not None and k not in ("device", "max_batch_size")}
        if unused:
            raise ValueError(f"model_args: unknown argument(s) {', '.join(sorted(unused))} for model "
                             f"{MODEL_NAME}; known: pretrained, batch_size, dtype, max_length, jit_compile, "
                             "share_context")
        if adapter is None:
            if not pretrained:
                raise ValueError(f"model_args: pretrained=DIR is required for model {MODEL_NAME} "
                                 "(a preset directory or a SavedModel NAME/VERSION directory)")
            adapter = load_model(str(pretrained), batch_size=_int_arg("batch_size", batch_size, DEFAULT_BATCH_SIZE),
                                 dtype=str(dtype), jit_compile=_bool_arg("jit_compile", jit_compile),
                                 max_length=None if max_length is None else _int_arg("max_length", max_length, None))
        self.adapter = adapter
        self.adapter.share_context = _bool_arg("share_context", share_context) and adapter.task is not None

    @property
    def max_length(self) -> int:
        return self.adapter.max_length

    @property
    def batch_size(self) -> int:
        return self.adapter.batch_size

    @property
    def tokenizer_name(self) -> str:
        return f"{MODEL_NAME}-sentencepiece"

    def get_model_info(self) -> dict:
        info = self.adapter.info
        return {"model_name": info.get("name"), "model_path": info.get("path"), "model_format": info.get("format"),
                "model_kind": info.get("kind"), "model_dtype": info.get("dtype", "float32"),
                "model_checkpoint": info.get("checkpoint"), "model_max_length": self.max_length}

    # ------------------------------------------------------------------ requests

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        pairs = [tuple(r.args[:2]) for r in requests]
        results = self.adapter.loglikelihood(pairs)
        skipped = sum(r.skipped for r in results)
        if skipped:
            log.warning("%s: %d of %d continuations are longer than the window (%d tokens) and were not "
                        "scored (log-likelihood -inf)", MODEL_NAME, skipped, len(results), self.max_length)
        out = []
        for pair, r in zip(pairs, results):
            answer = (float("-inf") if r.skipped else r.logprob, bool(r.is_greedy))
            self.cache_hook.add_partial("loglikelihood", pair, answer)
            out.append(answer)
        return out

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        texts = [r.args[0] for r in requests]
        out = []
        for text, r in zip(texts, self.adapter.loglikelihood_rolling(texts, windows="lm-eval")):
            self.cache_hook.add_partial("loglikelihood_rolling", (text,), r.logprob)
            out.append(r.logprob)
        return out

    def generate_until(self, requests, disable_tqdm: bool = False):
        batch = []
        for r in requests:
            context, kwargs = r.args[0], dict(r.args[1] or {}) if len(r.args) > 1 else {}
            if kwargs.get("do_sample") and float(kwargs.get("temperature", 1.0) or 0.0) > 0:
                raise ValueError(f"{MODEL_NAME}: generate_until decodes greedily; do_sample=True with "
                                 f"temperature {kwargs.get('temperature', 1.0)} is not supported")
            until = kwargs.get("until") or []
            until = (until,) if isinstance(until, str) else tuple(until)
            max_new = _int_arg("max_gen_toks", kwargs.get("max_gen_toks"), DEFAULT_MAX_GEN_TOKS)
            batch.append(GenerationRequest(context, until, max_new))
        # Longest contexts first, as lm-eval's models do; answers in the requests' order.
        order = sorted(range(len(batch)), key=lambda i: -len(batch[i].context))
        answers = [None] * len(batch)
        for i, result in zip(order, self.adapter.generate_until([batch[i] for i in order])):
            answers[i] = result.text
        for r, text in zip(requests, answers):
            self.cache_hook.add_partial("generate_until", tuple(r.args), text)
        return answers
