"""Will a run fit, how long a step takes, how many days to Chinchilla-optimal tokens.

    massivetext plan --preset chinchilla_70b --hardware "TPU v5p" --devices 1024 \
        --global-batch-tokens 3000000 --sequence-length 2048 --remat block \
        --precision bfloat16 --mesh data=64,model=16

(`python tools/plan.py` takes the same flags.) Prints one line per figure, then the plan as JSON (last line). The formulas and the hardware
table (with the source of each figure) are in massivetext_tf/training/memory.py and
docs/training.md ("Planning memory"). Bad input: one line naming the flag, exit 2.
"""
import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build_parser():
    """The flags of `massivetext plan` (no TensorFlow import)."""
    from massivetext_tf.training import memory

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", required=True)
    p.add_argument("--hardware", required=True, help=", ".join(memory.HARDWARE))
    p.add_argument("--devices", type=int, required=True)
    p.add_argument("--global-batch-tokens", dest="global_batch_tokens", type=int, required=True)
    p.add_argument("--sequence-length", dest="sequence_length", type=int, required=True)
    p.add_argument("--remat", default="none", help="none | block")
    p.add_argument("--precision", default="float32", help="float32 | bfloat16")
    p.add_argument("--mesh", default=None, help="data=D,model=M")
    return p


def main(argv=None):
    """Runs `massivetext plan`; returns 0, or 2 with one line naming the flag."""
    from massivetext_tf.training import memory

    args = build_parser().parse_args(argv)
    try:
        out = memory.plan(args.preset, hardware_kind=args.hardware, devices=args.devices,
                          global_batch_tokens=args.global_batch_tokens,
                          sequence_length=args.sequence_length, remat=args.remat,
                          precision=args.precision, mesh=args.mesh)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    gib = lambda v: f"{v / 2**30:,.2f} GiB"
    for k, v in out["bytes_per_device"].items():
        print(f"{k:16s} {gib(v)} per device")
    mem = out["device_memory_bytes"]
    print(f"{'total':16s} {gib(out['total_bytes_per_device'])} of {gib(mem)}: "
          f"{'fits' if out['fits'] else 'does NOT fit'}")
    if out["step_seconds"]:
        print(f"step {out['step_seconds']:.3f} s at {out['mfu']:.0%} MFU; "
              f"{out['chinchilla_tokens']:.3g} tokens (20 per parameter) in {out['days']:,.1f} days")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
