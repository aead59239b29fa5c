"""Evaluation the way Gopher was judged: bits per byte per source and tasks from YAML files.

Public entry points::

    load_model(path, *, dtype="float32", batch_size=8, ...) -> ModelAdapter
        a preset directory (Keras) or a SavedModel NAME/VERSION directory (its signatures)
    from_task(task, ...) -> ModelAdapter                   an in-memory Keras task
    ModelAdapter.loglikelihood / loglikelihood_rolling / generate_until   (lm-eval shaped)
    load_task(yaml_path, *, num_fewshot=None, limit=None, seed=None) -> Task
    evaluate_task(adapter, task) -> [result rows]
    evaluate_source(adapter, source_spec) -> [result rows]  (bits per byte, perplexity, loss)
    results_document(runs), markdown(document)

With the `lm-eval` package installed (extra `[lmeval]`), importing this package registers the
lm-evaluation-harness model `massivetext_tf` (`lm_harness.MassiveTextLM`):
`lm_eval.simple_evaluate(model="massivetext_tf", model_args="pretrained=DIR", tasks=[...])`.

See docs/evaluation.md for the protocols, normalizations, standard errors and the task schema.
"""
import importlib.util as _importlib_util

from massivetext_tf._tf import require_tensorflow as _require_tensorflow

_require_tensorflow()  # without TensorFlow: one ImportError that names the extras to install

from massivetext_tf.evaluation.adapters import (  # noqa: E402
    GenerationRequest,
    GenerationResult,
    LoglikelihoodResult,
    ModelAdapter,
    ModelLoadError,
    RollingResult,
    from_task,
    load_model,
)
from massivetext_tf.evaluation.report import markdown, results_document
from massivetext_tf.evaluation.runner import evaluate_source, evaluate_task
from massivetext_tf.evaluation.tasks import KINDS, Task, TaskError, find_task, load_task

if _importlib_util.find_spec("lm_eval") is not None:
    import lm_eval.models  # noqa: F401  (lm-eval's own names first: a non-empty registry skips them)

    from massivetext_tf.evaluation import lm_harness  # noqa: F401  (registers "massivetext_tf")

__all__ = [
    "GenerationRequest",
    "GenerationResult",
    "KINDS",
    "LoglikelihoodResult",
    "ModelAdapter",
    "ModelLoadError",
    "RollingResult",
    "Task",
    "TaskError",
    "evaluate_source",
    "evaluate_task",
    "find_task",
    "from_task",
    "load_model",
    "load_task",
    "markdown",
    "results_document",
]
