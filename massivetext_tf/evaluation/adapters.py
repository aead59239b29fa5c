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

The token conventions of both model kinds are written once, in `model_adapter`'s docstring.

The code lives in three modules, re-exported here: `protocol` (request and result types,
token ids, window plans, the host tokenizer), `model_adapter` (`ModelAdapter`) and `loading`
(`load_model`, `from_task`).
"""
from massivetext_tf.evaluation.loading import (
    EXPORT_INFO,
    ModelLoadError,
    from_task,
    is_saved_model,
    load_model,
)
from massivetext_tf.evaluation.model_adapter import ModelAdapter
from massivetext_tf.evaluation.protocol import (
    BOS_ID,
    DEFAULT_BATCH_SIZE,
    EOS_ID,
    PAD_ID,
    ROLLING_WINDOWS,
    GenerationRequest,
    GenerationResult,
    LoglikelihoodResult,
    RollingResult,
    SentencePiece,
    lm_eval_plan,
    perplexity,
)

__all__ = [
    "BOS_ID",
    "DEFAULT_BATCH_SIZE",
    "EOS_ID",
    "EXPORT_INFO",
    "GenerationRequest",
    "GenerationResult",
    "LoglikelihoodResult",
    "ModelAdapter",
    "ModelLoadError",
    "PAD_ID",
    "ROLLING_WINDOWS",
    "RollingResult",
    "SentencePiece",
    "from_task",
    "is_saved_model",
    "lm_eval_plan",
    "load_model",
    "perplexity",
]
