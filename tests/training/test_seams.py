"""The Task / Trainer / Controller seams: a custom Task trains with the same Trainer and
Controller, and the Controller's named steps run at the configured cadence."""
import numpy as np
import pytest
import tensorflow as tf

from massivetext_tf.training import config as C
from massivetext_tf.training import data as data_lib
from massivetext_tf.training.controller import Controller, next_boundary
from massivetext_tf.training.task import Task
from massivetext_tf.training.trainer import Trainer


def test_next_boundary_stops_at_every_cadence_and_the_host_loop_length():
    t = C.TrainerConfig(train_steps=30, steps_per_loop=10, log_every=4, checkpoint_every=25,
                        eval_every=0)
    steps, step = [], 0
    while step < t.train_steps:
        step = next_boundary(step, t)
        steps.append(step)
    assert steps == [4, 8, 12, 16, 20, 24, 25, 28, 30]
    t = C.TrainerConfig(train_steps=30, steps_per_loop=7, log_every=100, checkpoint_every=100,
                        eval_every=15)
    assert [next_boundary(s, t) for s in (0, 7, 14, 15, 28)] == [7, 14, 15, 22, 30]


class DoubledLossTask(Task):
    """Synthetic next-token data, twice the usual loss, and a metric of its own."""

    def build_inputs(self, split, *, training):
        d = self.cfg.data
        return lambda ctx: data_lib.synthetic_lm_dataset(
            d.sequence_length, ctx.get_per_replica_batch_size(d.global_batch_size),
            vocabulary_size=d.vocabulary_size, seed=0 if training else 1, input_context=ctx)

    def loss_sum(self, model, x, y, w, *, training):
        return 2.0 * super().loss_sum(model, x, y, w, training=training)

    def metrics(self, trainer):
        return {"doubled": 1.0}


class RecordingController(Controller):
    def __init__(self, trainer):
        super().__init__(trainer)
        self.calls = []

    def maybe_checkpoint(self, step):
        self.calls.append(("maybe_checkpoint", step))
        super().maybe_checkpoint(step)

    def maybe_evaluate(self, step):
        self.calls.append(("maybe_evaluate", step))
        super().maybe_evaluate(step)

    def finish(self, step):
        self.calls.append(("finish", step))
        super().finish(step)


def test_a_custom_task_trains_with_the_same_trainer_and_controller(tiny):
    cfg = C.from_dict(tiny(trainer={"train_steps": 4, "steps_per_loop": 2, "log_every": 2,
                                    "checkpoint_every": 2, "eval_every": 2, "eval_steps": 1}))
    task = DoubledLossTask(cfg)
    trainer = Trainer(cfg, task=task)
    assert trainer.task is task and task.model is trainer.model  # built once, by the task

    # The trainer's compiled evaluation uses the task's loss: twice the per-token mean.
    x, y, w = next(iter(task.build_inputs("eval", training=False)(tf.distribute.InputContext())))
    logits = tf.cast(trainer.model(trainer._model_inputs(x)), tf.float32)
    nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
    expected = 2.0 * float(tf.reduce_sum(nll * w) / tf.reduce_sum(w))
    assert trainer.evaluate(1)["loss"] == pytest.approx(expected, rel=1e-5)

    controller = RecordingController(trainer)
    result = controller.run()
    assert result["status"] == "completed" and result["step"] == 4
    assert result["eval_doubled"] == 1.0  # the task's metrics join the eval line
    assert np.all(np.isfinite(result["history"])) and len(result["history"]) == 4
    assert controller.calls == [("maybe_checkpoint", 2), ("maybe_evaluate", 2),
                                ("maybe_checkpoint", 4), ("maybe_evaluate", 4), ("finish", 4)]
    assert [p.rsplit("-", 1)[1] for p in trainer.checkpointer.checkpoints] == ["2", "4"]
