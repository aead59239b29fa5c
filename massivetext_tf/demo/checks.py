"""The demo's fresh-process checks of its exports, run as their own process:

    python -m massivetext_tf.demo.checks saved-model DIR PROMPTS_JSON MAX_NEW_TOKENS
    python -m massivetext_tf.demo.checks tflite FILE TOKENIZER_MODEL PROMPT MAX_NEW_TOKENS

`saved-model` loads the SavedModel with `tf.saved_model.load` and calls its `generate`
signature (top-k 20, temperature 0.8, seed 1), needing only TensorFlow and tensorflow-text.
`tflite` runs the LiteRT file with `ai_edge_litert` (greedy `prefill` + `decode` through
`LiteRTGenerator`, SentencePiece on the host, no TensorFlow import). Each prints one JSON line:
`{"texts", "tokens", "seconds"}` / `{"text", "tokens", "seconds"}`.

`check_exports` (used by the export stage) starts both and returns what they generated.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def saved_model_check(path: str, prompts: list[str], max_new_tokens: int) -> dict:
    """Generates from `prompts` with the SavedModel's `generate` signature."""
    t0 = time.time()
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the SentencePiece ops)

    loaded = tf.saved_model.load(path)
    gen = loaded.signatures["generate"]
    out = gen(prompts=tf.constant(prompts), max_new_tokens=tf.constant(max_new_tokens, tf.int32),
              temperature=tf.constant(0.8), top_k=tf.constant(20, tf.int32),
              top_p=tf.constant(1.0), seed=tf.constant(1, tf.int64))
    texts = [t.decode("utf-8") for t in out["text"].numpy()]
    tokens = [int((row != 0).sum()) for row in out["token_ids"].numpy()]
    return {"texts": texts, "tokens": tokens, "seconds": time.time() - t0}


def tflite_check(path: str, tokenizer_path: str, prompt: str, max_new_tokens: int) -> dict:
    """Greedy generation from `prompt` with the LiteRT file (`</s>` ends it, not counted)."""
    t0 = time.time()
    import sentencepiece as spm

    from massivetext_tf.export.litert import LiteRTGenerator  # no TensorFlow import

    sp = spm.SentencePieceProcessor(model_file=tokenizer_path)
    gen = LiteRTGenerator(path)
    new = gen.generate([sp.bos_id()] + sp.encode(prompt), max_new_tokens)
    if new and new[-1] == sp.eos_id():
        new = new[:-1]
    return {"text": sp.decode(new), "tokens": len(new), "seconds": time.time() - t0}


def main(argv=None) -> int:
    """`python -m massivetext_tf.demo.checks`; prints the result as one JSON line."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m massivetext_tf.demo.checks",
                                description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="check", required=True)
    sm = sub.add_parser("saved-model", help="generate with a SavedModel's generate signature")
    sm.add_argument("path")
    sm.add_argument("prompts", help="JSON list of prompts")
    sm.add_argument("max_new_tokens", type=int)
    tl = sub.add_parser("tflite", help="greedy generation with a LiteRT file")
    tl.add_argument("path")
    tl.add_argument("tokenizer", help="the SentencePiece model next to the .tflite file")
    tl.add_argument("prompt")
    tl.add_argument("max_new_tokens", type=int)
    args = p.parse_args(argv)
    if args.check == "saved-model":
        try:
            prompts = json.loads(args.prompts)
        except json.JSONDecodeError as e:
            p.error(f"prompts: not a JSON list ({e})")
        result = saved_model_check(args.path, list(prompts), args.max_new_tokens)
    else:
        result = tflite_check(args.path, args.tokenizer, args.prompt, args.max_new_tokens)
    print(json.dumps(result))
    return 0


def _child_env() -> dict:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def _run_check(python: str, argv: list[str], what: str) -> dict:
    out = subprocess.run([python, "-m", "massivetext_tf.demo.checks"] + argv,
                         capture_output=True, text=True, env=_child_env())
    if out.returncode:
        from massivetext_tf.demo.options import DemoError

        raise DemoError(f"the {what} did not run in a fresh process:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def check_exports(result: dict, *, prompt: str, max_new_tokens: int, python: str = sys.executable,
                  say=print) -> dict:
    """Runs the SavedModel and the LiteRT file of an export (`result`: the export's JSON line)
    each in a fresh process; returns `{"saved_model": {...}, "tflite": {...}}`."""
    sm = result["saved_model"]
    say(f"fresh process: tf.saved_model.load({sm}).signatures['generate']")
    t0 = time.perf_counter()
    sm_out = _run_check(python, ["saved-model", sm, json.dumps([prompt]), str(max_new_tokens)],
                        "SavedModel")
    say(f"{prompt}{sm_out['texts'][0]}")
    tfl = result["tflite_float32"]
    spm_path = f"{os.path.dirname(tfl)}/tokenizer.model"
    say(f"fresh process: ai_edge_litert Interpreter({tfl}), greedy prefill + decode")
    tfl_out = _run_check(python, ["tflite", tfl, spm_path, prompt, str(max_new_tokens)],
                         "TFLite model")
    say(f"{prompt}{tfl_out['text']}")
    return {"saved_model": {"prompt": prompt, "text": sm_out["texts"][0],
                            "tokens": sm_out["tokens"][0],
                            "seconds": round(time.perf_counter() - t0, 1)},
            "tflite": {"prompt": prompt, "text": tfl_out["text"], "tokens": tfl_out["tokens"]}}


if __name__ == "__main__":
    sys.exit(main())
