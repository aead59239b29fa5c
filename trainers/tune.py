"""Hyperparameter search with keras-tuner; every trial runs the training loop of pretrain.py.

    python trainers/tune.py --config massivetext_tf/configs/tune_tiny.yaml --data data/shakespeare \
        --project-dir runs/sweep --max-trials 8 --tuner bayesian --budget-tokens 2e5
    python trainers/tune.py ... --space model.num_layers=choice:1,2 --set data.sequence_length=128
    python trainers/tune.py ... --flop-budget 1e12     # Chinchilla-optimal size bounds the space
    tensorboard --logdir runs/sweep                     # HParams dashboard

Rerun the same command to resume (a larger --max-trials adds trials). At the end it prints the
ranked trials and writes PROJECT_DIR/trials.csv and PROJECT_DIR/best_config.yaml (run it with
trainers/pretrain.py --config PROJECT_DIR/best_config.yaml). See docs/tuning.md.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    from massivetext_tf.tuning import cli

    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
