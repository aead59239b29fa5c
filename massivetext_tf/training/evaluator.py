"""Evaluation of training checkpoints, Model Garden's way (`trainers/pretrain.py --mode ...`).

* `--mode eval`: evaluates one checkpoint (`--checkpoint PREFIX`, default the newest) and
  prints the metrics as one JSON line.
* `--mode continuous_eval`: watches `MODEL_DIR/checkpoints`, evaluates each new checkpoint
  once, oldest first, and ends after the final one (step >= `trainer.train_steps`) or after
  `--eval-timeout` seconds without a new checkpoint. Resumable: `MODEL_DIR/eval/state.json`
  lists the evaluated steps (written after each checkpoint's results), so a restarted
  evaluator evaluates none twice and skips none that still exists; lines an interrupted
  evaluation left in `MODEL_DIR/eval/metrics.jsonl` are moved to
  `eval/metrics_superseded.jsonl` (the trainer's rule), so each step appears once.

What a checkpoint's evaluation holds: the trainer's loss, perplexity and bits per byte on
`trainer.eval_steps` batches of the eval split, plus every task of `trainer.eval_tasks` (task
YAML files, docs/evaluation.md) as `TASK/METRIC`. Written to `MODEL_DIR/eval/metrics.jsonl`,
TensorBoard scalars `eval/TASK/METRIC` under `MODEL_DIR/eval/tensorboard`, and one results
document per checkpoint, `MODEL_DIR/eval/results/step-NNNNNNNN.json` (the JSON of
`massivetext evaluate`, its model recording the checkpoint's step and training tokens).

`task_eval_fn(cfg)` is the same task evaluation for the trainer's `eval_every` (its rows go to
the training run's metrics and TensorBoard).
"""
from __future__ import annotations

import copy
import logging
import re
import time

import tensorflow as tf

from massivetext_tf import io
from massivetext_tf.training import checkpoint as ckpt_lib
from massivetext_tf.training import metrics as metrics_lib
# The flags of the modes live with the other flags of `massivetext train` (TensorFlow-free,
# for a fast --help); `add_flags` is their old name here.
from massivetext_tf.training.cli import MODES, add_mode_flags as add_flags  # noqa: F401

log = logging.getLogger(__name__)

EVAL_DIR = "eval"
STATE = "state.json"


def dispatch(cfg, args) -> dict:
    """`--mode train | eval | continuous_eval` with the parsed flags."""
    from massivetext_tf.training.train_lib import train

    mode = getattr(args, "mode", "train")
    for flag, value in (("--eval-timeout", getattr(args, "eval_timeout", None)),
                        ("--poll-interval", getattr(args, "poll_interval", 10.0))):
        if value is not None and not value > 0:
            raise ValueError(f"{flag}: must be > 0, got {value}")
    if mode != "train" and cfg.runtime.backend != "tensorflow":
        raise ValueError(f"--mode {mode}: runs on the TensorFlow backend (the JAX trainer's "
                         "checkpoints are arrays: evaluate its preset with massivetext "
                         "evaluate, or use --mode train, which evaluates at trainer.eval_every)")
    if mode == "train":
        if getattr(args, "checkpoint", None):
            raise ValueError("--checkpoint: only with --mode eval")
        return train(cfg)
    if mode == "eval":
        return evaluate_once(cfg, checkpoint=getattr(args, "checkpoint", None))
    return continuous_eval(cfg, timeout_s=args.eval_timeout, poll_s=args.poll_interval)


# ---------------------------------------------------------------------------------------------
# Tasks

def load_eval_tasks(cfg) -> list:
    """The tasks of `trainer.eval_tasks` (YAML paths), checked before any model runs; a bad
    file is a `ValueError` naming the file, line and field."""
    from massivetext_tf.evaluation import load_task
    from massivetext_tf.training import data as data_lib

    paths = list(cfg.trainer.eval_tasks or [])
    if paths and not data_lib.tokenizer_path(cfg):
        raise ValueError("trainer.eval_tasks: tasks are text and need the data's tokenizer; "
                         f"data.dir={cfg.data.dir!r} has none (use prepared data or task.tokenizer)")
    tasks = []
    for i, path in enumerate(paths):
        if not isinstance(path, str) or not tf.io.gfile.exists(path):
            raise ValueError(f"trainer.eval_tasks[{i}]: no such task file {path!r}")
        tasks.append(load_task(path, limit=cfg.trainer.eval_task_limit))
    return tasks


def task_rows(adapter, tasks) -> list:
    from massivetext_tf.evaluation import evaluate_task

    rows = []
    for task in tasks:
        rows += evaluate_task(adapter, task, bootstrap_iters=100)
    return rows


def rows_as_scalars(rows) -> dict:
    """`{"TASK/METRIC": value, "TASK/METRIC_stderr": stderr}` of result rows."""
    out = {}
    for r in rows:
        out[f"{r['task']}/{r['metric']}"] = r["value"]
        out[f"{r['task']}/{r['metric']}_stderr"] = r["stderr"]
    return out


def task_eval_fn(cfg, tasks=None):
    """`fn(trainer) -> {TASK/METRIC: value}` running `trainer.eval_tasks` on the trainer's
    model (the adapter is built once and reads the live weights), or None without tasks."""
    tasks = load_eval_tasks(cfg) if tasks is None else tasks
    if not tasks:
        return None
    state = {}

    def evaluate(trainer):
        if "adapter" not in state:
            state["adapter"] = _adapter(trainer)
        return rows_as_scalars(task_rows(state["adapter"], tasks))

    return evaluate


def _adapter(trainer):
    from massivetext_tf.evaluation import from_task

    return from_task(trainer.model, name=f"{trainer.cfg.model.preset}", jit_compile=trainer.use_xla,
                     max_length=None, info={"path": trainer.model_dir})


# ---------------------------------------------------------------------------------------------
# Checkpoints

_CKPT = re.compile(r"ckpt-(\d+)$")


def list_checkpoints(model_dir: str) -> list:
    """`[(step, prefix)]` of the chief's checkpoints, oldest first (the `checkpoint` state file
    the trainer's CheckpointManager writes, else the `.index` files)."""
    root = f"{model_dir.rstrip('/')}/checkpoints"
    state = tf.train.get_checkpoint_state(root) if tf.io.gfile.exists(f"{root}/checkpoint") else None
    paths = list(state.all_model_checkpoint_paths) if state else [
        p[: -len(".index")] for p in tf.io.gfile.glob(f"{root}/ckpt-*.index")]
    out = []
    for p in paths:
        p = p if "/" in p else f"{root}/{p}"
        m = _CKPT.search(p)
        if m and tf.io.gfile.exists(f"{p}.index"):
            out.append((int(m.group(1)), p))
    return sorted(set(out))


def _eval_trainer(cfg):
    """A Trainer over `cfg` that writes nothing in the run's own files (no TensorBoard writer,
    no progress line); its model receives each checkpoint's weights."""
    from massivetext_tf.training.trainer import Trainer

    cfg = copy.deepcopy(cfg)
    cfg.trainer.tensorboard = False
    cfg.trainer.progress = False
    return Trainer(cfg)  # no Controller: no metrics writer


def evaluate_checkpoint(trainer, path, tasks, adapter=None) -> tuple:
    """Loads `path`'s weights into `trainer.model` and evaluates them: -> (step, scalars,
    result rows, info). `info` names the checkpoint, its step and training tokens."""
    ckpt_lib.restore_model_weights(trainer.model, path)
    step = int(_CKPT.search(path).group(1))
    scalars = dict(trainer.evaluate()) if trainer.cfg.trainer.eval_steps else {}
    rows = []
    if tasks:
        rows = task_rows(adapter, tasks)
        scalars.update(rows_as_scalars(rows))
    cfg = trainer.cfg
    tokens = step * cfg.data.global_batch_size * cfg.data.sequence_length
    info = {"name": f"step {step}", "path": trainer.model_dir, "format": "checkpoint",
            "kind": getattr(adapter, "kind", None), "dtype": cfg.runtime.mixed_precision,
            "checkpoint": {"path": path, "step": step, "tokens": tokens}}
    for metric in ("loss", "perplexity", "bits_per_byte"):
        if metric in scalars:
            rows.append({"task": f"eval_split/{cfg.data.eval_split}", "kind": "training_eval", "metric": metric,
                         "value": float(scalars[metric]), "stderr": None, "stderr_method": None,
                         "num_items": cfg.trainer.eval_steps, "num_scored": cfg.trainer.eval_steps,
                         "num_skipped": 0, "num_truncated": 0, "num_fewshot": 0})
    return step, scalars, rows, info


def _results_path(model_dir, step):
    return f"{model_dir}/{EVAL_DIR}/results/step-{step:08d}.json"


def _write_results(model_dir, step, rows, info, tasks):
    from massivetext_tf.evaluation import results_document

    protocol = {"tasks": {t.name: {"path": t.path, "kind": t.kind, "num_fewshot": t.config["num_fewshot"],
                                   "items": len(t.items)} for t in tasks}}
    io.write_json(_results_path(model_dir, step), results_document([(info, rows)], protocol=protocol))


def evaluate_once(cfg, *, checkpoint=None) -> dict:
    """`--mode eval`: one checkpoint (default the newest); writes its results document and
    returns `{"status", "step", "train_tokens", "checkpoint", "results", metrics...}` (metrics:
    the trainer's eval `loss`, `perplexity`, `bits_per_byte`, `tokens` and `TASK/METRIC`)."""
    model_dir = cfg.model_dir.rstrip("/")
    tasks = load_eval_tasks(cfg)
    if checkpoint is None:
        found = list_checkpoints(model_dir)
        if not found:
            raise ValueError(f"--model-dir {model_dir}: no checkpoint in {model_dir}/checkpoints to evaluate")
        checkpoint = found[-1][1]
    elif not tf.io.gfile.exists(f"{checkpoint}.index") or not _CKPT.search(checkpoint):
        raise ValueError(f"--checkpoint {checkpoint}: not a checkpoint prefix (MODEL_DIR/checkpoints/ckpt-N)")
    trainer = _eval_trainer(cfg)
    adapter = _adapter(trainer) if tasks else None
    step, scalars, rows, info = evaluate_checkpoint(trainer, checkpoint, tasks, adapter)
    _write_results(model_dir, step, rows, info, tasks)
    return {"status": "evaluated", "step": step, "train_tokens": info["checkpoint"]["tokens"],
            "checkpoint": checkpoint, "results": _results_path(model_dir, step), **scalars}


def continuous_eval(cfg, *, timeout_s=None, poll_s=10.0, sleep=time.sleep, clock=time.monotonic) -> dict:
    """`--mode continuous_eval` (see the module docstring). Returns `{"status": "completed" |
    "timeout", "evaluated": [steps this call evaluated], "skipped_before": [...], "step"}`."""
    model_dir = cfg.model_dir.rstrip("/")
    tasks = load_eval_tasks(cfg)
    state_path = f"{model_dir}/{EVAL_DIR}/{STATE}"
    state = io.read_json(state_path, default=None) or {"format": 1, "evaluated": {}}
    if not isinstance(state.get("evaluated"), dict):
        raise ValueError(f"{state_path}: field 'evaluated': expected an object of step -> checkpoint")
    done = {int(s) for s in state["evaluated"]}
    writer = metrics_lib.MetricsWriter(f"{model_dir}/{EVAL_DIR}", tensorboard=cfg.trainer.tensorboard)
    # An evaluation interrupted after its metrics line but before the state file: redo it once.
    moved = writer.supersede_after(max(done) if done else -1)
    if moved:
        log.info("moved %d metrics line(s) of an interrupted evaluation to %s", moved, metrics_lib.SUPERSEDED)
    trainer = adapter = None
    evaluated, gone, last_step = [], [], max(done) if done else None
    final = cfg.trainer.train_steps
    status, waiting_since = None, clock()
    try:
        while status is None:
            found = [(s, p) for s, p in list_checkpoints(model_dir) if s not in done]
            for step, path in found:
                if trainer is None:
                    trainer = _eval_trainer(cfg)
                    adapter = _adapter(trainer) if tasks else None
                if not tf.io.gfile.exists(f"{path}.index"):  # deleted by the trainer's rotation meanwhile
                    gone.append(step)
                    continue
                step, scalars, rows, info = evaluate_checkpoint(trainer, path, tasks, adapter)
                _write_results(model_dir, step, rows, info, tasks)
                writer.write(step, {**scalars, "train_tokens": info["checkpoint"]["tokens"]}, prefix="eval")
                done.add(step)
                state["evaluated"][str(step)] = {"checkpoint": path, "tokens": info["checkpoint"]["tokens"],
                                                 "results": _results_path(model_dir, step)}
                io.write_json(state_path, state)
                evaluated.append(step)
                last_step = step
                print(f"[continuous_eval] step {step}: " + ", ".join(
                    f"{k} {v:.4g}" for k, v in scalars.items() if not k.endswith("_stderr")), flush=True)
                waiting_since = clock()
            if done and max(done) >= final:
                status = "completed"
            elif timeout_s is not None and clock() - waiting_since > timeout_s:
                status = "timeout"
            elif not found:
                sleep(poll_s)
    finally:
        writer.close()
    if gone:
        log.warning("%d checkpoint(s) were deleted before they could be evaluated (steps %s); "
                    "raise trainer.keep_checkpoints", len(gone), gone)
    return {"status": status, "step": last_step, "evaluated": evaluated, "deleted_before_eval": gone,
            "state": state_path}
