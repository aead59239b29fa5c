"""Sharded training on the JAX backend (`massivetext train --backend jax --strategy
model_parallel --mesh data=2,model=4`), against the unsharded JAX run and the TensorFlow run.

Real subprocesses of the command on real shards with a SentencePiece tokenizer; the sharded
runs see 8 virtual CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count=8). All runs
start from the same preset directory (`--init-from`) and read the same data. The sharded run
also recomputes each block in the backward pass (`runtime.remat: block`): its losses equal the
unsharded run's all the same.
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

from harness import subprocess_env
from training_helpers import REPO, write_tiny_shards

pytestmark = pytest.mark.slow  # training subprocesses, > 20 s

jax = pytest.importorskip("jax")

STEPS = 20
EIGHT_DEVICES = "--xla_force_host_platform_device_count=8"
MESH = ("--strategy", "model_parallel", "--mesh", "data=2,model=4")


def _env(devices=None):
    env = subprocess_env(REPO)
    env.pop("KERAS_BACKEND", None)  # the command chooses it (--backend)
    if devices:
        env["XLA_FLAGS"] = devices
    return env


def _config(path, data, init):
    import yaml

    path.write_text(yaml.safe_dump({
        "model": {"preset": "gopher_tiny", "overrides": {}, "init_from": str(init)},
        "data": {"dir": str(data), "sequence_length": 32, "global_batch_size": 8},
        "optimizer": {"peak_lr": 3e-3, "warmup_steps": 4, "weight_decay": 0.1,
                      "decay_steps": 400},
        "trainer": {"train_steps": STEPS, "steps_per_loop": 5, "log_every": 1,
                    "checkpoint_every": 10, "eval_every": 10, "eval_steps": 2,
                    "progress": False, "tensorboard": True, "save_preset": True,
                    "sample_prompts": []},
    }))
    return str(path)


def train(config, model_dir, *args, devices=None, wait=True, timeout=600):
    cmd = [sys.executable, "-m", "massivetext_tf", "train", "--config", config,
           "--model-dir", str(model_dir), *args]
    if not wait:
        return subprocess.Popen(cmd, env=_env(devices), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    proc = subprocess.run(cmd, env=_env(devices), capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def train_losses(model_dir, name="metrics.jsonl"):
    out = {}
    for line in (pathlib.Path(model_dir) / name).read_text().splitlines():
        try:
            m = json.loads(line)
        except ValueError:  # a line cut by a kill
            continue
        if m.get("split") == "train":
            out[m["step"]] = m["loss"]
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The initial preset, and the TF, unsharded JAX and sharded JAX runs of STEPS steps."""
    root = tmp_path_factory.mktemp("sharded")
    data = write_tiny_shards(root / "data")
    init = root / "init"
    code = ("import sys; from massivetext_tf import models; "
            "models.build('gopher_tiny', tokenizer=sys.argv[1]).save_to_preset(sys.argv[2])")
    proc = subprocess.run([sys.executable, "-c", code, f"{data}/tokenizer.model", str(init)],
                          env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = _config(root / "c.yaml", data, init)
    out = {"root": root, "config": config, "data": data}
    out["tf"] = train(config, root / "tf", "--strategy", "one_device")
    out["jax"] = train(config, root / "jax", "--backend", "jax", "--strategy", "one_device")
    out["sharded"] = train(config, root / "sharded", "--backend", "jax", *MESH,
                           "--set", "runtime.remat=block",
                           "--set", "trainer.sample_prompts=[to be]",  # 1 row: padded to 2
                           devices=EIGHT_DEVICES)
    return out


def test_sharded_losses_match_unsharded_jax_and_tensorflow(runs):
    root = runs["root"]
    tf_l, jax_l, sh_l = (train_losses(root / name) for name in ("tf", "jax", "sharded"))
    assert sorted(sh_l) == list(range(1, STEPS + 1))
    assert sorted(jax_l) == sorted(tf_l) == sorted(sh_l)
    steps = sorted(sh_l)
    sharded, unsharded, tf = (np.array([d[s] for s in steps]) for d in (sh_l, jax_l, tf_l))
    np.testing.assert_allclose(sharded, unsharded, rtol=1e-5)
    np.testing.assert_allclose(sharded, tf, rtol=1e-3)
    assert sharded[-1] < sharded[0] - 0.3  # it trained: 20 steps at 3e-3 move the loss
    # Same metrics and outputs as the TF run: eval loss, bits per byte, TensorBoard, preset.
    for key in ("eval_loss", "eval_bits_per_byte"):
        assert runs["sharded"][key] == pytest.approx(runs["tf"][key], rel=1e-3)
    assert runs["sharded"]["num_devices"] == 8 and runs["sharded"]["num_replicas"] == 2
    for name in ("tf", "sharded"):
        assert list((root / name / "tensorboard").glob("events.out.tfevents.*")), name
        assert (root / name / "preset" / "model.weights.h5").exists(), name
        assert (root / name / "config.yaml").exists(), name
    # The text samples at each evaluation: the one-prompt batch padded over the data axis.
    import tensorflow as tf

    samples = [(e.step, tf.make_ndarray(v.tensor).item().decode("utf-8"))
               for f in (root / "sharded" / "tensorboard").glob("events.out.tfevents.*")
               for e in tf.compat.v1.train.summary_iterator(str(f))
               for v in e.summary.value if v.tag.startswith("samples/")]
    assert sorted(step for step, _ in samples) == [10, 20], samples
    assert all(text.startswith("to be") for _, text in samples), samples


def test_each_device_holds_a_quarter_of_every_sharded_weight(runs):
    """From the arrays' shardings in the training process (MODEL_DIR/sharding.json)."""
    report = json.loads((runs["root"] / "sharded" / "sharding.json").read_text())
    assert report["mesh"] == {"data": 2, "model": 4} and len(report["devices"]) == 8
    sharded_kinds = set()
    for row in report["weights"] + report["optimizer"]:
        total = int(np.prod(row["shape"])) if row["shape"] else 1
        assert row["devices"] == 8, row
        if row["spec"] and "model" in row["spec"]:
            assert row["per_device"] == [total // 4], row  # every device: exactly 1/4
            sharded_kinds.add(row["path"].rsplit("/", 2)[-2] + "/" + row["path"].rsplit("/", 1)[-1]
                              if "adam" not in row["path"] else "slot")
        else:
            assert row["per_device"] == [total], row  # replicated
    for kind in ("token_embedding/embeddings", "query/kernel", "key/kernel", "value/kernel",
                 "attention_output/kernel", "attention/relative_kernel",
                 "input_dense/kernel", "output_dense/kernel", "slot"):
        assert kind in sharded_kinds, (kind, sorted(sharded_kinds))
    weights = {row["path"]: row for row in report["weights"]}
    slots = [row for row in report["optimizer"] if "model" in (row["spec"] or [])]
    # Both AdamW slots of every sharded weight are sharded the same way.
    assert len(slots) == 2 * sum("model" in (r["spec"] or []) for r in weights.values())


def test_sharded_preset_exports_and_generates_the_keras_models_tokens(runs, tmp_path):
    import tensorflow as tf

    from massivetext_tf import models
    from massivetext_tf.models.decoding import greedy_generate

    preset = runs["root"] / "sharded" / "preset"
    proc = subprocess.run(
        [sys.executable, "-m", "massivetext_tf", "export", "--model", str(preset),
         "--name", "sharded", "--base-dir", str(tmp_path), "--version", "1",
         "--max-length", "32"], env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=f"{runs['data']}/tokenizer.model")
    prompts = ["to be or not", "the question"]
    loaded = tf.saved_model.load(str(tmp_path / "sharded" / "1"))
    out = loaded.signatures["generate_all_inputs"](
        prompts=tf.constant(prompts), max_new_tokens=tf.constant(8),
        temperature=tf.constant(0.0), top_k=tf.constant(0), top_p=tf.constant(1.0),
        seed=tf.constant(0, tf.int64))
    model = models.load(str(preset))
    expected = greedy_generate(model, [[2] + sp.encode(p) for p in prompts], max_new_tokens=8,
                               end_id=1, max_length=32)
    for row, want in enumerate(expected):
        got = [int(t) for t in out["token_ids"][row].numpy()]
        got = got[: got.index(1)] if 1 in got else [t for t in got if t != 0]
        assert got == list(want), (prompts[row], got, want)
    assert any(len(w) for w in expected)


def test_sigkill_then_resume_gives_the_uninterrupted_losses(runs):
    """Killed after a checkpoint and later steps, the rerun resumes from the checkpoint and
    redoes those steps with the losses the killed run logged (same data, same state)."""
    run = runs["root"] / "killed"
    config = runs["config"]
    args = ("--backend", "jax", *MESH,
            "--set", "trainer.steps_per_loop=1", "--set", "trainer.checkpoint_every=4",
            "--set", "trainer.eval_every=0", "--set", "trainer.save_preset=false")
    proc = train(config, run, *args, "--train-steps", "400", devices=EIGHT_DEVICES, wait=False)
    index = run / "checkpoints" / "checkpoint.json"
    ckpt_step = logged = 0
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None:
            try:
                names = json.loads(index.read_text())["checkpoints"] if index.exists() else []
            except ValueError:
                names = []
            ckpt_step = int(names[-1].rsplit("-", 1)[1]) if names else 0
            losses = train_losses(run) if (run / "metrics.jsonl").exists() else {}
            logged = max(losses, default=0)
            if ckpt_step and logged >= ckpt_step + 2:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert ckpt_step and logged >= ckpt_step + 2, "no checkpoint plus later steps in time"
    before = train_losses(run)
    resume = int(json.loads(index.read_text())["checkpoints"][-1].rsplit("-", 1)[1])
    killed_at = max(before)
    assert killed_at > resume

    end = killed_at + 2
    result = train(config, run, *args, "--train-steps", str(end), devices=EIGHT_DEVICES)
    assert result["step"] == end
    after = train_losses(run)
    assert sorted(after) == list(range(1, end + 1))  # each step once
    redone = train_losses(run, "metrics_superseded.jsonl")
    assert set(redone) == set(range(resume + 1, killed_at + 1))
    for step, loss in redone.items():  # the redone steps: the killed run's losses
        assert after[step] == pytest.approx(loss, rel=1e-6), step
    # And the start agrees with the uninterrupted sharded run (same schedule: decay_steps).
    uninterrupted = train_losses(runs["root"] / "sharded")
    for step in range(1, 6):
        assert after[step] == pytest.approx(uninterrupted[step], rel=1e-5), step


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_train_like_one_and_their_checkpoint_resumes_in_one(runs):
    """Multi-host on one machine: 2 processes of 4 virtual CPU devices each (gloo collectives)
    form the data=2,model=4 mesh of the single-process sharded run; process 0 writes."""
    root, config = runs["root"], runs["config"]
    run = root / "two_processes"
    port = str(_free_port())
    procs = [train(config, run, "--backend", "jax", *MESH, "--coordinator", f"localhost:{port}",
                   "--num-processes", "2", "--process-id", str(i),
                   devices="--xla_force_host_platform_device_count=4", wait=False)
             for i in range(2)]
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=400))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-4000:]
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    for r in results:
        assert r["step"] == STEPS and r["num_devices"] == 8 and r["num_replicas"] == 2
    # One global computation, not two independent ones: both report the same replicated loss.
    assert results[0]["loss"] == results[1]["loss"]
    assert results[0]["eval_loss"] == results[1]["eval_loss"]

    two, one = train_losses(run), train_losses(root / "sharded")
    assert sorted(two) == list(range(1, STEPS + 1))  # process 0 wrote each step once
    # Each process reads its own half of the data (input pipeline 0 or 1 of 2: the shard's
    # records split between them), so a global batch holds other rows than the one-process
    # run's: the losses are not equal step by step. Step 1 starts from the same preset, so its
    # loss is the same weights' mean over 8 other rows of the same data (0.2% apart here);
    # and the run trains as much as the one-process run.
    assert two[1] == pytest.approx(one[1], rel=2e-2)
    assert two[STEPS] < two[1] - 0.3
    assert two[STEPS] == pytest.approx(one[STEPS], rel=0.1)
    assert results[0]["eval_loss"] == pytest.approx(runs["sharded"]["eval_loss"], rel=0.1)

    from massivetext_tf import models

    preset = run / "preset"
    assert (preset / "model.weights.h5").exists()
    assert models.load(str(preset)).count_params() == runs["sharded"]["num_params"]
    report = json.loads((run / "sharding.json").read_text())
    assert report["processes"] == 2 and len(report["local_devices"]) == 4
    assert json.loads((run / "checkpoints" / "checkpoint.json").read_text())["checkpoints"][-1] \
        == f"ckpt-{STEPS}"

    # The 2-process checkpoint resumes in one process of 8 devices (the files do not depend on
    # the process count): it starts at STEPS (no line of the first run is redone).
    result = train(config, run, "--backend", "jax", *MESH, "--train-steps", str(STEPS + 2),
                   "--set", "trainer.eval_every=0", devices=EIGHT_DEVICES)
    assert result["step"] == STEPS + 2
    assert sorted(train_losses(run)) == list(range(1, STEPS + 3))
    assert not (run / "metrics_superseded.jsonl").exists()
    assert all(np.isfinite(train_losses(run)[s]) for s in (STEPS + 1, STEPS + 2))


def test_a_model_axis_that_does_not_divide_the_heads_exits_2_naming_the_weight(tmp_path):
    """gopher_tiny has 4 heads: model=8 cannot split them. One line naming runtime.mesh and the
    weight (jax's own error names neither), before anything is written."""
    cmd = [sys.executable, "-m", "massivetext_tf", "train", "--config", "gopher_tiny",
           "--data", "synthetic", "--backend", "jax", "--strategy", "model_parallel",
           "--mesh", "data=1,model=8", "--model-dir", str(tmp_path / "run"), "--train-steps", "2"]
    proc = subprocess.run(cmd, env=_env(EIGHT_DEVICES), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: runtime.mesh: model=8 does not divide transformer_layer_0/"
                           "attention/relative_kernel (64, 4, 16)"), last
    assert "Traceback" not in proc.stderr and not (tmp_path / "run").exists()
