"""tools/plan.py and massivetext_tf.training.memory: the formulas, the flags, and the
prediction against the measured peak of real training steps on this CPU."""
import json
import subprocess

import pytest

from massivetext_tf import models
from massivetext_tf.training import memory
from training_helpers import PY, REPO, env

TOOL = str(REPO / "tools" / "plan.py")


def test_state_bytes_follow_the_mesh_and_remat_cuts_activations():
    kw = dict(hardware_kind="TPU v5p", devices=1024, global_batch_tokens=3_000_000,
              sequence_length=2048, precision="bfloat16")
    n = models.count_params("chinchilla_70b")
    plain = memory.plan("chinchilla_70b", mesh="data=64,model=16", **kw)
    assert plain["params"] == n
    assert plain["bytes_per_device"]["parameters"] == int(4 * n / 16)
    assert plain["bytes_per_device"]["optimizer_slots"] == int(8 * n / 16)
    remat = memory.plan("chinchilla_70b", mesh="data=64,model=16", remat="block", **kw)
    assert remat["bytes_per_device"]["activations"] * 3 < plain["bytes_per_device"]["activations"]
    assert remat["step_seconds"] > plain["step_seconds"]
    # Data parallel only: every device holds 16 bytes a parameter; 70B does not fit.
    dp = memory.plan("chinchilla_70b", **kw)
    assert dp["total_bytes_per_device"] > 16 * n and not dp["fits"]
    # days = 20 N tokens / tokens a step x seconds a step.
    assert plain["days"] == pytest.approx(20 * n / 3_000_000 * plain["step_seconds"] / 86400)
    assert plain["hardware_source"].startswith("cloud.google.com/tpu")


def run(*args):
    return subprocess.run([PY, TOOL, *args], env=env(), capture_output=True, text=True,
                          timeout=120)


@pytest.mark.slow
def test_plan_tool_prints_the_plan_and_names_a_bad_flag():
    ok = run("--preset", "gopher_1_4b", "--hardware", "H100", "--devices", "8",
             "--global-batch-tokens", "262144", "--sequence-length", "2048",
             "--mesh", "data=8,model=1", "--remat", "block", "--precision", "bfloat16")
    assert ok.returncode == 0, ok.stderr
    out = json.loads(ok.stdout.splitlines()[-1])
    assert out["fits"] and out["mesh"] == {"data": 8, "model": 1} and out["days"] > 0
    bad = run("--preset", "gopher_1_4b", "--hardware", "H100", "--devices", "8",
              "--global-batch-tokens", "262144", "--sequence-length", "2048",
              "--mesh", "data=3,model=2")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1] == (
        "error: --mesh: data x model = 6, but --devices is 8")
    bad = run("--preset", "gopher_1_4b", "--hardware", "K80", "--devices", "1",
              "--global-batch-tokens", "2048", "--sequence-length", "2048")
    assert bad.returncode == 2 and "--hardware: 'K80' is not one of TPU v4" in bad.stderr


SIZES = [  # three small Gopher-style decoders (32,000-token vocabulary), float32 on this CPU
    dict(layers=2, hidden=128, heads=2, vocab=32000, seq_len=512, batch=2, remat="none"),
    dict(layers=4, hidden=256, heads=4, vocab=32000, seq_len=1024, batch=1, remat="none"),
    dict(layers=6, hidden=192, heads=3, vocab=32000, seq_len=1024, batch=1, remat="block"),
]


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s['layers']}x{s['hidden']}_{s['remat']}")
def test_predicted_peak_is_within_15_percent_of_a_measured_training_step(size):
    """The measured peak of real training steps (the Trainer's XLA programs, the TF CPU
    allocator's peak, one child process each) against params + grads + slots + activations,
    the activations (XLA's temporary buffer) as TF's CPU allocator counts them: at 4x256,
    L=1024 the 396 MiB buffer takes a whole 512 MiB region (memory.tf_cpu_allocator_bytes)."""
    proc = subprocess.run([PY, str(REPO / "tools" / "benchmark_memory.py"), "--child",
                           json.dumps(dict(size, steps=1, warmup=1))],
                          env=env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    measured = json.loads(proc.stdout.splitlines()[-1])
    config = {"num_layers": size["layers"], "hidden_dim": size["hidden"],
              "intermediate_dim": 4 * size["hidden"], "num_heads": size["heads"],
              "vocabulary_size": size["vocab"]}
    activations = memory.activation_bytes(
        config, sequences=size["batch"], sequence_length=size["seq_len"], remat=size["remat"])
    predicted = 16 * measured["params"] + memory.tf_cpu_allocator_bytes(activations)
    assert predicted == pytest.approx(measured["peak_bytes"], rel=0.15), (predicted, measured)
