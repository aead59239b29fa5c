r"""Evaluation speed, side by side in one process:

1. scoring throughput (tokens/s) of `ModelAdapter` (the path of `massivetext evaluate` and of
   lm-eval's `loglikelihood` / `loglikelihood_rolling`: host tokens -> the serving module's
   `forward` -> log-softmax, gathered targets, greedy flags) against the training forward pass
   (the trainer's compiled `model(x)` + summed cross-entropy, no gradient) at the same batch and
   length, measured alternately; the ratio is the claim (>= 0.8).
2. the shared-context speedup of multiple-choice scoring (massivetext_tf.evaluation.benchmark).

    massivetext benchmark-eval [--batch 8] [--length 256] [--hidden-dim 256] [--num-layers 4]

Prints one JSON object. Figures and the machine they came from: docs/benchmarks.md.
"""
import argparse
import json
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def scoring_vs_forward(batch=8, length=256, hidden_dim=256, num_layers=4, rounds=5):
    import numpy as np
    import tensorflow as tf

    from massivetext_tf.evaluation import from_task
    from massivetext_tf.evaluation.benchmark import tiny_lm

    lm = tiny_lm(length, hidden_dim, num_layers)
    adapter = from_task(lm, jit_compile=True, batch_size=batch)
    vocab = lm.backbone.vocabulary_size
    rng = np.random.default_rng(0)
    ids = rng.integers(4, vocab, size=[batch, length + 1]).astype(np.int32)
    rows = [{"input": list(r[:-1]), "targets": list(r[1:])} for r in ids]
    x = {"token_ids": tf.constant(ids[:, :-1]), "padding_mask": tf.ones([batch, length], tf.int32)}
    y = tf.constant(ids[:, 1:])

    @tf.function(jit_compile=True)
    def train_forward(x, y):  # the trainer's forward: logits and the summed token loss
        logits = lm(x, training=False)
        loss = tf.keras.losses.sparse_categorical_crossentropy(y, tf.cast(logits, tf.float32), from_logits=True)
        return tf.reduce_sum(loss)

    def time_scoring():
        t0 = time.perf_counter()
        adapter._token_log_probs(rows)
        return time.perf_counter() - t0

    def time_forward():
        t0 = time.perf_counter()
        float(train_forward(x, y))
        return time.perf_counter() - t0

    time_scoring(), time_forward()  # compile both
    scoring, forward = [], []
    for _ in range(rounds):  # alternate, so both see the same machine load
        scoring.append(time_scoring())
        forward.append(time_forward())
    tokens = batch * length
    s, f = float(np.median(scoring)), float(np.median(forward))
    return {"batch": batch, "length": length, "hidden_dim": hidden_dim, "num_layers": num_layers,
            "rounds": rounds, "scoring_tokens_per_s": round(tokens / s, 1),
            "train_forward_tokens_per_s": round(tokens / f, 1), "ratio": round(f / s, 3),
            "scoring_s_median": round(s, 4), "train_forward_s_median": round(f, 4)}


def build_parser():
    """The flags of `massivetext benchmark-eval` (no TensorFlow import)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--length", type=int, default=256)
    p.add_argument("--hidden-dim", type=int, default=256)
    p.add_argument("--num-layers", type=int, default=4)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--items", type=int, default=8, help="multiple-choice items of the shared-context run")
    p.add_argument("--no-shared-context", dest="shared", action="store_false")
    return p


def main(argv=None):
    """Runs `massivetext benchmark-eval`; returns the exit status."""
    args = build_parser().parse_args(argv)
    for flag in ("batch", "length", "hidden_dim", "num_layers", "rounds", "items"):
        if getattr(args, flag) < 1:
            print(f"benchmark_eval: error: --{flag.replace('_', '-')} must be at least 1", file=sys.stderr)
            return 2
    out = {"scoring_vs_train_forward": scoring_vs_forward(args.batch, args.length, args.hidden_dim,
                                                          args.num_layers, args.rounds)}
    if args.shared:
        from massivetext_tf.evaluation.benchmark import run

        out["shared_context"] = run(items=args.items, hidden_dim=args.hidden_dim, num_layers=args.num_layers)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
