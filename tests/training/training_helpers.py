"""Helpers for the training tests: a tiny config and a subprocess runner."""
import json
import pathlib
import subprocess
import sys

from harness import subprocess_env

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
PY = sys.executable


def tiny_config(model_dir, **sections):
    """A gopher_tiny run on synthetic data that takes a few seconds. Trainer fields given in
    `runtime=` (their old section) are merged into `trainer`."""
    from massivetext_tf.training.config import MOVED

    runtime = dict(sections.get("runtime") or {})
    trainer = dict(sections.get("trainer") or {})
    for key in list(runtime):
        if f"runtime.{key}" in MOVED:
            trainer[key] = runtime.pop(key)
    sections.update(runtime=runtime, trainer=trainer)
    cfg = {
        "model_dir": str(model_dir),
        "model": {"preset": "gopher_tiny", "overrides": {"num_layers": 1}},
        "data": {"dir": "synthetic", "sequence_length": 32, "global_batch_size": 8,
                 "vocabulary_size": 256},
        "optimizer": {"peak_lr": 3e-3, "warmup_steps": 3, "weight_decay": 0.1},
        "trainer": {"train_steps": 12, "steps_per_loop": 4, "log_every": 4,
                    "checkpoint_every": 100, "eval_every": 0, "eval_steps": 2,
                    "progress": False, "tensorboard": False, "save_preset": False},
    }
    for section, values in sections.items():
        if isinstance(values, dict):
            cfg.setdefault(section, {}).update(values)
        else:
            cfg[section] = values
    return cfg


WORDS = "to be or not that is the question whether tis nobler in mind suffer slings arrows".split()


def write_tiny_shards(root, num_docs=120, num_eval=20):
    """A real prepare_data-style dataset in `root`: a SentencePiece tokenizer, one train and
    one eval shard of random word documents, and the manifest. Returns `str(root)`."""
    import os
    import random

    import sentencepiece as spm
    import tensorflow as tf

    from massivetext_tf.data import records
    from massivetext_tf.data.tokenizer import train_tokenizer

    rng = random.Random(0)
    docs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 40)))
            for _ in range(num_docs)]
    tok = str(root / "tok.model")
    train_tokenizer(tok, docs, vocab_size=300, hard_vocab_limit=False)
    sp = spm.SentencePieceProcessor(model_file=tok)
    entries = []
    for split, part in (("train", docs[:-num_eval]), ("eval", docs[-num_eval:])):
        rel = records.shard_path(split, "web", 0)
        ids = [sp.encode(d) for d in part]
        stats = records.write_shard(os.path.join(root, rel), [
            records.serialize_example(t, len(d.encode()), "web") for t, d in zip(ids, part)])
        entries.append(dict(file=rel, split=split, source="web", tokens=sum(map(len, ids)),
                            bytes=sum(len(d.encode()) for d in part), **stats))
    tf.io.gfile.copy(tok, os.path.join(root, records.TOKENIZER_FILE), True)
    records.write_json(os.path.join(root, records.MANIFEST),
                       records.build_manifest(entries, {"sha256": ""}, {}))
    return str(root)


def env():
    return subprocess_env(REPO)


def run_result(cfg, *extra, timeout=300):
    """Runs tests/training/_run.py in a subprocess; returns its RESULT."""
    proc = subprocess.run([PY, str(HERE / "_run.py"), json.dumps(cfg), *extra], env=env(),
                          capture_output=True, text=True, timeout=timeout)
    return parse_result(proc.stdout, proc.stderr, proc.returncode)


def parse_result(stdout, stderr="", code=0):
    lines = [l for l in stdout.splitlines() if l.startswith("RESULT ")]
    if code != 0 or not lines:
        raise AssertionError(f"run failed (exit {code}):\n{stdout[-3000:]}\n{stderr[-5000:]}")
    return json.loads(lines[-1][len("RESULT "):])


