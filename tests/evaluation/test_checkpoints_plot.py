"""`massivetext evaluate --model RUN/checkpoints/ckpt-4 --model RUN/checkpoints/ckpt-8 --plot`:
training checkpoints are models (the run's config and tokenizer, the checkpoint's weights), the
results record each one's step and training tokens, and the plot draws every metric against
those tokens."""
import json
import sys

import pytest

from tests.evaluation.conftest import write_task


@pytest.mark.slow
def test_checkpoints_of_one_run_side_by_side_with_a_plot(tmp_path, capsys):
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "training"))
    from training_helpers import tiny_config, write_tiny_shards

    from massivetext_tf.evaluation import load_model
    from massivetext_tf.training import config as C
    from massivetext_tf.training.loop import train
    from tools.evaluate import main

    data = write_tiny_shards(tmp_path / "shards")
    run = tmp_path / "run"
    cfg = tiny_config(run, runtime={"train_steps": 8, "steps_per_loop": 4, "checkpoint_every": 4,
                                    "keep_checkpoints": 5, "eval_steps": 1, "save_preset": True})
    cfg["data"] = {"dir": data, "sequence_length": 32, "global_batch_size": 8}
    train(C.from_dict(cfg))
    task = write_task(tmp_path, "mc", {"kind": "multiple_choice", "prompt": "{question}"},
                      [{"question": q, "choices": ["to be", "or not", "the question"], "answer": i % 3}
                       for i, q in enumerate(["whether tis", "nobler in the", "mind to suffer"])])
    out, png = tmp_path / "results.json", tmp_path / "plot.png"
    code = main(["--model", f"{run}/checkpoints/ckpt-4", "--model", f"{run}/checkpoints/ckpt-8",
                 "--model", f"final={run}/preset", "--task", task, "--output", str(out), "--plot", str(png),
                 "--no-jit-compile", "--bootstrap-iters", "10"])
    assert code == 0, capsys.readouterr().err
    doc = json.loads(out.read_text())
    positions = [(m["name"], m["checkpoint"].get("step"), m["checkpoint"].get("tokens")) for m in doc["models"]]
    assert positions == [("run@4", 4, 4 * 8 * 32), ("run@8", 8, 8 * 8 * 32), ("final", 8, 8 * 8 * 32)]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    by = {(r["model"], r["metric"]): r["value"] for r in doc["results"]}
    # the step-8 checkpoint is the weights the run saved as its preset: the same numbers
    for metric in ("accuracy", "accuracy_per_byte"):
        assert by[("run@8", metric)] == pytest.approx(by[("final", metric)], abs=1e-6)
    a, b = load_model(f"{run}/checkpoints/ckpt-4", jit_compile=False), load_model(f"{run}/preset", jit_compile=False)
    la, lb = a.loglikelihood([("whether tis", " to be")])[0], b.loglikelihood([("whether tis", " to be")])[0]
    assert la.logprob != pytest.approx(lb.logprob, abs=1e-6)  # step 4 is another model
    # one model cannot be plotted against tokens: exit 2, one line
    assert main(["--model", f"{run}/preset", "--task", task, "--plot", str(png)]) == 2
    assert "--plot: needs checkpoints of one run" in capsys.readouterr().err
