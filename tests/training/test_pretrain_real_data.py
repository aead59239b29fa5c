"""Pretraining on real shards (records + manifest + SentencePiece): bits per byte from the
manifest, a keras-hub preset with the tokenizer that generates text, text samples in
TensorBoard."""
import math

import pytest
import tensorflow as tf

from massivetext_tf.training import config as C
from massivetext_tf.training.train_lib import train
from training_helpers import tiny_config, write_tiny_shards


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_tiny_shards(tmp_path_factory.mktemp("shards"))


def test_pretrain_on_shards_reports_bits_per_byte_and_saves_a_generating_preset(tmp_path, data_dir):
    import keras_hub

    from massivetext_tf.data.pipeline import split_stats

    cfg = tiny_config(tmp_path / "run", runtime={
        "train_steps": 30, "steps_per_loop": 10, "log_every": 10, "eval_steps": 2,
        "save_preset": True, "tensorboard": True, "sample_prompts": ["to be"],
        "sample_length": 12})
    cfg["data"] = {"dir": data_dir, "sequence_length": 32, "global_batch_size": 8}
    result = train(C.from_dict(cfg))
    stats = split_stats(data_dir, "eval")
    bytes_per_label = stats["bytes"] / (stats["tokens"] + stats["documents"])
    assert result["eval_bits_per_byte"] == pytest.approx(
        result["eval_loss"] / (math.log(2) * bytes_per_label), rel=1e-6)
    assert result["history"][-1] < result["history"][0]
    preset = f"{cfg['model_dir']}/preset"
    assert tf.io.gfile.exists(f"{preset}/tokenizer.json")
    lm = keras_hub.models.CausalLM.from_preset(preset)
    text = lm.generate("to be", max_length=12)
    assert isinstance(text, str) and text.startswith("to be")
    texts = {}
    for path in tf.io.gfile.glob(f"{cfg['model_dir']}/tensorboard/events*"):
        for e in tf.compat.v1.train.summary_iterator(path):
            for v in e.summary.value:
                if v.tag.startswith("samples/"):
                    texts[v.tag] = tf.make_ndarray(v.tensor)
    assert "samples/0" in texts
