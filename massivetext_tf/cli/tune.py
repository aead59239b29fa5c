"""`massivetext tune`: hyperparameter search with keras-tuner; every trial runs the training
loop of `massivetext train`.

    massivetext tune --config tune_tiny --data data/shakespeare \
        --project-dir runs/sweep --max-trials 8 --tuner bayesian --budget-tokens 2e5
    massivetext tune ... --space model.num_layers=choice:1,2 --set data.sequence_length=128
    massivetext tune ... --flop-budget 1e12     # Chinchilla-optimal size bounds the space
    tensorboard --logdir runs/sweep              # HParams dashboard

(`python trainers/tune.py` takes the same flags.) Rerun the same command to resume (a larger
--max-trials adds trials). At the end it prints the ranked trials and writes
PROJECT_DIR/trials.csv and PROJECT_DIR/best_config.yaml (run it with
`massivetext train --config PROJECT_DIR/best_config.yaml`). See docs/tuning.md.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build_parser():
    """The flags of `massivetext tune` (no TensorFlow import)."""
    from massivetext_tf.tuning import cli

    return cli.parser()


def main(argv=None) -> int:
    """Runs `massivetext tune`; returns the exit status (see massivetext_tf.tuning.cli)."""
    from massivetext_tf.tuning import cli

    return cli.main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
