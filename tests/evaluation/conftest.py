"""Fixtures of the evaluation tests: a tiny SentencePiece model, a tiny decoder-only and a tiny
encoder-decoder model (random weights, window 32 so windows and truncation are exercised), the
decoder saved as a preset directory and exported as a SavedModel."""
import json

import numpy as np
import pytest

WINDOW = 32


@pytest.fixture(scope="session")
def spm_model(tmp_path_factory):
    from harness import shakespeare_lines, train_tiny_sentencepiece

    path = tmp_path_factory.mktemp("spm") / "tok.model"
    return train_tiny_sentencepiece(path, vocab_size=400, lines=shakespeare_lines(2000))


def randomize(task, seed=0):
    """Independent random weights, large enough that argmax decisions are far from ties."""
    rng = np.random.default_rng(seed)
    for v in task.trainable_variables:
        if len(v.shape) >= 2:
            v.assign(rng.normal(0.0, 0.15 if "embeddings" in v.path else 0.08, v.shape).astype("float32"))


@pytest.fixture(scope="session")
def decoder(spm_model):
    from massivetext_tf import models

    lm = models.build("gopher_tiny", tokenizer=spm_model, max_sequence_length=WINDOW)
    randomize(lm)
    return lm


@pytest.fixture(scope="session")
def encoder_decoder(spm_model):
    from massivetext_tf import models

    lm = models.build("t5_tiny", tokenizer=spm_model, max_sequence_length=WINDOW)
    randomize(lm, seed=1)
    return lm


@pytest.fixture(scope="session")
def adapter(decoder):
    from massivetext_tf.evaluation import from_task

    return from_task(decoder, jit_compile=False, batch_size=4)


@pytest.fixture(scope="session")
def seq2seq_adapter(encoder_decoder):
    from massivetext_tf.evaluation import from_task

    return from_task(encoder_decoder, jit_compile=False, batch_size=4)


@pytest.fixture(scope="session")
def preset_dir(decoder, tmp_path_factory):
    path = tmp_path_factory.mktemp("run") / "preset"
    decoder.save_to_preset(str(path))
    return str(path)


@pytest.fixture(scope="session")
def saved_model_dir(decoder, tmp_path_factory):
    from massivetext_tf.export import export_saved_model

    path = tmp_path_factory.mktemp("saved_models") / "tiny" / "1"
    export_saved_model(decoder, str(path), jit_compile=False)
    return str(path)


def log_softmax(logits):
    logits = np.asarray(logits, np.float64)
    m = logits.max(-1, keepdims=True)
    return logits - m - np.log(np.exp(logits - m).sum(-1, keepdims=True))


def direct_loglikelihood(decoder, ids, n_scored):
    """Sum of log p over the last `n_scored` tokens of `ids` (one unpadded row) and whether
    each is the argmax, straight from the Keras model's logits."""
    x = np.asarray([ids], np.int32)
    logits = np.asarray(decoder({"token_ids": x, "padding_mask": np.ones_like(x)}))[0]
    lp = log_softmax(logits)
    positions = range(len(ids) - n_scored, len(ids))
    total = sum(lp[t - 1, ids[t]] for t in positions)
    greedy = all(int(np.argmax(logits[t - 1])) == ids[t] for t in positions)
    return float(total), greedy


def write_task(dir_path, name, config, items, fewshot=None):
    """A task YAML (JSON is YAML) + its JSONL data in `dir_path`; returns the YAML path."""
    data = dir_path / f"{name}.jsonl"
    data.write_text("".join(json.dumps(i) + "\n" for i in items))
    config = {"name": name, "data": data.name, **config}
    if fewshot is not None:
        (dir_path / f"{name}_train.jsonl").write_text("".join(json.dumps(i) + "\n" for i in fewshot))
        config["fewshot_data"] = f"{name}_train.jsonl"
    path = dir_path / f"{name}.yaml"
    path.write_text(json.dumps(config, indent=1))
    return str(path)
