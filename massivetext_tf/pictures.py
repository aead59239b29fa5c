"""Pictures for the docs, drawn from a training run directory.

A run directory (`--model-dir` of `massivetext train`, or `RUN/train` of the demo) holds
`metrics.jsonl` (one JSON line per logged step; eval lines carry `perplexity`) and the
TensorBoard event files under `tensorboard/` (scalars `train/...`, `eval/...`, the run's config
and the generated samples `samples/I`, written with `tf.summary.text`; see
`massivetext_tf.training.metrics.MetricsWriter`). From these this module draws:

- `loss.png`: train and eval loss against the step (the demo's own `plot_losses`);
- `tensorboard_scalars.png`, `tensorboard_text.png`: screenshots of TensorBoard's scalars and
  text dashboards, taken with a headless Chromium (`screenshot_tensorboard`);
- `tensorboard_view.png`: the same data (scalars and samples read from the event files with
  TensorBoard's `EventAccumulator`) drawn with matplotlib in a TensorBoard-like two-panel
  layout, for machines without a browser (`render_tensorboard_view`).

Example:

```python
from massivetext_tf import pictures

run = pictures.resolve_run_dir("runs/demo")          # -> runs/demo/train
pictures.plot_loss(run, "docs/images/loss.png")
pictures.read_samples(run)                           # [Sample(step=60, tag="samples/0", text=...)]
pictures.render_tensorboard_view(run, "docs/images/tensorboard_view.png")
```
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request

from massivetext_tf import io

METRICS = "metrics.jsonl"
EVENTS = "tensorboard"
SAMPLE_PREFIX = "samples/"
# Scalars shown in the rendered view, in this order, when the run has them.
VIEW_SCALARS = ("train/loss", "eval/loss", "train/learning_rate", "train/grad_norm",
                "eval/bits_per_byte", "train/tokens_per_s")
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


class PicturesError(ValueError):
    """Unusable input for the pictures (missing run files, no browser); the message names it."""


@dataclasses.dataclass(frozen=True)
class Sample:
    """One generated sample as TensorBoard's text dashboard shows it."""

    step: int
    tag: str
    text: str


@dataclasses.dataclass
class EventData:
    """What the trainer's event files hold: `scalars[tag] = [(step, value)]` and
    `texts[tag] = [(step, text)]`, each sorted by step (the last write of a step wins)."""

    scalars: dict
    texts: dict


def _gfile():
    """`tf.io.gfile` (local paths and gs:// alike), imported on first use."""
    import tensorflow as tf

    return tf.io.gfile


def _exists(path: str) -> bool:
    """Whether `path` exists (local paths without importing TensorFlow)."""
    if "://" not in path:
        return os.path.exists(path)
    return _gfile().exists(path)


def resolve_run_dir(path: str) -> str:
    """The training run directory for `path`: `path` itself when it holds metrics.jsonl, or
    `path/train` (the demo's layout). Raises `PicturesError` naming what is missing."""
    path = path.rstrip("/")
    for cand in (path, f"{path}/train"):
        if _exists(f"{cand}/{METRICS}"):
            return cand
    raise PicturesError(f"--run-dir {path}: no {METRICS} in it or in {path}/train "
                        "(give the --model-dir of a training run, or a demo run directory)")


def events_dir(run_dir: str) -> str:
    """The directory of the trainer's TensorBoard event files (`RUN/tensorboard`)."""
    return f"{run_dir.rstrip('/')}/{EVENTS}"


def read_event_data(logdir: str) -> EventData:
    """Scalars and text summaries of every event file in `logdir` (not below), read with
    TensorBoard's `EventAccumulator`. Raises `PicturesError` when there is no event file."""
    from tensorboard.backend.event_processing import event_accumulator as ea
    from tensorboard.util import tensor_util

    gfile = _gfile()
    if not gfile.isdir(logdir) or not any("tfevents" in n for n in gfile.listdir(logdir)):
        raise PicturesError(f"{logdir}: no TensorBoard event files (was the run made with "
                            "trainer.tensorboard off?)")
    acc = ea.EventAccumulator(logdir, size_guidance={ea.TENSORS: 0, ea.SCALARS: 0})
    acc.Reload()
    tags = acc.Tags()
    scalars, texts = {}, {}
    for tag in tags.get("scalars", []):  # TF1-style scalar summaries
        scalars[tag] = {e.step: float(e.value) for e in acc.Scalars(tag)}
    for tag in tags.get("tensors", []):
        plugin = acc.SummaryMetadata(tag).plugin_data.plugin_name
        events = acc.Tensors(tag)
        if plugin == "scalars":
            scalars[tag] = {e.step: float(tensor_util.make_ndarray(e.tensor_proto))
                            for e in events}
        elif plugin == "text":
            out = {}
            for e in events:
                value = tensor_util.make_ndarray(e.tensor_proto)
                items = value.ravel().tolist() if hasattr(value, "ravel") else [value]
                out[e.step] = "\n".join(
                    v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                    for v in items)
            texts[tag] = out
    return EventData(scalars={k: sorted(v.items()) for k, v in scalars.items()},
                     texts={k: sorted(v.items()) for k, v in texts.items()})


def read_samples(run_dir: str) -> list[Sample]:
    """The generated samples (`samples/I` text summaries) of a run, by step then tag."""
    data = read_event_data(events_dir(run_dir))
    out = [Sample(step, tag, text) for tag, rows in data.texts.items()
           if tag.startswith(SAMPLE_PREFIX) for step, text in rows]
    return sorted(out, key=lambda s: (s.step, s.tag))


def bytes_per_token(run_dir: str) -> float | None:
    """Held-out bytes per token implied by the last eval line with both `loss` (nats/token)
    and `bits_per_byte`: loss / (ln 2 x bits_per_byte). None when the run has no such line."""
    with _gfile().GFile(f"{run_dir}/{METRICS}") as f:
        lines = f.read().splitlines()
    value = None
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        loss, bpb = rec.get("loss"), rec.get("bits_per_byte")
        if isinstance(loss, (int, float)) and isinstance(bpb, (int, float)) and bpb > 0:
            value = loss / (math.log(2) * bpb)
    return value


def _plot_losses():
    try:  # the demo package's report module
        from massivetext_tf.demo.report import plot_losses
    except ImportError:
        from massivetext_tf.demo import plot_losses
    return plot_losses


def plot_loss(run_dir: str, out_png: str, *, title: str = "") -> str:
    """The loss curve PNG of a run (train and eval loss against the step, with held-out bits
    per byte on the right axis when the eval lines have them); returns `out_png`."""
    return _plot_losses()(f"{run_dir}/{METRICS}", out_png,
                          bytes_per_token=bytes_per_token(run_dir), title=title)


# ---------------------------------------------------------------------------------------------
# The rendered view (no browser)

_ORANGE, _GREY, _INK = "#f57c00", "#f5f5f5", "#212121"


def _smooth(values, weight=0.6):
    """TensorBoard's exponential moving average (debiased), default weight 0.6."""
    out, last, n = [], 0.0, 0
    for v in values:
        n += 1
        last = last * weight + (1 - weight) * v
        out.append(last / (1 - weight ** n))
    return out


def render_tensorboard_view(run_dir: str, out_png: str, *, max_samples: int = 4,
                            title: str = "") -> str:
    """A TensorBoard-like picture of a run drawn from its event files: scalar charts on the
    left (raw and smoothed, as TensorBoard draws them), the generated samples of the last
    sampling step on the right. Returns `out_png`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = read_event_data(events_dir(run_dir))
    tags = [t for t in VIEW_SCALARS if t in data.scalars][:4]
    tags += [t for t in sorted(data.scalars) if t not in tags][:max(0, 4 - len(tags))]
    samples = read_samples(run_dir)
    last_step = samples[-1].step if samples else None
    shown = [s for s in samples if s.step == last_step][:max_samples]

    fig = plt.figure(figsize=(12, 6.4), dpi=100, facecolor="white")
    bar = fig.add_axes([0, 0.92, 1, 0.08])
    bar.set_facecolor(_ORANGE)
    bar.set_xticks([]), bar.set_yticks([])
    for s in bar.spines.values():
        s.set_visible(False)
    bar.text(0.012, 0.5, "TensorBoard", color="white", fontsize=15, va="center",
             fontweight="bold")
    bar.text(0.16, 0.5, "SCALARS", color="white", fontsize=10, va="center", fontweight="bold")
    bar.text(0.24, 0.5, "TEXT", color="white", fontsize=10, va="center", fontweight="bold")
    bar.text(0.988, 0.5, title or "rendered from the run's event files", color="white",
             fontsize=9, va="center", ha="right", style="italic")

    grid = fig.add_gridspec(2, 3, left=0.05, right=0.98, bottom=0.08, top=0.86,
                            wspace=0.28, hspace=0.45)
    for i in range(4):
        ax = fig.add_subplot(grid[i // 2, i % 2])
        if i >= len(tags):
            ax.axis("off")
            continue
        steps, values = zip(*data.scalars[tags[i]])
        ax.plot(steps, values, color=_ORANGE, alpha=0.3, linewidth=1)
        ax.plot(steps, _smooth(values), color=_ORANGE, linewidth=1.8,
                marker="o" if len(steps) < 4 else None)
        ax.set_title(tags[i], fontsize=10, loc="left", color=_INK)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
        ax.set_xlabel("step", fontsize=8)

    ax = fig.add_subplot(grid[:, 2])
    ax.set_facecolor(_GREY)
    ax.set_xticks([]), ax.set_yticks([])
    heading = f"samples  (step {last_step})" if shown else "samples"
    ax.set_title(heading, fontsize=10, loc="left", color=_INK)
    y = 0.97
    for s in shown:
        ax.text(0.04, y, s.tag, fontsize=9, fontweight="bold", va="top", color=_INK,
                transform=ax.transAxes)
        body = "\n".join(textwrap.fill(line, 38) for line in s.text.splitlines() or [""])
        body = "\n".join(body.splitlines()[:8])
        ax.text(0.04, y - 0.05, body, fontsize=8.5, family="monospace", va="top",
                color=_INK, transform=ax.transAxes)
        y -= 0.09 + 0.045 * len(body.splitlines())
    if not shown:
        ax.text(0.04, 0.95, "(no samples: set trainer.sample_prompts)", fontsize=9, va="top",
                transform=ax.transAxes, color="#757575")
    import io as _bytes_io

    buf = _bytes_io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    io.atomic_write(out_png, buf.getvalue())
    return out_png


# ---------------------------------------------------------------------------------------------
# Real screenshots (TensorBoard + headless Chromium)

def find_browser(name: str | None = None) -> str | None:
    """The path of a Chromium-family browser: `name` if given (a path or a command), else the
    first of `BROWSERS` on PATH. None when there is none."""
    for cand in ([name] if name else BROWSERS):
        path = shutil.which(cand) or (cand if os.path.isfile(cand) else None)
        if path:
            return path
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 (loopback only)
        return r.read()


def _wait_for_tensorboard(port: int, proc, timeout: float) -> None:
    """Until TensorBoard serves and has loaded the scalars and text of the run."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise PicturesError(f"tensorboard exited with status {proc.returncode} before "
                                "serving (is the tensorboard package installed?)")
        try:
            listing = json.loads(_get(f"http://127.0.0.1:{port}/data/plugins_listing"))
            if all(listing.get(p, {}).get("enabled") for p in ("scalars", "text")):
                return
        except (OSError, ValueError):
            pass
        time.sleep(1.0)
    raise PicturesError(f"tensorboard did not show the run's scalars and text within "
                        f"{timeout:.0f} s")


# file name -> (TensorBoard page, window height in pixels). The scalars page shows the raw values
# (smoothing 0), the numbers of metrics.jsonl.
SCREENSHOTS = {"tensorboard_scalars.png": ("#scalars&tagFilter=loss&_smoothingWeight=0", 480),
               "tensorboard_text.png": ("#text&tagFilter=samples", 760)}


# TensorBoard settings kept in the browser's localStorage, set before the screenshots: charts
# scaled to all points (by default TensorBoard crops the y axis to the 5-95% quantiles, which
# cuts off an eval curve of a few points).
BROWSER_SETTINGS = {"_ignoreYOutliers": "false"}


def _chromium(browser: str, profile: str, *args: str) -> list[str]:
    return [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}", *args]


def _seed_local_storage(browser: str, profile: str, port: int, items: dict,
                        timeout: float) -> None:
    """Stores `items` in the localStorage of http://127.0.0.1:PORT in the browser profile
    `profile` (a page served once from that origin sets them), so the TensorBoard started on
    the same port afterwards reads them."""
    import http.server
    import threading

    script = "".join(f"localStorage.setItem({json.dumps(k)}, {json.dumps(v)});"
                     for k, v in items.items())
    page = f"<html><body><script>{script}</script>ok</body></html>".encode()

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", port), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        subprocess.run(_chromium(browser, profile, "--dump-dom", f"http://127.0.0.1:{port}/"),
                       capture_output=True, timeout=timeout)
    finally:
        server.shutdown()
        server.server_close()


def screenshot_tensorboard(run_dir: str, out_dir: str, *, browser: str, width: int = 1280,
                           timeout: float = 180.0, settle_ms: int = 20000) -> list[str]:
    """Starts TensorBoard on the run's event files (loopback, a free port), takes headless
    Chromium screenshots `width` pixels wide of the scalars dashboard (loss tags) and of the
    text dashboard (samples), writes them to `out_dir` under the names of `SCREENSHOTS` and
    returns their paths. TensorBoard is stopped afterwards."""
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        profile = os.path.join(tmp, "profile")
        port = _free_port()
        _seed_local_storage(browser, profile, port, BROWSER_SETTINGS, timeout)
        cmd = [sys.executable, "-m", "tensorboard.main", "--logdir", events_dir(run_dir),
               "--port", str(port), "--host", "127.0.0.1", "--reload_interval", "0"]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        with open(os.path.join(tmp, "tensorboard.log"), "wb") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            _wait_for_tensorboard(port, proc, timeout)
            for name, (fragment, height) in SCREENSHOTS.items():
                local = os.path.join(tmp, name)
                shot = _chromium(browser, profile, f"--window-size={int(width)},{int(height)}",
                                 f"--virtual-time-budget={int(settle_ms)}",
                                 f"--screenshot={local}", f"http://127.0.0.1:{port}/{fragment}")
                r = subprocess.run(shot, capture_output=True, text=True, timeout=timeout)
                if not os.path.exists(local):
                    tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
                    raise PicturesError(f"{browser}: no screenshot (status {r.returncode}: "
                                        f"{tail[0]}); pass --no-browser to render instead")
                with open(local, "rb") as f:
                    out = f"{out_dir.rstrip('/')}/{name}"
                    io.atomic_write(out, f.read())
                written.append(out)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return written


def make_pictures(run_dir: str, out_dir: str, *, browser: str | None = None,
                  no_browser: bool = False, title: str = "") -> dict:
    """Every picture of a run: `loss.png`, and the TensorBoard view: screenshots with a
    browser (`browser` or the first Chromium found), or `tensorboard_view.png` rendered with
    matplotlib when `no_browser`. Returns `{"run_dir", "pictures": [paths], "samples"}`.
    Raises `PicturesError` for a missing run file, or for no browser without `no_browser`."""
    run = resolve_run_dir(run_dir)
    events = events_dir(run)
    read_event_data(events)  # fail early, naming the directory, before any picture is made
    found = None if no_browser else find_browser(browser)
    if not no_browser and found is None:
        wanted = browser or " / ".join(BROWSERS[:3])
        raise PicturesError(f"--browser: {wanted} not found (install Chromium, e.g. "
                            "`apt-get install chromium`, or pass --no-browser to render the "
                            "TensorBoard view with matplotlib)")
    io.makedirs(out_dir)
    out = [plot_loss(run, f"{out_dir.rstrip('/')}/loss.png", title=title)]
    if no_browser:
        out.append(render_tensorboard_view(run, f"{out_dir.rstrip('/')}/tensorboard_view.png"))
    else:
        out += screenshot_tensorboard(run, out_dir, browser=found)
    return {"run_dir": run, "pictures": out,
            "samples": [dataclasses.asdict(s) for s in read_samples(run)]}
