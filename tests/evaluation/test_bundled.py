"""tools/make_eval_tasks.py: the bundled Shakespeare tasks, deterministic, valid task files that
`massivetext evaluate` runs, built from the held-out plays only; a foreign --output is refused."""
import json
import subprocess
import sys


def test_tool_builds_the_same_valid_tasks_every_time(tmp_path, adapter):
    from harness import subprocess_env

    from massivetext_tf import demo
    from massivetext_tf.evaluation import bundled, evaluate_task, load_task

    repo = __import__("pathlib").Path(__file__).resolve().parents[2]
    out = tmp_path / "tasks"
    proc = subprocess.run([sys.executable, str(repo / "tools" / "make_eval_tasks.py"), "--output", str(out),
                           "--items", "12"], env=subprocess_env(repo), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = bundled.build(items=12)  # in process: byte-identical
    for name, text in again.items():
        assert (out / name).read_text() == text, name
    marker = json.loads((out / bundled.MARKER).read_text())
    assert marker["counts"] == {bundled.HELDOUT: marker["counts"][bundled.HELDOUT],
                                bundled.LAST_WORD: 12, bundled.NEXT_LINE: 12}
    # only held-out plays, the whole of each
    held = [json.loads(x) for x in (out / bundled.HELDOUT).read_text().splitlines()]
    assert {d["play"] for d in held} == set(demo.HELD_OUT)
    for name in (bundled.LAST_WORD, bundled.NEXT_LINE):
        task = load_task(str(out / f"{name}.yaml"))  # validates every line
        assert len(task.items) == 12 and {i.record["play"] for i in task.items} <= set(demo.HELD_OUT)
    mc = load_task(str(out / f"{bundled.NEXT_LINE}.yaml"), limit=3)
    for item in mc.items:
        choices = item.record["choices"]
        assert len(set(choices)) == 4 and 0 <= item.record["answer"] < 4
    rows = evaluate_task(adapter, mc, bootstrap_iters=0)
    assert {r["metric"] for r in rows} >= {"accuracy"} and rows[0]["num_items"] == 3
    lw = load_task(str(out / f"{bundled.LAST_WORD}.yaml"), limit=3)
    assert all(i.record["text"].split()[-1].isalpha() or "'" in i.record["text"].split()[-1] for i in lw.items)
    # a different seed chooses other items
    assert bundled.build(items=12, seed=1)[f"{bundled.NEXT_LINE}.jsonl"] != again[f"{bundled.NEXT_LINE}.jsonl"]
    # rebuilding into its own directory is allowed; a foreign non-empty directory is refused
    bundled.write(str(out), again)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    from tools.make_eval_tasks import main

    assert main(["--output", str(foreign), "--items", "2"]) == 2
    assert (foreign / "notes.txt").read_text() == "mine" and len(list(foreign.iterdir())) == 1
