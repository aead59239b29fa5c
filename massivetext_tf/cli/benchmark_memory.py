"""Peak memory and step time of a training step with and without runtime.remat=block.

    massivetext benchmark-memory                      # Gopher-style, sequence length 2048
    massivetext benchmark-memory --layers 8 --hidden 256 --seq-len 2048 --batch 1

Each configuration runs in its own child process (so neither sees the other's allocations):
the real `Trainer` (one_device, XLA gradient and update programs, float32) on synthetic
batches, `--warmup` steps, then `--steps` timed steps. The peak is the TensorFlow CPU
allocator's (`tf.config.experimental.get_memory_info("CPU:0")["peak"]`, which counts XLA's
temporary buffers). Activation bytes = peak - (weights + gradients + AdamW's two slots), all
float32: 16 bytes a parameter. The last line is JSON: peak_bytes, remat_peak_bytes,
activation_bytes, remat_activation_bytes, step_seconds, remat_step_seconds (medians of the
timed steps), the ratios, and the configuration.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build_parser():
    """The flags of `massivetext benchmark-memory` (no TensorFlow import)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--seq-len", dest="seq_len", type=int, default=2048)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--steps", type=int, default=3, help="timed steps per configuration")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps (compilation)")
    p.add_argument("--child", help=argparse.SUPPRESS)  # internal: one configuration, JSON
    return p


def parse(argv=None):
    return build_parser().parse_args(argv)


def measure(spec: dict) -> dict:
    """One configuration in this process: peak allocator bytes and per-step seconds."""
    import tensorflow as tf

    from massivetext_tf.training import config as config_lib
    from massivetext_tf.training.loop import Trainer

    d, L = spec["hidden"], spec["seq_len"]
    cfg = config_lib.from_dict({
        "model_dir": tempfile.mkdtemp(prefix="bench_memory_"),
        "model": {"preset": "gopher_tiny", "overrides": {
            "num_layers": spec["layers"], "hidden_dim": d, "num_heads": spec["heads"],
            "key_value_dim": d // spec["heads"], "intermediate_dim": 4 * d,
            "vocabulary_size": spec["vocab"], "max_sequence_length": L}},
        "data": {"dir": "synthetic", "sequence_length": L, "global_batch_size": spec["batch"],
                 "vocabulary_size": spec["vocab"]},
        "optimizer": {"peak_lr": 1e-4, "warmup_steps": 10},
        "runtime": {"train_steps": 10**9, "steps_per_loop": 1, "remat": spec["remat"],
                    "progress": False, "tensorboard": False, "save_preset": False},
    })
    trainer = Trainer(cfg)
    for _ in range(spec["warmup"]):
        trainer.train_steps(1)
    seconds = []
    for _ in range(spec["steps"]):
        t0 = time.perf_counter()
        out = trainer.train_steps(1)
        seconds.append(time.perf_counter() - t0)
    n = trainer.num_params
    return {
        "peak_bytes": int(tf.config.experimental.get_memory_info("CPU:0")["peak"]),
        "params": n,
        "state_bytes": 16 * n,  # float32 weights, gradients, AdamW m and v
        "step_seconds": statistics.median(seconds),
        "all_step_seconds": seconds,
        "loss": float(out.losses[-1]),
    }


def run_child(spec: dict) -> dict:
    proc = subprocess.run([sys.executable, "-m", "massivetext_tf.cli.benchmark_memory", "--child",
                           json.dumps(spec)], capture_output=True, text=True)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    if proc.returncode or not lines:
        sys.exit(f"error: child run {spec} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def main(argv=None):
    args = parse(argv)
    if args.child:
        print(json.dumps(measure(json.loads(args.child))), flush=True)
        return 0
    for flag in ("layers", "hidden", "heads", "vocab", "seq_len", "batch", "steps"):
        if getattr(args, flag) < 1:
            print(f"error: --{flag.replace('_', '-')}: must be >= 1", file=sys.stderr)
            return 2
    if args.hidden % args.heads:
        print("error: --hidden: must be a multiple of --heads", file=sys.stderr)
        return 2
    spec = {k: getattr(args, k) for k in
            ("layers", "hidden", "heads", "vocab", "seq_len", "batch", "steps", "warmup")}
    res = {}
    for remat in ("none", "block"):
        res[remat] = run_child(dict(spec, remat=remat))
        print(f"remat={remat}: peak {res[remat]['peak_bytes'] / 2**20:.1f} MiB, step "
              f"{res[remat]['step_seconds']:.2f} s, loss {res[remat]['loss']:.4f}", flush=True)
    state = res["none"]["state_bytes"]
    act, ract = res["none"]["peak_bytes"] - state, res["block"]["peak_bytes"] - state
    result = {
        "peak_bytes": res["none"]["peak_bytes"],
        "remat_peak_bytes": res["block"]["peak_bytes"],
        "activation_bytes": act,
        "remat_activation_bytes": ract,
        "step_seconds": res["none"]["step_seconds"],
        "remat_step_seconds": res["block"]["step_seconds"],
        "activation_reduction": act / ract if ract > 0 else None,
        "step_time_increase": res["block"]["step_seconds"] / res["none"]["step_seconds"] - 1,
        "state_bytes": state,
        "params": res["none"]["params"],
        "all_step_seconds": {k: v["all_step_seconds"] for k, v in res.items()},
        **spec,
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
