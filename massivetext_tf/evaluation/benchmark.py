"""Speed of multiple-choice scoring with and without the shared context cache.

    python -m massivetext_tf.evaluation.benchmark [--items 16] [--context-tokens 400] [--choices 4]

lm-evaluation-harness scores each choice as its own row `<s> + context + choice`, so a context
shared by C choices is computed C times. `ModelAdapter.loglikelihood(share_context=True)` runs
the context once through `call_with_cache` and the C continuations, batched, against copies of
its key/value cache. Both paths give the same log-likelihoods (checked here and in
tests/evaluation/test_shared_context.py); this prints the time of each and the speedup.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np


def _tokenizer(path):
    import sentencepiece as spm

    words = ["the king", "to be or not to be", "a question of night", "my lord and master",
             "good night sweet prince", "now is the winter of our discontent"]
    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(words, 12)) for _ in range(400)]
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_prefix=path[:-6], vocab_size=300,
                                   model_type="unigram", pad_id=0, eos_id=1, bos_id=2, unk_id=3,
                                   byte_fallback=True, minloglevel=2)
    return path


def tiny_lm(length, hidden_dim, num_layers):
    """The benchmarks' model: `gopher_tiny` at `hidden_dim` x `num_layers` (4 heads) with a
    300-piece SentencePiece tokenizer trained on the fly, context `length` tokens."""
    import tempfile

    from massivetext_tf import models

    with tempfile.TemporaryDirectory() as tmp:
        tok = _tokenizer(f"{tmp}/tok.model")
        return models.build("gopher_tiny", tokenizer=tok, max_sequence_length=length,
                            hidden_dim=hidden_dim, intermediate_dim=4 * hidden_dim,
                            num_layers=num_layers, num_heads=4, key_value_dim=hidden_dim // 4)


def run(items=16, context_tokens=400, choices=4, hidden_dim=256, num_layers=4, window=512, repeats=3,
        batch_size=8):
    from massivetext_tf.evaluation import from_task

    lm = tiny_lm(window, hidden_dim, num_layers)
    adapter = from_task(lm, jit_compile=False, batch_size=batch_size)
    rng = np.random.default_rng(1)
    pieces = ["king", "night", "lord", "question", "winter", "prince", "master", "be"]
    requests = []
    for i in range(items):
        words = []
        while len(adapter.tokenizer.encode(" ".join(words))) < context_tokens:
            words.append(str(rng.choice(pieces)))
        context = " ".join(words[:-1])
        requests += [(context, " " + " ".join(rng.choice(pieces, 1 + c % 3))) for c in range(choices)]
    timings = {}
    results = {}
    for share in (False, True):
        results[share] = adapter.loglikelihood(requests, share_context=share)  # warm-up (traces)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            adapter.loglikelihood(requests, share_context=share)
            best = min(best, time.perf_counter() - start)
        timings[share] = best
    diff = max(abs(a.logprob - b.logprob) for a, b in zip(results[False], results[True]))
    return {"items": items, "choices": choices, "context_tokens": context_tokens,
            "model": {"hidden_dim": hidden_dim, "num_layers": num_layers, "window": window},
            "per_choice_rows_s": round(timings[False], 3), "shared_context_s": round(timings[True], 3),
            "speedup": round(timings[False] / timings[True], 2), "max_abs_logprob_difference": diff}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--items", type=int, default=16)
    p.add_argument("--context-tokens", type=int, default=400)
    p.add_argument("--choices", type=int, default=4)
    p.add_argument("--hidden-dim", type=int, default=256)
    p.add_argument("--num-layers", type=int, default=4)
    args = p.parse_args(argv)
    print(json.dumps(run(args.items, args.context_tokens, args.choices, args.hidden_dim, args.num_layers)))


if __name__ == "__main__":
    main()
