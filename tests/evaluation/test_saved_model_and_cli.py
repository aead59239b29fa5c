"""`tools/evaluate.py --model PRESET --model SAVED_MODEL`: the Keras preset directory and the
exported SavedModel (judged through its signatures) give the same numbers on the same items,
side by side in one table, with a JSON file holding every row."""
import json
import math

import pytest

from tests.evaluation.conftest import write_task

CONTEXTS = ["To be, or not to be", "Who's there?", "O Romeo, Romeo", "Good night, sweet prince"]


@pytest.mark.slow
def test_preset_and_saved_model_agree_side_by_side(tmp_path, preset_dir, saved_model_dir, decoder, capsys):
    from massivetext_tf.evaluation import load_model
    from massivetext_tf.models.scoring import score_text
    from tools.evaluate import main

    mc = write_task(tmp_path, "mc", {"kind": "multiple_choice", "prompt": "{question}"},
                    [{"question": c, "choices": ["the king", "a question", "night"], "answer": i % 3}
                     for i, c in enumerate(CONTEXTS)])
    qa = write_task(tmp_path, "qa", {"kind": "generative_qa", "prompt": "{question}", "num_fewshot": 1,
                                     "generation": {"max_new_tokens": 5}},
                    [{"question": c, "answers": ["x"]} for c in CONTEXTS[:3]])
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    docs = ["To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer "
            "the slings and arrows of outrageous fortune.", "Who's there? Nay, answer me."]
    (corpus / "plays.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs) + "{broken\n")
    (corpus / "sonnet.txt").write_text("Shall I compare thee to a summer's day?\n")
    out, md = tmp_path / "results.json", tmp_path / "results.md"
    code = main(["--model", f"keras={preset_dir}", "--model", saved_model_dir, "--task", mc, "--task", qa,
                 "--source", f"plays={corpus}/*.jsonl", "--source", f"sonnet={corpus}/sonnet.txt",
                 "--output", str(out), "--markdown", str(md), "--bootstrap-iters", "20", "--no-jit-compile",
                 "--batch-size", "4"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    document = json.loads(out.read_text())
    names = [m["name"] for m in document["models"]]
    assert names == ["keras", "tiny"]
    assert document["models"][0]["format"] == "keras" and document["models"][0]["checkpoint"]["weights_sha256"]
    assert document["models"][1]["format"] == "saved_model" and document["models"][1]["version"] == "1"
    by = {}
    for row in document["results"]:
        by.setdefault((row["task"], row["metric"]), {})[row["model"]] = row
    assert ("mc", "accuracy_unconditional") in by and ("qa", "exact_match") in by
    assert ("lm/plays", "bits_per_byte") in by and ("lm/sonnet", "perplexity") in by
    for key, rows in by.items():
        keras, served = rows["keras"], rows["tiny"]
        assert keras["value"] == pytest.approx(served["value"], rel=1e-4, abs=1e-5), key
        for field in ("num_items", "num_scored", "num_skipped", "num_truncated"):
            assert keras[field] == served[field], (key, field)
    # the unreadable JSONL line is counted, not silently dropped
    plays = by[("lm/plays", "bits_per_byte")]["keras"]
    assert plays["num_skipped"] == 1 and plays["read_errors"] == {"read:bad_json": 1}
    assert plays["num_scored"] == 2 and plays["bytes"] == sum(len(d.encode()) for d in docs)
    # bits per byte = the existing sliding-window scorer's log-likelihood over the bytes
    reference = score_text(decoder, docs, window=32, stride=16)
    assert plays["value"] == pytest.approx(-reference["log_likelihood"] / (math.log(2) * plays["bytes"]), rel=1e-5)
    # one table, both models side by side; one table per source
    text = md.read_text()
    assert "| task | metric | k-shot | keras | tiny | items (scored/all) |" in text
    assert "**plays** (window 32, stride 16)" in text and "**sonnet**" in text
    assert text == captured.out
    # the same numbers through the Python API, loglikelihood by loglikelihood
    a, b = load_model(preset_dir, jit_compile=False), load_model(saved_model_dir.rsplit("/", 1)[0])
    assert b.info["path"] == saved_model_dir  # NAME without a version: the highest version
    requests = [(c, " the king") for c in CONTEXTS] + [("x " * 40, " end")]
    for ra, rb in zip(a.loglikelihood(requests), b.loglikelihood(requests)):
        assert ra.logprob == pytest.approx(rb.logprob, abs=1e-4)
        assert (ra.is_greedy, ra.num_tokens, ra.truncated) == (rb.is_greedy, rb.num_tokens, rb.truncated)


@pytest.mark.slow
def test_encoder_decoder_saved_model_matches_keras_and_its_score_signature(encoder_decoder, seq2seq_adapter, tmp_path):
    import tensorflow as tf

    from massivetext_tf.evaluation import load_model
    from massivetext_tf.export import export_saved_model

    path = str(tmp_path / "t5" / "1")
    export_saved_model(encoder_decoder, path, jit_compile=False)
    served = load_model(path)
    assert served.kind == "encoder_decoder" and served.info["format"] == "saved_model"
    requests = [(c, " that is the question") for c in CONTEXTS]
    keras, saved = seq2seq_adapter.loglikelihood(requests), served.loglikelihood(requests)
    # the continuation is scored as the `score` signature scores a target: tokens + </s>
    score = served.module.signatures["score"](texts=tf.constant([c for c, _ in requests]),
                                              targets=tf.constant([t.strip() for _, t in requests]))
    for a, b, ll, n in zip(keras, saved, score["log_likelihood"].numpy(), score["num_tokens"].numpy()):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-4)
        assert b.logprob == pytest.approx(float(ll), abs=1e-4) and b.num_tokens == int(n)
    texts = ["To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer"]
    assert served.loglikelihood_rolling(texts)[0].logprob == pytest.approx(
        seq2seq_adapter.loglikelihood_rolling(texts)[0].logprob, abs=1e-3)
