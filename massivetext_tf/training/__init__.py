"""massivetext_tf.training: strategy factory, XLA-compiled distributed loop, AdamW with
warmup + cosine, checkpoints that survive preemption, metrics. See docs/training.md.

    from massivetext_tf.training import load_config, train
    cfg = load_config("massivetext_tf/configs/gopher_tiny.yaml", **{"runtime.train_steps": 50})
    cfg.model_dir = "runs/x"
    result = train(cfg)   # {"loss", "eval_loss", "eval_perplexity", "tokens_per_s", "mfu", ...}

Fine-tuning: `from massivetext_tf.training.finetune import finetune` (same result dict plus
the task metrics).
"""
from massivetext_tf.training import config
from massivetext_tf.training.config import ExperimentConfig, load_config, save_config
from massivetext_tf.training.loop import NonFiniteError, Trainer, build_model, train
from massivetext_tf.training.strategy import get_strategy

__all__ = [
    "ExperimentConfig", "NonFiniteError", "Trainer", "build_model", "config",
    "get_strategy", "load_config", "save_config", "train",
]
