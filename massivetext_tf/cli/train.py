"""`massivetext train`: pretraining, decoder-only (next token) or encoder-decoder (span
corruption) on the shards.

    massivetext train --config gopher_tiny --strategy one_device --model-dir runs/tiny \
        --data data/tiny --train-steps 200

(`python trainers/pretrain.py` takes the same flags.) Prints the final metrics as one JSON
line. See docs/training.md for every strategy.

Evaluation in Model Garden's convention (massivetext_tf.training.evaluator):

    massivetext train --mode eval --model-dir runs/tiny [--checkpoint PREFIX]
    massivetext train --mode continuous_eval --model-dir runs/tiny [--eval-timeout S]

evaluate one checkpoint, or each new checkpoint once until the final one (the run's own
config.yaml unless --config); tasks listed in trainer.eval_tasks also run at eval_every.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DESCRIPTION = "Pretrain a decoder-only or encoder-decoder model."


def build_parser():
    """The flags of `massivetext train` (no TensorFlow import)."""
    from massivetext_tf.training import cli

    p = cli.parser(DESCRIPTION)
    cli.add_mode_flags(p)
    return p


def main(argv=None) -> int:
    """Runs `massivetext train`; returns the exit status (0, 2 bad input, 3 non-finite)."""
    from massivetext_tf.training import cli

    def dispatch(cfg, args):
        from massivetext_tf.training import evaluator

        return evaluator.dispatch(cfg, args)

    return cli.run(dispatch, DESCRIPTION, argv, add_flags=cli.add_mode_flags)


if __name__ == "__main__":
    raise SystemExit(main())
