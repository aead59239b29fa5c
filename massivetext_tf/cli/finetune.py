"""`massivetext finetune`: continued pretraining (task.type=lm, from --init-from), text
classification or seq2seq from JSONL (task.type=classification|seq2seq), LoRA with
--set model.lora_rank=8.

    massivetext finetune --config finetune_classification \
        --strategy one_device --model-dir runs/cls --init-from runs/tiny/preset \
        --set task.train_file=train.jsonl --set task.eval_file=eval.jsonl --train-steps 200

(`python trainers/finetune.py` takes the same flags.) A HuggingFace T5 checkpoint converted
with `massivetext convert-checkpoint --from hf` fine-tunes the same way (--init-from PRESET;
its T5Tokenizer makes the decoder start from <pad>), e.g. on the bundled toy tasks:
--config finetune_t5_tiny (see docs/models.md).

Prints the final metrics (accuracy / macro-F1, or BLEU / ROUGE-L / exact match / F1) as one
JSON line.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DESCRIPTION = "Fine-tune a model (continued pretraining, classification, seq2seq, LoRA)."


def build_parser():
    """The flags of `massivetext finetune` (no TensorFlow import)."""
    from massivetext_tf.training import cli

    return cli.parser(DESCRIPTION)


def main(argv=None) -> int:
    """Runs `massivetext finetune`; returns the exit status (0, 2 bad input, 3 non-finite)."""
    from massivetext_tf.training import cli

    def finetune(cfg):
        from massivetext_tf.training.finetune import finetune as run

        return run(cfg)

    return cli.run(finetune, DESCRIPTION, argv)


if __name__ == "__main__":
    raise SystemExit(main())
