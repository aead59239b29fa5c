"""Model Garden's evaluation modes: tasks listed in the config run at eval_every during
training; `trainers/pretrain.py --mode continuous_eval` evaluates each checkpoint once (none
twice, none skipped, also across restarts), writes TensorBoard scalars per task and metric and
ends after the final checkpoint; `--mode eval` evaluates one checkpoint."""
import json
import subprocess

import pytest
import tensorflow as tf
import yaml

from training_helpers import PY, REPO, env, tiny_config, write_tiny_shards

PRETRAIN = str(REPO / "trainers" / "pretrain.py")


def _task(tmp_path):
    items = [{"question": q, "choices": ["to be", "or not", "the question"], "answer": i % 3}
             for i, q in enumerate(["whether tis", "nobler in the", "mind to suffer", "slings and"])]
    (tmp_path / "mc.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    path = tmp_path / "mc.yaml"
    path.write_text(json.dumps({"name": "mc", "kind": "multiple_choice", "data": "mc.jsonl",
                                "metrics": ["accuracy", "accuracy_per_byte"]}))
    return str(path)


def _pretrain(*args, timeout=300):
    proc = subprocess.run([PY, PRETRAIN, *args], env=env(), capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


def _result(code, out, err):
    assert code == 0, err[-4000:]
    return json.loads(out.strip().splitlines()[-1])


def _tb_scalars(directory):
    found = {}
    for path in tf.io.gfile.glob(f"{directory}/events*"):
        for e in tf.compat.v1.train.summary_iterator(path):
            for v in e.summary.value:
                found.setdefault(v.tag, []).append(e.step)
    return found


@pytest.mark.slow
def test_train_with_tasks_then_continuous_eval_then_eval(tmp_path):
    from massivetext_tf.training import config as C
    from massivetext_tf.training import evaluator

    data = write_tiny_shards(tmp_path / "shards")
    task = _task(tmp_path)
    run = tmp_path / "run"
    cfg = tiny_config(run, runtime={"train_steps": 8, "steps_per_loop": 4, "log_every": 4, "checkpoint_every": 4,
                                    "keep_checkpoints": 5, "eval_every": 4, "eval_steps": 1,
                                    "eval_tasks": [task], "tensorboard": True})
    cfg["data"] = {"dir": data, "sequence_length": 32, "global_batch_size": 8}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))

    # 1. training runs the config's tasks with each evaluation (steps 4 and 8)
    trained = _result(*_pretrain("--config", str(config)))
    assert trained["status"] == "completed" and 0 <= trained["eval_mc/accuracy"] <= 1
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if r["split"] == "eval" and "mc/accuracy_per_byte" in r] == [4, 8]

    # 2. continuous eval of the finished run (the run's own config.yaml): each checkpoint once, then ends
    out = _result(*_pretrain("--mode", "continuous_eval", "--model-dir", str(run), "--poll-interval", "0.1"))
    assert out["status"] == "completed" and out["evaluated"] == [4, 8]
    state = json.loads((run / "eval" / "state.json").read_text())
    assert sorted(state["evaluated"], key=int) == ["4", "8"]
    evals = [json.loads(x) for x in (run / "eval" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in evals] == [4, 8]
    assert all({"loss", "mc/accuracy", "mc/accuracy_per_byte", "train_tokens"} <= set(r) for r in evals)
    assert evals[1]["train_tokens"] == 8 * 8 * 32
    # the training run's own evaluation at step 8 saw the same weights: same task numbers
    assert evals[1]["mc/accuracy"] == pytest.approx(lines[-1]["mc/accuracy"], abs=1e-6)
    scalars = _tb_scalars(run / "eval" / "tensorboard")
    assert sorted(scalars["eval/mc/accuracy"]) == [4, 8] and sorted(scalars["eval/loss"]) == [4, 8]
    doc = json.loads((run / "eval" / "results" / "step-00000004.json").read_text())
    assert doc["models"][0]["checkpoint"]["step"] == 4 and doc["models"][0]["checkpoint"]["tokens"] == 4 * 8 * 32
    assert {(r["task"], r["metric"]) for r in doc["results"]} >= {("mc", "accuracy"), ("eval_split/eval", "loss")}

    # 3. restarted: nothing evaluated twice; an evaluation interrupted before its state entry is
    #    redone once and its earlier metrics line moved aside (each step appears once)
    run_cfg = C.read_config(str(run / "config.yaml"))
    again = evaluator.continuous_eval(run_cfg, poll_s=0.01)
    assert again["status"] == "completed" and again["evaluated"] == []
    del state["evaluated"]["8"]
    (run / "eval" / "state.json").write_text(json.dumps(state))
    redo = evaluator.continuous_eval(run_cfg, poll_s=0.01)
    assert redo["evaluated"] == [8]
    evals2 = [json.loads(x) for x in (run / "eval" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in evals2] == [4, 8]
    assert evals2[1]["mc/accuracy"] == pytest.approx(evals[1]["mc/accuracy"], abs=1e-6)
    assert (run / "eval" / "metrics_superseded.jsonl").exists()

    # 4. --mode eval: one checkpoint, the same numbers as continuous eval's
    one = _result(*_pretrain("--mode", "eval", "--model-dir", str(run),
                             "--checkpoint", str(run / "checkpoints" / "ckpt-4")))
    assert one["step"] == 4 and one["train_tokens"] == 4 * 8 * 32
    assert one["loss"] == pytest.approx(evals[0]["loss"], rel=1e-5)
    assert one["mc/accuracy_per_byte"] == pytest.approx(evals[0]["mc/accuracy_per_byte"], abs=1e-6)


def test_continuous_eval_waits_for_new_checkpoints_until_the_timeout(tmp_path, monkeypatch):
    """No checkpoint yet: it polls (a fake clock) and stops at --eval-timeout."""
    from massivetext_tf.training import config as C
    from massivetext_tf.training import evaluator

    cfg = C.from_dict(tiny_config(tmp_path / "run"))
    clock = iter(range(0, 1000, 5))
    sleeps = []
    out = evaluator.continuous_eval(cfg, timeout_s=12, poll_s=5, sleep=sleeps.append, clock=lambda: next(clock))
    assert out["status"] == "timeout" and out["evaluated"] == [] and sleeps == [5, 5]


def test_bad_inputs_are_one_line_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, err = _pretrain("--mode", "eval", "--model-dir", str(empty))
    assert code == 2 and err.strip().splitlines()[-1].startswith("error: --mode eval: --model-dir ")
    assert "Traceback" not in err

    from massivetext_tf.training import config as C
    from massivetext_tf.training import evaluator

    cfg = C.from_dict(tiny_config(tmp_path / "run", runtime={"eval_tasks": [str(tmp_path / "nope.yaml")]}))
    with pytest.raises(ValueError, match=r"^trainer.eval_tasks: tasks are text and need the data's tokenizer"):
        evaluator.load_eval_tasks(cfg)
    with pytest.raises(ValueError, match=r"^trainer.eval_task_limit: must be >= 1"):
        C.from_dict(tiny_config(tmp_path / "run", runtime={"eval_task_limit": 0})) and C.validate(
            C.from_dict(tiny_config(tmp_path / "run", runtime={"eval_task_limit": 0})))
    with pytest.raises(ValueError, match=r"no checkpoint in .*checkpoints to evaluate$"):
        evaluator.evaluate_once(C.from_dict(tiny_config(tmp_path / "run")))
