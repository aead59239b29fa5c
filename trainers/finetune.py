"""Fine-tuning: continued pretraining (task.type=lm, from --init-from), text classification or
seq2seq from JSONL (task.type=classification|seq2seq), LoRA with --set model.lora_rank=8.

    python trainers/finetune.py --config massivetext_tf/configs/finetune_classification.yaml \
        --strategy one_device --model-dir runs/cls --init-from runs/tiny/preset \
        --set task.train_file=train.jsonl --set task.eval_file=eval.jsonl --train-steps 200

A HuggingFace T5 checkpoint converted with tools/convert_checkpoint.py --from hf fine-tunes the
same way (--init-from PRESET; its T5Tokenizer makes the decoder start from <pad>), e.g. on the
bundled toy tasks: --config massivetext_tf/configs/finetune_t5_tiny.yaml (see docs/models.md).

Prints the final metrics (accuracy / macro-F1, or BLEU / ROUGE-L / exact match / F1) as one
JSON line.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    from massivetext_tf.training import cli
    from massivetext_tf.training.finetune import finetune

    return cli.run(finetune, "Fine-tune a model (continued pretraining, classification, "
                   "seq2seq, LoRA).", argv)


if __name__ == "__main__":
    sys.exit(main())
