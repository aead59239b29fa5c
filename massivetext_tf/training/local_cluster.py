"""Run N worker processes of one command on localhost with TF_CONFIG (multi-worker on a laptop).

    python -m massivetext_tf.training.local_cluster --workers 2 -- \
        python trainers/pretrain.py --config massivetext_tf/configs/gopher_tiny.yaml \
            --strategy multi_worker_mirrored --model-dir runs/mw --data DIR --train-steps 50

Each worker gets TF_CONFIG={"cluster": {"worker": [...free ports...]}, "task": {"type":
"worker", "index": i}}; worker 0 is the chief. Exits with the first non-zero worker status.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("localhost", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def tf_config(ports: list[int], index: int) -> str:
    return json.dumps(
        {
            "cluster": {"worker": [f"localhost:{p}" for p in ports]},
            "task": {"type": "worker", "index": index},
        }
    )


def launch(cmd: list[str], workers: int, *, env=None, stdout=None, stderr=None,
           ports: list[int] | None = None) -> list[subprocess.Popen]:
    """Starts `workers` processes of `cmd`, each with its TF_CONFIG; returns the Popen objects."""
    ports = ports or free_ports(workers)
    procs = []
    for i in range(workers):
        e = dict(os.environ if env is None else env)
        e["TF_CONFIG"] = tf_config(ports, i)
        out = stdout(i) if callable(stdout) else stdout
        err = stderr(i) if callable(stderr) else stderr
        procs.append(subprocess.Popen(cmd, env=e, stdout=out, stderr=err))
    return procs


def wait_all(procs, timeout: float | None = None) -> list[int]:
    """Waits for every process; if one fails, the others get `timeout` seconds (then killed)."""
    deadline = None
    while True:
        codes = [p.poll() for p in procs]
        if all(c is not None for c in codes):
            return codes
        if any(c not in (None, 0) for c in codes) and deadline is None:
            deadline = time.monotonic() + (timeout or 60)
        if deadline and time.monotonic() > deadline:
            for p in procs:
                if p.poll() is None:
                    p.kill()
            return [p.wait() for p in procs]
        time.sleep(0.2)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("cmd", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd and args.cmd[0] == "--" else args.cmd
    if not cmd:
        parser.error("give the command after --")
    codes = wait_all(launch(cmd, args.workers))
    sys.exit(next((c for c in codes if c), 0))


if __name__ == "__main__":
    main()
