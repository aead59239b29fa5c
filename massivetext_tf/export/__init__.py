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
  `read_warmup_requests(path)`, `LiteRTGenerator(path)` (`export.litert`: no TensorFlow).

Modules: `saved_model` (the serving module and its save), `signatures` (each model kind's
`generate`/`score`/`forward`), `requests` (in-graph request checks), `sampling` (stateless
token choice), `tflite` (LiteRT conversion), `litert` (LiteRT host decoding), `serving` (the TF
Serving layout and `export_model`), `models_config` (merging `models.config`).
"""
import importlib as _importlib

# Lazy (PEP 562): `from massivetext_tf.export.litert import LiteRTGenerator` and the command
# parsers must not import TensorFlow, which the other names below do.
_EXPORTS = {
    "ExportError": "massivetext_tf.export.serving",
    "LiteRTGenerator": "massivetext_tf.export.litert",
    "build_serving_module": "massivetext_tf.export.saved_model",
    "export_model": "massivetext_tf.export.serving",
    "export_saved_model": "massivetext_tf.export.saved_model",
    "export_tflite": "massivetext_tf.export.tflite",
    "load_task": "massivetext_tf.export.serving",
    "read_warmup_requests": "massivetext_tf.export.serving",
    "write_models_config": "massivetext_tf.export.serving",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'massivetext_tf.export' has no attribute {name!r}")
    return getattr(_importlib.import_module(_EXPORTS[name]), name)
