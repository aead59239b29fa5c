"""massivetext_tf.training: strategy factory, XLA-compiled distributed loop, AdamW with
warmup + cosine, checkpoints that survive preemption, metrics. See docs/training.md.

    from massivetext_tf.training import load_config, train
    cfg = load_config("massivetext_tf/configs/gopher_tiny.yaml", **{"runtime.train_steps": 50})
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
    "NonFiniteError": ("massivetext_tf.training.loop", "NonFiniteError"),
    "Trainer": ("massivetext_tf.training.loop", "Trainer"),
    "build_model": ("massivetext_tf.training.loop", "build_model"),
    "train": ("massivetext_tf.training.loop", "train"),
    "get_strategy": ("massivetext_tf.training.strategy", "get_strategy"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'massivetext_tf.training' has no attribute {name!r}")
    module_name, attr = _EXPORTS[name]
    module = _importlib.import_module(module_name)
    return module if attr is None else getattr(module, attr)
