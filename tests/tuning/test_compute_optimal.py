"""Chinchilla compute-optimal suggestions, the nearest zoo shape, bounding the search space."""
import json
import math
import subprocess
import sys

import pytest

from massivetext_tf import models
from massivetext_tf.training import config as config_lib
from massivetext_tf.tuning import compute_optimal as co
from massivetext_tf.tuning import space as space_lib

from conftest import REPO


def tiny_base(**over):
    cfg = config_lib.from_dict({"model": {"preset": "gopher_tiny"},
                                "data": {"dir": "synthetic", "sequence_length": 32,
                                         "global_batch_size": 8}})
    for k, v in over.items():
        config_lib.set_value(cfg, k, v)
    return cfg


def test_chinchilla_budget_gives_70b_params_and_1_4t_tokens():
    s = co.suggest(5.76e23)
    assert s["params"] == pytest.approx(70e9, rel=0.10)
    assert s["tokens"] == pytest.approx(1.4e12, rel=0.10)
    assert s["tokens"] / s["params"] == pytest.approx(20.0)
    assert 6 * s["params"] * s["tokens"] == pytest.approx(5.76e23, rel=1e-9)
    assert s["nearest_preset"]["preset"] == "chinchilla_70b"
    shape = s["shape"]
    assert shape["params"] == pytest.approx(s["params"], rel=0.05)
    assert shape["params"] == models.count_params(
        dict(models.preset_config("gopher_tiny"), **{k: v for k, v in shape.items() if k != "params"}))


def test_family_members_are_found_from_their_own_budget():
    # The budget that makes a preset compute-optimal suggests that preset.
    for name in ("gopher_44m", "gopher_417m", "gopher_7_1b"):
        n = models.count_params(name)
        assert co.nearest_preset(co.optimal_params_tokens(120 * n * n)[0])["preset"] == name


def test_small_budget_shape_matches_the_base_vocabulary():
    cfg = tiny_base()
    s = co.suggest(1e12, base_cfg=cfg)
    assert s["params"] == pytest.approx(math.sqrt(1e12 / 120))
    shape = s["shape"]
    assert 0.5 < shape["params"] / s["params"] < 2.0
    assert shape["hidden_dim"] == shape["num_heads"] * shape["key_value_dim"]
    assert shape["intermediate_dim"] == 4 * shape["hidden_dim"]
    assert s["train_steps"] == math.ceil(s["tokens"] / (8 * 32))
    with pytest.raises(ValueError, match="--flop-budget"):
        co.suggest(0)


def test_bound_space_keeps_architectures_within_the_factor():
    space = space_lib.parse_space({"model.num_layers": "int:1:4",
                                   "model.hidden_dim": "choice:32,64,256,1024",
                                   "optimizer.peak_lr": "float:1e-4:1e-2:log"})
    cfg = tiny_base()
    new, info = co.bound_space(space, 1e12, cfg, factor=3)
    n = info["params"]
    assert new["optimizer.peak_lr"] is space["optimizer.peak_lr"]
    kept_d = new["model.hidden_dim"].values
    assert 1024 not in kept_d and (32 in kept_d or 64 in kept_d)
    for d in kept_d:  # every kept width has some depth within the factor
        counts = [models.count_params("gopher_tiny", num_layers=l, hidden_dim=d,
                                      key_value_dim=16, intermediate_dim=4 * d)
                  for l in range(1, 5)]
        assert any(n / 3 <= c <= 3 * n for c in counts), d
    with pytest.raises(ValueError, match=r"--flop-budget 1e\+20: no architecture .* nearest"):
        co.bound_space(space, 1e20, cfg, factor=2)


def test_tune_flop_budget_flag_bounds_the_space(tmp_path, capsys):
    from massivetext_tf.tuning import cli

    tune_tiny = str(REPO / "massivetext_tf" / "configs" / "tune_tiny.yaml")
    # 1e20 FLOPs wants ~1B parameters: nothing in the tiny space is within a factor 4.
    code = cli.main(["--config", tune_tiny, "--project-dir", str(tmp_path / "p"),
                     "--flop-budget", "1e20"])
    assert code == 2
    err = capsys.readouterr().err
    assert "--flop-budget 1e+20: no architecture in the search space" in err
    assert not (tmp_path / "p").exists()  # refused before the project was created
    cfg, space, _ = cli.load(tune_tiny)
    # N = 50k, factor 1.5: a 1024-token embedding of width 64 alone is 65k, plus its layers.
    new, info = co.bound_space(space, 120 * 50e3 ** 2, cfg, factor=1.5)
    assert info["params"] == pytest.approx(50e3)
    assert space["model.hidden_dim"].values == [32, 64]
    assert new["model.hidden_dim"].values == [32]
    assert new["optimizer.peak_lr"] is space["optimizer.peak_lr"]


@pytest.mark.slow
def test_suggested_tiny_config_trains(tmp_path):
    out = tmp_path / "optimal.yaml"
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "compute_optimal.py"), "--flop-budget", "1e12",
         "--config", str(REPO / "massivetext_tf" / "configs" / "gopher_tiny.yaml"),
         "--write-config", str(out), "--model-dir", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    s = json.loads(proc.stdout.strip().splitlines()[-1])
    cfg = config_lib.load_config(str(out))
    assert cfg.model.overrides["hidden_dim"] == s["shape"]["hidden_dim"]
    assert cfg.trainer.train_steps == s["train_steps"]  # D tokens at the config's batch shape
    proc = subprocess.run(
        [sys.executable, str(REPO / "trainers" / "pretrain.py"), "--config", str(out),
         "--train-steps", "3", "--set", "runtime.jit_compile=false",
         "--set", "trainer.eval_steps=1", "--set", "runtime.peak_flops_per_device=1e11"],
        capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["status"] == "completed" and res["step"] == 3
    assert res["num_params"] == s["shape"]["params"]
    assert math.isfinite(res["eval_loss"])
