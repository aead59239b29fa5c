"""Real processes: strategies agree, SIGKILL + resume is bitwise exact, SIGTERM checkpoints,
a dead worker fails its peer in bounded time and a restart resumes."""
import json
import signal
import subprocess
import time

import numpy as np
import pytest
import tensorflow as tf

from massivetext_tf.training import local_cluster
from training_helpers import HERE, PY, REPO, env, parse_result, run_result, tiny_config

pytestmark = pytest.mark.slow


def launch_workers(cfg, tmp_path, n=2, name="w"):
    cmd = [PY, str(HERE / "_run.py"), json.dumps(cfg)]
    outs = [open(tmp_path / f"{name}{i}.out", "w+") for i in range(n)]
    procs = local_cluster.launch(cmd, n, env=env(), stdout=lambda i: outs[i],
                                 stderr=subprocess.STDOUT)
    return procs, outs


def read(f):
    f.flush()
    f.seek(0)
    return f.read()


def test_mirrored_and_multi_worker_give_the_one_device_loss_curve(tmp_path):
    base = tiny_config(tmp_path / "s", runtime={"train_steps": 12})
    mw = tiny_config(tmp_path / "mw", runtime={"train_steps": 12,
                                               "strategy": "multi_worker_mirrored"})
    procs, outs = launch_workers(mw, tmp_path)  # runs while the next process runs
    local = run_result(dict(base, strategies=["one_device", "mirrored"]), "--logical-cpus", "2")
    codes = local_cluster.wait_all(procs, timeout=240)
    workers = [parse_result(read(o), code=c) for o, c in zip(outs, codes)]
    one, mirrored = local
    assert one["num_replicas"] == 1 and mirrored["num_replicas"] == 2
    assert one["xla"] and not mirrored["xla"]  # logged fallback on CPU devices
    assert all(w["num_replicas"] == 2 and w["xla"] for w in workers)
    assert len(one["history"]) == 12 and one["history"][-1] < one["history"][0]
    np.testing.assert_allclose(mirrored["history"], one["history"], rtol=1e-5)
    for w in workers:
        np.testing.assert_allclose(w["history"], one["history"], rtol=1e-5)


def checkpoint_values(path):
    """Every numeric tensor of a checkpoint (the iterator state is a variant: key only)."""
    reader = tf.train.load_checkpoint(path)
    out = {}
    for k, dtype in reader.get_variable_to_dtype_map().items():
        if k != "_CHECKPOINTABLE_OBJECT_GRAPH":
            out[k] = None if dtype == tf.variant else reader.get_tensor(k)
    return out


def wait_for(pred, timeout, proc=None, every=0.005):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        if proc is not None and proc.poll() is not None:
            return pred()
        time.sleep(every)
    return False


def test_sigkill_then_restart_is_bitwise_equal_to_an_uninterrupted_run(tmp_path):
    def cfg(d):
        return tiny_config(d, runtime={"train_steps": 40, "steps_per_loop": 1, "log_every": 5,
                                       "checkpoint_every": 5, "keep_checkpoints": 2})
    ref_cfg, run_cfg = cfg(tmp_path / "ref"), cfg(tmp_path / "run")
    ref = subprocess.Popen([PY, str(HERE / "_run.py"), json.dumps(ref_cfg)], env=env(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim = subprocess.Popen([PY, str(HERE / "_run.py"), json.dumps(run_cfg)], env=env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tmp_path / "run" / "checkpoints" / "checkpoint"
    assert wait_for(state.exists, 240, victim), "no checkpoint appeared"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_at = tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints"))
    killed_step = int(killed_at.rsplit("-", 1)[1])
    assert killed_step < 40, "the run finished before it was killed"
    out, err = ref.communicate(timeout=240)
    reference = parse_result(out, err, ref.returncode)
    resumed = run_result(run_cfg)
    start = 40 - len(resumed["history"])
    assert start >= killed_step > 0  # resumed from a checkpoint, not from scratch
    assert resumed["step"] == reference["step"] == 40
    np.testing.assert_array_equal(resumed["history"], reference["history"][start:])
    a = checkpoint_values(str(tmp_path / "ref" / "checkpoints" / "ckpt-40"))
    b = checkpoint_values(str(tmp_path / "run" / "checkpoints" / "ckpt-40"))
    assert a.keys() == b.keys() and any(k.startswith("input_iterators") for k in a)
    assert sum(v is not None for v in a.values()) > 20  # model, optimizer slots, step, rng
    for k in a:
        if a[k] is not None:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_sigterm_checkpoints_at_the_next_boundary_and_exits_cleanly(tmp_path, sig):
    d = tmp_path / "run"
    cmd = [PY, str(REPO / "trainers/pretrain.py"), "--config",
           str(REPO / "massivetext_tf/configs/gopher_tiny.yaml"), "--model-dir", str(d),
           "--train-steps", "100000", "--set", "trainer.checkpoint_every=100000",
           "--set", "trainer.eval_every=0", "--set", "trainer.log_every=5",
           "--set", "trainer.steps_per_loop=5", "--set", "trainer.save_preset=false"]
    proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert wait_for((d / "metrics.jsonl").exists, 240, proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-3000:]
    result = json.loads(out.strip().splitlines()[-1])
    assert result["status"] == "preempted" and 0 < result["step"] < 100000
    splits = {json.loads(line)["split"] for line in (d / "metrics.jsonl").read_text().splitlines()}
    assert splits == {"train"}  # eval is off; eval lines would say "eval"
    assert tf.train.latest_checkpoint(str(d / "checkpoints")).endswith(f"ckpt-{result['step']}")


def test_dead_worker_fails_the_other_in_bounded_time_and_restart_resumes(tmp_path):
    cfg = tiny_config(tmp_path / "mw", runtime={
        "strategy": "multi_worker_mirrored", "train_steps": 100000, "steps_per_loop": 2,
        "checkpoint_every": 4, "log_every": 4, "heartbeat_timeout_s": 5,
        "collective_timeout_s": 20})
    procs, outs = launch_workers(cfg, tmp_path)
    try:
        # A step is restorable once the chief's and the worker's copies are both complete
        # (each writes its own directory; a restart uses the newest step common to all).
        states = [tmp_path / "mw" / "checkpoints" / "checkpoint",
                  tmp_path / "mw" / "checkpoints" / "worker_1" / "checkpoint"]
        assert wait_for(lambda: all(st.exists() for st in states), 240, procs[0], every=0.05), \
            read(outs[0])[-3000:]
        procs[1].send_signal(signal.SIGKILL)
        t0 = time.monotonic()
        code = procs[0].wait(timeout=240)
        elapsed = time.monotonic() - t0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert code != 0, read(outs[0])[-2000:]
    assert elapsed < 45
    # Restart both workers: they resume from the common checkpoint and finish.
    latest = max(set.intersection(*(
        {int(p.rsplit("-", 1)[1]) for p in tf.train.get_checkpoint_state(str(st.parent))
         .all_model_checkpoint_paths} for st in states)))
    cfg["trainer"]["train_steps"] = latest + 8
    procs, outs = launch_workers(cfg, tmp_path, name="again")
    codes = local_cluster.wait_all(procs, timeout=240)
    results = [parse_result(read(o), code=c) for o, c in zip(outs, codes)]
    for r in results:
        assert r["step"] == latest + 8
        assert 8 <= len(r["history"]) < latest + 8  # resumed, not restarted from step 0
