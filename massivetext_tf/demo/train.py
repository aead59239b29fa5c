"""The demo's train stage: `massivetext train` in this process, resumable.

Ctrl-C asks the trainer to write a checkpoint at the next step boundary and stop (it watches
SIGTERM); the next run continues from that checkpoint. A run directory whose checkpoints were
made with another configuration is refused rather than mixed.
"""
from __future__ import annotations

import os
import shlex
import signal
import time

import yaml

from massivetext_tf import io
from massivetext_tf.demo.options import DemoError, Interrupted
from massivetext_tf.demo.run import Run, gfile


def train_argv(run: Run) -> list:
    """The flags of `massivetext train` for this run."""
    opts = run.opts
    argv = ["--config", run.paths["pretrain_config"],
            "--strategy", opts.strategy or run.trainer_config.get("runtime", {}).get(
                "strategy", "one_device"),
            "--model-dir", run.paths["train"], "--data", run.paths["data"]]
    if opts.tpu:
        argv += ["--tpu", opts.tpu]
    if opts.train_steps:
        argv += ["--train-steps", str(opts.train_steps)]
    for item in opts.overrides:
        argv += ["--set", item]
    return argv


def train_stage(run: Run, i: int, fp: str) -> dict:
    """Stage 5: `massivetext train` in this process; Ctrl-C checkpoints and stops
    (`Interrupted`), the next run resumes; a run of another configuration is refused."""
    run.header(i, "train", "massivetext train (XLA, checkpoints, TensorBoard; "
                           "Ctrl-C checkpoints and stops, rerun to resume)")
    model_dir = run.paths["train"]
    rec = run.reuse("train", fp, [f"{model_dir}/preset/config.json"])
    if rec:
        run.say(f"reusing {model_dir}/ (trained to step {rec['result']['step']} in "
                f"{rec['train_seconds']:.0f} s)")
        return rec
    import tensorflow as tf

    started = f"{run.run_dir}/.stages/train.started.json"
    seconds_before = cpu_before = 0.0
    if gfile().exists(started):
        st = io.read_json(started)
        if st["fingerprint"] != fp:
            raise DemoError(
                f"{model_dir} holds checkpoints of a different configuration (the config, "
                "data or --train-steps changed since it started). Use --fresh (or FRESH=1) "
                "to start over, or another --run-dir.")
        seconds_before = float(st.get("train_seconds", 0.0))
        cpu_before = float(st.get("train_cpu_seconds", 0.0))
        latest = tf.train.latest_checkpoint(f"{model_dir}/checkpoints")
        if latest:
            run.say(f"resuming from {latest}")
    else:
        io.write_json(started, {"fingerprint": fp, "train_seconds": 0.0,
                                "train_cpu_seconds": 0.0})
    io.atomic_write(run.paths["pretrain_config"],
                    yaml.safe_dump(run.trainer_config, sort_keys=False))
    argv = train_argv(run)
    run.say("$ " + shlex.join(["massivetext", "train"] + argv))
    run.say(f"TensorBoard: tensorboard --logdir {model_dir}/tensorboard")
    from massivetext_tf.training import cli
    from massivetext_tf.training import train

    holder = {}

    def run_train(cfg):
        holder["result"] = train(cfg)
        return holder["result"]

    t0, c0 = time.perf_counter(), time.process_time()
    with graceful_sigint(run.say):
        try:
            rc = cli.run(run_train, "Pretrain (demo)", argv)
        finally:
            elapsed = time.perf_counter() - t0
            cpu = time.process_time() - c0
            io.write_json(started, {"fingerprint": fp,
                                    "train_seconds": seconds_before + elapsed,
                                    "train_cpu_seconds": cpu_before + cpu})
    if rc or "result" not in holder:
        raise DemoError(f"massivetext train failed with exit status {rc}")
    result = {k: v for k, v in holder["result"].items() if k != "history"}
    if result["status"] != "completed":
        raise Interrupted(f"training stopped at step {result['step']} with a checkpoint; "
                          "run the same command again to resume")
    return run.mark("train", fp, [f"{model_dir}/preset/config.json"], result=result,
                    train_seconds=seconds_before + elapsed,
                    train_cpu_seconds=cpu_before + cpu, resumed=seconds_before > 0)


class graceful_sigint:
    """First Ctrl-C: ask the trainer to checkpoint and stop at the next loop boundary (it
    watches SIGTERM); a second Ctrl-C aborts at once."""

    def __init__(self, say):
        self.say = say
        self.count = 0

    def _handle(self, signum, frame):
        self.count += 1
        term = signal.getsignal(signal.SIGTERM)
        if self.count > 1 or term in (signal.SIG_DFL, signal.SIG_IGN, None):
            raise KeyboardInterrupt
        self.say("\nCtrl-C: writing a checkpoint at the next step boundary, then stopping "
                 "(Ctrl-C again to abort without one)")
        os.kill(os.getpid(), signal.SIGTERM)

    def __enter__(self):
        import threading

        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False
