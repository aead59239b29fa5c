"""`massivetext pictures`: the loss curve and the TensorBoard view from a run directory.

A tiny run directory is written the way the trainer writes one (metrics.jsonl lines and
`tf.summary` scalars and text under `tensorboard/`); the matplotlib path renders it.
"""
import json
import struct
import subprocess
import sys

import pytest
import tensorflow as tf

from massivetext_tf import pictures
from massivetext_tf.cli import pictures as cli

SAMPLE_30 = "ROMEO. What light through yonder"
SAMPLE_60 = "ROMEO. But soft, what light\nthrough yonder window breaks"


def _png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def _make_run(run_dir, *, samples=True):
    """A run directory as MetricsWriter leaves it: 12 train lines, 2 eval lines, events."""
    run_dir.mkdir(parents=True)
    lines = []
    writer = tf.summary.create_file_writer(str(run_dir / "tensorboard"))
    with writer.as_default():
        tf.summary.text("config", "```\nmodel: tiny\n```", step=0)
        for step in range(5, 65, 5):
            loss = 6.0 - step / 20
            rec = {"step": step, "split": "train", "loss": loss, "learning_rate": 1e-3,
                   "grad_norm": 0.5}
            lines.append(rec)
            for k in ("loss", "learning_rate", "grad_norm"):
                tf.summary.scalar(f"train/{k}", rec[k], step=step)
            if step in (30, 60):
                ev = {"step": step, "split": "eval", "loss": loss + 0.1,
                      "perplexity": 2.718 ** (loss + 0.1), "tokens": 1024.0,
                      "bits_per_byte": (loss + 0.1) / (0.693147 * 1.5)}
                lines.append(ev)
                tf.summary.scalar("eval/loss", ev["loss"], step=step)
                if samples:
                    tf.summary.text("samples/0", SAMPLE_30 if step == 30 else SAMPLE_60,
                                    step=step)
    writer.close()
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return run_dir


def test_events_are_read_and_both_pictures_rendered_without_a_browser(tmp_path):
    run = _make_run(tmp_path / "demo" / "train")
    # The demo's run directory resolves to its train/ subdirectory.
    assert pictures.resolve_run_dir(str(tmp_path / "demo")) == str(run)

    data = pictures.read_event_data(pictures.events_dir(str(run)))
    assert [s for s, _ in data.scalars["train/loss"]] == list(range(5, 65, 5))
    assert data.scalars["eval/loss"][-1][1] == pytest.approx(6.0 - 3 + 0.1)
    assert data.texts["config"] == [(0, "```\nmodel: tiny\n```")]
    samples = pictures.read_samples(str(run))
    assert [(s.step, s.tag, s.text) for s in samples] == [
        (30, "samples/0", SAMPLE_30), (60, "samples/0", SAMPLE_60)]
    # Bytes per token implied by the eval lines (the right axis of the loss curve).
    assert pictures.bytes_per_token(str(run)) == pytest.approx(1.5, rel=1e-4)

    out = tmp_path / "images"
    result = pictures.make_pictures(str(tmp_path / "demo"), str(out), no_browser=True)
    assert result["pictures"] == [f"{out}/loss.png", f"{out}/tensorboard_view.png"]
    assert [s["text"] for s in result["samples"]] == [SAMPLE_30, SAMPLE_60]
    w, h = _png_size(out / "loss.png")
    assert 600 <= w <= 1600 and 300 <= h <= 1000, (w, h)
    w, h = _png_size(out / "tensorboard_view.png")
    assert (w, h) == (1200, 640)
    for name in ("loss.png", "tensorboard_view.png"):
        assert 5_000 < (out / name).stat().st_size < 200_000


def test_cli_writes_the_pictures_and_a_json_line(tmp_path, capsys):
    run = _make_run(tmp_path / "run", samples=False)
    out = tmp_path / "img"
    assert cli.main(["--run-dir", str(run), "--out", str(out), "--no-browser",
                     "--title", "tiny"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary == {"run_dir": str(run), "samples": 0,
                       "pictures": [f"{out}/loss.png", f"{out}/tensorboard_view.png"]}
    assert _png_size(out / "tensorboard_view.png") == (1200, 640)


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert cli.main(["--run-dir", str(tmp_path / "nothing"), "--out", str(tmp_path / "o"),
                     "--no-browser"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--run-dir" in err[0] and "metrics.jsonl" in err[0]
    assert not (tmp_path / "o").exists()

    # metrics.jsonl but no event files: named, nothing drawn.
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "metrics.jsonl").write_text('{"step": 1, "loss": 1.0}\n')
    assert cli.main(["--run-dir", str(tmp_path / "bare"), "--out", str(tmp_path / "o"),
                     "--no-browser"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tensorboard" in err[0] and "event files" in err[0]
    assert not (tmp_path / "o").exists()

    # Screenshots asked for with a browser that does not exist: the flag is named.
    run = _make_run(tmp_path / "run")
    assert cli.main(["--run-dir", str(run), "--out", str(tmp_path / "o"),
                     "--browser", str(tmp_path / "no-such-browser")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--browser" in err[0] and "--no-browser" in err[0]


def test_help_does_not_import_tensorflow():
    code = ("import sys; from massivetext_tf.cli import pictures; "
            "pictures.build_parser().format_help(); "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.slow
@pytest.mark.skipif(pictures.find_browser() is None, reason="no Chromium-family browser here")
def test_real_tensorboard_screenshots(tmp_path):
    """TensorBoard started on the run and captured by headless Chromium (~40 s)."""
    run = _make_run(tmp_path / "run")
    shots = pictures.screenshot_tensorboard(str(run), str(tmp_path / "img"),
                                            browser=pictures.find_browser(), width=1000)
    assert [p.rsplit("/", 1)[1] for p in shots] == ["tensorboard_scalars.png",
                                                    "tensorboard_text.png"]
    for path, (_, height) in zip(shots, pictures.SCREENSHOTS.values()):
        assert _png_size(path) == (1000, height)
        # A blank page compresses to a few KB; a rendered dashboard does not.
        assert 20_000 < (tmp_path / "img" / path.rsplit("/", 1)[1]).stat().st_size < 400_000
