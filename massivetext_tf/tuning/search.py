"""The search driver: keras-tuner oracles, trials through the training library, reports.

    result = search(base_cfg, space, project_dir="runs/sweep", tuner="bayesian",
                    max_trials=20, budget_tokens=50_000_000)

Every trial is one `massivetext_tf.training.trainer.Trainer(cfg, strategy=...).fit()`: the same
strategies, XLA step, mixed precision, checkpoints and metrics as trainers/pretrain.py. The
strategy is created once per search and shared by the trials.

Project directory (keras-tuner's layout plus ours; `tensorboard --logdir PROJECT_DIR`):

    PROJECT_DIR/oracle.json, tuner0.json        keras-tuner state (resume with the same flags)
    PROJECT_DIR/search.yaml                     tuner, budget and search space of the project
    PROJECT_DIR/events.out.tfevents.*           HParams experiment config (hparams_config)
    PROJECT_DIR/trial_<id>/trial.json           keras-tuner's trial record (status, message)
    PROJECT_DIR/trial_<id>/events.out.tfevents.*  HParams session (hp.hparams) + final metrics
    PROJECT_DIR/trial_<id>/result.json          status, objective, params, tokens, seconds,
                                                failure reason
    PROJECT_DIR/trial_<id>/config.yaml, checkpoints/, metrics.jsonl, tensorboard/  (the run)
    PROJECT_DIR/trials.csv, best_config.yaml    written at the end of a search

Resuming: keras-tuner reloads the oracle from PROJECT_DIR (`overwrite=False`); finished trials
are kept, a trial that was running when the process died is run again and its Trainer resumes
from the trial's last checkpoint. Failures: a trial that raises (non-finite loss, out of
memory, a bad space point) is recorded as `FAILED` with its reason and the search goes on
(up to `max_consecutive_failures` in a row).
"""
from __future__ import annotations

import copy
import csv
import gc
import io
import json
import logging
import math
import os
import time

import keras_tuner
import tensorflow as tf
import yaml

from massivetext_tf.tuning import hypermodel as hm_lib
from massivetext_tf.tuning import space as space_lib

log = logging.getLogger("massivetext_tf.tuning")

OBJECTIVE = "val_bits_per_byte"
TUNERS = ("random", "hyperband", "bayesian")
FINAL_METRICS = ("val_bits_per_byte", "val_loss", "num_params", "train_tokens", "seconds")


def objective():
    return keras_tuner.Objective(OBJECTIVE, direction="min")


def _write_text(path: str, text: str) -> None:
    """Written to a temporary name and renamed (`massivetext_tf.io.atomic_write`): a kill never
    leaves half a file."""
    from massivetext_tf import io as mio

    mio.atomic_write(path, text)


def _read_json(path: str) -> dict | None:
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.loads(f.read())


def failure_reason(exc: BaseException) -> str:
    """A one-line reason for a failed trial."""
    from massivetext_tf.training.controller import NonFiniteError

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, NonFiniteError):
        return f"non-finite loss (NaN/Inf): {text}"
    if isinstance(exc, tf.errors.ResourceExhaustedError) or "out of memory" in str(exc).lower():
        return f"out of memory: {text[:300]}"
    return f"{type(exc).__name__}: {text[:500]}"


def make_oracle(kind: str, *, max_trials: int, seed: int | None, max_epochs: int = 3,
                factor: int = 3, hyperband_iterations: int = 1,
                max_consecutive_failures: int = 3, num_initial_points: int | None = None):
    """The keras-tuner oracle for `--tuner random|hyperband|bayesian`."""
    common = dict(objective=objective(), seed=seed, max_retries_per_trial=0,
                  max_consecutive_failed_trials=max_consecutive_failures)
    if kind == "random":
        return keras_tuner.oracles.RandomSearchOracle(max_trials=max_trials, **common)
    if kind == "bayesian":
        try:
            return keras_tuner.oracles.BayesianOptimizationOracle(
                max_trials=max_trials, num_initial_points=num_initial_points, **common)
        except ImportError as e:  # its Gaussian process is scikit-learn's
            raise ValueError(f"--tuner bayesian: {e} (pip install scikit-learn scipy)") from None
    if kind == "hyperband":
        if max_epochs < 1:
            raise ValueError(f"--hyperband-max-epochs: must be >= 1, got {max_epochs}")
        if factor < 2:
            raise ValueError(f"--hyperband-factor: must be >= 2, got {factor}")
        oracle = keras_tuner.oracles.HyperbandOracle(
            max_epochs=max_epochs, factor=factor, hyperband_iterations=hyperband_iterations,
            **common)
        oracle.max_trials = max_trials  # Hyperband itself has no trial cap; --max-trials is one
        return oracle
    raise ValueError(f"--tuner: expected one of {', '.join(TUNERS)}, got {kind!r}")


class ZooTuner(keras_tuner.engine.base_tuner.BaseTuner):
    """Runs each trial through `massivetext_tf.training` and logs it for TensorBoard HParams.

    Args:
        oracle: a keras-tuner oracle (see `make_oracle`).
        hypermodel: a `ZooHyperModel`.
        project_dir: where the oracle state, trials and reports live.
        strategy: a `tf.distribute.Strategy` shared by every trial (default: from the base
            config's runtime section, created once).
        trainer_kwargs: extra keyword arguments for `Trainer` (e.g. input functions).
    """

    def __init__(self, oracle, hypermodel, *, project_dir: str, strategy=None,
                 trainer_kwargs: dict | None = None, overwrite: bool = False):
        project_dir = project_dir.rstrip("/")
        directory, name = os.path.split(project_dir)
        super().__init__(oracle, hypermodel=hypermodel, directory=directory or ".",
                         project_name=name, overwrite=overwrite)
        self.project_dir_ = project_dir
        self._strategy = strategy
        self.trainer_kwargs = dict(trainer_kwargs or {})
        self.ran_trials: list[str] = []  # trial ids run by this process

    # The space has no conditional scopes: declare it without building a model per value.
    def _populate_initial_space(self):
        hp = self.oracle.get_space()
        self.hypermodel.declare_hyperparameters(hp)
        self.oracle.update_space(hp)

    @property
    def strategy(self):
        if self._strategy is None:
            from massivetext_tf.training import strategy as strategy_lib

            self._strategy = strategy_lib.from_config(self.hypermodel.base_config.runtime)
        return self._strategy

    def trial_dir(self, trial_id: str) -> str:
        return f"{self.project_dir_}/trial_{trial_id}"

    # -- TensorBoard HParams ----------------------------------------------------------------------

    def hparams_values(self, hp) -> dict:
        out = {}
        for name, spec in self.hypermodel.space.items():
            if name in hp.values:
                v = hp.values[name]
                if spec.kind in ("int", "float", "choice", "fixed") and isinstance(v, (int, float)) \
                        and not isinstance(v, bool) and self._real_domain(spec):
                    v = float(v)
                out[name] = v
        return out

    @staticmethod
    def _real_domain(spec) -> bool:
        return spec.kind == "float" or (spec.kind in ("choice", "fixed") and any(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in spec.candidates()))

    def write_hparams_config(self) -> None:
        from tensorboard.plugins.hparams import api as hp_api

        if tf.io.gfile.glob(f"{self.project_dir_}/events.out.tfevents.*"):
            return
        hparams = [hp_api.HParam(name, space_lib.hparams_domain(spec))
                   for name, spec in self.hypermodel.space.items()]
        metrics = [
            hp_api.Metric(OBJECTIVE, display_name="val bits/byte"),
            hp_api.Metric("val_loss", display_name="val loss (nats/token)"),
            hp_api.Metric("num_params", display_name="parameters"),
            hp_api.Metric("train_tokens", display_name="training tokens"),
            hp_api.Metric("seconds", display_name="trial seconds"),
            hp_api.Metric("eval/loss", group="tensorboard", display_name="eval loss (curve)"),
            hp_api.Metric("train/loss", group="tensorboard", display_name="train loss (curve)"),
        ]
        with tf.summary.create_file_writer(self.project_dir_).as_default():
            hp_api.hparams_config(hparams=hparams, metrics=metrics)

    def _write_session(self, trial, result: dict, step: int) -> None:
        from tensorboard.plugins.hparams import api as hp_api

        writer = tf.summary.create_file_writer(self.trial_dir(trial.trial_id))
        with writer.as_default():
            hp_api.hparams(self.hparams_values(trial.hyperparameters),
                           trial_id=f"trial_{trial.trial_id}")
            for name in FINAL_METRICS:
                value = result.get(name)
                if isinstance(value, (int, float)) and math.isfinite(value):
                    tf.summary.scalar(name, float(value), step=step)
            tf.summary.scalar("trial_failed", float(result["status"] != "COMPLETED"), step=step)
        writer.close()

    # -- trials ---------------------------------------------------------------------------------

    def on_search_begin(self):
        tf.io.gfile.makedirs(self.project_dir_)
        self.write_hparams_config()

    def run_trial(self, trial, *args, **kwargs):
        from massivetext_tf.training.controller import NonFiniteError
        from massivetext_tf.training.trainer import Trainer

        trial_dir = self.trial_dir(trial.trial_id)
        tf.io.gfile.makedirs(trial_dir)
        self.ran_trials.append(trial.trial_id)
        hp = trial.hyperparameters
        t0 = time.perf_counter()
        prev = _read_json(f"{trial_dir}/result.json") or {}
        result = {"trial_id": trial.trial_id, "status": "RUNNING",
                  "hyperparameters": dict(self.hypermodel.values(hp)),
                  "attempts": int(prev.get("attempts", 0)) + 1}
        cfg = None
        try:
            cfg = self.hypermodel.config_for(hp, model_dir=trial_dir)
            result.update(
                train_steps=cfg.trainer.train_steps,
                train_tokens=cfg.trainer.train_steps * hm_lib.tokens_per_step(cfg),
                num_params=hm_lib.analytic_params(cfg),
            )
            _write_text(f"{trial_dir}/result.json", json.dumps(result, indent=1, default=str))
            trainer = Trainer(cfg, strategy=self.strategy, **self.trainer_kwargs)
            out = trainer.fit()
            if out.get("status") != "completed":
                raise keras_tuner.errors.FatalError(
                    f"trial {trial.trial_id} stopped early ({out.get('status')}); rerun the same "
                    "command to resume the search")
            bpb = out.get("eval_bits_per_byte")
            loss = out.get("eval_loss")
            if bpb is None and loss is not None:
                # Synthetic data has no bytes: one token counts as one byte (bits per token).
                bpb = loss / math.log(2)
                result["objective_note"] = "synthetic data: bits per token"
            if bpb is None or not math.isfinite(bpb):
                raise NonFiniteError(f"evaluation gave a non-finite loss ({loss})")
            result.update(status="COMPLETED", val_bits_per_byte=float(bpb),
                          val_loss=float(loss), num_params=int(out.get("num_params") or
                                                               result["num_params"]),
                          tokens_per_s=out.get("tokens_per_s"), xla=out.get("xla"),
                          num_replicas=out.get("num_replicas"))
        except keras_tuner.errors.FatalError:
            raise
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as e:  # noqa: BLE001 - any trial error is that trial's failure
            reason = failure_reason(e)
            log.warning("trial %s failed: %s", trial.trial_id, reason)
            print(f"[tune] trial {trial.trial_id} FAILED: {reason}", flush=True)
            result.update(status="FAILED", reason=reason)
            raise keras_tuner.errors.FailedTrialError(reason) from e
        finally:
            result["seconds"] = round(time.perf_counter() - t0, 3)
            if result["status"] != "RUNNING":
                _write_text(f"{trial_dir}/result.json", json.dumps(result, indent=1, default=str))
                self._write_session(trial, result, cfg.trainer.train_steps if cfg else 0)
            _release_memory()
        return {OBJECTIVE: result["val_bits_per_byte"], "val_loss": result["val_loss"]}

    def save_model(self, trial_id, model, step=0):
        pass  # the trial's Trainer writes checkpoints to its trial directory

    def load_model(self, trial):
        """The trained model of a trial (weights from the trial's last checkpoint)."""
        from massivetext_tf.training import checkpoint as ckpt_lib
        from massivetext_tf.training.task import PretrainTask

        cfg = self.hypermodel.config_for(trial.hyperparameters,
                                         model_dir=self.trial_dir(trial.trial_id))
        with self.strategy.scope():
            model = PretrainTask(cfg).build_model()
        ckpt_lib.restore_model_weights(model, self.trial_dir(trial.trial_id))
        return model


def _release_memory():
    """Frees a finished trial's model and optimizer (the trial dropped its references).

    Not `keras.backend.clear_session()`: on TensorFlow it clears the eager kernel cache, which
    destroys the resources of kernels still in use by the caller's live objects (a
    SentencePiece tokenizer then fails with "Resource ... does not exist"), and it resets
    Keras' global settings (dtype policy, distribution) under the caller's feet."""
    gc.collect()


# -------------------------------------------------------------------------------------------------
# Reports


def trial_rows(tuner) -> list[dict]:
    """One dict per trial, ranked: completed by objective (lower first), then the rest."""
    rows = []
    for trial_id, trial in tuner.oracle.trials.items():
        res = _read_json(f"{tuner.trial_dir(trial_id)}/result.json") or {}
        status = str(trial.status)
        reason = res.get("reason")
        if status != "COMPLETED" and not reason and trial.message:
            lines = [l for l in str(trial.message).strip().splitlines() if l.strip()]
            reason = lines[-1] if lines else None
        hps = {k: v for k, v in trial.hyperparameters.values.items()}
        row = {
            "trial_id": trial_id,
            "status": status,
            OBJECTIVE: trial.score if status == "COMPLETED" else None,
            "val_loss": res.get("val_loss"),
            "num_params": res.get("num_params"),
            "train_tokens": res.get("train_tokens"),
            "train_steps": res.get("train_steps"),
            "seconds": res.get("seconds"),
            "failure_reason": reason if status != "COMPLETED" else None,
            "hyperparameters": hps,
        }
        rows.append(row)

    def key(r):
        ok = r["status"] == "COMPLETED" and r[OBJECTIVE] is not None
        return (0 if ok else 1, r[OBJECTIVE] if ok else 0.0, r["trial_id"])

    rows.sort(key=key)
    rank = 0
    for r in rows:
        if r["status"] == "COMPLETED" and r[OBJECTIVE] is not None:
            rank += 1
            r["rank"] = rank
        else:
            r["rank"] = None
    return rows


def _hp_columns(rows, space) -> list[str]:
    cols = list(space)
    for r in rows:
        for k in r["hyperparameters"]:
            if k not in cols:
                cols.append(k)
    return cols


def write_trials_csv(rows, path: str, space) -> None:
    hp_cols = _hp_columns(rows, space)
    head = ["rank", "trial_id", "status", OBJECTIVE, "val_loss", "num_params", "train_tokens",
            "train_steps", "seconds"]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(head + hp_cols + ["failure_reason"])
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in head]
                   + [_cell(r["hyperparameters"].get(c)) for c in hp_cols]
                   + [_cell(r["failure_reason"])])
    _write_text(path, buf.getvalue())


def _cell(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


def format_table(rows, space) -> str:
    hp_cols = [c for c in _hp_columns(rows, space) if not c.startswith("tuner/")]
    head = ["rank", "trial", "status", "bits/byte", "params", "tokens", "sec"] + hp_cols + ["reason"]
    lines = []
    for r in rows:
        reason = r["failure_reason"] or ""
        lines.append([
            str(r["rank"] or "-"), r["trial_id"], r["status"],
            f"{r[OBJECTIVE]:.4f}" if r[OBJECTIVE] is not None else "-",
            f"{r['num_params']:,}" if r["num_params"] else "-",
            f"{r['train_tokens']:,}" if r["train_tokens"] else "-",
            f"{r['seconds']:.1f}" if r["seconds"] is not None else "-",
            *[str(_cell(r["hyperparameters"].get(c))) for c in hp_cols],
            reason[:60],
        ])
    widths = [max(len(h), *(len(l[i]) for l in lines)) if lines else len(h)
              for i, h in enumerate(head)]
    fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(head), fmt(["-" * w for w in widths])] + [fmt(l) for l in lines])


def best_config(tuner, rows, *, model_dir: str | None = None):
    """The ExperimentConfig of the best completed trial, ready for trainers/pretrain.py."""
    best = next((r for r in rows if r["rank"] == 1), None)
    if best is None:
        return None, None
    trial = tuner.oracle.trials[best["trial_id"]]
    hm = tuner.hypermodel
    cfg = hm.config_for(copy.deepcopy(trial.hyperparameters), tokens=hm.budget_tokens,
                        model_dir=model_dir or f"{tuner.project_dir_}/best_run")
    cfg.trainer.save_preset = True
    return cfg, best


# -------------------------------------------------------------------------------------------------
# The whole search


def _check_project(project_dir: str, meta: dict) -> None:
    """A project is resumed with the tuner and budget it was created with."""
    path = f"{project_dir}/search.yaml"
    if not tf.io.gfile.exists(path):
        tf.io.gfile.makedirs(project_dir)
        _write_text(path, yaml.safe_dump(meta, sort_keys=False))
        return
    with tf.io.gfile.GFile(path) as f:
        old = yaml.safe_load(f.read()) or {}
    for key, flag in (("tuner", "--tuner"), ("budget_tokens", "--budget-tokens"),
                      ("hyperband_max_epochs", "--hyperband-max-epochs"),
                      ("hyperband_factor", "--hyperband-factor")):
        if key in old and old[key] != meta[key]:
            raise ValueError(
                f"{flag}: {meta[key]!r} differs from {old[key]!r}, which project {project_dir} "
                f"was created with; resume with the same value or use a new --project-dir")


def search(base_cfg, space: dict, *, project_dir: str, max_trials: int, tuner: str = "random",
           budget_tokens: float | None = None, seed: int | None = 0, strategy=None,
           hyperband_max_epochs: int = 3, hyperband_factor: int = 3,
           max_consecutive_failures: int = 3, num_initial_points: int | None = None,
           trainer_kwargs: dict | None = None, overwrite: bool = False,
           verbose: bool = True) -> dict:
    """Runs (or resumes) a search; writes trials.csv and best_config.yaml; returns a summary.

    Returns `{"project_dir", "ran_trials" (ids run by this call), "trials" (ranked rows),
    "best" (row or None), "best_config" (path or None), "trials_csv", "table", "stopped"
    (why the search ended early, or None), "tuner"}`.
    """
    if not isinstance(max_trials, int) or max_trials < 1:
        raise ValueError(f"--max-trials: must be a positive integer, got {max_trials!r}")
    if not space:
        raise ValueError("search_space: empty; declare at least one dimension (or --space)")
    if tuner not in TUNERS:
        raise ValueError(f"--tuner: expected one of {', '.join(TUNERS)}, got {tuner!r}")
    if budget_tokens is not None and budget_tokens <= 0:
        raise ValueError(f"--budget-tokens: must be > 0, got {budget_tokens}")
    project_dir = project_dir.rstrip("/")
    hm = hm_lib.ZooHyperModel(base_cfg, space, budget_tokens=budget_tokens,
                              max_epochs=hyperband_max_epochs if tuner == "hyperband" else None)
    meta = {"tuner": tuner, "budget_tokens": hm.budget_tokens,
            "hyperband_max_epochs": hyperband_max_epochs if tuner == "hyperband" else None,
            "hyperband_factor": hyperband_factor if tuner == "hyperband" else None,
            "seed": seed, "search_space": space_lib.space_to_dict(space)}
    if overwrite and tf.io.gfile.exists(project_dir):
        tf.io.gfile.rmtree(project_dir)
    _check_project(project_dir, meta)
    # Every trial must fit the budget's batch shape; fail before the first trial on bad points.
    probe = keras_tuner.HyperParameters()
    hm.declare_hyperparameters(probe)
    hm.config_for(probe, model_dir=f"{project_dir}/probe")
    oracle = make_oracle(tuner, max_trials=max_trials, seed=seed, max_epochs=hyperband_max_epochs,
                         factor=hyperband_factor,
                         max_consecutive_failures=max_consecutive_failures,
                         num_initial_points=num_initial_points)
    zt = ZooTuner(oracle, hm, project_dir=project_dir, strategy=strategy,
                  trainer_kwargs=trainer_kwargs)
    zt.oracle.max_trials = max_trials  # a resumed project may be given a larger --max-trials
    stopped = None
    try:
        zt.search(verbose=1 if verbose else 0)
    except RuntimeError as e:
        if "consecutive failures" not in str(e):
            raise
        stopped = (f"stopped after {max_consecutive_failures} failed trials in a row "
                   "(--max-consecutive-failures)")
        print(f"[tune] {stopped}", flush=True)
    except keras_tuner.errors.FatalError as e:  # preempted: the running trial resumes later
        stopped = str(e)
        print(f"[tune] {stopped}", flush=True)
    rows = trial_rows(zt)
    csv_path = f"{project_dir}/trials.csv"
    write_trials_csv(rows, csv_path, space)
    cfg, best = best_config(zt, rows)
    best_path = None
    if cfg is not None:
        from massivetext_tf.training import config as config_lib

        best_path = f"{project_dir}/best_config.yaml"
        header = (f"# Best trial {best['trial_id']} of {project_dir}: {OBJECTIVE} "
                  f"{best[OBJECTIVE]:.4f}, {best['num_params']:,} params, trained on "
                  f"{hm.budget_tokens:,} tokens.\n"
                  f"# python trainers/pretrain.py --config {best_path}\n")
        _write_text(best_path, header + config_lib.dump_config(cfg))
    table = format_table(rows, space)
    return {"project_dir": project_dir, "ran_trials": list(zt.ran_trials), "trials": rows,
            "best": best, "best_config": best_path, "trials_csv": csv_path, "table": table,
            "stopped": stopped, "tuner": zt}
