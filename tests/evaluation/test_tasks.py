"""Task kinds end to end on a tiny model: each metric against a direct computation, with items
built so that a known answer must win (the gold is the direct argmax or argmin)."""
import math

import numpy as np
import pytest

from massivetext_tf.evaluation import evaluate_task, load_task
from massivetext_tf.evaluation import metrics as M
from tests.evaluation.conftest import WINDOW, direct_loglikelihood, write_task

BOS = 2
CONTEXTS = ["To be, or not to be", "Who's there?", "O Romeo, Romeo", "Good night, sweet prince",
            "My lord, I have", "Now is the winter"]
CHOICES = ["the king", "a question", "my lord and master", "night"]


def _direct(adapter, decoder, context, continuation):
    ctx, cont = adapter.encode_pair(context, continuation)
    return direct_loglikelihood(decoder, [BOS] + (ctx + cont)[-(WINDOW - 1):], len(cont))


def _by_metric(rows):
    return {r["metric"]: r for r in rows}


def test_multiple_choice_four_normalizations(tmp_path, adapter, decoder):
    expected = {"accuracy": [], "accuracy_per_token": [], "accuracy_per_byte": [], "accuracy_unconditional": []}
    items = []
    for i, context in enumerate(CONTEXTS[:4]):
        prompt = f"Q: {context}\nA:"
        ll = np.array([_direct(adapter, decoder, prompt, " " + c)[0] for c in CHOICES])
        ntok = np.array([len(adapter.encode_pair(prompt, " " + c)[1]) for c in CHOICES])
        nbytes = np.array([len(c.encode()) for c in CHOICES])
        unc = np.array([_direct(adapter, decoder, "", " " + c)[0] for c in CHOICES])
        gold = int(np.argmax(ll)) if i % 2 == 0 else int(np.argmin(ll))  # known: right on even items
        items.append({"question": context, "choices": CHOICES, "answer": gold if i % 3 else CHOICES[gold]})
        for metric, score in (("accuracy", ll), ("accuracy_per_token", ll / ntok),
                              ("accuracy_per_byte", ll / nbytes), ("accuracy_unconditional", ll - unc)):
            expected[metric].append(float(np.argmax(score) == gold))
    path = write_task(tmp_path, "mc", {"kind": "multiple_choice", "prompt": "Q: {question}\nA:"}, items)
    rows = _by_metric(evaluate_task(adapter, load_task(path)))
    assert rows["accuracy"]["value"] == pytest.approx(0.5)
    for metric, values in expected.items():
        assert rows[metric]["value"] == pytest.approx(M.mean(values)), metric
        assert rows[metric]["stderr"] == pytest.approx(M.mean_stderr(values)), metric
        assert rows[metric]["num_items"] == rows[metric]["num_scored"] == 4
        assert rows[metric]["stderr_method"] == "analytic"


def test_fewshot_sampling_is_seeded_per_item_and_never_the_item(tmp_path):
    items = [{"question": f"question {i}", "choices": ["a", "b"], "answer": i % 2} for i in range(8)]
    path = write_task(tmp_path, "fs", {"kind": "multiple_choice", "num_fewshot": 3, "seed": 7}, items)
    task = load_task(path)
    prefixes = [task.fewshot_prefix(item) for item in task.items]
    assert prefixes == [load_task(path).fewshot_prefix(item) for item in task.items]
    assert prefixes != [load_task(path, seed=8).fewshot_prefix(item) for item in task.items]
    for item, prefix in zip(task.items, prefixes):
        shots = prefix.split("\n\n")[:-1]
        assert len(shots) == 3 and len(set(shots)) == 3
        assert f"question {item.index} " not in prefix
        for shot in shots:  # each example ends with its gold choice
            k = int(shot.split()[1])
            assert shot == f"question {k} " + ["a", "b"][k % 2]
    # a separate few-shot file
    train = [{"question": f"train {i}", "choices": ["a", "b"], "answer": 0} for i in range(2)]
    path = write_task(tmp_path, "fs2", {"kind": "multiple_choice", "num_fewshot": 2}, items, fewshot=train)
    prefix = load_task(path).fewshot_prefix(load_task(path).items[0])
    assert sorted(prefix.split("\n\n")[:-1]) == ["train 0 a", "train 1 a"]


def test_last_word_accuracy_is_greedy_whole_word_and_perplexity(tmp_path, adapter, decoder):
    texts = [c + " and the end" for c in CONTEXTS[:4]]
    path = write_task(tmp_path, "lw", {"kind": "last_word"}, [{"text": t} for t in texts])
    rows = _by_metric(evaluate_task(adapter, load_task(path), bootstrap_iters=50))
    direct = [_direct(adapter, decoder, t.rsplit(" ", 1)[0], " end") for t in texts]
    assert rows["accuracy"]["value"] == pytest.approx(M.mean([float(g) for _, g in direct]))
    assert rows["perplexity"]["value"] == pytest.approx(math.exp(-M.mean([ll for ll, _ in direct])), rel=1e-5)
    assert rows["perplexity"]["stderr_method"] == "bootstrap(50)" and rows["perplexity"]["stderr"] > 0


def test_cloze_partial_scoring(tmp_path, adapter, decoder):
    items, correct = [], []
    for i, context in enumerate(CONTEXTS[:4]):
        text = f"{context} _ went home."
        choices = ["Romeo", "the nurse"]
        ll = [_direct(adapter, decoder, f"{context} {c}", " went home.")[0] for c in choices]
        gold = int(np.argmax(ll)) if i < 3 else int(np.argmin(ll))
        items.append({"text": text, "choices": choices, "answer": gold})
        correct.append(float(int(np.argmax(ll)) == gold))
    path = write_task(tmp_path, "cz", {"kind": "cloze"}, items)
    (row,) = evaluate_task(adapter, load_task(path))
    assert row["metric"] == "accuracy" and row["value"] == pytest.approx(0.75) == M.mean(correct)


def test_classification_per_class_and_macro(tmp_path, adapter, decoder):
    labels, verbal = ["positive", "negative", "neutral"], {"positive": "good", "negative": "bad"}
    items, pairs = [], []
    for i, context in enumerate(CONTEXTS):
        prompt = f"Review: {context}\nSentiment:"
        ll = [_direct(adapter, decoder, prompt, " " + verbal.get(label, label))[0] for label in labels]
        predicted = labels[int(np.argmax(ll))]
        gold = predicted if i % 2 == 0 else labels[(labels.index(predicted) + 1) % 3]
        items.append({"text": context, "label": gold if i % 3 else labels.index(gold)})
        pairs.append((gold, predicted))
    path = write_task(tmp_path, "cls", {"kind": "classification", "labels": labels, "verbalizers": verbal,
                                        "prompt": "Review: {text}\nSentiment:"}, items)
    rows = _by_metric(evaluate_task(adapter, load_task(path), bootstrap_iters=30))
    report = M.classification_report(pairs, labels)
    assert rows["accuracy"]["value"] == pytest.approx(0.5)
    for name in ["macro_precision", "macro_recall", "macro_f1", "precision[positive]", "recall[neutral]", "f1[negative]"]:
        assert rows[name]["value"] == pytest.approx(report[name]), name
    assert rows["macro_f1"]["stderr_method"] == "bootstrap(30)"


def test_generative_qa_exact_match_and_f1(tmp_path, adapter):
    from massivetext_tf.evaluation import GenerationRequest

    prompts = [f"Question: {c}\nAnswer:" for c in CONTEXTS[:4]]
    generated = [o.text.strip() for o in adapter.generate_until([GenerationRequest(p, ("\n",), 6) for p in prompts])]
    assert all(generated), generated
    answers = [[generated[0]], ["nothing like it", generated[1]], ["zzz"], "qqq"]
    items = [{"question": c, "answers": a} for c, a in zip(CONTEXTS[:4], answers)]
    path = write_task(tmp_path, "qa", {"kind": "generative_qa", "generation": {"max_new_tokens": 6}}, items)
    rows = _by_metric(evaluate_task(adapter, load_task(path)))
    em = [M.exact_match(g, a) for g, a in zip(generated, answers)]
    assert em[:2] == [1.0, 1.0]
    assert rows["exact_match"]["value"] == pytest.approx(M.mean(em))
    assert rows["f1"]["value"] == pytest.approx(M.mean([M.token_f1(g, a) for g, a in zip(generated, answers)]))


@pytest.mark.slow
def test_translation_and_summarization_on_the_encoder_decoder(tmp_path, seq2seq_adapter):
    sources = CONTEXTS[:4]
    details = []
    items = [{"source": s, "reference": "to be or not to be", "document": s} for s in sources]
    path = write_task(tmp_path, "tr", {"kind": "translation", "generation": {"max_new_tokens": 6}}, items)
    (bleu,) = evaluate_task(seq2seq_adapter, load_task(path), bootstrap_iters=20, details=details)
    predictions = [d["prediction"] for d in details]
    assert bleu["metric"] == "bleu"
    assert bleu["value"] == pytest.approx(M.corpus_bleu(predictions, [i["reference"] for i in items]))
    # references equal to the model's own outputs: BLEU and ROUGE are perfect where non-empty
    items = [{"source": s, "document": s, "reference": p} for s, p in zip(sources, predictions) if p.strip()]
    assert items
    path = write_task(tmp_path, "tr2", {"kind": "translation", "generation": {"max_new_tokens": 6}}, items)
    (bleu,) = evaluate_task(seq2seq_adapter, load_task(path), bootstrap_iters=20)
    assert bleu["value"] == pytest.approx(100.0)
    path = write_task(tmp_path, "sm", {"kind": "summarization", "prompt": "{document}",
                                       "generation": {"max_new_tokens": 6}}, items)
    rows = _by_metric(evaluate_task(seq2seq_adapter, load_task(path)))
    assert {"rouge1", "rouge2", "rougeL"} <= set(rows)
    assert rows["rougeL"]["value"] == pytest.approx(100.0) or not any(c.isalnum() for i in items for c in i["reference"])
