"""`massivetext SUBCOMMAND ...` (also `python -m massivetext_tf ...`).

The registry below maps each subcommand to its module in `massivetext_tf.cli` and a one-line
summary; a module is imported only when its subcommand runs, so `massivetext --help` imports
nothing of the toolkit and no subcommand's `--help` imports TensorFlow.
"""
from __future__ import annotations

import importlib
import sys

# subcommand -> (module, needs TensorFlow to run, one-line summary). Order: the pipeline first.
COMMANDS = {
    "prepare-data": ("prepare_data", True, "curate, tokenize and shard text into TFRecords + manifest"),
    "train-tokenizer": ("train_tokenizer", True, "train a SentencePiece tokenizer on curated text"),
    "train": ("train", True, "pretrain a decoder-only or encoder-decoder model (also --mode eval)"),
    "finetune": ("finetune", True, "fine-tune: continued pretraining, classification, seq2seq, LoRA"),
    "tune": ("tune", True, "hyperparameter search with keras-tuner"),
    "evaluate": ("evaluate", True, "bits per byte per source and tasks from YAML, models side by side"),
    "export": ("export", True, "SavedModel for TF Serving (and LiteRT files) from a preset"),
    "convert-checkpoint": ("convert_checkpoint", True, "HuggingFace T5 checkpoints to presets and back (or: convert)"),
    "count-params": ("count_params", True, "a preset's parameter count, without allocating weights"),
    "plan": ("plan", True, "will a run fit: memory per device, step time, days to optimal tokens"),
    "compute-optimal": ("compute_optimal", True, "Chinchilla-optimal size and tokens for a FLOP budget"),
    "make-eval-tasks": ("make_eval_tasks", True, "build the bundled Shakespeare evaluation tasks"),
    "make-web-testdata": ("make_web_testdata", False, "build the web test fixtures from Debian packages"),
    "demo": ("demo", True, "Shakespeare end to end: curate, train, evaluate, export"),
    "pictures": ("pictures", True, "regenerate the documentation's pictures"),
    "benchmark-train": ("benchmark_train", True, "training throughput and MFU vs keras-hub's fit"),
    "benchmark-generate": ("benchmark_generate", True, "decode speed vs keras-hub's GPT-2, cached vs not"),
    "benchmark-export": ("benchmark_export", True, "export sizes and SavedModel/LiteRT latency"),
    "benchmark-data": ("benchmark_data", True, "curation and tf.data pipeline throughput"),
    "benchmark-eval": ("benchmark_eval", True, "scoring throughput vs the trainer's forward pass"),
    "benchmark-memory": ("benchmark_memory", True, "peak memory and step time with and without remat"),
}
# Other names for a subcommand (docs/models.md calls the converter `massivetext convert`).
ALIASES = {"convert": "convert-checkpoint"}


def usage() -> str:
    """The text of `massivetext --help`."""
    width = max(map(len, COMMANDS))
    lines = ["usage: massivetext SUBCOMMAND [flags]   (massivetext SUBCOMMAND --help for its flags)",
             "", "Train Gopher/Chinchilla-style language models with TensorFlow and Keras 3.", "",
             "subcommands:"]
    lines += [f"  {name:{width}}  {summary}" for name, (_, _, summary) in COMMANDS.items()]
    lines += ["", "Experiment configs are addressed by name (--config gopher_44m) or by path.",
              "`python tools/X.py` and `python trainers/X.py` run the same programs."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    """Runs `massivetext`; returns the subcommand's exit status (2 on an unknown subcommand)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        from massivetext_tf import __version__

        print(f"massivetext {__version__}")
        return 0
    name = ALIASES.get(argv[0], argv[0])
    if name not in COMMANDS:
        close = [c for c in COMMANDS if c.startswith(name[:4])]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        print(f"massivetext: error: unknown subcommand {argv[0]!r}{hint}; "
              "`massivetext --help` lists them", file=sys.stderr)
        return 2
    module_name, needs_tf, _ = COMMANDS[name]
    args = argv[1:]
    if needs_tf and not any(a in ("-h", "--help") for a in args):
        from massivetext_tf import _tf

        try:
            _tf.require_tensorflow()
        except ImportError as e:
            print(f"massivetext {name}: error: {e}", file=sys.stderr)
            return 2
    module = importlib.import_module(f"massivetext_tf.cli.{module_name}")
    # argparse names the program after argv[0]: `massivetext SUBCOMMAND` in usage and errors.
    saved, sys.argv = sys.argv, [f"massivetext {argv[0]}"] + args
    try:
        return module.main(args) or 0
    finally:
        sys.argv = saved


if __name__ == "__main__":
    raise SystemExit(main())
