"""massivetext_tf.training: Model Garden's shape. A `Task` (model, inputs, loss, metrics;
task.py, finetune_tasks.py), a `Trainer` (state and the compiled XLA programs; trainer.py), a
`Controller` (log, eval, checkpoint and preemption cadence; controller.py); strategy factory,
AdamW with warmup + cosine, checkpoints that survive preemption, metrics. See docs/training.md.

    from massivetext_tf.training import load_config, train
    cfg = load_config("gopher_tiny", **{"trainer.train_steps": 50})
    cfg.model_dir = "runs/x"
    result = train(cfg)   # {"loss", "eval_loss", "eval_perplexity", "tokens_per_s", "mfu", ...}

Fine-tuning: `from massivetext_tf.training.finetune import finetune` (same result dict plus
the task metrics).
"""
import importlib as _importlib

# Lazy (PEP 562): `import massivetext_tf.training.cli` (every command's --help) must not import
# TensorFlow, which the names below do.
_EXPORTS = {
    "config": ("massivetext_tf.training.config", None),
    "ExperimentConfig": ("massivetext_tf.training.config", "ExperimentConfig"),
    "load_config": ("massivetext_tf.training.config", "load_config"),
    "save_config": ("massivetext_tf.training.config", "save_config"),
    "Controller": ("massivetext_tf.training.controller", "Controller"),
    "NonFiniteError": ("massivetext_tf.training.controller", "NonFiniteError"),
    "Trainer": ("massivetext_tf.training.trainer", "Trainer"),
    "Task": ("massivetext_tf.training.task", "Task"),
    "PretrainTask": ("massivetext_tf.training.task", "PretrainTask"),
    "build_model": ("massivetext_tf.training.task", "build_model"),
    "train": ("massivetext_tf.training.train_lib", "train"),
    "get_strategy": ("massivetext_tf.training.strategy", "get_strategy"),
    "strategy_from_config": ("massivetext_tf.training.strategy", "from_config"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'massivetext_tf.training' has no attribute {name!r}")
    from massivetext_tf._tf import require_tensorflow

    require_tensorflow()  # without TensorFlow: one ImportError that names the extras to install
    module_name, attr = _EXPORTS[name]
    module = _importlib.import_module(module_name)
    return module if attr is None else getattr(module, attr)
