"""The pretraining entry point: `train(cfg)` = `PretrainTask` -> `Trainer` -> `Controller`
(Model Garden's `train_lib`). Fine-tuning's is `training.finetune.finetune(cfg)`."""
from __future__ import annotations

from massivetext_tf.training.task import PretrainTask
from massivetext_tf.training.trainer import Trainer


def train(cfg, *, strategy=None, train_input_fn=None, eval_input_fn=None, model_fn=None) -> dict:
    """Trains `cfg` (an `ExperimentConfig`) and returns the final metrics:

    `{"status": "completed"|"preempted", "step", "loss", "learning_rate", "grad_norm",
    "tokens_per_s", "mfu", "eval_loss", "eval_perplexity", ["eval_bits_per_byte"], "history",
    "model_dir", ...}`. Raises `NonFiniteError` on a non-finite step with on_nonfinite=stop.
    `strategy` replaces the one of `cfg.runtime`; the functions replace the task's inputs and
    model (see `PretrainTask`). The tasks of `trainer.eval_tasks` are checked first and run
    with every evaluation (`TASK/METRIC` in the eval metrics; `training.evaluator`).
    """
    if cfg.runtime.backend == "jax":
        # keras.distribution on JAX (training/jax_trainer.py); the same task and cadence.
        from massivetext_tf.training.jax_trainer import JaxTrainer

        if strategy is not None:
            raise ValueError("runtime.backend jax: no tf.distribute strategy (runtime.mesh)")
        task = PretrainTask(cfg, train_input_fn=train_input_fn, eval_input_fn=eval_input_fn,
                            model_fn=model_fn)
        return JaxTrainer(cfg, task=task).fit()
    from massivetext_tf.training.evaluator import load_eval_tasks

    task = PretrainTask(cfg, eval_tasks=load_eval_tasks(cfg), train_input_fn=train_input_fn,
                        eval_input_fn=eval_input_fn, model_fn=model_fn)
    return Trainer(cfg, task=task, strategy=strategy).fit()
