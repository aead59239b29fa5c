"""What every demo stage shares: the settings, the paths under the run directory, the stage
markers that make a rerun reuse finished work, and the way a stage calls a command."""
from __future__ import annotations

import contextlib
import hashlib
import io as text_io
import json
import shlex
import time
from typing import Callable

from massivetext_tf import io
from massivetext_tf.demo.options import STAGES, DemoError, Options, load_config


def sha(obj) -> str:
    """A short stable hash of JSON-able `obj` (stage fingerprints)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def gfile():
    """`tf.io.gfile` (local paths and gs:// alike)."""
    import tensorflow as tf

    return tf.io.gfile


def plain(obj):
    """`obj` as JSON can hold it: values it cannot (numpy scalars) become strings."""
    return json.loads(json.dumps(obj, default=str))


class Run:
    """One demo run directory: settings, paths, markers, output.

    A stage is reused when its marker `RUN/.stages/<stage>.json` holds the stage's current
    fingerprint (a hash of its settings and of the stages before it) and every output it
    names exists; `reuse` checks that, `mark` records a finished stage.
    """

    def __init__(self, opts: Options, *, out: Callable[[str], None] | None = None):
        self.opts = opts
        self.run_dir = opts.run_dir.rstrip("/")
        self.export_dir = (opts.export_dir or f"{self.run_dir}/saved_models").rstrip("/")
        self.say = out or (lambda s: print(s, flush=True))
        self.demo, self.trainer_config = load_config(opts.config)
        r = self.run_dir
        self.paths = {
            "corpus": f"{r}/corpus", "curated": f"{r}/curated",
            "tokenizer": f"{r}/tokenizer/tokenizer.model", "data": f"{r}/data",
            "train": f"{r}/train", "pretrain_config": f"{r}/pretrain.yaml",
            "summary": f"{r}/summary.json", "samples": f"{r}/samples.txt",
            "png": f"{r}/loss_curve.png", "eval": f"{r}/eval.json",
        }
        self.reused: list = []

    # -- markers ----------------------------------------------------------------------------

    def marker(self, stage: str) -> str:
        return f"{self.run_dir}/.stages/{stage}.json"

    def done(self, stage: str, fingerprint: str, outputs=()) -> dict | None:
        """The marker of `stage` if it matches `fingerprint` and its outputs exist."""
        path = self.marker(stage)
        if not gfile().exists(path):
            return None
        rec = io.read_json(path)
        if rec.get("fingerprint") != fingerprint:
            return None
        if not all(gfile().exists(p) for p in list(outputs) + list(rec.get("outputs", []))):
            return None
        return rec

    def reuse(self, stage: str, fingerprint: str, outputs=()) -> dict | None:
        """`done`, and when it is, counts the stage as reused."""
        rec = self.done(stage, fingerprint, outputs)
        if rec is not None:
            self.reused.append(stage)
        return rec

    def mark(self, stage: str, fingerprint: str, outputs=(), **info) -> dict:
        """Records `stage` as finished (its outputs and `info`); returns the record."""
        rec = plain({"fingerprint": fingerprint, "outputs": list(outputs), "time": time.time(),
                     **info})
        io.write_json(self.marker(stage), rec, indent=1)
        return rec

    # -- output and commands ----------------------------------------------------------------

    def header(self, i: int, stage: str, what: str) -> None:
        self.say(f"\n=== [{i}/{len(STAGES)}] {stage}: {what}")

    def command(self, name: str, argv: list, *, capture: bool = False) -> str:
        """Prints `massivetext NAME ARGV...` and runs it in this process
        (`massivetext_tf.cli.<name>.main`); returns its standard output when `capture`."""
        import importlib

        self.say("$ " + " ".join(shlex.quote(a) for a in ["massivetext", name] + argv))
        module = importlib.import_module(f"massivetext_tf.cli.{name.replace('-', '_')}")
        buf = text_io.StringIO()
        with contextlib.redirect_stdout(buf) if capture else contextlib.nullcontext():
            rc = module.main(argv)
        if rc:
            raise DemoError(f"massivetext {name} failed with exit status {rc}")
        return buf.getvalue()

    def remove(self, path: str) -> None:
        """Deletes directory `path` if it exists."""
        if gfile().exists(path):
            gfile().rmtree(path)

    def seq_len(self) -> int:
        return int(self.trainer_config.get("data", {}).get("sequence_length", 128))
