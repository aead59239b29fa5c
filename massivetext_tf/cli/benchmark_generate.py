"""Decode speed: our cached generate() vs keras-hub's GPT2CausalLM at matched size, and
cached vs uncached decoding, in one process.

    massivetext benchmark-generate                  # 4 layers, width 256, 256 new tokens
    massivetext benchmark-generate --layers 2 --new-tokens 64 --repeats 1   # quick

Both models are compiled with XLA (`jit_compile=True`) and the greedy sampler, warmed up
(compiled) once, then timed over `--repeats` calls; tokens/s counts new tokens of the whole
batch. The last line is JSON with `tokens_per_s`, `reference_tokens_per_s`,
`cached_speedup` and the setup.
"""
import argparse
import datetime
import json
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _time_interleaved(fns, repeats):
    """Median seconds per call of each function, calls interleaved (A, B, C, A, B, C, ...)
    so that load from other processes hits every candidate alike."""
    import keras
    import numpy as np

    for fn in fns.values():
        fn()  # compile
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            keras.tree.map_structure(np.asarray, fn())
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def build_parser():
    """The flags of `massivetext benchmark-generate` (no TensorFlow import)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hidden-dim", type=int, default=256)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--vocabulary-size", type=int, default=4096)
    p.add_argument("--position-encoding", default="relative")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--prompt-length", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=256)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--skip-uncached", action="store_true", help="skip the (slow) recomputation baseline")
    return p


def main(argv=None):
    """Runs the decode-speed benchmark; prints the figures and a JSON line, returns 0."""
    args = build_parser().parse_args(argv)
    import keras
    import keras_hub
    import numpy as np
    import tensorflow as tf

    from massivetext_tf import models

    length = args.prompt_length + args.new_tokens
    ours = models.build(
        "gopher_tiny",
        num_layers=args.layers,
        hidden_dim=args.hidden_dim,
        num_heads=args.heads,
        key_value_dim=args.hidden_dim // args.heads,
        intermediate_dim=4 * args.hidden_dim,
        vocabulary_size=args.vocabulary_size,
        max_sequence_length=length,
        position_encoding=args.position_encoding,
    )
    reference = keras_hub.models.GPT2CausalLM(
        keras_hub.models.GPT2Backbone(
            vocabulary_size=args.vocabulary_size,
            num_layers=args.layers,
            num_heads=args.heads,
            hidden_dim=args.hidden_dim,
            intermediate_dim=4 * args.hidden_dim,
            max_sequence_length=length,
        )
    )
    for model in (ours, reference):
        model.compile(sampler="greedy", jit_compile=True)

    rng = np.random.default_rng(0)
    ids = np.zeros((args.batch_size, length), "int32")
    ids[:, : args.prompt_length] = rng.integers(4, args.vocabulary_size, (args.batch_size, args.prompt_length))
    mask = np.zeros_like(ids)
    mask[:, : args.prompt_length] = 1
    inputs = {"token_ids": ids, "padding_mask": mask}
    new_tokens = args.batch_size * args.new_tokens

    fns = {
        "ours": lambda: ours.generate(inputs, stop_token_ids=None),
        "reference": lambda: reference.generate(inputs, stop_token_ids=None),
    }
    if not args.skip_uncached:
        fns["uncached"] = lambda: ours.generate_uncached(inputs, args.new_tokens)
    seconds = _time_interleaved(fns, args.repeats)
    ours_s, ref_s = seconds["ours"], seconds["reference"]
    result = {
        "tokens_per_s": new_tokens / ours_s,
        "reference_tokens_per_s": new_tokens / ref_s,
        "ratio": ref_s / ours_s,
        "ours_params": ours.count_params(),
        "reference_params": reference.count_params(),
        "new_tokens": args.new_tokens,
        "batch_size": args.batch_size,
        "layers": args.layers,
        "hidden_dim": args.hidden_dim,
        "position_encoding": args.position_encoding,
    }
    if not args.skip_uncached:
        uncached_s = seconds["uncached"]
        result["uncached_tokens_per_s"] = new_tokens / uncached_s
        result["cached_speedup"] = uncached_s / ours_s
    result.update(
        machine=f"{platform.machine()} {os.cpu_count()} cores, TF {tf.__version__}, Keras {keras.__version__}, "
        f"keras-hub {keras_hub.__version__}",
        date=datetime.date.today().isoformat(),
    )
    print(f"ours (cached, XLA):        {result['tokens_per_s']:.1f} tokens/s ({result['ours_params']:,} params)")
    print(f"keras-hub GPT2 (XLA):      {result['reference_tokens_per_s']:.1f} tokens/s ({result['reference_params']:,} params)")
    if "cached_speedup" in result:
        print(f"ours uncached (XLA):       {result['uncached_tokens_per_s']:.1f} tokens/s -> cached speedup {result['cached_speedup']:.1f}x")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
