"""End-to-end searches: trials through the training loop, resume, failures, reports, HParams."""
import csv
import glob
import json
import math
import os
import pathlib
import subprocess
import sys

import pytest
import tensorflow as tf
import yaml

from massivetext_tf.training import config as config_lib
from massivetext_tf.tuning import cli
from massivetext_tf.tuning import search as search_lib
from massivetext_tf.tuning import space as space_lib

from conftest import REPO
from harness import subprocess_env

TUNE_TINY = str(REPO / "massivetext_tf" / "configs" / "tune_tiny.yaml")
# No CPU peak measurement; XLA compilation (tens of seconds a trial on a busy CPU) is left to
# the slow Hyperband test.
FAST = ["trainer.eval_steps=2", "runtime.peak_flops_per_device=1e11"]
NO_XLA = FAST + ["runtime.jit_compile=false"]


def env():
    return subprocess_env(REPO)


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def hparams_events(path):
    """(plugin data messages, scalars) of the event files directly in `path`."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    plugin, scalars = [], {}
    for name in sorted(glob.glob(f"{path}/events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(name):
            for v in event.summary.value:
                if v.metadata.plugin_data.plugin_name == "hparams":
                    data = plugin_data_pb2.HParamsPluginData()
                    data.ParseFromString(v.metadata.plugin_data.content)
                    plugin.append(data)
                elif v.HasField("tensor"):
                    scalars[v.tag] = float(tf.make_ndarray(v.tensor))
    return plugin, scalars


def session_values(data):
    out = {}
    for k, v in data.session_start_info.hparams.items():
        kind = v.WhichOneof("kind")
        out[k] = getattr(v, kind)
    return out


@pytest.fixture(scope="module")
def resumed_project(shakespeare_data, tmp_path_factory):
    """A random search on real data: 2 trials, then the same project resumed to 3."""
    project = str(tmp_path_factory.mktemp("sweep") / "project")
    cfg, space, t = cli.load(
        TUNE_TINY, overrides=NO_XLA, explicit={"data.dir": shakespeare_data},
        space_flags=["model.position_encoding=choice:relative,rotary",
                     "data.global_batch_size=choice:2,4"])
    kw = dict(project_dir=project, tuner="random", budget_tokens=2048, seed=3, verbose=False)
    first = search_lib.search(cfg, space, max_trials=2, **kw)
    stamps = {tid: (os.path.getmtime(f"{project}/trial_{tid}/trial.json"),
                    os.path.getmtime(f"{project}/trial_{tid}/result.json"))
              for tid in first["ran_trials"]}
    second = search_lib.search(cfg, space, max_trials=3, **kw)
    return {"project": project, "first": first, "second": second, "stamps": stamps,
            "space": space, "data": shakespeare_data}


def test_resume_runs_only_the_new_trial(resumed_project):
    first, second = resumed_project["first"], resumed_project["second"]
    project = resumed_project["project"]
    assert first["ran_trials"] == ["0", "1"]
    assert second["ran_trials"] == ["2"]  # trials 0 and 1 were reloaded, not run again
    for tid, (trial_mtime, result_mtime) in resumed_project["stamps"].items():
        assert os.path.getmtime(f"{project}/trial_{tid}/trial.json") == trial_mtime
        assert os.path.getmtime(f"{project}/trial_{tid}/result.json") == result_mtime
        assert json.load(open(f"{project}/trial_{tid}/result.json"))["attempts"] == 1
    rows = read_csv(f"{project}/trials.csv")
    assert sorted(r["trial_id"] for r in rows) == ["0", "1", "2"]
    assert all(r["status"] == "COMPLETED" for r in rows)
    # A finished project with the same --max-trials runs nothing.
    cfg = config_lib.load_config(f"{project}/trial_0/config.yaml")
    assert cfg.data.dir == resumed_project["data"]


def test_trials_ran_through_the_training_loop_on_a_token_budget(resumed_project):
    project = resumed_project["project"]
    rows = read_csv(f"{project}/trials.csv")
    assert [r["rank"] for r in rows] == ["1", "2", "3"]
    objectives = [float(r["val_bits_per_byte"]) for r in rows]
    assert objectives == sorted(objectives)
    for r in rows:
        bs = int(r["data.global_batch_size"])
        res = json.load(open(f"{project}/trial_{r['trial_id']}/result.json"))
        # steps = budget / (batch x length): the same tokens whatever the batch size.
        assert int(r["train_steps"]) == math.ceil(2048 / (bs * 64))
        assert int(r["train_tokens"]) == int(r["train_steps"]) * bs * 64
        assert res["xla"] is False and res["num_replicas"] == 1  # runtime.jit_compile=false
        assert "objective_note" not in res  # real bytes from the manifest, not bits per token
        # The Trainer's own files: config, metrics, a checkpoint at the trial's last step.
        metrics = [json.loads(l) for l in open(f"{project}/trial_{r['trial_id']}/metrics.jsonl")]
        assert metrics[-1]["step"] == int(r["train_steps"])
        evals = [m for m in metrics if "bits_per_byte" in m]
        assert evals and evals[-1]["bits_per_byte"] == pytest.approx(float(r["val_bits_per_byte"]),
                                                                     rel=1e-5)
        assert tf.train.latest_checkpoint(f"{project}/trial_{r['trial_id']}/checkpoints")
        assert 0.5 < float(r["val_bits_per_byte"]) < 20


def test_hparams_summaries_parse(resumed_project):
    project, space = resumed_project["project"], resumed_project["space"]
    plugin, _ = hparams_events(project)
    experiments = [p for p in plugin if p.HasField("experiment")]
    assert experiments, "no hparams_config at the project level"
    exp = experiments[0].experiment
    assert {h.name for h in exp.hparam_infos} == set(space)
    assert "val_bits_per_byte" in {m.name.tag for m in exp.metric_infos}
    rows = {r["trial_id"]: r for r in read_csv(f"{project}/trials.csv")}
    for tid, row in rows.items():
        plugin, scalars = hparams_events(f"{project}/trial_{tid}")
        sessions = [p for p in plugin if p.HasField("session_start_info")]
        assert len(sessions) == 1
        values = session_values(sessions[0])
        assert values["model.position_encoding"] == row["model.position_encoding"]
        assert values["data.global_batch_size"] == float(row["data.global_batch_size"])
        assert values["optimizer.peak_lr"] == pytest.approx(float(row["optimizer.peak_lr"]), rel=1e-4)
        assert scalars["val_bits_per_byte"] == pytest.approx(float(row["val_bits_per_byte"]), rel=1e-4)
        assert scalars["trial_failed"] == 0.0
        # The training curves live next to the session (metric group "tensorboard").
        assert glob.glob(f"{project}/trial_{tid}/tensorboard/events.out.tfevents.*")


def test_best_config_is_the_best_trial(resumed_project):
    project = resumed_project["project"]
    best = read_csv(f"{project}/trials.csv")[0]
    cfg = config_lib.load_config(f"{project}/best_config.yaml")
    trial_cfg = config_lib.load_config(f"{project}/trial_{best['trial_id']}/config.yaml")
    assert cfg.model.overrides == trial_cfg.model.overrides
    assert cfg.optimizer.peak_lr == trial_cfg.optimizer.peak_lr
    assert cfg.data.global_batch_size == int(best["data.global_batch_size"])
    assert cfg.trainer.train_steps == trial_cfg.trainer.train_steps
    assert cfg.trainer.save_preset is True and cfg.model_dir == f"{project}/best_run"


@pytest.mark.slow
def test_best_config_trains_with_pretrain(resumed_project, tmp_path):
    best = f"{resumed_project['project']}/best_config.yaml"
    proc = subprocess.run(
        [sys.executable, str(REPO / "trainers" / "pretrain.py"), "--config", best,
         "--model-dir", str(tmp_path / "run"), "--train-steps", "3"],
        capture_output=True, text=True, timeout=240, env=env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["status"] == "completed" and res["step"] == 3
    assert math.isfinite(res["eval_bits_per_byte"])
    assert (tmp_path / "run" / "preset" / "config.json").exists()


def failing_config(tmp_path):
    """tune_tiny with one dimension: a sane learning rate and one that overflows to NaN."""
    data = yaml.safe_load(open(TUNE_TINY))
    data["search_space"] = {"optimizer.peak_lr": {"type": "choice", "values": [1.0e30, 2.0e-3]}}
    data["optimizer"]["warmup_steps"] = 0
    data["trainer"]["eval_steps"] = 2
    data["runtime"]["peak_flops_per_device"] = 1e11
    path = tmp_path / "tune_fail.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_failing_trial_is_recorded_and_the_search_goes_on_under_mirrored(tmp_path):
    project = tmp_path / "project"
    proc = subprocess.run(
        [sys.executable, str(REPO / "trainers" / "tune.py"), "--config", failing_config(tmp_path),
         "--data", "synthetic", "--project-dir", str(project), "--max-trials", "2",
         "--tuner", "random", "--seed", "1", "--budget-tokens", "2048",
         "--strategy", "mirrored", "--devices", "CPU:0,CPU:1", "--logical-cpus", "2"],
        capture_output=True, text=True, timeout=300, env=env())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["ran_trials"] == ["0", "1"] and summary["failed"] == 1
    assert summary["completed"] == 1
    rows = {r["trial_id"]: r for r in read_csv(project / "trials.csv")}
    # Seed 1 draws the absurd learning rate first: the failure did not end the search.
    failed, done = rows["0"], rows["1"]
    assert float(failed["optimizer.peak_lr"]) == 1e30 and failed["status"] == "FAILED"
    assert "non-finite" in failed["failure_reason"] and failed["val_bits_per_byte"] == ""
    assert failed["rank"] == ""
    assert done["status"] == "COMPLETED" and done["rank"] == "1"
    trial = json.load(open(project / "trial_0" / "trial.json"))
    assert trial["status"] == "FAILED" and "non-finite" in trial["message"]
    res = json.load(open(project / "trial_1" / "result.json"))
    assert res["num_replicas"] == 2  # the trial ran under MirroredStrategy
    _, scalars = hparams_events(str(project / "trial_0"))
    assert scalars["trial_failed"] == 1.0
    assert "FAILED" in proc.stdout and "COMPLETED" in proc.stdout  # the printed table
    best = config_lib.load_config(str(project / "best_config.yaml"))
    assert best.optimizer.peak_lr == pytest.approx(2e-3)
    assert best.runtime.strategy == "mirrored"


@pytest.mark.slow
def test_hyperband_trials_get_token_budgets_by_epochs(tmp_path):
    cfg, space, _ = cli.load(TUNE_TINY, overrides=FAST,
                             space_flags=["model.num_layers=fixed:1", "model.hidden_dim=fixed:32"])
    out = search_lib.search(cfg, space, project_dir=str(tmp_path / "hb"), max_trials=2,
                            tuner="hyperband", budget_tokens=3 * 1024, hyperband_max_epochs=3,
                            hyperband_factor=3, seed=0, verbose=False)
    assert len(out["ran_trials"]) == 2
    for row in out["trials"]:
        epochs = row["hyperparameters"]["tuner/epochs"]
        assert row["train_tokens"] >= 1024 * epochs
        assert row["train_tokens"] < 1024 * epochs + 8 * 64  # within one batch of the budget
        res = json.load(open(tmp_path / "hb" / f"trial_{row['trial_id']}" / "result.json"))
        assert res["xla"] is True  # the trial ran the XLA-compiled step of the training loop
    search_yaml = yaml.safe_load(open(tmp_path / "hb" / "search.yaml"))
    assert search_yaml["tuner"] == "hyperband"
    # Resuming with another tuner is refused, naming the flag.
    with pytest.raises(ValueError, match="--tuner: 'random' differs from 'hyperband'"):
        search_lib.search(cfg, space, project_dir=str(tmp_path / "hb"), max_trials=3,
                          tuner="random", budget_tokens=3 * 1024, verbose=False)


@pytest.mark.slow
def test_search_killed_mid_trial_resumes_that_trial_only(tmp_path):
    """SIGKILL while trial 1 trains; the rerun finishes trial 1 and does not redo trial 0."""
    import signal
    import time

    project = tmp_path / "project"
    cmd = [sys.executable, str(REPO / "trainers" / "tune.py"), "--config", TUNE_TINY,
           "--data", "synthetic", "--project-dir", str(project), "--max-trials", "2",
           "--budget-tokens", "4096", "--space", "model.position_encoding=fixed:relative"]
    for item in NO_XLA:
        cmd += ["--set", item]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env())
    marker = project / "trial_1" / "result.json"
    deadline = time.time() + 240
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert proc.poll() is None, "the search ended before it could be interrupted"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert json.load(open(marker))["status"] == "RUNNING"
    t0 = os.path.getmtime(project / "trial_0" / "result.json")
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env())
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    summary = json.loads(again.stdout.strip().splitlines()[-1])
    assert summary["ran_trials"] == ["1"] and summary["completed"] == 2
    assert os.path.getmtime(project / "trial_0" / "result.json") == t0
    res = json.load(open(marker))
    assert res["status"] == "COMPLETED" and res["attempts"] == 2


@pytest.mark.slow
def test_bayesian_search_proposes_after_its_initial_points(tmp_path):
    pytest.importorskip("sklearn", reason="keras-tuner's BayesianOptimization needs scikit-learn")
    cfg, space, _ = cli.load(TUNE_TINY, overrides=NO_XLA)
    space = {"optimizer.peak_lr": space["optimizer.peak_lr"]}  # one dimension, log-sampled
    space = space_lib.apply_space_flags(space, ["model.num_layers=fixed:1",
                                                "model.hidden_dim=fixed:32"])
    out = search_lib.search(cfg, space, project_dir=str(tmp_path / "bo"), max_trials=3,
                            tuner="bayesian", budget_tokens=1024, num_initial_points=2, seed=0,
                            verbose=False)
    assert out["ran_trials"] == ["0", "1", "2"]
    lrs = [r["hyperparameters"]["optimizer.peak_lr"] for r in out["trials"]]
    assert len(set(lrs)) == 3 and all(3e-4 <= lr <= 3e-3 for lr in lrs)
    assert all(r["status"] == "COMPLETED" for r in out["trials"])
    assert type(out["tuner"].oracle).__name__ == "BayesianOptimizationOracle"


def test_releasing_a_trials_memory_keeps_the_callers_tokenizer_working():
    """Between trials the tuner frees memory; it must not clear TensorFlow's kernel cache (as
    `keras.backend.clear_session()` does), which destroyed a live SentencePiece tokenizer's
    resource ("Resource ... does not exist") and failed a later in-process evaluation."""
    import keras
    import tensorflow_text as tf_text

    from massivetext_tf.tuning import search

    fixture = pathlib.Path(__file__).resolve().parents[1] / "models/fixtures/t5/v1_0/spiece.model"
    tok = tf_text.SentencepieceTokenizer(model=fixture.read_bytes(), out_type=tf.int32)
    tokenize = tf.function(lambda s: tok.tokenize(s))
    before = tokenize(tf.constant(["to be or not"])).to_list()
    policy = keras.config.dtype_policy().name
    search._release_memory()
    assert tokenize(tf.constant(["to be or not"])).to_list() == before
    assert keras.config.dtype_policy().name == policy
