"""Fine-tuning on JSONL with a real SentencePiece tokenizer: classification (accuracy,
macro-F1), seq2seq (BLEU, ROUGE-L), LoRA trains adapters only, continued pretraining."""
import json
import random

import numpy as np
import pytest

from massivetext_tf.training import config as C
from massivetext_tf.training.finetune import finetune, macro_f1
from training_helpers import tiny_config

POS = ["great", "wonderful", "superb", "lovely", "excellent"]
NEG = ["awful", "terrible", "boring", "dreadful", "poor"]


@pytest.fixture(scope="module")
def task_files(tmp_path_factory):
    from massivetext_tf.data.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("ft")
    rng = random.Random(0)
    cls = []
    for i in range(64):
        good = i % 2 == 0
        word = rng.choice(POS if good else NEG)
        cls.append({"text": f"the film was {word} and the cast was {word}",
                    "label": "positive" if good else "negative"})
    nums = ["one", "two", "three", "four", "five", "six"]
    s2s = [{"input": f"{a} {b}", "target": f"{b} {a}"} for a in nums for b in nums]
    texts = [c["text"] + " label: positive negative" for c in cls] + \
        [d["input"] + " => " + d["target"] for d in s2s] * 3
    tok = str(root / "tok.model")
    train_tokenizer(tok, texts, vocab_size=320, hard_vocab_limit=False)
    for name, rows in (("cls", cls), ("s2s", s2s)):
        with open(root / f"{name}.jsonl", "w") as f:
            f.write("\n".join(json.dumps(r) for r in rows))
    return root, tok


def cfg_for(tmp_path, tok, task, lr=2e-3, **runtime):
    base = tiny_config(tmp_path / "run", runtime={"train_steps": 100, "steps_per_loop": 10,
                                                  "log_every": 20, "eval_every": 0, **runtime},
                       optimizer={"peak_lr": lr, "warmup_steps": 5, "weight_decay": 0.0})
    base["data"]["sequence_length"] = 48
    base["task"] = dict(task, tokenizer=tok)
    return base


def test_macro_f1():
    assert macro_f1(["a", "a", "b", "b"], ["a", "a", "b", "b"], ["a", "b"]) == 1.0
    assert macro_f1(["a", "a", "b", "b"], ["a", "a", "a", "a"], ["a", "b"]) == pytest.approx(
        (2 * 2 / (4 + 2) + 0) / 2)


def test_classification_learns_and_reports_accuracy_and_macro_f1(tmp_path, task_files):
    root, tok = task_files
    cfg = cfg_for(tmp_path, tok, {"type": "classification", "train_file": str(root / "cls.jsonl"),
                                  "prompt_template": "{input} label:"})
    result = finetune(C.from_dict(cfg))
    assert result["eval_accuracy"] >= 0.9 and result["eval_macro_f1"] >= 0.9
    assert result["history"][-1] < result["history"][0]


def test_seq2seq_lora_trains_adapters_only_and_reports_bleu_rouge(tmp_path, task_files):
    root, tok = task_files
    cfg = cfg_for(tmp_path, tok, {"type": "seq2seq", "train_file": str(root / "s2s.jsonl"),
                                  "input_key": "input", "target_key": "target",
                                  "prompt_template": "{input} =>", "max_target_length": 6},
                  lr=1e-2, train_steps=40)
    cfg["model"]["lora_rank"] = 4
    from massivetext_tf.training.trainer import Trainer
    import massivetext_tf.training.finetune as ft

    seen = {}
    real_fit = Trainer.fit

    def spy(self, **kw):
        seen["frozen"] = {v.path: v.numpy().copy() for v in self.model.non_trainable_weights
                          if v.path.endswith("kernel")}
        seen["trainable"] = [v.path for v in self.model.trainable_variables]
        out = real_fit(self, **kw)
        seen["after"] = {v.path: v.numpy() for v in self.model.non_trainable_weights
                         if v.path in seen["frozen"]}
        return out

    Trainer.fit = spy
    try:
        result = ft.finetune(C.from_dict(cfg))
    finally:
        Trainer.fit = real_fit
    assert seen["trainable"] and all("lora" in p for p in seen["trainable"])
    assert seen["frozen"]
    for path, before in seen["frozen"].items():
        np.testing.assert_array_equal(before, seen["after"][path])
    assert 0.0 <= result["eval_bleu"] <= 100.0 and 0.0 <= result["eval_rouge_l"] <= 1.0
    assert result["history"][-1] < result["history"][0]


# --- A HuggingFace T5 checkpoint, converted, fine-tuned on the bundled tiny example tasks ------
# (trainers/examples/t5_tiny/: toy translation, generative QA with several accepted answers,
# yes/no classification, all in the tiny fixture tokenizer's words).

T5_EXAMPLES = "trainers/examples/t5_tiny"


@pytest.fixture(scope="module")
def t5_preset(tmp_path_factory):
    import os

    from massivetext_tf.models.convert import checkpoint

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    preset = str(tmp_path_factory.mktemp("t5ft") / "preset")
    checkpoint.hf_to_preset(os.path.join(root, "tests", "models", "fixtures", "t5", "v1_0"), preset,
                            sequence_length=24)
    return root, preset


def t5_cfg(tmp_path, root, preset, task, *, lora=0, steps=30):
    import os

    cfg = tiny_config(tmp_path / "run", runtime={"train_steps": steps, "steps_per_loop": 10, "log_every": 10,
                                                 "eval_every": steps},
                      optimizer={"peak_lr": 1e-2, "warmup_steps": 5, "weight_decay": 0.0})
    cfg["model"] = {"preset": "t5_tiny", "init_from": preset, "lora_rank": lora}
    cfg["data"].update(sequence_length=24, vocabulary_size=100)
    name = task.pop("name")
    examples = os.path.join(root, T5_EXAMPLES)
    cfg["task"] = dict(task, train_file=os.path.join(examples, f"{name}_train.jsonl"),
                       eval_file=os.path.join(examples, f"{name}_eval.jsonl"))
    return C.from_dict(cfg)


@pytest.mark.slow
def test_t5_checkpoint_finetunes_qa_and_classification(tmp_path, t5_preset):
    """Fine-tuning of the converted T5 on bundled tasks, generative QA with LoRA and
    classification in full: the loss falls and the metrics (exact match, F1 and BLEU, which
    translation uses on the same seq2seq path; accuracy and macro-F1) come from the evaluation
    metrics. The decoder starts from T5's <pad> = 0 (the preset's T5Tokenizer), not <s>."""
    import massivetext_tf.training.finetune as ft

    root, preset = t5_preset
    seen = {}
    real = ft.TaskData.encode

    def spy(self, prompt, target):
        x, y, w = real(self, prompt, target)
        seen.setdefault("start", int(x["decoder_token_ids"][0]))
        return x, y, w

    ft.TaskData.encode = spy
    try:  # generative QA with LoRA adapters on the imported weights
        qa = ft.finetune(t5_cfg(tmp_path / "qa", root, preset, {
            "name": "qa", "type": "seq2seq", "input_key": "input", "target_key": "target",
            "max_target_length": 6}, lora=4))
    finally:
        ft.TaskData.encode = real
    assert seen["start"] == 0
    assert qa["history"][-1] < qa["history"][0]
    assert 0.0 <= qa["eval_exact_match"] <= qa["eval_f1"] <= 1.0
    assert 0.0 <= qa["eval_bleu"] <= 100.0  # translation's metric, same seq2seq path
    cls = ft.finetune(t5_cfg(tmp_path / "cls", root, preset, {
        "name": "classification", "type": "classification", "input_key": "text", "target_key": "label"}))
    assert cls["history"][-1] < cls["history"][0]
    assert cls["eval_accuracy"] >= 0.8 and 0.0 <= cls["eval_macro_f1"] <= 1.0


@pytest.mark.slow
def test_t5_checkpoint_finetunes_translation(tmp_path, t5_preset):
    """Translation on the bundled toy pairs, full fine-tuning of the converted T5: the loss
    falls, and evaluation at eval_every reports BLEU (sacrebleu) and ROUGE-L from greedy
    decodes that start from T5's <pad>."""
    import massivetext_tf.training.finetune as ft

    root, preset = t5_preset
    mt = ft.finetune(t5_cfg(tmp_path / "mt", root, preset, {
        "name": "translation", "type": "seq2seq", "input_key": "input", "target_key": "target",
        "max_target_length": 8}, steps=40))
    assert mt["history"][-1] < 0.5 * mt["history"][0]
    assert 0.0 <= mt["eval_bleu"] <= 100.0
    assert 0.0 <= mt["eval_rouge_l"] <= 1.0


def test_finetune_qa_scores_use_every_accepted_answer():
    from massivetext_tf.training.finetune import qa_scores

    out = qa_scores(["red fox", "the dog"], [["the red fox", "red fox"], ["a big dog"]])
    assert out["exact_match"] == pytest.approx(0.5)  # "dog" is not "big dog"
    assert out["f1"] == pytest.approx((1.0 + 2 / 3) / 2)


def test_bundled_t5_examples_are_in_the_fixture_tokenizers_words():
    """Every bundled example encodes without <unk> (id 2) with the fixture T5 tokenizer, and
    TaskData lays seq2seq rows out from T5's <pad> start."""
    import json
    import os

    import sentencepiece as spm

    from massivetext_tf.models.encoder_decoder import t5
    from massivetext_tf.training.finetune import TaskData

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(os.path.join(root, "tests", "models", "fixtures", "t5", "v1_0", "spiece.model"), "rb") as f:
        sp = spm.SentencePieceProcessor(model_proto=t5.with_extra_ids(f.read(), 10))
    examples = os.path.join(root, T5_EXAMPLES)
    names = sorted(os.listdir(examples))
    assert {n.rsplit("_", 1)[0] for n in names} == {"translation", "qa", "classification"}
    for name in names:
        with open(os.path.join(examples, name)) as f:
            rows = [json.loads(line) for line in f]
        assert rows, name
        for row in rows:
            for value in row.values():
                for text in value if isinstance(value, list) else [value]:
                    assert 2 not in sp.encode(text), (name, text)
    cfg = tiny_config("unused", data={"sequence_length": 24})
    cfg["task"] = {"type": "seq2seq", "input_key": "input", "target_key": "target", "max_target_length": 8}
    with open(os.path.join(examples, "qa_train.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    data = TaskData(C.from_dict(cfg), sp, rows, seq2seq=True, start_id=0, t5=True)
    x, y, w = data.encode(data.prompts[0], data.targets[0])
    target = sp.encode(data.targets[0])
    assert x["decoder_token_ids"][: len(target) + 1].tolist() == [0] + target
    assert y[: len(target) + 1].tolist() == target + [1]
    assert data.answers[0] == rows[0]["target"]  # every accepted answer kept for EM / F1
