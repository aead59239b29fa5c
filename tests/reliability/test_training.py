"""Issue 11 ("Nothing lost, nothing poisoned"), training: each case runs as a user would, with
real `trainers/pretrain.py` subprocesses on tiny configs, real files and real signals.

| fault or bad input                                        | test                                      |
|-----------------------------------------------------------|-------------------------------------------|
| NaN / inf float hyperparameters (YAML, --set, code)        | test_nan_and_inf_hyperparameters_...      |
| --set optimizer.peak_lr=nan on the command line           | test_nan_learning_rate_on_the_command_... |
| a learning rate that blows the weights up (stop)          | test_blowup_saves_no_bad_state_and_...    |
| the same with on_nonfinite=skip                           | test_skip_mode_never_saves_a_nan_model    |
| reused --model-dir with unsafe / safe config changes      | test_reused_model_dir_...                 |
| SIGKILL after a checkpoint, later steps logged, resume    | test_sigkill_then_resume_logs_each_...    |
| continued training from MODEL_DIR/preset, both kinds      | test_continued_training_from_a_saved_...  |
| loading a saved preset in a fresh interpreter             | test_models_load_in_a_fresh_process_...   |
| truncated / corrupt / missing shard, no split, no manifest | test_data_errors_exit_2_with_one_line...  |
(tests/training/test_loop.py::test_nonfinite_weights_never_reach_a_checkpoint_even_in_skip_mode
covers weights that turn NaN between checkpoints, in process.)
"""
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "training"))

from harness import subprocess_env  # noqa: E402
from training_helpers import tiny_config, write_tiny_shards  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[2]
PRETRAIN = REPO / "trainers" / "pretrain.py"
FINETUNE = REPO / "trainers" / "finetune.py"


def write_config(path, **sections):
    cfg = tiny_config("unused", **sections)
    cfg.pop("model_dir")
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def pretrain(config, model_dir, *args, timeout=300, wait=True, script=PRETRAIN):
    cmd = [sys.executable, str(script), "--config", config, "--model-dir", str(model_dir),
           *args]
    if not wait:
        return subprocess.Popen(cmd, env=subprocess_env(REPO), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, env=subprocess_env(REPO), capture_output=True, text=True,
                          timeout=timeout)


def _no_nan(token):
    raise AssertionError(f"bare {token} in JSON")


def strict_json(line):
    return json.loads(line, parse_constant=_no_nan)


def last_json(proc):
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    assert lines, f"no JSON line (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}"
    assert proc.stdout.rstrip().splitlines()[-1] == lines[-1], "the JSON line is not the last"
    return strict_json(lines[-1])


def error_lines(proc):
    """stderr lines of ours (TF's C++ start-up chatter filtered out)."""
    return [l for l in proc.stderr.splitlines() if l.startswith("error:")
            or "Traceback" in l or l.startswith("WARNING massivetext")]


def assert_one_line_error(proc, code, *needles):
    assert proc.returncode == code, f"exit {proc.returncode}:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-4000:]
    errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-4000:]
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def metrics(model_dir, name="metrics.jsonl"):
    path = pathlib.Path(model_dir) / name
    if not path.exists():
        return []
    return [strict_json(l) for l in path.read_text().splitlines() if l.strip()]


def checkpoint_tensors_finite(prefix):
    import tensorflow as tf

    reader = tf.train.load_checkpoint(prefix)
    for key, dtype in reader.get_variable_to_dtype_map().items():
        if dtype.is_floating:
            assert np.all(np.isfinite(reader.get_tensor(key))), f"{prefix}: {key} not finite"


def listed_checkpoints(model_dir):
    import tensorflow as tf

    state = tf.train.get_checkpoint_state(str(pathlib.Path(model_dir) / "checkpoints"))
    return list(state.all_model_checkpoint_paths) if state else []


# -------------------------------------------------------------------------------- requirement 7

@pytest.mark.parametrize("field, value", [
    ("optimizer.peak_lr", "nan"), ("optimizer.peak_lr", "inf"), ("optimizer.peak_lr", ".nan"),
    ("optimizer.weight_decay", "-.inf"), ("optimizer.clip_norm", "nan"),
    ("optimizer.init_lr", "inf"), ("optimizer.final_lr_fraction", "nan"),
    ("optimizer.beta_2", "nan"), ("optimizer.epsilon", "inf"),
    ("runtime.peak_flops_per_device", "inf"), ("runtime.heartbeat_timeout_s", "nan"),
    ("model.overrides.dropout", ".nan"), ("data.mixture", "{web: .inf}"),
])
def test_nan_and_inf_hyperparameters_are_rejected_at_validation(field, value):
    from massivetext_tf.training import config as C

    with pytest.raises(ValueError, match=rf"{field.replace('.', '[.]')}.*: expected a finite"):
        C.load_config(None, overrides=[f"{field}={value}"])
    # Set in code (no parsing), validation still refuses it.
    cfg = C.load_config(None)
    if field.startswith("optimizer."):
        setattr(cfg.optimizer, field.split(".")[1], float(value.replace(".", "")))
        with pytest.raises(ValueError, match="expected a finite number"):
            C.validate(cfg)


def test_nan_learning_rate_on_the_command_line_exits_2(tmp_path):
    proc = pretrain(write_config(tmp_path / "c.yaml"), tmp_path / "run",
                    "--set", "optimizer.peak_lr=nan")
    assert_one_line_error(proc, 2, "optimizer.peak_lr", "finite")
    assert not (tmp_path / "run").exists()


# -------------------------------------------------------------------------------- requirement 8

BLOWUP = {"optimizer": {"peak_lr": 1e30, "warmup_steps": 0},
          "runtime": {"train_steps": 6, "steps_per_loop": 1, "log_every": 1,
                      "checkpoint_every": 1, "eval_steps": 1, "save_preset": True}}


@pytest.mark.slow  # two or three training subprocesses, > 20 s
def test_blowup_saves_no_bad_state_and_the_advice_works(tmp_path):
    config = write_config(tmp_path / "c.yaml", **BLOWUP)
    run = tmp_path / "run"
    proc = pretrain(config, run)
    # Step 1 is applied (finite loss), its weights are ~1e30: finite, but the next loss is NaN.
    # The step-1 checkpoint is verified (eval loss NaN) and moved aside, nothing else saved.
    line = assert_one_line_error(proc, 3, "non-finite loss", "no good checkpoint",
                                 "starts from step 0", "optimizer.peak_lr")
    assert "is checkpointed" not in line
    result = last_json(proc)
    assert result["status"] == "nonfinite" and result["checkpoint"] is None
    assert result["resume_step"] == 0
    assert listed_checkpoints(run) == []
    assert (run / "checkpoints" / "nonfinite" / "ckpt-1.index").exists()  # kept, not deleted
    assert not (run / "preset").exists()
    metrics(run)  # strict JSON

    # Follow the advice: lower the learning rate, rerun the same command.
    proc = pretrain(config, run, "--set", "optimizer.peak_lr=3e-3")
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = last_json(proc)
    assert result["status"] == "completed" and result["step"] == 6
    assert np.isfinite(result["eval_loss"])
    for prefix in listed_checkpoints(run):
        checkpoint_tensors_finite(prefix)
    steps = [m["step"] for m in metrics(run) if m["split"] == "train"]
    assert steps == [1, 2, 3, 4, 5, 6]
    import h5py

    with h5py.File(run / "preset" / "model.weights.h5") as f:
        arrays = []
        f.visititems(lambda n, o: arrays.append(o[()]) if isinstance(o, h5py.Dataset) else None)
    assert arrays and all(np.all(np.isfinite(a)) for a in arrays)


def test_skip_mode_never_saves_a_nan_model(tmp_path):
    config = write_config(tmp_path / "c.yaml", **BLOWUP)
    run = tmp_path / "run"
    proc = pretrain(config, run, "--set", "trainer.on_nonfinite=skip",
                    "--set", "trainer.max_consecutive_nonfinite=3")
    assert_one_line_error(proc, 3, "3 non-finite steps in a row", "skipping cannot recover")
    assert last_json(proc)["status"] == "nonfinite"
    assert not (run / "preset").exists()
    assert listed_checkpoints(run) == []
    lines = metrics(run)  # strict JSON although the losses were NaN
    bad = [m for m in lines if m.get("nonfinite")]
    assert bad and all(m["loss"] is None and m["nonfinite"]["loss"] == "nan" for m in bad)


# -------------------------------------------------------------------------------- requirement 9

def _snapshot(root):
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in pathlib.Path(root).rglob("*") if p.is_file()}


@pytest.mark.slow  # two or three training subprocesses, > 20 s
def test_reused_model_dir_refuses_unsafe_changes_and_records_safe_ones(tmp_path):
    config = write_config(tmp_path / "c.yaml", runtime={"train_steps": 4, "steps_per_loop": 2,
                                                        "log_every": 2, "checkpoint_every": 2})
    run = tmp_path / "run"
    assert pretrain(config, run).returncode == 0
    original = (run / "config.yaml").read_bytes()
    before = _snapshot(run)

    proc = pretrain(config, run, "--set", "data.global_batch_size=16",
                    "--set", "model.overrides.num_layers=2", "--set", "optimizer.peak_lr=1e-3")
    line = assert_one_line_error(proc, 2, "data.global_batch_size 8 -> 16",
                                 "model.overrides.num_layers 1 -> 2", "new --model-dir")
    assert "peak_lr" not in line  # only the unsafe fields are named
    assert len(proc.stderr.splitlines()) < 15, proc.stderr  # no wall of warnings
    assert _snapshot(run) == before  # nothing in the directory was written

    proc = pretrain(config, run, "--set", "optimizer.peak_lr=1e-3", "--train-steps", "6")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert last_json(proc)["step"] == 6
    assert "optimizer.peak_lr 0.003 -> 0.001" in proc.stdout
    assert "trainer.train_steps 4 -> 6" in proc.stdout
    assert (run / "config.yaml").read_bytes() == original  # never overwritten
    history = run / "config_history" / "run-001.yaml"
    text = history.read_text()
    assert "started at step 4" in text and "optimizer.peak_lr 0.003 -> 0.001" in text
    recorded = yaml.safe_load(text)
    assert recorded["optimizer"]["peak_lr"] == 1e-3 and recorded["trainer"]["train_steps"] == 6
    assert [m["step"] for m in metrics(run) if m["split"] == "train"] == [2, 4, 6]


# ------------------------------------------------------------------------------- requirement 10

@pytest.mark.slow  # two or three training subprocesses, > 20 s
def test_sigkill_then_resume_logs_each_step_once(tmp_path):
    import tensorflow as tf

    config = write_config(tmp_path / "c.yaml", runtime={
        "train_steps": 400, "steps_per_loop": 1, "log_every": 1, "checkpoint_every": 4})
    run = tmp_path / "run"
    proc = pretrain(config, run, wait=False)
    ckpt_step, logged = 0, 0
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            latest = tf.train.latest_checkpoint(str(run / "checkpoints"))
            ckpt_step = int(latest.rsplit("-", 1)[1]) if latest else 0
            lines = [l for l in (run / "metrics.jsonl").read_text().splitlines()
                     if l.strip()] if (run / "metrics.jsonl").exists() else []
            logged = json.loads(lines[-1])["step"] if lines else 0
            if ckpt_step and logged >= ckpt_step + 2:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert ckpt_step and logged >= ckpt_step + 2, "no checkpoint plus later steps before timeout"
    latest = tf.train.latest_checkpoint(str(run / "checkpoints"))
    resume = int(latest.rsplit("-", 1)[1])
    readable = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        try:
            readable.append(json.loads(line))
        except ValueError:  # a line cut by the kill
            pass
    killed_at = max(m["step"] for m in readable)
    assert killed_at > resume  # steps after the checkpoint were logged, and will be redone

    end = killed_at + 3
    proc = pretrain(config, run, "--train-steps", str(end))
    assert proc.returncode == 0, proc.stderr[-4000:]
    steps = [m["step"] for m in metrics(run) if m["split"] == "train"]
    assert steps == list(range(1, end + 1))  # each step once
    superseded = metrics(run, "metrics_superseded.jsonl")
    assert superseded and all(m["superseded_at_step"] == resume for m in superseded)
    assert {m["step"] for m in superseded if "step" in m} == set(range(resume + 1, killed_at + 1))


# ------------------------------------------------------------------------------- requirement 11

@pytest.mark.slow
@pytest.mark.parametrize("kind", ["decoder_only", "encoder_decoder"])
def test_continued_training_from_a_saved_preset_in_a_fresh_process(tmp_path, kind):
    sections = {"runtime": {"train_steps": 4, "steps_per_loop": 2, "log_every": 2,
                            "eval_steps": 2, "save_preset": True}}
    if kind == "encoder_decoder":
        sections["model"] = {"preset": "t5_tiny", "overrides": {}}
        sections["data"] = {"objective": "span_corruption", "decoder_sequence_length": 8}
    config = write_config(tmp_path / "c.yaml", **sections)
    first = pretrain(config, tmp_path / "first")
    assert first.returncode == 0, first.stderr[-4000:]
    first_eval = last_json(first)["eval_loss"]
    # A fresh process continues from the preset; with a learning rate of ~0 its eval loss is
    # the first run's (4 steps at 3e-3 moved it by far more than the tolerance). The decoder
    # goes through pretrain.py --set model.init_from, the encoder-decoder through
    # finetune.py --init-from (continued pretraining, task.type lm).
    preset = str(tmp_path / "first" / "preset")
    how = (["--set", f"model.init_from={preset}"] if kind == "decoder_only"
           else ["--init-from", preset])
    proc = pretrain(config, tmp_path / "second", *how,
                    "--set", "optimizer.peak_lr=1e-12", "--set", "optimizer.init_lr=0",
                    "--set", "optimizer.weight_decay=0",
                    script=PRETRAIN if kind == "decoder_only" else FINETUNE)
    assert proc.returncode == 0, proc.stderr[-4000:]
    second = last_json(proc)
    assert second["status"] == "completed" and second["step"] == 4
    assert second["eval_loss"] == pytest.approx(first_eval, rel=1e-4)


def test_models_load_in_a_fresh_process_both_kinds(tmp_path):
    """`massivetext_tf.models.load` registers the classes itself: a fresh interpreter that
    imports nothing else loads both kinds of preset and reports its kind."""
    import keras  # noqa: F401

    from massivetext_tf import models

    for name in ("gopher_tiny", "t5_tiny"):
        model = models.build(name, num_layers=1) if name == "gopher_tiny" else models.build(name)
        model.save_to_preset(str(tmp_path / name))
    code = ("import sys; from massivetext_tf import models; "
            "[print(type(models.load(p)).__name__, models.kind(p)) for p in sys.argv[1:]]")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "gopher_tiny"),
                           str(tmp_path / "t5_tiny")], env=subprocess_env(REPO),
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.split() == ["GopherCausalLM", "decoder_only",
                                   "EncoderDecoderSeq2SeqLM", "encoder_decoder"]


# ------------------------------------------------------------------------------- requirement 12

@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return pathlib.Path(write_tiny_shards(tmp_path_factory.mktemp("shards")))


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("fault", ["truncated", "corrupt", "missing", "no_eval_split",
                                   "no_manifest"])
def test_data_errors_exit_2_with_one_line_naming_the_file(tmp_path, shards, fault):
    data = _copy(shards, tmp_path / "data")
    shard = data / "shards" / "train-web-00000.tfrecord"
    extra = []
    if fault == "truncated":
        blob = shard.read_bytes()
        shard.write_bytes(blob[: len(blob) // 2])
        needles = [str(shard), "prepare_data.py"]
    elif fault == "corrupt":  # same size, bytes flipped in the middle: found while training
        blob = bytearray(shard.read_bytes())
        for i in range(len(blob) // 2, len(blob) // 2 + 64):
            blob[i] ^= 0xFF
        shard.write_bytes(bytes(blob))
        needles = [f"{shard}: corrupt or truncated shard (read", "--verify"]
    elif fault == "missing":
        shard.unlink()
        needles = [str(shard), "missing", "--verify"]
    elif fault == "no_eval_split":
        extra = ["--set", "data.eval_split=test"]
        needles = ["data.eval_split", "'test'", "manifest.json", "trainer.eval_steps=0"]
    else:
        (data / "manifest.json").unlink()
        needles = ["data.dir", "manifest.json", "prepare_data.py"]
    config = write_config(tmp_path / "c.yaml", data={"dir": str(data), "sequence_length": 32,
                                                     "global_batch_size": 8},
                          runtime={"train_steps": 20, "steps_per_loop": 2, "log_every": 2})
    proc = pretrain(config, tmp_path / "run", *extra)
    assert_one_line_error(proc, 2, *needles)
