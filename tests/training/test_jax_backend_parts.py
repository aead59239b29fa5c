"""The pieces of the JAX training path that run without JAX devices: config checks, choosing
the Keras backend, the layout rules over the zoo's real weight paths, and the array
checkpointer's save / restore / kill / fallback behaviour (on real files). The training itself
is tests/training/test_sharded.py."""
import argparse
import json
import os

import keras
import numpy as np
import pytest

from massivetext_tf.training import backend, config, sharding
from massivetext_tf.training.jax_checkpoint import ArrayCheckpointer
from massivetext_tf.training.jax_trainer import StepCounter


def _cfg(**runtime):
    cfg = config.load_config(None)
    for k, v in runtime.items():
        setattr(cfg.runtime, k, v)
    return cfg


# -- config ------------------------------------------------------------------------------------

@pytest.mark.parametrize("runtime, field, words", [
    (dict(strategy="model_parallel"), "runtime.strategy", "--backend jax"),
    (dict(backend="jax", strategy="mirrored"), "runtime.strategy", "one_device or model_parallel"),
    (dict(backend="jax", mixed_precision="float16"), "runtime.mixed_precision", "bfloat16"),
    (dict(backend="jax", mesh="data=2,model=4"), "runtime.mesh", "model_parallel"),
    (dict(backend="jax", strategy="model_parallel", mesh="data=2,modle=4"), "runtime.mesh",
     "data=D,model=M"),
    (dict(backend="jax", strategy="model_parallel", mesh="data=0,model=4"), "runtime.mesh",
     "positive"),
    (dict(backend="pytorch"), "runtime.backend", "tensorflow, jax"),
])
def test_config_refuses_what_the_backend_cannot_run(runtime, field, words):
    with pytest.raises(ValueError) as e:
        config.validate(_cfg(**runtime))
    assert str(e.value).startswith(field) and words in str(e.value)


def test_mesh_parsing():
    assert config.parse_mesh("data=2,model=4") == {"data": 2, "model": 4}
    assert config.parse_mesh("model=8") == {"data": 1, "model": 8}
    assert config.parse_mesh(" data=4 , model=2 ") == {"data": 4, "model": 2}
    config.validate(_cfg(backend="jax", strategy="model_parallel", mesh="data=2,model=4"))
    rt = _cfg(backend="jax", strategy="model_parallel", mesh="data=4,model=4").runtime
    with pytest.raises(ValueError, match="runtime.mesh: data=4,model=4 needs 16 devices; this "
                                         "process sees 8 .*xla_force_host_platform_device_count"):
        sharding.mesh_shape(rt, 8)
    assert sharding.mesh_shape(_cfg(strategy="model_parallel").runtime, 8) == \
        {"data": 1, "model": 8}


# -- choosing the backend ----------------------------------------------------------------------

def _args(**kw):
    base = dict(backend=None, overrides=[], config=None)
    base.update(kw)
    return argparse.Namespace(**base)


def test_the_requested_backend_is_found_without_importing_keras(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("runtime:\n  backend: jax\n")
    assert backend.requested(_args()) == "tensorflow"
    assert backend.requested(_args(config=str(cfg))) == "jax"
    assert backend.requested(_args(config=str(cfg), overrides=["runtime.backend=tensorflow"])) \
        == "tensorflow"
    assert backend.requested(_args(config=str(cfg), backend="tensorflow",
                                   overrides=["runtime.backend=jax"])) == "tensorflow"
    assert backend.requested(_args(config="gopher_tiny")) == "tensorflow"  # a bundled name
    assert backend.requested(_args(config="no/such.yaml")) == "tensorflow"  # load reports it


def test_a_process_on_another_backend_is_refused_with_the_fix():
    assert keras.backend.backend() == "tensorflow"  # this test process
    with pytest.raises(ValueError, match=r"runtime.backend: 'jax' needs Keras on the jax backend"
                                         r".*fresh process.*--backend jax"):
        backend.select("jax")
    backend.select("tensorflow")  # the one it runs: fine
    with pytest.raises(ValueError, match="the config says 'jax'.*pass --backend jax"):
        backend.check_loaded("jax")


def test_train_command_exits_2_naming_the_backend(capsys, tmp_path):
    from massivetext_tf.cli import train

    code = train.main(["--config", "gopher_tiny", "--backend", "jax", "--strategy",
                       "model_parallel", "--model-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: runtime.backend") and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # nothing written


# -- layouts -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def zoo_paths():
    from massivetext_tf import models

    paths = {}
    for preset, overrides in (("gopher_tiny", {}), ("t5_tiny", {}),
                              ("t5_tiny", {"tie_word_embeddings": False})):
        model = models.build(preset, **overrides)
        for v in model.weights:
            paths[v.path] = tuple(v.shape)
    return paths


def test_every_weight_matches_at_most_one_rule(zoo_paths):
    import re

    for path in zoo_paths:  # LayoutMap refuses a path two patterns match
        hits = [p for p, _ in sharding.LAYOUT_RULES if re.fullmatch(p, path)]
        assert len(hits) <= 1, (path, hits)


def test_layouts_split_heads_feed_forward_and_vocabulary(zoo_paths):
    expected = {
        "token_embedding/embeddings": ("model", None),
        "token_embedding/reverse_embeddings": (None, "model"),
        "transformer_layer_0/attention/query/kernel": (None, "model"),
        "transformer_layer_1/attention/value/kernel": (None, "model"),
        "transformer_layer_0/attention/attention_output/kernel": ("model", None),
        "transformer_layer_0/attention/relative_kernel": (None, "model", None),
        "transformer_layer_0/attention/content_bias": ("model", None),
        "transformer_layer_0/feed_forward/input_dense/kernel": (None, "model"),
        "transformer_layer_0/feed_forward/output_dense/kernel": ("model", None),
        "decoder_layer_0/cross_attention/key/kernel": (None, "model"),
        "encoder_position_bias/embeddings": (None, "model"),
        "transformer_layer_0/attention_norm/scale": None,
        "final_norm/scale": None,
        "decoder_final_norm/scale": None,
    }
    for path, layout in expected.items():
        assert path in zoo_paths, path
        assert sharding.rule_for(path) == layout, path
    for path, shape in zoo_paths.items():  # every layout names each dimension once
        layout = sharding.rule_for(path)
        if layout is not None:
            assert len(layout) == len(shape) and list(layout).count("model") == 1, path


def test_a_model_axis_that_does_not_divide_is_named():
    class W:
        def __init__(self, path, shape):
            self.path, self.shape = path, shape

    class M:
        weights = [W("token_embedding/embeddings", (1000, 64)),
                   W("transformer_layer_0/attention/query/kernel", (64, 64))]

    sharding.check_divisible(M, {"data": 1, "model": 4})
    with pytest.raises(ValueError, match=r"runtime.mesh: model=16 does not divide "
                                         r"token_embedding/embeddings \(1000, 64\)"):
        sharding.check_divisible(M, {"data": 1, "model": 16})


# -- checkpoints -------------------------------------------------------------------------------

def _state(seed):
    rng = np.random.default_rng(seed)
    return [keras.Variable(rng.normal(size=(4, 3)).astype("float32"), name="w"),
            keras.Variable(rng.normal(size=(3,)).astype("float32"), name="b")]


def _ckpt(root, variables, step, keep=3):
    return ArrayCheckpointer(str(root), max_to_keep=keep, groups={"trainable": variables},
                             step=step)


def test_checkpoint_round_trip_keeps_the_newest(tmp_path):
    vs, step = _state(0), StepCounter()
    ck = _ckpt(tmp_path, vs, step, keep=2)
    saved = {}
    for s in (4, 8, 12):
        for v in vs:
            v.assign(np.asarray(v.value) + 1.0)
        saved[s] = [np.asarray(v.value).copy() for v in vs]
        ck.save(s)
    assert [p.rsplit("/", 1)[1] for p in ck.checkpoints] == ["ckpt-8", "ckpt-12"]
    assert not (tmp_path / "checkpoints" / "ckpt-4").exists()  # beyond max_to_keep
    fresh, step2 = _state(1), StepCounter()
    assert _ckpt(tmp_path, fresh, step2).restore_latest().endswith("ckpt-12")
    assert int(step2.numpy()) == 12
    for v, want in zip(fresh, saved[12]):
        np.testing.assert_array_equal(np.asarray(v.value), want)


def test_a_save_killed_before_the_index_is_ignored(tmp_path):
    vs, step = _state(0), StepCounter()
    ck = _ckpt(tmp_path, vs, step)
    ck.save(4)
    good = [np.asarray(v.value).copy() for v in vs]
    # A kill mid-save: ckpt-8's arrays partly written, the index never rewritten.
    partial = tmp_path / "checkpoints" / "ckpt-8"
    partial.mkdir()
    (partial / "00000.npy").write_bytes(b"\x93NUMPY truncated")
    fresh, step2 = _state(1), StepCounter()
    assert _ckpt(tmp_path, fresh, step2).restore_latest().endswith("ckpt-4")
    assert int(step2.numpy()) == 4
    np.testing.assert_array_equal(np.asarray(fresh[0].value), good[0])
    ck.save(8)  # the next save of that step overwrites the partial one
    assert json.loads((tmp_path / "checkpoints" / "checkpoint.json").read_text())[
        "checkpoints"] == ["ckpt-4", "ckpt-8"]


def test_unloadable_or_bad_checkpoints_fall_back_and_are_kept(tmp_path):
    vs, step = _state(0), StepCounter()
    ck = _ckpt(tmp_path, vs, step)
    ck.save(4)
    ck.save(8)
    (tmp_path / "checkpoints" / "ckpt-8" / "00001.npy").write_bytes(b"garbage")  # corrupt
    fresh, step2 = _state(1), StepCounter()
    ck2 = _ckpt(tmp_path, fresh, step2)
    assert ck2.restore_latest().endswith("ckpt-4")
    # verify() refusing a state quarantines it (kept under nonfinite/), the previous is tried.
    ck.save(12)
    seen = []

    def verify():
        seen.append(int(step2.numpy()))
        return "weights not finite" if int(step2.numpy()) == 12 else None

    assert ck2.restore_latest(verify=verify).endswith("ckpt-4") and seen[0] == 12
    assert (tmp_path / "checkpoints" / "nonfinite" / "ckpt-12" / "manifest.json").exists()
    assert "ckpt-12" not in json.dumps(ck2.checkpoints)


def test_a_checkpoint_of_another_model_is_refused_by_name(tmp_path):
    vs, step = _state(0), StepCounter()
    _ckpt(tmp_path, vs, step).save(4)
    other = [keras.Variable(np.zeros((5, 3), "float32"), name="w"),
             keras.Variable(np.zeros((3,), "float32"), name="b")]
    with pytest.raises(ValueError, match=r"ckpt-4/00000.npy: trainable/00000/w has shape "
                                         r"\(4, 3\), the model \(5, 3\)"):
        _ckpt(tmp_path, other, StepCounter()).restore(str(tmp_path / "checkpoints" / "ckpt-4"))
    with pytest.raises(ValueError, match="does not match this model"):
        _ckpt(tmp_path, other[:1], StepCounter()).restore(
            str(tmp_path / "checkpoints" / "ckpt-4"))
    assert os.path.exists(tmp_path / "checkpoints" / "checkpoint.json")
