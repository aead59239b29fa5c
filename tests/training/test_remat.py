"""runtime.remat=block: the same loss and gradients as without it, under XLA and under the
strategies, with each block really recomputed in the backward pass."""
import json
import subprocess

import numpy as np
import pytest
import tensorflow as tf

from massivetext_tf import models
from massivetext_tf.training import config as C
from massivetext_tf.training import data as data_lib
from massivetext_tf.training import local_cluster
from massivetext_tf.training.train_lib import train
from massivetext_tf.training.trainer import Trainer
from training_helpers import HERE, PY, env, parse_result, run_result, tiny_config


def _grads(trainer, batch):
    loss, norm, finite, grads = trainer.compiled_step(batch)
    return float(loss), float(norm), [tf.convert_to_tensor(g).numpy() for g in grads]


def test_block_remat_gives_the_same_loss_and_gradients_under_xla(tiny):
    batch = next(iter(data_lib.synthetic_lm_dataset(32, 8, vocabulary_size=256)))
    out = {}
    for remat in ("none", "block"):
        cfg = tiny(model={"preset": "gopher_tiny", "overrides": {"num_layers": 2}},
                   runtime={"remat": remat})
        cfg["model_dir"] += remat
        t = Trainer(C.from_dict(cfg))
        assert t.use_xla and all(b.remat == (remat == "block")
                                 for b in t.model.backbone.transformer_layers)
        hlo = t.compiled_step.experimental_get_compiler_ir(batch)(stage="optimized_hlo")
        out[remat] = _grads(t, batch), hlo.count(" dot(")
    (l0, n0, g0), dots0 = out["none"]
    (l1, n1, g1), dots1 = out["block"]
    # The recomputed forward survives XLA's optimizer (it is not merged back into the forward
    # pass): more matmuls in the compiled gradient program.
    assert dots1 > dots0
    assert l1 == pytest.approx(l0, rel=1e-6) and n1 == pytest.approx(n0, rel=1e-5)
    assert len(g0) == len(g1)
    for a, b in zip(g1, g0):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6 * np.abs(b).max())


def test_encoder_decoder_block_remat_gradients_match_under_xla():
    model = models.build("t5_tiny")
    ids = lambda seed: tf.random.stateless_uniform([2, 12], [seed, 1], 3, 100, tf.int32)
    mask = tf.constant([[1] * 12, [1] * 9 + [0] * 3], tf.int32)
    x = {"encoder_token_ids": ids(1), "encoder_padding_mask": mask,
         "decoder_token_ids": ids(2), "decoder_padding_mask": mask}
    tvars = model.trainable_variables

    def loss_and_grads(x):
        with tf.GradientTape() as tape:
            logits = tf.cast(model(x, training=True), tf.float32)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(ids(3), logits))
        return loss, [tf.convert_to_tensor(g) for g in tape.gradient(loss, tvars)]

    results = {}
    for remat in ("none", "block"):
        model.backbone.set_remat(remat)
        loss, grads = tf.function(loss_and_grads, jit_compile=True)(x)
        results[remat] = float(loss), [g.numpy() for g in grads]
    assert results["block"][0] == pytest.approx(results["none"][0], rel=1e-6)
    # Gradients reach the encoder (through cross-attention) and the shared T5 bias tables.
    names = [v.path for v in tvars]
    assert any("encoder_position_bias" in n for n in names)
    for name, a, b in zip(names, results["block"][1], results["none"][1]):
        assert np.abs(b).max() > 0, name
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6 * np.abs(b).max(), err_msg=name)


def test_remat_refuses_what_it_cannot_do(tiny):
    with pytest.raises(ValueError, match=r"runtime.remat: 'all' is not one of none, block"):
        C.from_dict(tiny(runtime={"remat": "all"}))
    cfg = tiny(model={"preset": "gopher_tiny", "overrides": {"num_layers": 1, "dropout": 0.1}},
               runtime={"remat": "block"})
    with pytest.raises(ValueError, match=r"runtime.remat: 'block' needs model dropout 0 \(got 0.1\)"):
        Trainer(C.from_dict(cfg))
    cfg = tiny(model={"preset": "standin_gpt2"}, runtime={"remat": "block"})
    with pytest.raises(ValueError, match=r"runtime.remat: 'block' needs a massivetext_tf model"):
        Trainer(C.from_dict(cfg))
    # A default run leaves every block as it was.
    t = Trainer(C.from_dict(tiny()))
    assert t.cfg.runtime.remat == "none"
    assert not any(b.remat for b in t.model.backbone.transformer_layers)


@pytest.mark.slow
def test_block_remat_under_mirrored_strategy_gives_the_one_device_curve(tmp_path):
    """MirroredStrategy over 2 logical CPU devices (no XLA there) and one device (XLA), both
    with remat, against one device without it."""
    base = tiny_config(tmp_path / "plain", runtime={"train_steps": 8})
    plain = train(C.from_dict(base))["history"]
    cfg = tiny_config(tmp_path / "remat", runtime={"train_steps": 8, "remat": "block"})
    one, mirrored = run_result(dict(cfg, strategies=["one_device", "mirrored"]),
                               "--logical-cpus", "2")
    assert one["xla"] and mirrored["num_replicas"] == 2 and not mirrored["xla"]
    assert len(plain) == 8 and plain[-1] < plain[0]
    np.testing.assert_allclose(one["history"], plain, rtol=1e-5)
    np.testing.assert_allclose(mirrored["history"], plain, rtol=1e-5)


@pytest.mark.slow
def test_block_remat_under_multi_worker_mirrored(tmp_path):
    """Two worker processes (XLA forward/backward per worker, collectives beside it)."""
    plain = train(C.from_dict(tiny_config(tmp_path / "plain", runtime={"train_steps": 8})))
    cfg = tiny_config(tmp_path / "mw", runtime={"train_steps": 8, "remat": "block",
                                                "strategy": "multi_worker_mirrored"})
    outs = [open(tmp_path / f"w{i}.out", "w+") for i in range(2)]
    procs = local_cluster.launch([PY, str(HERE / "_run.py"), json.dumps(cfg)], 2, env=env(),
                                 stdout=lambda i: outs[i], stderr=subprocess.STDOUT)
    codes = local_cluster.wait_all(procs, timeout=240)
    for out, code in zip(outs, codes):
        out.flush()
        out.seek(0)
        result = parse_result(out.read(), code=code)
        assert result["num_replicas"] == 2 and result["xla"]
        np.testing.assert_allclose(result["history"], plain["history"], rtol=1e-5)
