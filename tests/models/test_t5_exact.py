"""Our encoder-decoder computes exactly what HuggingFace's T5 computes.

The fixtures under fixtures/t5/ are tiny `T5ForConditionalGeneration` checkpoints with random
weights, written by tools/make_t5_fixtures.py with transformers' own class (v1.0: ReLU, tied,
float32, one file; v1.1: gated GELU, untied, bfloat16, two shards), with transformers' logits
and greedy generations. This test needs neither torch nor transformers.
"""
import json
import os
import shutil

import keras
import numpy as np
import pytest
import safetensors.numpy

from massivetext_tf import models
from massivetext_tf.models.convert import hf_t5
from massivetext_tf.models.encoder_decoder import build_encoder_decoder

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "t5")
VARIANTS = ("v1_0", "v1_1")


def _reference(variant):
    return dict(np.load(os.path.join(FIXTURES, variant, "reference.npz")))


def _inputs(ref):
    return {
        "encoder_token_ids": ref["encoder_token_ids"],
        "encoder_padding_mask": ref["encoder_padding_mask"],
        "decoder_token_ids": ref["decoder_token_ids"],
        "decoder_padding_mask": np.ones_like(ref["decoder_token_ids"]),
    }


def _relative_error(ours, theirs):
    return float(np.max(np.abs(np.asarray(ours) - theirs)) / np.max(np.abs(theirs)))


@pytest.fixture(scope="module", params=VARIANTS)
def loaded(request):
    return request.param, hf_t5.load_hf_t5(os.path.join(FIXTURES, request.param))


def test_config_comes_from_config_json(loaded):
    variant, lm = loaded
    b = lm.backbone
    assert (b.vocabulary_size, b.hidden_dim, b.key_value_dim, b.num_heads, b.intermediate_dim) == (100, 16, 4, 4, 32)
    assert (b.num_encoder_layers, b.num_decoder_layers) == (2, 3)
    assert (b.relative_attention_num_buckets, b.relative_attention_max_distance) == (8, 20)
    assert b.scale_attention_logits is False
    if variant == "v1_0":
        assert b.activation == "relu" and b.tie_word_embeddings and b.rescale_tied_output
    else:
        assert b.activation == "geglu" and not b.tie_word_embeddings and not b.rescale_tied_output


def test_logits_match_transformers(loaded):
    variant, lm = loaded
    ref = _reference(variant)
    logits = keras.ops.convert_to_numpy(lm(_inputs(ref)))
    assert logits.shape == ref["logits"].shape
    assert _relative_error(logits, ref["logits"]) < 1e-4, variant


def test_greedy_generation_matches_transformers(loaded):
    """Cached XLA generation from T5's start token (pad, 0) gives transformers' greedy tokens,
    and every cached decoding step gives transformers' logits for that step."""
    variant, lm = loaded
    ref = _reference(variant)
    expected = ref["greedy_token_ids"]
    batch, length = expected.shape
    prompt = np.zeros((batch, length), "int32")  # T5's decoder starts from pad
    prompt_mask = np.zeros((batch, length), "int32")
    prompt_mask[:, 0] = 1
    lm.compile(sampler="greedy")
    out = lm.generate(
        {
            "encoder_token_ids": ref["encoder_token_ids"],
            "encoder_padding_mask": ref["encoder_padding_mask"],
            "decoder_token_ids": prompt,
            "decoder_padding_mask": prompt_mask,
        },
        stop_token_ids=None,
    )
    np.testing.assert_array_equal(out["decoder_token_ids"], expected, err_msg=variant)
    assert len(set(expected[:, 1:].ravel().tolist())) >= 5  # not one token repeated

    encoder_states = lm.call_encoder(ref["encoder_token_ids"], ref["encoder_padding_mask"])
    self_cache, cross_cache = lm._initialize_cache(ref["encoder_token_ids"], expected)
    steps = []
    for i in range(length - 1):
        logits, _, self_cache, cross_cache = lm.call_decoder_with_cache(
            encoder_states, ref["encoder_padding_mask"], expected[:, i : i + 1], self_cache, i,
            cross_cache, 0 if i == 0 else None,
        )
        steps.append(keras.ops.convert_to_numpy(logits))
    assert _relative_error(np.concatenate(steps, axis=1), ref["greedy_logits"]) < 1e-4, variant


def test_earlier_t5_style_constants_do_not_match():
    """The check bites: the same weights with logit scaling and no output rescale (the
    toolkit's T5-style behaviour before, still expressible) are far from transformers."""
    directory = os.path.join(FIXTURES, "v1_0")
    config = hf_t5.config_from_hf(json.load(open(os.path.join(directory, "config.json"))))
    state = hf_t5.read_hf_state_dict(directory)
    ref = _reference("v1_0")
    for flags in ({"scale_attention_logits": True}, {"rescale_tied_output": False}):
        lm = hf_t5.load_hf_weights(build_encoder_decoder({**config, **flags}), state)
        assert _relative_error(keras.ops.convert_to_numpy(lm(_inputs(ref))), ref["logits"]) > 1e-2, flags


def test_reverse_mapping_gives_the_stored_tensors(loaded):
    variant, lm = loaded
    stored = hf_t5.read_hf_state_dict(os.path.join(FIXTURES, variant))
    ours = hf_t5.hf_state_dict(lm)
    assert set(ours) == set(stored)  # save_pretrained stores tied embeddings once, as we do
    for name, array in stored.items():
        np.testing.assert_array_equal(ours[name], array, err_msg=name)
    if variant == "v1_1":  # stored as bfloat16: values are bf16-representable, not all equal
        assert len(np.unique(stored["lm_head.weight"])) > 100


def test_hf_parameter_counts_match_transformers():
    """transformers' own counts of the same architectures (fixtures/t5/hf_param_counts.json)."""
    with open(os.path.join(FIXTURES, "hf_param_counts.json")) as f:
        counts = json.load(f)["counts"]
    assert counts["t5_small"] == 60_506_624
    for preset, count in counts.items():
        assert models.count_params(preset) == count, preset


def _tiny_dir(tmp_path, variant="v1_0"):
    directory = tmp_path / variant
    directory.mkdir()
    shutil.copy(os.path.join(FIXTURES, variant, "config.json"), directory)
    return directory, hf_t5.read_hf_state_dict(os.path.join(FIXTURES, variant))


def test_real_checkpoint_variants_load(tmp_path):
    """float16 tensors, tied copies stored twice (and `lm_head`) and the unused
    cross-attention bias, as older T5 checkpoints store them, load to the same model."""
    directory, state = _tiny_dir(tmp_path)
    extra = {
        "encoder.embed_tokens.weight": state["shared.weight"],
        "decoder.embed_tokens.weight": state["shared.weight"],
        "lm_head.weight": state["shared.weight"],
        "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight": np.ones((8, 4), "float32"),
    }
    half = {k: v.astype("float16") for k, v in {**state, **extra}.items()}
    safetensors.numpy.save_file(half, str(directory / "model.safetensors"))
    lm = hf_t5.load_hf_t5(str(directory))
    loaded = hf_t5.hf_state_dict(lm)
    for name, array in state.items():
        np.testing.assert_array_equal(loaded[name], array.astype("float16").astype("float32"), err_msg=name)
    ref = _reference("v1_0")
    assert _relative_error(keras.ops.convert_to_numpy(lm(_inputs(ref))), ref["logits"]) < 1e-2


def test_unknown_missing_and_misshapen_tensors_are_one_error_before_any_assignment(tmp_path):
    _, state = _tiny_dir(tmp_path)
    lm = build_encoder_decoder(hf_t5.config_from_hf(json.load(open(os.path.join(FIXTURES, "v1_0", "config.json")))))
    before = [w.numpy().copy() for w in lm.weights]
    bad = dict(state)
    del bad["decoder.block.2.layer.2.DenseReluDense.wo.weight"]
    bad["encoder.block.0.layer.0.SelfAttention.q.weight"] = np.zeros((16, 15), "float32")
    bad["decoder.block.3.layer.0.SelfAttention.q.weight"] = np.zeros((16, 16), "float32")
    with pytest.raises(hf_t5.CheckpointError) as error:
        hf_t5.load_hf_weights(lm, bad, source="ckpt")
    message = str(error.value)
    assert "\n" not in message and message.startswith("ckpt")
    assert "unknown tensors: decoder.block.3.layer.0.SelfAttention.q.weight" in message
    assert "missing tensors: decoder.block.2.layer.2.DenseReluDense.wo.weight" in message
    assert "encoder.block.0.layer.0.SelfAttention.q.weight (16, 15) (expected (16, 16))" in message
    for weight, value in zip(lm.weights, before):
        np.testing.assert_array_equal(weight.numpy(), value)  # nothing was assigned


def test_directory_errors(tmp_path):
    directory, state = _tiny_dir(tmp_path)
    (directory / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(hf_t5.CheckpointError, match="pytorch_model.bin.*convert it.*safetensors"):
        hf_t5.load_hf_t5(str(directory))
    (directory / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {name: "model-00001-of-00002.safetensors" for name in state}})
    )
    with pytest.raises(hf_t5.CheckpointError, match="shard 'model-00001-of-00002.safetensors' does not exist"):
        hf_t5.load_hf_t5(str(directory))
    (directory / "model.safetensors.index.json").unlink()
    (directory / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    with pytest.raises(hf_t5.CheckpointError, match="model.safetensors: not a readable safetensors file"):
        hf_t5.load_hf_t5(str(directory))


@pytest.mark.parametrize(
    "change, field",
    [
        ({"model_type": "bart"}, "model_type"),
        ({"feed_forward_proj": "gated-silu"}, "feed_forward_proj"),
        ({"d_model": 0}, "d_model"),
        ({"tie_word_embeddings": "yes"}, "tie_word_embeddings"),
    ],
)
def test_bad_config_json_names_the_field(change, field):
    hf = json.load(open(os.path.join(FIXTURES, "v1_0", "config.json")))
    with pytest.raises(hf_t5.CheckpointError, match=f"config.json: .*{field}"):
        hf_t5.config_from_hf({**hf, **change})


def test_save_hf_t5_round_trip(loaded, tmp_path):
    """Our model written in HuggingFace's layout (config.json + model.safetensors, PyTorch
    names) loads back to the same logits; a config T5 cannot express is refused by field."""
    variant, lm = loaded
    hf_t5.save_hf_t5(lm, str(tmp_path / "out"))
    written = json.load(open(tmp_path / "out" / "config.json"))
    original = json.load(open(os.path.join(FIXTURES, variant, "config.json")))
    assert hf_t5.config_from_hf(written) == hf_t5.config_from_hf(original)
    assert written["feed_forward_proj"] == original["feed_forward_proj"] and written["d_model"] == 16
    again = hf_t5.load_hf_t5(str(tmp_path / "out"))
    ref = _reference(variant)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(again(_inputs(ref))), keras.ops.convert_to_numpy(lm(_inputs(ref))))
    with pytest.raises(hf_t5.CheckpointError, match="scale_attention_logits"):
        hf_t5.config_to_hf({**models.preset_config("t5_tiny"), "scale_attention_logits": True})
    with pytest.raises(hf_t5.CheckpointError, match="activation"):
        hf_t5.config_to_hf({**models.preset_config("t5_tiny"), "activation": "swiglu"})
    assert hf_t5.config_to_hf("t5_v1_1_small")["feed_forward_proj"] == "gated-gelu"


def test_reads_and_writes_through_gfile():
    """Every file goes through tf.io.gfile: a sharded bf16 checkpoint on TensorFlow's
    in-memory filesystem (standing in for gs://) loads, and saving there works too."""
    import tensorflow as tf

    remote = "ram://t5_exact/v1_1"
    tf.io.gfile.makedirs(remote)
    for name in os.listdir(os.path.join(FIXTURES, "v1_1")):
        tf.io.gfile.copy(os.path.join(FIXTURES, "v1_1", name), f"{remote}/{name}", overwrite=True)
    lm = hf_t5.load_hf_t5(remote)
    ref = _reference("v1_1")
    assert _relative_error(keras.ops.convert_to_numpy(lm(_inputs(ref))), ref["logits"]) < 1e-4
    hf_t5.save_hf_t5(lm, "ram://t5_exact/saved")
    assert sorted(tf.io.gfile.listdir("ram://t5_exact/saved")) == ["config.json", "model.safetensors"]
