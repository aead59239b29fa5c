"""Where the training loop's names used to live, kept so existing imports keep working.

The loop is now three parts, as in TF Model Garden: `training/task.py` (model, inputs, loss,
metrics), `training/trainer.py` (state and compiled programs) and `training/controller.py`
(cadence: log, evaluate, checkpoint, preemption, non-finite policy); `train` is in
`training/train_lib.py`.
"""
from massivetext_tf.training.controller import Controller, NonFiniteError  # noqa: F401
from massivetext_tf.training.task import (  # noqa: F401
    POLICIES, PretrainTask, Task, build_model, is_preset_dir, model_input_keys, set_remat,
)
from massivetext_tf.training.train_lib import train  # noqa: F401
from massivetext_tf.training.trainer import LoopOutput, Trainer  # noqa: F401
