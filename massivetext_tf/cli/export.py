"""Export a trained (or fresh) model for serving: a versioned SavedModel for TF Serving, and
optionally LiteRT files.

Examples:
  massivetext export --model runs/tiny/preset --name tiny
  massivetext export --preset gopher_tiny --tokenizer tok.model --name tiny \
      --base-dir saved_models --tflite --quantize int8
  massivetext export --model gs://bucket/preset --name gopher --version 7 --max-length 512

Writes BASE_DIR/NAME/VERSION/ (SavedModel with generate, score and forward signatures and TF
Serving warm-up requests), BASE_DIR/NAME/tflite/ with --tflite, and merges NAME into
BASE_DIR/models.config (other models' entries and settings kept, the previous file saved as
models.config.bak). Leftover temporary directories of killed exports of NAME are removed first.
(`python tools/export.py` takes the same flags.) Prints a JSON summary (paths, sizes in bytes) as the last line; exits 2 on bad input.
"""
import argparse
import json
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build_parser():
    """The flags of `massivetext export` (no TensorFlow import)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", metavar="PRESET_DIR",
                     help="keras-hub preset directory written by task.save_to_preset()")
    src.add_argument("--preset", metavar="NAME", help="architecture preset with fresh weights (needs --tokenizer)")
    p.add_argument("--tokenizer", metavar="SPM_MODEL", help="SentencePiece .model (with --preset)")
    p.add_argument("--name", required=True, help="model name for TF Serving (model_spec.name)")
    p.add_argument("--base-dir", default="saved_models", help="export root (default: saved_models/)")
    p.add_argument("--version", type=int, help="version number (default: next free); never overwritten")
    p.add_argument("--max-length", type=int,
                   help="static context / cache length of the export (default: the model's)")
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="default max_new_tokens of the generate signature (default: 32)")
    p.add_argument("--max-batch-size", type=int, default=None, metavar="N",
                   help="most prompts/texts/rows one request may carry, enforced in the graph "
                        "(default: 64; 0: no cap)")
    p.add_argument("--no-jit-compile", dest="jit_compile", action="store_false",
                   help="do not XLA-compile the decoding loop (for servers without XLA:CPU JIT)")
    p.add_argument("--no-warmup", dest="warmup", action="store_false",
                   help="skip assets.extra/tf_serving_warmup_requests")
    p.add_argument("--tflite", action="store_true", help="also write LiteRT files to NAME/tflite/")
    p.add_argument("--quantize", choices=["int8"], help="with --tflite: add a dynamic-range int8 file")
    return p


def main(argv=None):
    """Runs `massivetext export`; returns 0, or 2 on bad input (one line on stderr)."""
    p = build_parser()
    args = p.parse_args(argv)

    from massivetext_tf.export import serving

    try:
        if args.preset and not args.tokenizer:
            p.error("--preset needs --tokenizer SPM_MODEL")
        if args.quantize and not args.tflite:
            p.error("--quantize int8 applies to the TFLite files; add --tflite")
        serving.check_models_config(args.base_dir)  # before minutes of loading and tracing
        task = serving.load_task(args.model, preset=args.preset, tokenizer=args.tokenizer)
        result = serving.export_model(
            task,
            args.name,
            base_dir=args.base_dir,
            version=args.version,
            max_length=args.max_length,
            default_max_new_tokens=args.max_new_tokens,
            jit_compile=args.jit_compile,
            warmup=args.warmup,
            tflite=args.tflite,
            quantize=args.quantize,
            max_batch_size=args.max_batch_size,
        )
    except (serving.ExportError, ValueError, FileNotFoundError) as e:
        print(f"export: error: {e}", file=sys.stderr)
        return 2
    removed = result["removed_leftovers"]
    if removed:
        print(f"removed {len(removed)} leftover temporary file(s)/directory(ies) of killed exports: "
              + ", ".join(removed))
    print(f"SavedModel  {result['saved_model']}  {serving.human_size(result['saved_model_bytes'])}")
    for label in ("float32", "int8"):
        if f"tflite_{label}" in result:
            print(f"LiteRT      {result[f'tflite_{label}']}  {serving.human_size(result[f'tflite_{label}_bytes'])}")
    print(f"models.config  {result['models_config']}"
          + (f"  (previous: {result['models_config_backup']})" if result["models_config_backup"] else ""))
    for change in result["models_config_changes"]:
        print(f"  {change}")
    if not result["models_config_checked"]:
        print("  note: the previous models.config is not a valid ModelServerConfig for this "
              "protobuf definition (fields of a newer TF Serving?); merged as text, unchecked")
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
