"""The loop in-process: XLA in bf16, loss definition, accumulation, non-finite handling,
checkpoint fallback, metrics files."""
import math

import numpy as np
import pytest
import tensorflow as tf

from massivetext_tf.training import config as C
from massivetext_tf.training import data as data_lib
from massivetext_tf.training.controller import NonFiniteError
from massivetext_tf.training.train_lib import train
from massivetext_tf.training.trainer import Trainer
from massivetext_tf.training.metrics import read_metrics


def make(cfg_dict, **kw):
    return Trainer(C.from_dict(cfg_dict), **kw)


def test_full_step_compiles_with_xla_in_bf16_with_static_shapes(tiny):
    t = make(tiny(runtime={"mixed_precision": "bfloat16", "train_steps": 4, "progress": False}))
    assert t.use_xla
    batch = next(iter(data_lib.synthetic_lm_dataset(32, 8, vocabulary_size=256)))
    hlo = t.compiled_step.experimental_get_compiler_ir(batch)(stage="hlo")
    assert "bf16[8,32,64]" in hlo  # activations in bf16, static batch x length x width
    assert "f32[256,64]" not in hlo or "f32[1024,64]" in hlo  # master weights stay float32
    assert all(v.dtype == "float32" for v in t.model.trainable_variables)
    grads = [tf.zeros(v.shape, v.dtype) for v in t.model.trainable_variables]
    update = t.compiled_update.experimental_get_compiler_ir(grads, tf.constant(1.0))(stage="hlo")
    assert "f32[256,64]" in update  # the AdamW update of the float32 master weights, in XLA
    out = t.train_steps(4)
    assert out.steps_done == 4 and np.all(np.isfinite(out.losses))
    assert int(t.step.numpy()) == 4 and int(t.optimizer.iterations.numpy()) == 4


def test_loss_is_mean_over_global_weighted_tokens_and_accumulation_matches(tiny):
    x, y, w = next(iter(data_lib.synthetic_lm_dataset(32, 8, vocabulary_size=256)))
    w = w.numpy()
    w[:, 20:] = 0.0  # padding must not count
    w[0, :] = 0.0
    ds = tf.data.Dataset.from_tensors((x, y, tf.constant(w))).repeat()
    t2 = make(tiny(), train_input_fn=lambda ctx: ds)
    logits = t2.model(t2._model_inputs(x)).numpy().astype(np.float64)
    logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - logits.max(-1, keepdims=True)
    nll = -np.take_along_axis(logp, y.numpy()[..., None], -1)[..., 0]
    expected = (nll * w).sum() / w.sum()
    assert t2.train_steps(1).losses[0] == pytest.approx(expected, rel=1e-5)

    h1 = train(C.from_dict(tiny(runtime={"train_steps": 8})))["history"]
    cfg = tiny(runtime={"train_steps": 8}, optimizer={"accumulation_steps": 4})
    cfg["model_dir"] += "_acc"
    h4 = train(C.from_dict(cfg))["history"]
    assert len(h1) == len(h4) == 8
    np.testing.assert_allclose(h1, h4, rtol=2e-5)
    assert h1[-1] < h1[0]


def poisoned(bad_step, **kw):
    """Synthetic batches whose `bad_step`-th batch has NaN weights."""
    def fn(ctx):
        ds = data_lib.synthetic_lm_dataset(32, 8, vocabulary_size=256)
        def poison(i, b):
            x, y, w = b
            return x, y, tf.where(i == bad_step, w * np.nan, w)
        return ds.enumerate().map(poison)
    return fn


def test_nonfinite_stop_checkpoints_the_last_good_state(tiny):
    cfg = tiny(runtime={"train_steps": 12, "on_nonfinite": "stop"})
    t = make(cfg, train_input_fn=poisoned(5))
    with pytest.raises(NonFiniteError, match=r"non-finite loss or gradient at step 6.*last good state \(step 5, verified\)"):
        t.fit()
    assert int(t.step.numpy()) == 5
    reader = tf.train.load_checkpoint(t.checkpointer.latest)
    assert t.checkpointer.latest.endswith("ckpt-5")
    for v in t.model.trainable_variables:
        assert np.all(np.isfinite(v.numpy()))
    # The checkpoint holds exactly the in-memory last good weights.
    restored = make(cfg, train_input_fn=poisoned(5))
    assert restored.restore() == 5
    for a, b in zip(t.model.weights, restored.model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_nonfinite_skip_drops_the_step_and_goes_on(tiny):
    cfg = tiny(runtime={"train_steps": 12, "on_nonfinite": "skip", "log_every": 4})
    t = make(cfg, train_input_fn=poisoned(5))
    result = t.fit()
    assert result["status"] == "completed" and result["step"] == 12
    assert math.isnan(result["history"][5]) and np.isfinite(np.delete(result["history"], 5)).all()
    assert int(t.optimizer.iterations.numpy()) == 11  # one update skipped
    assert all(np.all(np.isfinite(v.numpy())) for v in t.model.weights)
    lines = read_metrics(cfg["model_dir"])
    assert [l.get("skipped_steps") for l in lines if "learning_rate" in l] == [None, 1, None]


def test_nonfinite_weights_never_reach_a_checkpoint_even_in_skip_mode(tiny):
    cfg = tiny(runtime={"train_steps": 8, "on_nonfinite": "skip", "steps_per_loop": 2,
                        "checkpoint_every": 4, "eval_steps": 1})
    t = make(cfg)
    t.train_steps(2)
    v = t.model.trainable_variables[0]
    v.assign(v * np.nan)  # as if an update had overflowed: skipping steps cannot fix this
    with pytest.raises(NonFiniteError, match=r"weights became non-finite between step 2 and "
                                             r"step 4.*no good checkpoint") as info:
        t.fit()
    assert info.value.checkpoint is None and info.value.good_step == 0
    assert t.checkpointer.checkpoints == []  # the step-4 boundary saved nothing


def test_restore_falls_back_when_the_latest_checkpoint_is_corrupt(tiny):
    cfg = tiny(runtime={"train_steps": 8, "checkpoint_every": 4, "keep_checkpoints": 3})
    t = make(cfg)
    t.fit()
    assert [p.rsplit("-", 1)[1] for p in t.checkpointer.manager.checkpoints] == ["4", "8"]
    data_file = t.checkpointer.latest + ".data-00000-of-00001"
    with open(data_file, "r+b") as f:
        f.truncate(100)
    t2 = make(cfg)
    assert t2.restore() == 4
    ref = tf.train.load_checkpoint(t.checkpointer.manager.checkpoints[0])
    emb = [v for v in t2.model.weights if "token_embedding" in v.path][0]
    key = [k for k, shape in ref.get_variable_to_shape_map().items()
           if k.startswith("optimizer/_trainable_variables/") and shape == [1024, 64]][0]
    np.testing.assert_array_equal(emb.numpy(), ref.get_tensor(key))


def test_metrics_tensorboard_config_and_preset(tiny):
    cfg = tiny(runtime={"train_steps": 8, "log_every": 4, "eval_every": 4, "tensorboard": True,
                        "save_preset": True})
    result = train(C.from_dict(cfg))
    d = cfg["model_dir"]
    lines = read_metrics(d)
    train_lines = [l for l in lines if "learning_rate" in l]
    eval_lines = [l for l in lines if "perplexity" in l]
    assert [l["step"] for l in train_lines] == [4, 8]
    for l in train_lines:
        assert {"loss", "learning_rate", "tokens_per_s", "grad_norm", "mfu"} <= set(l)
        assert l["tokens_per_s"] > 0 and 0 < l["mfu"] < 1
    assert [l["step"] for l in eval_lines] == [4, 8]
    assert eval_lines[-1]["perplexity"] == pytest.approx(math.exp(eval_lines[-1]["loss"]))
    assert result["eval_loss"] == pytest.approx(eval_lines[-1]["loss"])
    assert C.load_config(f"{d}/config.yaml") == C.from_dict(cfg)
    tags = set()
    for path in tf.io.gfile.glob(f"{d}/tensorboard/events*"):
        for e in tf.compat.v1.train.summary_iterator(path):
            tags |= {v.tag for v in e.summary.value}
    assert {"train/loss", "train/learning_rate", "train/grad_norm", "train/tokens_per_s",
            "train/mfu", "eval/perplexity", "config"} <= tags
    assert tf.io.gfile.exists(f"{d}/preset/config.json")
    assert tf.io.gfile.exists(f"{d}/preset/model.weights.h5")


def test_encoder_decoder_span_corruption_pretraining_runs(tiny):
    cfg = tiny(model={"preset": "t5_tiny", "overrides": {}},
               runtime={"train_steps": 8, "eval_steps": 1})
    cfg["data"].update(objective="span_corruption", decoder_sequence_length=8)
    result = train(C.from_dict(cfg))
    assert result["step"] == 8 and result["xla"]
    assert all(np.isfinite(result["history"])) and result["history"][-1] < result["history"][0]
    assert np.isfinite(result["eval_loss"])
