"""What the demo shows at the end: the loss curve PNG, `summary.json`, the closing table of
where everything is, and how to serve the export."""
from __future__ import annotations

import json
import math
import os

from massivetext_tf import io
from massivetext_tf.demo.evaluation import json_float
from massivetext_tf.demo.options import MODEL_NAME


def plot_losses(metrics_path: str, out_png: str, *, bytes_per_token: float | None = None,
                title: str = "") -> str:
    """Training loss and eval loss (nats/token) against the step, from metrics.jsonl; with
    `bytes_per_token`, held-out bits per byte on the right axis. Returns `out_png`."""
    import io as bytes_io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import tensorflow as tf

    train, evals = [], []
    with tf.io.gfile.GFile(metrics_path) as f:
        text = f.read()
    for line in text.splitlines():
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
    buf = bytes_io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    io.atomic_write(out_png, buf.getvalue())
    return out_png


def _rel(path: str) -> str:
    if "://" in path:
        return path
    rel = os.path.relpath(path)
    return rel if not rel.startswith("../..") else path


def summarize(results: dict, *, run_dir: str, config: str, paths: dict, trainer_config: dict,
              stage_seconds: dict, reused: list, total_s: float) -> dict:
    """`summary.json`'s content from the stages' records (`results[stage]`, only the stages
    that ran): data and corpus sizes, training steps/tokens/seconds, held-out and baseline bits
    per byte, task scores, samples, export paths and checks, seconds per stage."""
    summary = {"run_dir": run_dir, "config": _rel(config), "stage_seconds": stage_seconds,
               "reused_stages": reused, "total_seconds": round(total_s, 1)}
    if "shards" in results:
        summary["data"] = results["shards"].get("splits")
    if "corpus" in results:
        summary["corpus"] = results["corpus"].get("stats")
    if "train" in results:
        r = results["train"]["result"]
        steps = int(r["step"])
        data = trainer_config.get("data", {})
        seq = int(data.get("sequence_length", 128))
        gbs = int(data.get("global_batch_size", 8))
        summary["training"] = {
            "steps": steps, "tokens": steps * seq * gbs, "train_seconds":
            round(results["train"]["train_seconds"], 1),
            "train_cpu_seconds": round(results["train"].get("train_cpu_seconds", 0.0), 1),
            "tokens_per_s": r.get("tokens_per_s"),
            "num_params": r.get("num_params"), "final_train_loss": r.get("loss"),
            "trainer_eval_bits_per_byte": r.get("eval_bits_per_byte"),
            "resumed": bool(results["train"].get("resumed")),
            "model_dir": paths["train"],
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
        summary["loss_curve"] = paths["png"]
    if "export" in results:
        ex = results["export"]
        summary["export"] = {"saved_model": ex["result"]["saved_model"],
                             "tflite": ex["result"]["tflite_float32"],
                             "models_config": ex["result"]["models_config"],
                             "checks": ex.get("checks")}
    return summary


def write_summary(path: str, summary: dict) -> None:
    """Writes `summary.json` (values JSON cannot hold, such as numpy scalars, as strings)."""
    io.write_json(path, json.loads(json.dumps(summary, default=str)), indent=1, sort_keys=False)


def done_lines(s: dict, paths: dict) -> list[str]:
    """The closing lines: total time, the headline figures, and where every output is."""
    reused = s.get("reused_stages") or []
    lines = ["\n=== done in {:.0f} s{}".format(
        s["total_seconds"], f" (reused: {', '.join(reused)})" if reused else "")]
    if "heldout_bits_per_byte" in s:
        b = s["baselines"]
        t = s["training"]
        lines.append(f"held-out bits per byte {s['heldout_bits_per_byte']:.3f} (unigram "
                     f"{b['unigram_bits_per_byte']:.3f}, untrained "
                     f"{b['untrained_bits_per_byte']:.3f}) after {t['steps']} steps, "
                     f"{t['tokens']:,} tokens, {t['train_seconds']:.0f} s of training")
        tasks = s.get("heldout_tasks") or {}
        if tasks:
            lines.append("held-out tasks: " + ", ".join(
                f"{name} {metric} {json_float(value):.3f}" for name, metrics in tasks.items()
                for metric, value in metrics.items()))
    rows = [("summary", paths["summary"]), ("corpus (JSONL)", paths["corpus"]),
            ("curation report", f"{paths['data']}/report.json"),
            ("rejected documents", f"{paths['curated']}/rejected"),
            ("tokenizer", paths["tokenizer"]), ("shards", f"{paths['data']}/shards"),
            ("checkpoints", f"{paths['train']}/checkpoints"),
            ("metrics", f"{paths['train']}/metrics.jsonl"),
            ("TensorBoard", f"{paths['train']}/tensorboard"),
            ("keras-hub preset", f"{paths['train']}/preset"),
            ("held-out evaluation", paths["eval"]), ("samples", paths["samples"]),
            ("loss curve", paths["png"])]
    if "export" in s:
        rows += [("SavedModel", s["export"]["saved_model"]), ("TFLite", s["export"]["tflite"]),
                 ("models.config", s["export"]["models_config"])]
    lines += [f"  {name:20s} {path}" for name, path in rows]
    return lines


def serving_instructions(result: dict, prompt: str) -> list[str]:
    """How to serve the exported SavedModel with TF Serving and ask it for `prompt`."""
    config = result["models_config"]
    if "://" not in config:
        config = os.path.abspath(config)
    req = {"signature_name": "generate",
           "inputs": {"prompts": [prompt], "max_new_tokens": 64,
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
