"""AdamW with Gopher's schedule: linear warmup from 1e-7, cosine decay by 10x.

Gradient all-reduce and global-norm clipping happen in the train step (trainer.py), once, on the
summed gradients: Keras clips per replica *before* its all-reduce, which is not a global norm
under a distribution strategy. The optimizer here therefore receives gradients that are already
all-reduced, clipped and unscaled, and must not all-reduce them again.
"""
from __future__ import annotations

import math

import keras

# Variables whose names contain one of these get no weight decay. Gopher decays neither norms
# nor biases; we also leave embeddings undecayed (the common choice for tied embeddings).
NO_DECAY_NAME_PARTS = ("norm", "bias", "embedding", "beta", "gamma", "scale")


@keras.saving.register_keras_serializable(package="massivetext_tf")
class WarmupCosineDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from `init_lr` to `peak_lr` over `warmup_steps`, then a cosine from
    `peak_lr` down to `final_fraction * peak_lr` at `warmup_steps + decay_steps`, constant after.

    Gopher: init_lr=1e-7, warmup_steps=1500, final_fraction=0.1 (decay by 10x).
    """

    def __init__(self, peak_lr, warmup_steps, decay_steps, init_lr=1e-7, final_fraction=0.1):
        self.peak_lr = float(peak_lr)
        self.warmup_steps = int(warmup_steps)
        self.decay_steps = int(decay_steps)
        self.init_lr = float(init_lr)
        self.final_fraction = float(final_fraction)

    def __call__(self, step):
        # keras.ops: the same schedule inside the TF step and the JAX step (runtime.backend).
        ops = keras.ops
        step = ops.cast(step, "float32")
        warm = float(max(self.warmup_steps, 1))
        warmup_lr = self.init_lr + (self.peak_lr - self.init_lr) * ops.minimum(step / warm, 1.0)
        progress = ops.clip(
            (step - self.warmup_steps) / float(max(self.decay_steps, 1)), 0.0, 1.0
        )
        cosine = 0.5 * (1.0 + ops.cos(math.pi * progress))
        decay_lr = self.peak_lr * (self.final_fraction + (1.0 - self.final_fraction) * cosine)
        return ops.where(step < self.warmup_steps, warmup_lr, decay_lr)

    def get_config(self):
        return {
            "peak_lr": self.peak_lr,
            "warmup_steps": self.warmup_steps,
            "decay_steps": self.decay_steps,
            "init_lr": self.init_lr,
            "final_fraction": self.final_fraction,
        }


class _PreReducedMixin:
    """Gradients arrive already all-reduced (see module docstring): skip Keras' own all-reduce."""

    def _all_reduce_sum_gradients(self, grads_and_vars):
        return list(grads_and_vars)


@keras.saving.register_keras_serializable(package="massivetext_tf")
class AdamW(_PreReducedMixin, keras.optimizers.AdamW):
    pass


def no_decay(variable) -> bool:
    """True for variables that get no weight decay: rank <= 1 (norm scales, biases) or a name
    that marks a norm, bias or embedding."""
    path = (getattr(variable, "path", None) or variable.name).lower()
    return len(variable.shape) <= 1 or any(p in path for p in NO_DECAY_NAME_PARTS)


def build_optimizer(cfg, *, train_steps: int, model=None, loss_scale: bool = False):
    """AdamW (optionally inside a LossScaleOptimizer) from an `OptimizerConfig`.

    `decay_steps` defaults to `train_steps - warmup_steps`. No clipping is configured on the
    Keras optimizer: the train step clips the all-reduced gradients by global norm.
    """
    decay_steps = cfg.decay_steps or max(train_steps - cfg.warmup_steps, 1)
    schedule = WarmupCosineDecay(
        cfg.peak_lr, cfg.warmup_steps, decay_steps, cfg.init_lr, cfg.final_lr_fraction
    )
    opt = AdamW(
        learning_rate=schedule,
        weight_decay=cfg.weight_decay,
        beta_1=cfg.beta_1,
        beta_2=cfg.beta_2,
        epsilon=cfg.epsilon,
    )
    if model is not None and cfg.weight_decay:
        opt.exclude_from_weight_decay(
            var_list=[v for v in model.trainable_variables if no_decay(v)]
        )
    if loss_scale:
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt


def inner_optimizer(opt):
    return getattr(opt, "inner_optimizer", opt)


def current_lr(opt) -> float:
    inner = inner_optimizer(opt)
    lr = inner.learning_rate
    return float(lr.numpy() if hasattr(lr, "numpy") else lr)
