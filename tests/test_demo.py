"""The demo (massivetext demo, tools/demo.py): corpus rendering, baselines, and the whole pipeline at CI size
(massivetext_tf/configs/demo_ci.yaml): interrupt + resume, summary, PNG, exports run in fresh
processes, and a second run that reuses every stage."""
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest

from massivetext_tf import demo

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CI_CONFIG = os.path.join(REPO, "massivetext_tf", "configs", "demo_ci.yaml")

MARKDOWN = """# Romeo and Juliet

## ACT II

### SCENE II. Capulet's orchard.

_Enter ROMEO_

**ROMEO**  
But, soft! what light through yonder window breaks?  
It is the east, and Juliet is the sun.

**JULIET**  
Ay me!

### SCENE III. Friar Laurence's cell.

**FRIAR LAURENCE**  
The grey-eyed morn smiles on the frowning night,

_Exit_
"""


def test_split_scenes_renders_plain_text_with_inline_speakers():
    scenes = demo.split_scenes(MARKDOWN)
    assert [s["scene"] for s in scenes] == ["SCENE II. Capulet's orchard.",
                                            "SCENE III. Friar Laurence's cell."]
    first = scenes[0]["text"]
    assert first.startswith("ROMEO AND JULIET\nACT II\nSCENE II. Capulet's orchard.\n\n[Enter ROMEO]")
    assert "ROMEO. But, soft! what light through yonder window breaks?\nIt is the east" in first
    assert "JULIET. Ay me!" in first
    assert "**" not in first and "  \n" not in first
    assert scenes[1]["text"].rstrip().endswith("[Exit]")
    assert scenes[1]["act"] == "ACT II"


def test_bundled_plays_and_held_out_split(tmp_path):
    files = demo.play_files()
    assert len(files) >= 37 and set(demo.HELD_OUT) <= set(files)
    stats = demo.build_corpus(str(tmp_path), plays=["macbeth", "the-tempest"],
                              held_out=["the-tempest"])
    assert stats["train"]["plays"] == 1 and stats["eval"]["plays"] == 1
    recs = [json.loads(x) for x in open(tmp_path / "eval.jsonl")]
    assert {r["play"] for r in recs} == {"the-tempest"}
    assert len(recs) == stats["eval"]["documents"] > 5  # whole play, one record per scene
    with pytest.raises(ValueError, match="unknown play"):
        demo.build_corpus(str(tmp_path), plays=["no-such-play"])


def test_scene_unit_survives_the_gopher_filters():
    losses = demo.markdown_filter_losses(plays=["hamlet", "the-tempest", "macbeth", "othello"],
                                         held_out=["hamlet"])
    inline = losses["scene (speakers inline)"]
    assert inline["documents"] > 40
    assert sum(inline["removed"].values()) <= 0.05 * inline["documents"]


def test_unigram_baseline_matches_hand_computation():
    train = [[4, 4, 5], [4]]
    evald = [[4, 6]]
    res = demo.unigram_bits_per_byte(train, evald, eval_bytes=10, vocabulary_size=8)
    # add-one: counts 1 everywhere, +3 for id 4, +1 for id 5 -> total 8 + 4 = 12
    expected = -(math.log(4 / 12) + math.log(1 / 12)) / (math.log(2) * 10)
    assert res["bits_per_byte"] == pytest.approx(expected)
    assert res["tokens"] == 2


def _run(args, *, env=None, timeout=420):
    return subprocess.run([sys.executable, os.path.join(REPO, "tools", "demo.py")] + args,
                          capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)


def _env():
    env = dict(os.environ)
    env.pop("FRESH", None)
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return env


@pytest.mark.slow
def test_demo_end_to_end_at_ci_size(tmp_path):
    run_dir = str(tmp_path / "run")
    args = ["--config", CI_CONFIG, "--run-dir", run_dir]
    ckpt_dir = os.path.join(run_dir, "train", "checkpoints")

    # 1. Data stages + training, interrupted by SIGINT once a checkpoint exists.
    proc = subprocess.Popen(
        [sys.executable, os.path.join(REPO, "tools", "demo.py")] + args,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO, env=_env())
    deadline = time.time() + 240
    while not os.path.exists(os.path.join(ckpt_dir, "checkpoint")):
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out1, _ = proc.communicate(timeout=240)
    assert proc.returncode == 130, out1
    state = open(os.path.join(ckpt_dir, "checkpoint")).read()  # CheckpointManager's state file
    interrupted_at = int(state.split('model_checkpoint_path: "ckpt-', 1)[1].split('"', 1)[0])
    assert 0 < interrupted_at < 60, out1
    assert "curation" in out1.lower() or "documents kept" in out1
    assert not os.path.exists(os.path.join(run_dir, "summary.json")) or "heldout_bits_per_byte" \
        not in json.load(open(os.path.join(run_dir, "summary.json")))

    # 2. Rerun: training continues from that checkpoint, then evaluate, generate, export.
    res = _run(args, env=_env())
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    out2 = res.stdout
    assert f"step {interrupted_at} -> 60" in out2, out2[-3000:]
    assert "training gopher_tiny" in out2
    summary = json.load(open(os.path.join(run_dir, "summary.json")))
    print("stage seconds (second run):", summary["stage_seconds"])
    assert summary["training"]["steps"] == 60
    assert summary["training"]["resumed"] is True
    assert summary["training"]["tokens"] == 60 * 8 * 64
    assert summary["training"]["train_seconds"] > 0
    held = summary["heldout_bits_per_byte"]
    base = summary["baselines"]
    assert 0 < held < base["untrained_bits_per_byte"], summary
    assert 0 < base["unigram_bits_per_byte"] < base["untrained_bits_per_byte"]
    assert summary["heldout"]["plays"] == ["the-tempest"]
    # the bundled tasks (tools/make_eval_tasks.py) from the held-out play, next to bits per byte
    tasks = summary["heldout_tasks"]
    assert 0 <= tasks["shakespeare_next_line"]["accuracy"] <= 1
    assert 0 <= tasks["shakespeare_last_word"]["accuracy"] <= 1 and tasks["shakespeare_last_word"]["perplexity"] > 1
    assert "shakespeare_next_line accuracy" in out2
    marker = json.load(open(os.path.join(run_dir, "eval_tasks", "make_eval_tasks.json")))
    assert marker["held_out"] == ["the-tempest"]
    assert set(summary["reused_stages"]) == {"corpus", "curate", "tokenizer", "shards"}
    png = os.path.join(run_dir, "loss_curve.png")
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert [s["prompt"] for s in summary["samples"]] == ["ROMEO.", "To be, or not"]
    # The demo loaded the SavedModel in a fresh process (tf.saved_model.load + the generate
    # signature) and recorded what it generated; a second TensorFlow start here would only
    # repeat that at CI cost.
    saved_model = summary["export"]["saved_model"]
    assert os.path.exists(os.path.join(saved_model, "saved_model.pb"))
    assert os.path.basename(os.path.dirname(saved_model)) == "shakespeare"
    sm_check = summary["export"]["checks"]["saved_model"]
    assert sm_check["prompt"] == "ROMEO." and isinstance(sm_check["text"], str)
    assert sm_check["tokens"] > 0
    assert "fresh process: tf.saved_model.load(" in out2
    assert "$ massivetext export --model" in out2  # each stage prints the command that runs it
    # The TFLite file, run here again under LiteRT (no TensorFlow import: seconds).
    tflite = summary["export"]["tflite"]
    assert tflite.endswith(".tflite") and os.path.getsize(tflite) > 0
    code = ("import json, sys; from massivetext_tf.demo import checks; "
            "r = checks.tflite_check(sys.argv[1], sys.argv[2], 'ROMEO.', 8); "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'; print(json.dumps(r))")
    check = subprocess.run(
        [sys.executable, "-c", code, tflite,
         os.path.join(os.path.dirname(tflite), "tokenizer.model")],
        capture_output=True, text=True, timeout=120, env=_env())
    assert check.returncode == 0, check.stderr[-3000:]
    assert json.loads(check.stdout.strip().splitlines()[-1])["tokens"] > 0
    assert "tensorflow_model_server --rest_api_port=8501 --model_config_file=" in out2
    assert ":predict" in out2 and '"signature_name": "generate"' in out2
    assert os.path.exists(summary["export"]["models_config"])
    for sub in ("tensorboard", "metrics.jsonl", "preset"):
        assert os.path.exists(os.path.join(run_dir, "train", sub)), sub

    # 3. A second run after completion reuses every stage: no training, no export.
    t0 = time.time()
    res = _run(args, env=_env())
    elapsed = time.time() - t0
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "training gopher_tiny" not in res.stdout
    assert "$ massivetext export" not in res.stdout
    summary3 = json.load(open(os.path.join(run_dir, "summary.json")))
    assert set(summary3["reused_stages"]) == set(demo.STAGES)
    assert summary3["heldout_bits_per_byte"] == pytest.approx(held)
    assert sum(summary3["stage_seconds"].values()) < 10, summary3["stage_seconds"]
    assert elapsed < 60
    versions = os.listdir(os.path.dirname(saved_model))
    assert sorted(v for v in versions if v.isdigit()) == ["1"]


def test_demo_and_data_flags_import_without_tensorflow():
    # `massivetext demo --help` / `prepare-data --help` build their parsers from these modules.
    code = ("import sys, massivetext_tf.demo, massivetext_tf.data.source_args; "
            "massivetext_tf.demo.build_parser(); "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, env=_env())
    assert res.returncode == 0, res.stderr[-2000:]


def test_stage_markers_reuse_only_a_matching_finished_stage(tmp_path):
    from massivetext_tf.demo.run import Run

    run = Run(demo.Options(run_dir=str(tmp_path / "run"), config="demo_ci"),
              out=lambda s: None)
    out = tmp_path / "run" / "corpus.jsonl"
    out.parent.mkdir(parents=True)
    out.write_text("{}\n")
    run.mark("corpus", "fp1", [str(out)], stats={"documents": 3})
    assert run.reuse("corpus", "fp1")["stats"] == {"documents": 3}
    assert run.reused == ["corpus"]
    assert run.done("corpus", "fp2") is None  # settings changed
    out.unlink()
    assert run.done("corpus", "fp1") is None  # an output is gone
    with pytest.raises(demo.DemoError, match="unknown demo field"):
        bad = tmp_path / "bad.yaml"
        bad.write_text("demo:\n  vocab: 10\n")
        Run(demo.Options(config=str(bad)))
