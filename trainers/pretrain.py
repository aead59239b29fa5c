"""Pretraining: decoder-only (next token) or encoder-decoder (span corruption) on the shards.

    python trainers/pretrain.py --config massivetext_tf/configs/gopher_tiny.yaml \
        --strategy one_device --model-dir runs/tiny --data data/tiny --train-steps 200

Prints the final metrics as one JSON line. See docs/training.md for every strategy.

Evaluation in Model Garden's convention (massivetext_tf.training.evaluator):

    python trainers/pretrain.py --mode eval --model-dir runs/tiny [--checkpoint PREFIX]
    python trainers/pretrain.py --mode continuous_eval --model-dir runs/tiny [--eval-timeout S]

evaluate one checkpoint, or each new checkpoint once until the final one (the run's own
config.yaml unless --config); tasks listed in runtime.eval_tasks also run at eval_every.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    from massivetext_tf.training import cli, evaluator

    return cli.run(evaluator.dispatch, "Pretrain a decoder-only or encoder-decoder model.", argv,
                   add_flags=evaluator.add_flags)


if __name__ == "__main__":
    sys.exit(main())
