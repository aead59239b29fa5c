import pytest

from massivetext_tf.training import config as C

from training_helpers import REPO


def test_yaml_configs_load_and_round_trip(tmp_path):
    for name in ("gopher_tiny", "t5_tiny", "gopher_44m"):
        cfg = C.load_config(str(REPO / "massivetext_tf/configs" / f"{name}.yaml"))
        path = str(tmp_path / f"{name}.yaml")
        C.save_config(cfg, path)
        assert C.load_config(path) == cfg
    t5 = C.load_config(str(REPO / "massivetext_tf/configs/t5_tiny.yaml"))
    assert t5.data.objective == "span_corruption" and t5.model.preset == "t5_tiny"


def test_overrides_and_explicit_values_take_precedence():
    cfg = C.load_config(
        str(REPO / "massivetext_tf/configs/gopher_tiny.yaml"),
        overrides=["optimizer.peak_lr=1e-3", "model.overrides.num_layers=4",
                   "runtime.devices=GPU:0,GPU:1", "data.mixture={web: 0.7, books: 0.3}"],
        **{"runtime.train_steps": 7, "runtime.strategy": "mirrored"},
    )
    assert cfg.optimizer.peak_lr == 1e-3 and isinstance(cfg.optimizer.peak_lr, float)
    assert cfg.model.overrides["num_layers"] == 4
    assert cfg.runtime.devices == "GPU:0,GPU:1"
    assert cfg.data.mixture == {"web": 0.7, "books": 0.3}
    assert cfg.runtime.train_steps == 7 and cfg.runtime.strategy == "mirrored"


@pytest.mark.parametrize("override, message", [
    ("optimizer.peak_lr=fast", "optimizer.peak_lr: expected a number"),
    ("optimizer.bogus=1", "unknown config field optimizer.bogus"),
    ("runtime.strategy=pod", "runtime.strategy: 'pod' is not one of"),
    ("runtime.train_steps=0", "runtime.train_steps: must be a positive integer"),
    ("runtime.train_steps=1.5", "runtime.train_steps: expected an integer"),
    ("runtime.on_nonfinite=ignore", "runtime.on_nonfinite"),
    ("data=3", "data is a section"),
    ("peak_lr", "expected section.field=value"),
])
def test_bad_values_name_the_field(override, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("'", "'")):
        C.load_config(None, overrides=[override])


def test_unknown_yaml_field_is_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("optimizer:\n  peak_lrr: 1.0\n")
    with pytest.raises(ValueError, match=r"unknown config field optimizer\.peak_lrr"):
        C.load_config(str(path))
    with pytest.raises(ValueError, match="--config: no such file"):
        C.load_config(str(tmp_path / "missing.yaml"))


def test_compare_configs_splits_unsafe_from_safe_changes():
    base = C.load_config(str(REPO / "massivetext_tf/configs/gopher_tiny.yaml"))
    new = C.load_config(str(REPO / "massivetext_tf/configs/gopher_tiny.yaml"), overrides=[
        "optimizer.peak_lr=1e-4", "runtime.train_steps=500", "runtime.log_every=5",
        "data.global_batch_size=16", "model.overrides.num_layers=3", "data.dir=data/x/",
        "runtime.mixed_precision=bfloat16"])
    unsafe, safe = C.compare_configs(base, new)
    assert [k for k, _, _ in unsafe] == ["data.dir", "data.global_batch_size",
                                         "model.overrides.num_layers", "runtime.mixed_precision"]
    assert [k for k, _, _ in safe] == ["optimizer.peak_lr", "runtime.log_every",
                                       "runtime.train_steps"]
    same = C.load_config(str(REPO / "massivetext_tf/configs/gopher_tiny.yaml"),
                         overrides=["data.dir=./synthetic"])
    assert C.compare_configs(base, same) == ([], [])  # the same path spelled differently
    assert "optimizer.peak_lr 0.001 -> 0.0001" in C.describe_changes(safe)
