"""Convert HuggingFace T5 checkpoints to keras-hub presets of this toolkit and back
(see docs/models.md).

    massivetext convert-checkpoint --from hf flan-t5-small/ --output presets/flan_t5_small
    massivetext convert-checkpoint --to hf presets/flan_t5_small --output hf_out/

(`massivetext convert` and `python tools/convert_checkpoint.py` are the same command.)
Exit status 2 with one line on stderr on bad input; nothing is written then.
"""
import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

EXIT_BAD_INPUT = 2
# T5's n_positions; the preprocessor's padded lengths (the same default as
# massivetext_tf.models.convert.checkpoint.DEFAULT_SEQUENCE_LENGTH, which does the work).
DEFAULT_SEQUENCE_LENGTH = 512


def build_parser():
    """The flags of `massivetext convert-checkpoint` (no TensorFlow import)."""
    parser = argparse.ArgumentParser(
        description="Convert HuggingFace T5 checkpoints to keras-hub presets of this toolkit and back.",
        epilog="Examples:\n  massivetext convert --from hf flan-t5-small/ --output presets/flan_t5_small\n"
               "  massivetext convert --to hf presets/flan_t5_small --output hf_out/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    direction = parser.add_mutually_exclusive_group(required=True)
    direction.add_argument("--from", dest="source", nargs=2, metavar=("FORMAT", "DIR"),
                           help="read a checkpoint of FORMAT (hf) from DIR")
    direction.add_argument("--to", dest="target", nargs=2, metavar=("FORMAT", "PRESET_DIR"),
                           help="write our preset PRESET_DIR as FORMAT (hf)")
    parser.add_argument("--output", required=True, help="directory to create (must not exist or be empty)")
    parser.add_argument("--tokenizer", help="--from hf: SentencePiece model to use instead of DIR/spiece.model")
    parser.add_argument("--sequence-length", type=int, default=DEFAULT_SEQUENCE_LENGTH,
                        help="--from hf: the preprocessor's padded encoder/decoder length (default 512)")
    return parser


def main(argv=None) -> int:
    """Entry point of `massivetext convert-checkpoint` (alias `convert`) and
    `tools/convert_checkpoint.py`; returns the exit status (0, or 2 on bad input with one line
    on stderr)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    fmt, path = args.source or args.target
    if fmt != "hf":
        parser.error(f"unknown checkpoint format {fmt!r} (supported: hf)")
    if args.sequence_length <= 0:
        parser.error("--sequence-length must be positive")
    from massivetext_tf.models.convert import checkpoint, hf_t5

    try:
        if args.source:
            task = checkpoint.hf_to_preset(path, args.output, tokenizer=args.tokenizer,
                                           sequence_length=args.sequence_length)
            print(f"wrote {args.output}: {task.count_params():,} parameters, "
                  f"{task.preprocessor.tokenizer.vocabulary_size()} tokens, "
                  f"{task.backbone.vocabulary_size} embedding rows")
        else:
            if args.tokenizer:
                parser.error("--tokenizer applies to --from hf only")
            files = checkpoint.preset_to_hf(path, args.output)
            print(f"wrote {args.output}: {', '.join(files)}")
    except (hf_t5.CheckpointError, ValueError, FileNotFoundError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
