"""lm-evaluation-harness runs our models (`model="massivetext_tf"`), offline on local task
YAMLs, and its numbers are `massivetext evaluate`'s on the same items: multiple choice, and
rolling log-likelihood under lm-eval's windowing (`--rolling-windows lm-eval`)."""
import json
import math

import pytest

from tests.evaluation.conftest import write_task

lm_eval = pytest.importorskip("lm_eval")  # in the [test] extra; skipped only outside it

QUESTIONS = ["To be, or not to be", "Who's there?", "O Romeo, Romeo", "Good night, sweet prince",
             "Now is the winter of our discontent", "Friends, Romans, countrymen"]
CHOICES = ["the king", "a question", "night", "my lord"]
DOCS = ["To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer the slings and "
        "arrows of outrageous fortune, or to take arms against a sea of troubles, and by opposing end them.",
        "Who's there? Nay, answer me. Stand and unfold yourself.",
        "Now is the winter of our discontent made glorious summer by this sun of York; and all the clouds "
        "that lour'd upon our house in the deep bosom of the ocean buried. Now are our brows bound with "
        "victorious wreaths, our bruised arms hung up for monuments."]


def test_lm_eval_plan_is_lm_evals_windowing():
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

    from massivetext_tf.evaluation.adapters import lm_eval_plan

    for window in (1, 2, 3, 7, 32):
        for n in range(0, 80, 3):
            tokens = list(range(10, 10 + n))
            seq = [2] + tokens
            ours = []
            for start, first, end in lm_eval_plan(len(seq), window):
                piece = seq[start:end]
                ours.append((piece[:-1], piece[first - start:]))
            # lm-eval's HuggingFace model feeds (context + continuation)[-(window + 1):][:-1]
            reference = [((c + p)[-(window + 1):][:-1], p) for c, p in
                         map(make_disjoint_window, get_rolling_token_windows(tokens, 2, window, 1))]
            assert ours == reference, (window, n)
            assert sum(len(p) for _, p in ours) == n  # every token scored once


def _lm_eval_tasks(dir_path, mc_data, docs_data):
    mc = {"task": "mt_mc", "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(mc_data)}},
          "test_split": "test", "output_type": "multiple_choice", "doc_to_text": "{{question}}",
          "doc_to_choice": "{{choices}}", "doc_to_target": "{{answer}}",
          "metric_list": [{"metric": "acc"}, {"metric": "acc_norm"}]}
    rolling = {"task": "mt_rolling", "dataset_path": "json",
               "dataset_kwargs": {"data_files": {"test": str(docs_data)}}, "test_split": "test",
               "output_type": "loglikelihood_rolling", "doc_to_text": "", "doc_to_target": "{{text}}",
               "metric_list": [{"metric": "bits_per_byte"}, {"metric": "byte_perplexity"}]}
    gen = {"task": "mt_gen", "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(mc_data)}},
           "test_split": "test", "output_type": "generate_until", "doc_to_text": "{{question}}",
           "doc_to_target": "{{choices[0]}}", "generation_kwargs": {"until": [","], "max_gen_toks": 6},
           "metric_list": [{"metric": "exact_match"}]}
    for config in (mc, rolling, gen):  # JSON is YAML
        (dir_path / f"{config['task']}.yaml").write_text(json.dumps(config, indent=1))
    return str(dir_path)


def _run_lm_eval(monkeypatch, tmp_path, model_args, tasks, include):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_datasets"))
    import lm_eval as harness
    from lm_eval.tasks import TaskManager

    import massivetext_tf.evaluation  # noqa: F401  (registers the model)

    return harness.simple_evaluate(model="massivetext_tf", model_args=model_args, tasks=tasks,
                                   task_manager=TaskManager(include_path=include), log_samples=True,
                                   bootstrap_iters=10)  # acc stderr is analytic; >0 turns it on


ITEMS = [{"question": q, "choices": CHOICES, "answer": i % 4} for i, q in enumerate(QUESTIONS)]


def _data(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    mc_data, docs_data = data / "mc.jsonl", data / "docs.jsonl"
    mc_data.write_text("".join(json.dumps(i) + "\n" for i in ITEMS))
    docs_data.write_text("".join(json.dumps({"text": d}) + "\n" for d in DOCS))
    include = tmp_path / "lm_eval_tasks"
    include.mkdir()
    return mc_data, docs_data, _lm_eval_tasks(include, mc_data, docs_data)


@pytest.mark.slow
def test_simple_evaluate_equals_massivetext_evaluate(tmp_path, monkeypatch, preset_dir, adapter, capsys):
    from tools.evaluate import main

    items = ITEMS
    mc_data, docs_data, include = _data(tmp_path)
    out = _run_lm_eval(monkeypatch, tmp_path, f"pretrained={preset_dir},batch_size=4,jit_compile=False",
                       ["mt_mc", "mt_rolling", "mt_gen"], include)
    results = out["results"]
    assert out["config"]["model_format"] == "keras" and out["config"]["model_dtype"] == "float32"

    ours = tmp_path / "ours"
    ours.mkdir()
    task = write_task(ours, "mt_mc", {"kind": "multiple_choice", "prompt": "{question}",
                                      "metrics": ["accuracy", "accuracy_per_byte"]}, items)
    json_out = tmp_path / "results.json"
    code = main(["--model", preset_dir, "--task", task, "--source", f"docs={docs_data}",
                 "--rolling-windows", "lm-eval", "--no-jit-compile", "--batch-size", "4",
                 "--bootstrap-iters", "0", "--output", str(json_out)])
    assert code == 0, capsys.readouterr().err
    rows = {(r["task"], r["metric"]): r for r in json.loads(json_out.read_text())["results"]}
    assert rows[("lm/docs", "bits_per_byte")]["windows"] == "lm-eval"

    # multiple choice: accuracy (and its standard error) and the byte-normalized accuracy
    assert results["mt_mc"]["acc,none"] == pytest.approx(rows[("mt_mc", "accuracy")]["value"], abs=1e-4)
    assert results["mt_mc"]["acc_stderr,none"] == pytest.approx(rows[("mt_mc", "accuracy")]["stderr"], abs=1e-4)
    assert results["mt_mc"]["acc_norm,none"] == pytest.approx(rows[("mt_mc", "accuracy_per_byte")]["value"],
                                                               abs=1e-4)
    # ... and every choice's log-likelihood, item by item (`adapter`: the preset's model in memory)
    samples = sorted(out["samples"]["mt_mc"], key=lambda s: s["doc_id"])
    assert len(samples) == len(items)
    for sample, item in zip(samples, items):
        theirs = [float(r[0]) for r in sample["filtered_resps"]]
        expected = [r.logprob for r in adapter.loglikelihood([(item["question"], " " + c) for c in CHOICES])]
        assert theirs == pytest.approx(expected, abs=1e-4)

    # rolling log-likelihood: bits per byte over the corpus, and per document
    bpb = rows[("lm/docs", "bits_per_byte")]
    assert results["mt_rolling"]["bits_per_byte,none"] == pytest.approx(bpb["value"], abs=1e-4)
    assert results["mt_rolling"]["byte_perplexity,none"] == pytest.approx(2 ** bpb["value"], rel=1e-4)
    assert bpb["tokens"] > 2 * adapter.max_length  # several windows per long document
    per_doc = adapter.loglikelihood_rolling(DOCS, windows="lm-eval")
    for sample in out["samples"]["mt_rolling"]:
        assert float(sample["filtered_resps"][0]) == pytest.approx(per_doc[sample["doc_id"]].logprob, abs=1e-4)
    total = sum(r.logprob for r in per_doc)
    assert bpb["value"] == pytest.approx(-total / (math.log(2) * sum(len(d.encode()) for d in DOCS)), rel=1e-6)
    # ... which is not the stride protocol's number (the windowing matters and was applied)
    stride = adapter.loglikelihood_rolling(DOCS)
    assert abs(sum(r.logprob for r in stride) - total) > 1e-3

    # generate_until: greedy from <s> + context, cut before the stop string, only the new text
    from massivetext_tf.evaluation import GenerationRequest

    # A fresh adapter of the preset: tensorflow-text's SentencePiece resource is owned by a
    # cached kernel shared by every tokenizer of the same model bytes in the process, and the
    # session adapter's was seen destroyed by the time this line ran when other tests shared
    # the worker (order-dependent; see the session note). The generation protocol is the same.
    from massivetext_tf import models
    from massivetext_tf.evaluation import from_task

    fresh = from_task(models.load(preset_dir), jit_compile=False, batch_size=4)
    expected = fresh.generate_until([GenerationRequest(i["question"], (",",), 6) for i in items])
    for sample in out["samples"]["mt_gen"]:
        assert sample["filtered_resps"][0] == expected[sample["doc_id"]].text


@pytest.mark.slow
def test_simple_evaluate_on_a_saved_model(tmp_path, monkeypatch, saved_model_dir, adapter):
    """`pretrained=saved_models/NAME/VERSION`: the export's signatures give the Keras numbers."""
    _, _, include = _data(tmp_path)
    out = _run_lm_eval(monkeypatch, tmp_path, f"pretrained={saved_model_dir},batch_size=4",
                       ["mt_mc", "mt_rolling"], include)
    assert out["config"]["model_format"] == "saved_model"
    for sample in out["samples"]["mt_mc"]:
        item = ITEMS[sample["doc_id"]]
        expected = [r.logprob for r in adapter.loglikelihood([(item["question"], " " + c) for c in CHOICES])]
        assert [float(r[0]) for r in sample["filtered_resps"]] == pytest.approx(expected, abs=1e-4)
    per_doc = adapter.loglikelihood_rolling(DOCS, windows="lm-eval")
    for sample in out["samples"]["mt_rolling"]:
        assert float(sample["filtered_resps"][0]) == pytest.approx(per_doc[sample["doc_id"]].logprob, abs=1e-4)


def test_bad_model_args_are_one_line_errors(preset_dir, tmp_path):
    from massivetext_tf.evaluation.lm_harness import MassiveTextLM

    with pytest.raises(ValueError, match=r"^model_args: pretrained=DIR is required"):
        MassiveTextLM()
    with pytest.raises(ValueError, match=r"^--model .*missing: does not exist$"):
        MassiveTextLM(pretrained=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match=r"^model_args: unknown argument\(s\) temperature"):
        MassiveTextLM(pretrained=preset_dir, temperature=0.5)
    with pytest.raises(ValueError, match=r"^model_args batch_size='x': not an integer$"):
        MassiveTextLM(pretrained=preset_dir, batch_size="x")
