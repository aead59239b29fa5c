import pytest

from massivetext_tf.training import config as C
from massivetext_tf.training import run_dir

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
    assert cfg.trainer.train_steps == 7 and cfg.runtime.strategy == "mirrored"


@pytest.mark.parametrize("override, message", [
    ("optimizer.peak_lr=fast", "optimizer.peak_lr: expected a number"),
    ("optimizer.bogus=1", "unknown config field optimizer.bogus"),
    ("runtime.strategy=pod", "runtime.strategy: 'pod' is not one of"),
    ("trainer.train_steps=0", "trainer.train_steps: must be a positive integer"),
    ("trainer.train_steps=1.5", "trainer.train_steps: expected an integer"),
    ("trainer.on_nonfinite=ignore", "trainer.on_nonfinite"),
    ("runtime.train_steps=0", "trainer.train_steps: must be a positive integer"),  # old name
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
        "optimizer.peak_lr=1e-4", "trainer.train_steps=500", "trainer.log_every=5",
        "data.global_batch_size=16", "model.overrides.num_layers=3", "data.dir=data/x/",
        "runtime.mixed_precision=bfloat16"])
    unsafe, safe = run_dir.compare_configs(base, new)
    assert [k for k, _, _ in unsafe] == ["data.dir", "data.global_batch_size",
                                         "model.overrides.num_layers", "runtime.mixed_precision"]
    assert [k for k, _, _ in safe] == ["optimizer.peak_lr", "trainer.log_every",
                                       "trainer.train_steps"]
    same = C.load_config(str(REPO / "massivetext_tf/configs/gopher_tiny.yaml"),
                         overrides=["data.dir=./synthetic"])
    assert run_dir.compare_configs(base, same) == ([], [])  # the same path spelled differently
    assert "optimizer.peak_lr 0.001 -> 0.0001" in run_dir.describe_changes(safe)


def test_moved_fields_keep_their_old_names_everywhere(tmp_path):
    """runtime.X of a field now in `trainer` loads from YAML sections, --set, explicit (flag
    map) values and an old-format saved config.yaml, to the same config as trainer.X."""
    assert C.MOVED["runtime.train_steps"] == "trainer.train_steps"
    assert set(C.MOVED.values()) == {f"trainer.{f}" for f in C.TrainerConfig.__dataclass_fields__}
    new = C.load_config("gopher_tiny", overrides=["trainer.steps_per_loop=3"],
                        **{"trainer.train_steps": 9, "trainer.eval_tasks": []})
    old_yaml = tmp_path / "old.yaml"
    old_yaml.write_text("model: {preset: gopher_tiny, overrides: {num_layers: 2}}\n"
                        "runtime: {strategy: one_device, mixed_precision: float32, seed: 0,\n"
                        "  train_steps: 100, steps_per_loop: 10, log_every: 10, "
                        "checkpoint_every: 50, keep_checkpoints: 3,\n  eval_every: 50, "
                        "eval_steps: 4, on_nonfinite: stop}\n")
    bundled = C.load_config("gopher_tiny")
    old = C.load_config(str(old_yaml))
    assert (old.runtime, old.trainer) == (bundled.runtime, bundled.trainer)
    via_old = C.load_config(str(old_yaml), overrides=["runtime.steps_per_loop=3"],
                            **{"runtime.train_steps": 9})
    assert via_old.trainer == new.trainer and via_old.trainer.steps_per_loop == 3
    # A config.yaml an earlier version saved in a model dir reads into the new sections, and
    # the model dir's safe/unsafe comparison sees no change.
    saved = C.to_dict(bundled)
    saved["runtime"].update(saved.pop("trainer"))
    path = tmp_path / "config.yaml"
    path.write_text(__import__("yaml").safe_dump(saved))
    assert C.read_config(str(path)) == bundled
    assert run_dir.compare_configs(C.read_config(str(path)), bundled) == ([], [])
    assert run_dir.is_unsafe_field("trainer.checkpoint_input_pipeline")
    # Both spellings with different values: which one is meant is unclear, so it is an error.
    with pytest.raises(ValueError, match=r"runtime.train_steps \(5\) and trainer.train_steps "
                                         r"\(6\) are the same field"):
        C.from_dict({"runtime": {"train_steps": 5}, "trainer": {"train_steps": 6}})
