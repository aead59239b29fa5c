"""Serving under bad input and faults (issue 11, requirements 13 and 14), run as a user would.

* Every size-like input of every SavedModel signature (generate, score, forward; decoder-only
  and encoder-decoder) is checked before anything sized by it is allocated: a real export is
  loaded with `tf.saved_model.load` in a fresh process (without Keras, as a server would) and
  hit with huge values; each rejection must take well under a second and leave the peak RSS
  where the largest legitimate request already put it. The process also caps its address space
  before the bad requests, so a regression fails the test instead of taking the machine.
* The per-request batch cap (`--max-batch-size`) is enforced in the graph.

`tools/export.py` merging models.config and cleaning up after a SIGKILLed export: test_serving_layout.py.
"""
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from harness import subprocess_env
from tests.export.conftest import (  # noqa: F401  (session fixtures, used by name)
    _randomize,
    encode,
    keras_greedy,
    spm_model,
    task,
    until_eos,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXPORT = os.path.join(REPO, "tools", "export.py")
TEXT_OPS_SITE = os.path.join(REPO, "massivetext_tf", "export", "text_ops_site")
CAP = 4  # --max-batch-size of the exports below
SEQ2SEQ_LENGTH = 32
# seconds. A refused request costs milliseconds; the bug this guards against (work sized by the
# request running beside the failing check) takes far longer or runs out of memory. The margin
# is wide because CI's two cores may be busy with other tests.
FAST = 2.0
RSS_BOUND = 32 << 20  # bytes of peak-RSS growth a rejected request may cause


@pytest.fixture(scope="module")
def exports(task, spm_model, tmp_path_factory):
    """A decoder-only and an encoder-decoder export with `max_batch_size=CAP`, TF Serving layout."""
    from massivetext_tf import models
    from massivetext_tf.export import export_model

    base = str(tmp_path_factory.mktemp("saved_models"))
    decoder = export_model(task, "decoder", base_dir=base, max_batch_size=CAP, warmup=False, tflite=True)
    lm = models.build("t5_tiny", tokenizer=spm_model, max_sequence_length=SEQ2SEQ_LENGTH)
    _randomize(lm, seed=1)
    seq2seq = export_model(lm, "seq2seq", base_dir=base, max_batch_size=CAP, warmup=False)
    return {"decoder_only": decoder, "encoder_decoder": seq2seq, "base_dir": base}


@pytest.fixture(scope="module")
def decoder(exports):
    """The decoder-only export, loaded in this process, and its export summary."""
    path = exports["decoder_only"]["saved_model"]
    info = json.load(open(os.path.join(path, "assets.extra", "massivetext_export.json")))
    return tf.saved_model.load(path), info


# ---------------------------------------------------------------------------------------
# 13. Size-like inputs are checked before anything is allocated from them
# ---------------------------------------------------------------------------------------

# Runs in a fresh process with only TensorFlow and the SentencePiece kernels (no Keras).
PROBE = r'''
import json, resource, sys, time
import tensorflow as tf

PATH, KIND, L, CAP = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
model = tf.saved_model.load(PATH)
gen, score, forward = (model.signatures[k] for k in ("generate_all_inputs", "score", "forward"))


def maxrss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def strings(n, text="To be"):
    return tf.constant([text] * n, tf.string)


def ids(batch, length):
    return tf.fill([batch, length], 5)


def generate(prompts, max_new_tokens=4, temperature=0.0, top_k=0, seed=0):
    return lambda: gen(
        prompts=prompts, max_new_tokens=tf.constant(max_new_tokens, tf.int32),
        temperature=tf.constant(temperature, tf.float32), top_k=tf.constant(top_k, tf.int32),
        top_p=tf.constant(1.0, tf.float32), seed=tf.constant(seed, tf.int64))


def fwd(first, second=None):
    if KIND == "decoder_only":
        mask = tf.ones_like(first) if second is None else second
        return lambda: forward(token_ids=first, padding_mask=mask)
    second = first if second is None else second
    return lambda: forward(encoder_token_ids=first, encoder_padding_mask=tf.ones_like(first),
                           decoder_token_ids=second, decoder_padding_mask=tf.ones_like(second))


def scr(texts, targets=None):
    if KIND == "decoder_only":
        return lambda: score(texts=texts)
    return lambda: score(texts=texts, targets=texts if targets is None else targets)


huge_text = "To be, or not to be, that is the question. " * 25000  # 1.1 MB
cases = {
    "generate max_new_tokens=2**31-1": generate(strings(1), max_new_tokens=2**31 - 1),
    "generate max_new_tokens=-2**31": generate(strings(1), max_new_tokens=-2**31),
    "generate batch 5000": generate(strings(5000)),
    "generate batch 0": generate(strings(0)),
    "generate top_k=2**31-1": generate(strings(1), temperature=1.0, top_k=2**31 - 1, seed=7),
    "generate prompt of 1 MB": generate(strings(1, huge_text)),
    "score batch 5000": scr(strings(5000)),
    "forward length 8192": fwd(ids(1, 8192)),
    "forward batch 5000": fwd(ids(5000, L)),
}
if KIND == "decoder_only":
    cases["score text of 1 MB"] = scr(strings(1, huge_text))
    cases["forward mask length 8192"] = fwd(ids(1, 2), ids(1, 8192))
else:
    cases["score 1 text, 5000 targets"] = scr(strings(1), strings(5000))
    cases["score target of 1 MB"] = scr(strings(1), strings(1, huge_text))
    cases["forward decoder length 8192"] = fwd(ids(1, 8), ids(1, 8192))
    cases["forward batch 1 vs 5000"] = fwd(ids(1, 8), ids(5000, 8))

# The largest legitimate requests first: the peak RSS below already covers them.
reference = generate(strings(1), temperature=1.0, seed=7)()["token_ids"].numpy().tolist()
generate(strings(CAP), max_new_tokens=L - 1)()
scr(strings(CAP))()
fwd(ids(CAP, L))()
# A regression must fail here, not take the machine: cap the address space (2 GiB headroom).
with open("/proc/self/status") as f:
    vm_size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
resource.setrlimit(resource.RLIMIT_AS, (vm_size + (2 << 30), resource.RLIM_INFINITY))

results = {"reference": reference}
for label, call in cases.items():
    before, start = maxrss(), time.perf_counter()
    try:
        out = call()
        outcome = {"error": None, "token_ids": out["token_ids"].numpy().tolist()}
    except tf.errors.InvalidArgumentError as e:
        outcome = {"error": e.message}
    except Exception as e:  # e.g. ResourceExhausted under the address-space cap
        outcome = {"error": f"UNEXPECTED {type(e).__name__}: {e}"[:3000]}
    outcome["seconds"] = time.perf_counter() - start
    outcome["rss_growth"] = maxrss() - before
    results[label] = outcome
print(json.dumps(results))
'''

# label -> the error message expected (None: the request is served).
EXPECTED = {
    "decoder_only": {
        "generate max_new_tokens=2**31-1": "`max_new_tokens` must be at most 63",
        "generate max_new_tokens=-2**31": "`max_new_tokens` must be at least 1",
        "generate batch 5000": f"`prompts` holds more than {CAP} strings",
        "generate batch 0": "`prompts` must hold at least one string",
        "generate top_k=2**31-1": None,
        "generate prompt of 1 MB": None,
        "score batch 5000": f"`texts` holds more than {CAP} strings",
        "score text of 1 MB": "score: a text of more than",
        "forward length 8192": "forward: length must be <= 64",
        "forward batch 5000": f"`token_ids` holds more than {CAP} rows",
        "forward mask length 8192": "must have the same shape",
    },
    "encoder_decoder": {
        "generate max_new_tokens=2**31-1": "`max_new_tokens` must be at most 31",
        "generate max_new_tokens=-2**31": "`max_new_tokens` must be at least 1",
        "generate batch 5000": f"`prompts` holds more than {CAP} strings",
        "generate batch 0": "`prompts` must hold at least one string",
        "generate top_k=2**31-1": None,
        "generate prompt of 1 MB": None,
        "score batch 5000": f"`texts` holds more than {CAP} strings",
        "score 1 text, 5000 targets": "`texts` and `targets` must have the same length",
        "score target of 1 MB": "score: a target of more than",
        "forward length 8192": "forward: encoder length must be <= 32",
        "forward decoder length 8192": "forward: decoder length must be <= 32",
        "forward batch 5000": f"`encoder_token_ids` holds more than {CAP} rows",
        "forward batch 1 vs 5000": "must have the same batch size",
    },
}


def _probe(saved_model, kind, length):
    env = subprocess_env(REPO)
    env["PYTHONPATH"] = TEXT_OPS_SITE + os.pathsep + env["PYTHONPATH"]
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, saved_model, kind, str(length), str(CAP)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["decoder_only", "encoder_decoder"])
def test_size_like_inputs_fail_fast_without_memory(exports, kind):
    export = exports[kind]
    results = _probe(export["saved_model"], kind, export["max_length"])
    reference = results.pop("reference")
    assert set(results) == set(EXPECTED[kind])
    for label, expected in EXPECTED[kind].items():
        outcome = results[label]
        if expected is None:
            assert outcome["error"] is None, (label, outcome["error"])
        else:
            assert outcome["error"] and expected in outcome["error"], (label, outcome["error"])
        assert outcome["seconds"] < FAST, (label, outcome["seconds"])
        assert outcome["rss_growth"] < RSS_BOUND, (label, outcome["rss_growth"])
    # top_k beyond the vocabulary sizes nothing: it is the same as no top-k filter.
    assert results["generate top_k=2**31-1"]["token_ids"] == reference


def test_batch_cap_is_enforced_in_the_graph(exports, decoder):
    loaded, info = decoder
    assert info["max_batch_size"] == CAP == exports["decoder_only"]["max_batch_size"]
    texts = ["To be, or not to be"] * CAP
    assert loaded.generate(tf.constant(texts), max_new_tokens=tf.constant(2))["token_ids"].shape == (CAP, 2)
    assert loaded.signatures["score"](texts=tf.constant(texts))["num_tokens"].shape == (CAP,)
    ids = tf.fill([CAP, 3], 5)
    assert loaded.signatures["forward"](token_ids=ids, padding_mask=tf.ones_like(ids))["logits"].shape[0] == CAP
    over = texts + ["one too many"]
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"--max-batch-size {CAP}"):
        loaded.generate(tf.constant(over))
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"--max-batch-size {CAP}"):
        loaded.signatures["score"](texts=tf.constant(over))
    ids = tf.fill([CAP + 1, 3], 5)
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"--max-batch-size {CAP}"):
        loaded.signatures["forward"](token_ids=ids, padding_mask=tf.ones_like(ids))


def test_cutting_a_huge_prompt_keeps_the_context_tokens(task, decoder, spm_model):
    """A prompt far longer than the context is cut to its last `max_text_chars` characters
    before tokenization; the tokens the context keeps are the same as without the cut."""
    loaded, info = decoder
    line = "Now is the winter of our discontent made glorious summer by this sun of York; "
    text = line * (3 * info["max_text_chars"] // len(line))
    assert len(text) > 2 * info["max_text_chars"]
    new = 5
    out = loaded.generate(tf.constant([text]), max_new_tokens=tf.constant(new))
    kept = encode(spm_model, text)[-(info["max_length"] - new - 1):]
    assert until_eos(out["token_ids"][0].numpy()) == keras_greedy(task, [2] + kept, new)


def test_bad_size_options_are_refused_before_anything_is_built(task, tmp_path):
    from massivetext_tf.export import export_model
    from massivetext_tf.export.saved_model import MAX_LENGTH_EXTRAPOLATION

    start = time.perf_counter()
    with pytest.raises(ValueError, match="--max-batch-size must be a positive integer"):
        export_model(task, "tiny", base_dir=str(tmp_path), max_batch_size=-3)
    with pytest.raises(ValueError, match=f"more than {MAX_LENGTH_EXTRAPOLATION}x the model's context"):
        export_model(task, "tiny", base_dir=str(tmp_path), max_length=2**31 - 1)
    assert time.perf_counter() - start < 2
    assert os.listdir(tmp_path) == []


def test_litert_positions_out_of_range_fail_not_silently(exports):
    """LiteRT signatures have static shapes (nothing is sized by an input); their position
    inputs must fail when out of range instead of returning plausible logits."""
    from massivetext_tf.export import LiteRTGenerator

    gen = LiteRTGenerator(exports["decoder_only"]["tflite_float32"])
    L = gen.max_length
    logits, cache = gen.prefill([2, 50, 60])
    reference, _ = gen.decode(5, 3, cache)
    assert np.isfinite(reference).all()
    ids = np.zeros([1, L], np.int32)
    for length in (0, -1, L + 1, 2**31 - 1):
        with pytest.raises(RuntimeError, match="out of bounds"):
            gen.prefill_runner(token_ids=ids, length=np.array(length, np.int32))
    for index in (-1, -(2**31), L, 2**31 - 1):  # -1 used to be clamped to 0 silently
        with pytest.raises(RuntimeError, match="out of bounds"):
            gen.decode_runner(token_id=np.array([[5]], np.int32), index=np.array(index, np.int32), cache=cache)
        with pytest.raises(ValueError, match=f"index {index} is outside"):
            gen.decode(5, index, cache)
    with pytest.raises(ValueError, match=f"1 to {L}"):
        gen.prefill(list(range(L + 1)))
    np.testing.assert_array_equal(gen.decode(5, 3, cache)[0], reference)


def _run_export(*args, **popen):
    cmd = [sys.executable, EXPORT, *args]
    if popen:
        return subprocess.Popen(cmd, env=subprocess_env(REPO), **popen)
    return subprocess.run(cmd, capture_output=True, text=True, env=subprocess_env(REPO), timeout=600)


def test_cli_bad_input_exits_2_in_one_line(spm_model, tmp_path):
    base = str(tmp_path / "saved_models")
    common = ["--preset", "gopher_tiny", "--tokenizer", spm_model, "--name", "tiny", "--base-dir", base]
    proc = _run_export(*common, "--max-length", str(2**31 - 1))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("export: error: --max-length 2147483647")
    assert not os.path.exists(base)

    os.makedirs(base)
    broken = 'model_config_list {\n  config { name: "a" base_path: @ }\n}\n'
    open(os.path.join(base, "models.config"), "w").write(broken)
    proc = _run_export(*common)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"export: error: {os.path.join(base, 'models.config')}: line 2:"), last
    assert open(os.path.join(base, "models.config")).read() == broken
    assert os.listdir(base) == ["models.config"]
