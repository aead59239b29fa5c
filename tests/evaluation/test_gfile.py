"""Task files, data, corpora and results go through tf.io.gfile: the same code reads and writes
an in-memory `ram://` filesystem (as it would `gs://`)."""
import json

import pytest
import tensorflow as tf


def test_tasks_sources_and_results_on_a_gfile_filesystem(adapter):
    from massivetext_tf.data.prepare import sources_from_flags
    from massivetext_tf.evaluation import evaluate_source, evaluate_task, load_task, report

    root = "ram://evaluation-test"
    tf.io.gfile.makedirs(f"{root}/tasks")
    with tf.io.gfile.GFile(f"{root}/tasks/mc.yaml", "w") as f:
        f.write("kind: multiple_choice\ndata: mc.jsonl\nnum_fewshot: 1\n")
    with tf.io.gfile.GFile(f"{root}/tasks/mc.jsonl", "w") as f:
        for q in ["To be", "Who's there?", "Good night"]:
            f.write(json.dumps({"question": q, "choices": ["yes", "no"], "answer": 0}) + "\n")
    with tf.io.gfile.GFile(f"{root}/corpus.jsonl", "w") as f:
        f.write(json.dumps({"text": "To be, or not to be, that is the question."}) + "\n")
    task = load_task(f"{root}/tasks/mc.yaml")
    assert task.data_path == f"{root}/tasks/mc.jsonl" and len(task.items) == 3
    rows = evaluate_task(adapter, task)
    (spec,) = sources_from_flags([], [f"web={root}/corpus.jsonl"])
    rows += evaluate_source(adapter, spec, bootstrap_iters=10)
    bpb = next(r for r in rows if r["metric"] == "bits_per_byte")
    (expected,) = adapter.loglikelihood_rolling(["To be, or not to be, that is the question."])
    assert bpb["value"] == pytest.approx(-expected.logprob / (0.6931471805599453 * 42))
    document = report.results_document([(adapter.info, rows)])
    report.write_json(f"{root}/out/results.json", document)
    report.write_markdown(f"{root}/out/results.md", document)
    with tf.io.gfile.GFile(f"{root}/out/results.json") as f:
        assert json.load(f)["results"][0]["task"] == "mc"
    with tf.io.gfile.GFile(f"{root}/out/results.md") as f:
        assert "**web**" in f.read()
