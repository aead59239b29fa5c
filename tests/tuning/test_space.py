"""Search space parsing, flag overrides, hyperparameters -> experiment config (no training)."""
import math

import keras_tuner
import pytest

from massivetext_tf.training import config as config_lib
from massivetext_tf.tuning import cli
from massivetext_tf.tuning import hypermodel as hm_lib
from massivetext_tf.tuning import space as space_lib
from massivetext_tf.tuning.search import make_oracle

from conftest import REPO

TUNE_TINY = str(REPO / "massivetext_tf" / "configs" / "tune_tiny.yaml")


def base_cfg(**over):
    cfg = config_lib.from_dict({"model": {"preset": "gopher_tiny"},
                                "data": {"sequence_length": 32, "global_batch_size": 8}})
    for k, v in over.items():
        config_lib.set_value(cfg, k, v)
    return cfg


def hp_for(hm, **values):
    hp = keras_tuner.HyperParameters()
    hm.declare_hyperparameters(hp)
    hp.values.update(values)
    return hp


def test_yaml_and_short_forms_declare_keras_tuner_hyperparameters():
    space = space_lib.parse_space({
        "model.num_layers": {"type": "int", "min": 1, "max": 4, "step": 1},
        "model.hidden_dim": "choice:32,64,128",
        "optimizer.peak_lr": {"type": "float", "min": "1e-4", "max": 1e-2, "sampling": "log"},
        "model.position_encoding": ["relative", "rotary"],
        "optimizer.weight_decay": "float:0:0.1",
        "model.dropout": "fixed:0.0",
        "model.tie_word_embeddings": "bool",
    })
    hp = keras_tuner.HyperParameters()
    for spec in space.values():
        space_lib.declare(hp, spec)
    by_name = {h.name: h for h in hp.space}
    assert isinstance(by_name["model.num_layers"], keras_tuner.engine.hyperparameters.Int)
    assert (by_name["model.num_layers"].min_value, by_name["model.num_layers"].max_value) == (1, 4)
    assert by_name["model.hidden_dim"].values == [32, 64, 128]
    lr = by_name["optimizer.peak_lr"]
    assert lr.sampling == "log" and lr.min_value == pytest.approx(1e-4)  # "1e-4" from YAML
    assert by_name["model.position_encoding"].values == ["relative", "rotary"]
    assert isinstance(by_name["model.dropout"], keras_tuner.engine.hyperparameters.Fixed)
    assert isinstance(by_name["model.tie_word_embeddings"], keras_tuner.engine.hyperparameters.Boolean)
    # Log sampling really is log: the median of many samples is near the geometric mean.
    samples = sorted(lr.random_sample(seed) for seed in range(401))
    assert 0.5e-3 < samples[200] < 2e-3


@pytest.mark.parametrize("name,value,message", [
    ("model.num_layers", "int:4:1", "min 4 is larger than max 1"),
    ("optimizer.peak_lr", "float:0:1e-2:log", "log sampling needs min > 0"),
    ("model.hidden_dim", "range:1:2", "unknown kind 'range'"),
    ("model.num_layer", "int:1:2", "unknown model field 'num_layer'"),
    ("optimizer.peak_rate", "float:1e-4:1e-3", "unknown config field optimizer.peak_rate"),
    ("model.hidden_dim", {"type": "choice", "values": []}, "choice needs at least one value"),
    ("model.hidden_dim", {"type": "choice", "vals": [1]}, "unknown key 'vals'"),
    ("optimizer.warmup_fraction", "float:0:1.5", "warmup fraction must be in [0, 1)"),
    ("model.position_encoding", "choice:relative,1", "must all be numbers, strings or booleans"),
])
def test_bad_entries_name_the_entry(name, value, message):
    with pytest.raises(ValueError) as e:
        space_lib.parse_space({name: value})
    assert message in str(e.value)
    assert name.split(".")[0] in str(e.value)


def test_space_flags_add_replace_remove_and_name_the_flag():
    space = space_lib.parse_space({"model.num_layers": "int:1:4", "model.dropout": "float:0:0.1"})
    space = space_lib.apply_space_flags(space, ["model.num_layers=choice:1,2",
                                                "optimizer.peak_lr=float:1e-4:1e-2:log",
                                                "model.dropout=none"])
    assert space["model.num_layers"].kind == "choice" and space["model.num_layers"].values == [1, 2]
    assert space["optimizer.peak_lr"].sampling == "log"
    assert "model.dropout" not in space
    with pytest.raises(ValueError, match=r"--space model.num_layers: expected int:MIN:MAX"):
        space_lib.apply_space_flags(space, ["model.num_layers=int:1"])
    with pytest.raises(ValueError, match=r"--space 'model.num_layers': expected TARGET=KIND"):
        space_lib.apply_space_flags(space, ["model.num_layers"])


def test_tune_tiny_config_loads_with_set_and_space_overrides():
    cfg, space, tuning = cli.load(
        TUNE_TINY, overrides=["data.sequence_length=32"], space_flags=["model.num_layers=fixed:1"],
        explicit={"data.dir": "synthetic", "runtime.strategy": "mirrored"},
        tuning_flags={"tuner": "hyperband", "max_trials": 5})
    assert cfg.data.sequence_length == 32 and cfg.runtime.strategy == "mirrored"
    assert tuning["tuner"] == "hyperband" and tuning["max_trials"] == 5
    assert tuning["budget_tokens"] == 25600  # from the file's tuning section
    assert space["model.num_layers"].kind == "fixed"
    for target in ("model.num_layers", "model.hidden_dim", "model.num_heads",
                   "model.ffn_multiplier", "model.position_encoding", "optimizer.peak_lr",
                   "optimizer.warmup_fraction", "optimizer.weight_decay",
                   "data.global_batch_size", "model.dropout"):
        assert target in space, target
    assert space["optimizer.peak_lr"].sampling == "log"


def test_cli_config_errors_name_the_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("tuning: {tuner: random, max_trials: 2, budget: 5}\nsearch_space: {}\n")
    with pytest.raises(ValueError, match="unknown config field tuning.budget"):
        cli.load(str(bad))
    with pytest.raises(ValueError, match="--tuner / tuning.tuner: expected one of"):
        cli.load(TUNE_TINY, tuning_flags={"tuner": "grid"})
    with pytest.raises(ValueError, match="--budget-tokens / tuning.budget_tokens: must be > 0"):
        cli.load(TUNE_TINY, tuning_flags={"budget_tokens": -5.0})
    with pytest.raises(ValueError, match="unknown config field optimizer.peak"):
        cli.load(TUNE_TINY, overrides=["optimizer.peak=1"])
    with pytest.raises(ValueError, match="--config: no such file"):
        cli.load(str(tmp_path / "missing.yaml"))
    # The CLI turns them into exit code 2 with the message on stderr.
    assert cli.main(["--config", str(bad), "--project-dir", str(tmp_path / "p")]) == 2


def test_token_budget_sets_steps_so_batch_sizes_see_the_same_tokens():
    space = space_lib.parse_space({"data.global_batch_size": "choice:4,8,16",
                                   "optimizer.warmup_fraction": "float:0:0.2"})
    hm = hm_lib.ZooHyperModel(base_cfg(), space, budget_tokens=32 * 8 * 100)
    steps = {}
    for bs in (4, 8, 16):
        cfg = hm.config_for(hp_for(hm, **{"data.global_batch_size": bs,
                                           "optimizer.warmup_fraction": 0.1}))
        steps[bs] = cfg.trainer.train_steps
        assert cfg.trainer.train_steps * bs * 32 == 32 * 8 * 100
        assert cfg.optimizer.warmup_steps == round(0.1 * cfg.trainer.train_steps)
    assert steps == {4: 200, 8: 100, 16: 50}
    # Without --budget-tokens the budget is the base config's own steps x batch x length.
    assert hm_lib.ZooHyperModel(base_cfg(**{"trainer.train_steps": 7}), space).budget_tokens \
        == 7 * 8 * 32
    with pytest.raises(ValueError, match="--budget-tokens"):
        hm_lib.steps_for_tokens(0, base_cfg())


def test_hyperband_epochs_map_to_token_budgets():
    space = space_lib.parse_space({"model.num_layers": "int:1:2"})
    hm = hm_lib.ZooHyperModel(base_cfg(), space, budget_tokens=9 * 256, max_epochs=9)
    oracle = make_oracle("hyperband", max_trials=50, seed=1, max_epochs=9, factor=3)
    hp = keras_tuner.HyperParameters()
    hm.declare_hyperparameters(hp)
    oracle.update_space(hp)
    seen = set()
    for i in range(6):
        values = oracle.populate_space(str(i))["values"]
        trial_hp = hp.copy()
        trial_hp.values = values
        cfg = hm.config_for(trial_hp)
        epochs = values["tuner/epochs"]
        seen.add(epochs)
        # tokens = budget x epochs / max_epochs; 256 tokens per step here.
        assert cfg.trainer.train_steps == epochs
    assert seen and max(seen) <= 9
    assert oracle.max_trials == 50  # --max-trials caps Hyperband too


def test_architecture_targets_become_model_overrides_with_derived_widths():
    space = space_lib.parse_space({"model.hidden_dim": "choice:32,96",
                                   "model.num_heads": "choice:2,3",
                                   "model.ffn_multiplier": "choice:2,4",
                                   "model.position_encoding": "choice:relative,rotary",
                                   "model.dropout": "float:0:0.1"})
    hm = hm_lib.ZooHyperModel(base_cfg(), space, budget_tokens=1000)
    cfg = hm.config_for(hp_for(hm, **{"model.hidden_dim": 96, "model.num_heads": 3,
                                      "model.ffn_multiplier": 2,
                                      "model.position_encoding": "rotary",
                                      "model.dropout": 0.05}), model_dir="/tmp/x")
    o = cfg.model.overrides
    assert o["hidden_dim"] == 96 and o["num_heads"] == 3 and o["key_value_dim"] == 32
    assert o["intermediate_dim"] == 192 and o["position_encoding"] == "rotary"
    assert o["dropout"] == pytest.approx(0.05)
    assert cfg.model_dir == "/tmp/x"
    # An impossible point is a ValueError naming the point (the trial then fails, not the search).
    bad = hm_lib.ZooHyperModel(base_cfg(), space_lib.parse_space(
        {"model.dropout": "choice:0.0,1.5"}))
    with pytest.raises(ValueError, match=r"search space point .*dropout.* must be in \[0, 1\)"):
        bad.config_for(hp_for(bad, **{"model.dropout": 1.5}))


def test_build_returns_the_zoo_model_of_the_point():
    from massivetext_tf import models

    space = space_lib.parse_space({"model.num_layers": "choice:1,2", "model.hidden_dim": "choice:32"})
    hm = hm_lib.ZooHyperModel(base_cfg(), space, budget_tokens=1000)
    hp = hp_for(hm, **{"model.num_layers": 2})
    model = hm.build(hp)
    assert isinstance(model, models.GopherCausalLM)
    assert model.backbone.num_layers == 2
    assert model.count_params() == hm_lib.analytic_params(hm.config_for(hp))
    assert model.optimizer is not None  # compiled with the trial's AdamW schedule


def test_hparams_domains():
    from tensorboard.plugins.hparams import api as hp_api

    space = space_lib.parse_space({
        "model.num_layers": "int:1:3", "optimizer.peak_lr": "float:1e-4:1e-2:log",
        "model.position_encoding": "choice:relative,rotary", "data.global_batch_size": "choice:4,8"})
    d = {n: space_lib.hparams_domain(s) for n, s in space.items()}
    assert isinstance(d["model.num_layers"], hp_api.IntInterval)
    assert (d["model.num_layers"].min_value, d["model.num_layers"].max_value) == (1, 3)
    assert isinstance(d["optimizer.peak_lr"], hp_api.RealInterval)
    assert d["model.position_encoding"].values == ["relative", "rotary"]
    assert d["data.global_batch_size"].values == [4.0, 8.0]
    assert math.isclose(d["optimizer.peak_lr"].max_value, 1e-2)
