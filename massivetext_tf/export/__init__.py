"""Export for serving: SavedModel (TF Serving layout) and LiteRT.

Library API::

    from massivetext_tf.export import export_model, export_saved_model, export_tflite
    task = load_task("runs/tiny/preset")                      # or models.build(...)
    export_model(task, "tiny", base_dir="saved_models", tflite=True, quantize="int8")

* `export_model(task, name, *, base_dir, version, tokenizer, max_length,
  default_max_new_tokens, jit_compile, warmup, tflite, quantize, max_batch_size)` -> summary
  dict: the versioned TF Serving export (atomic, never overwrites, leftovers of killed exports
  removed) + the model merged into models.config (previous file kept as models.config.bak)
  (+ LiteRT files).
* `export_saved_model(task, export_dir, ...)`: one SavedModel, no versioning.
* `export_tflite(task, out_dir, name, *, tokenizer, max_length, quantize)`: LiteRT files.
* `load_task(model_dir | preset=, tokenizer=)`, `write_models_config(base_dir, name=None)`,
  `read_warmup_requests(path)`, `LiteRTGenerator(path)`.
"""
from massivetext_tf.export.saved_model import build_serving_module, export_saved_model
from massivetext_tf.export.serving import (
    ExportError,
    export_model,
    load_task,
    read_warmup_requests,
    write_models_config,
)
from massivetext_tf.export.tflite import LiteRTGenerator, export_tflite

__all__ = [
    "ExportError",
    "LiteRTGenerator",
    "build_serving_module",
    "export_model",
    "export_saved_model",
    "export_tflite",
    "load_task",
    "read_warmup_requests",
    "write_models_config",
]
