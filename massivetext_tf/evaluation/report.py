"""Results as JSON (every row, every model) and as markdown tables (models side by side)."""
from __future__ import annotations

import datetime
import math

from massivetext_tf import io

FORMAT = 1


def results_document(runs, *, protocol=None) -> dict:
    """`runs`: `[(model info dict, [result rows])]` -> the JSON document written by
    `write_json`: `{"format", "created", "protocol", "models": [info], "results": [row + model]}`."""
    results = []
    for info, rows in runs:
        results += [{"model": info["name"], **row} for row in rows]
    return {"format": FORMAT, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "protocol": protocol or {}, "models": [info for info, _ in runs], "results": results}


def _cell(row) -> str:
    value, se = row["value"], row["stderr"]
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    digits = 4 if abs(value) < 10 else 2
    text = f"{value:.{digits}f}"
    if se is not None and isinstance(se, float) and math.isfinite(se):
        text += f" ± {se:.{digits}f}"
    return text


def _counts(rows) -> str:
    """`scored/items` plus skipped and truncated counts, the same for every model or listed."""
    parts = []
    for r in rows:
        text = f"{r['num_scored']}/{r['num_items']}"
        if r.get("num_skipped"):
            text += f", {r['num_skipped']} skipped"
        if r.get("num_truncated"):
            text += f", {r['num_truncated']} truncated"
        parts.append(text)
    return parts[0] if len(set(parts)) == 1 else "; ".join(parts)


def markdown(document) -> str:
    """Task results in one table (a column per model), then one table per language-modelling
    source (rows: bits per byte, perplexity, loss; a column per model)."""
    models = [m["name"] for m in document["models"]]
    rows = document["results"]
    index = {}
    for r in rows:
        index.setdefault((r["task"], r["metric"]), {})[r["model"]] = r
    out = []
    task_keys = [k for k in index if not k[0].startswith("lm/")]
    if task_keys:
        out.append("| task | metric | k-shot | " + " | ".join(models) + " | items (scored/all) |")
        out.append("|---|---|---|" + "---|" * len(models) + "---|")
        for key in task_keys:
            cells = index[key]
            first = next(iter(cells.values()))
            out.append(f"| {key[0]} | {key[1]} | {first['num_fewshot']} | "
                       + " | ".join(_cell(cells[m]) if m in cells else "" for m in models)
                       + f" | {_counts([cells[m] for m in models if m in cells])} |")
    sources = []
    for key in index:
        if key[0].startswith("lm/") and key[0] not in sources:
            sources.append(key[0])
    for task in sources:
        first = next(r for r in rows if r["task"] == task)
        if out:
            out.append("")
        if first.get("windows") == "lm-eval":
            out.append(f"**{first['source']}** (window {first['window']}, lm-eval rolling windows)")
        else:
            out.append(f"**{first['source']}** (window {first['window']}, stride {first['stride']})")
        out.append("")
        out.append("| metric | " + " | ".join(models) + " |")
        out.append("|---|" + "---|" * len(models))
        for metric in ("bits_per_byte", "perplexity", "loss"):
            cells = index.get((task, metric), {})
            out.append(f"| {metric} | " + " | ".join(_cell(cells[m]) if m in cells else "" for m in models) + " |")
        cells = index.get((task, "bits_per_byte"), {})
        out.append("| documents | " + " | ".join(_counts([cells[m]]) if m in cells else "" for m in models) + " |")
        out.append("| tokens / bytes | " + " | ".join(
            f"{cells[m]['tokens']} / {cells[m]['bytes']}" if m in cells else "" for m in models) + " |")
    return "\n".join(out) + "\n"


def write_json(path, document) -> None:
    """Writes `document` (from `results_document`) to `path` as strict JSON (no bare NaN),
    atomically; gs:// paths work."""
    io.write_json(path, document)


def write_markdown(path, document) -> None:
    """Writes `markdown(document)` (one table per source and task, models side by side) to
    `path`, atomically; gs:// paths work."""
    io.atomic_write(path, markdown(document))


def plot_against_tokens(document, path) -> int:
    """One panel per (task, metric): the value (± stderr) of every model that records its
    training tokens (`checkpoint.tokens`: `MODEL_DIR/checkpoints/ckpt-N`, a run's
    `MODEL_DIR/preset`, continuous evaluation's results) against those tokens, the way the
    Gopher paper plots performance over training. Writes a PNG (local or gs://); returns the
    number of panels. `ValueError` if fewer than two models record their tokens."""
    import io as _io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tokens = {m["name"]: (m.get("checkpoint") or {}).get("tokens") for m in document["models"]}
    tokens = {k: v for k, v in tokens.items() if isinstance(v, int)}
    if len(tokens) < 2:
        raise ValueError("--plot: needs at least two models that record their training tokens "
                         "(checkpoints of one run: --model MODEL_DIR/checkpoints/ckpt-N ...)")
    series = {}
    for r in document["results"]:
        if r["model"] in tokens and isinstance(r.get("value"), (int, float)) and math.isfinite(r["value"]):
            se = r.get("stderr")
            se = se if isinstance(se, (int, float)) and math.isfinite(se) else 0.0
            series.setdefault((r["task"], r["metric"]), []).append((tokens[r["model"]], r["value"], se))
    keys = sorted(series)
    cols = min(3, len(keys)) or 1
    rows = (len(keys) + cols - 1) // cols or 1
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        points = sorted(series[key])
        x, y, e = zip(*points)
        ax.errorbar(x, y, yerr=e, marker="o", capsize=3)
        ax.set_title(f"{key[0]}: {key[1]}", fontsize=9)
        ax.set_xlabel("training tokens")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.tight_layout()
    buffer = _io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    io.atomic_write(path, buffer.getvalue())
    return len(keys)
