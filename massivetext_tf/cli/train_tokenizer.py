"""Train a SentencePiece tokenizer on curated text (ids: pad=0 eos=1 bos=2 unk=3).

Examples:
  massivetext train-tokenizer --input 'curated/train-*.jsonl' --output tok.model
  massivetext train-tokenizer --source web='web/*.jsonl.gz' --source books=books/ \
      --sample web=0.1 --sample books=5000 --vocab-size 32000 --num-sentinels 100 \
      --output gs://bucket/tok.model

(`python tools/train_tokenizer.py` takes the same flags.) Prints a JSON summary line at the end.
"""
import argparse
import json
import os
import sys

from massivetext_tf.data import source_args

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build_parser():
    """The flags of `massivetext train-tokenizer` (no TensorFlow import)."""
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", required=True, help="where to write the .model file")
    source_args.add_source_args(p)
    p.add_argument("--sample", action="append", default=[], metavar="NAME=FRACTION_OR_COUNT",
                   help="per-source sampling: a fraction in (0,1] (e.g. 0.25) or a document "
                        "count (e.g. 1000); repeatable")
    p.add_argument("--vocab-size", type=int, default=source_args.DEFAULT_VOCAB_SIZE)
    p.add_argument("--model-type", choices=source_args.MODEL_TYPES, default="unigram")
    p.add_argument("--normalization", choices=source_args.NORMALIZATIONS, default="identity",
                   help="identity (default, as Chinchilla: no NFKC) or a SentencePiece rule")
    p.add_argument("--nfkc", action="store_true", help="shortcut for --normalization nfkc")
    p.add_argument("--num-sentinels", type=int, default=0,
                   help="add <extra_id_0>..<extra_id_{N-1}> pieces (span corruption)")
    p.add_argument("--character-coverage", type=float, default=0.9995)
    p.add_argument("--input-sentence-size", type=int, default=0,
                   help="if > 0, SentencePiece samples this many training lines")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--on-error", choices=("skip", "raise"), default="skip",
                   help="unreadable inputs: count, print and skip each (default) or stop at "
                        "the first, naming the file and line")
    return p


def main(argv=None):
    """Runs `massivetext train-tokenizer`; returns 0, or 2 on bad input."""
    p = build_parser()
    args = p.parse_args(argv)
    from massivetext_tf.data import prepare, tokenizer

    try:
        sources = prepare.sources_from_args(args)
        if not sources:
            p.error("give at least one --input or --source")
        sample = {}
        for item in args.sample:
            name, sep, value = item.partition("=")
            if not sep:
                p.error(f"--sample {item!r}: expected NAME=FRACTION_OR_COUNT")
            sample[name] = tokenizer.parse_sample(value, flag=f"--sample {name}")
        info = tokenizer.train_tokenizer(
            args.output, sources=sources, sample=sample, vocab_size=args.vocab_size,
            model_type=args.model_type,
            normalization="nfkc" if args.nfkc else args.normalization,
            num_sentinels=args.num_sentinels, character_coverage=args.character_coverage,
            input_sentence_size=args.input_sentence_size, seed=args.seed,
            on_error=args.on_error, on_skip=lambda message: print(
                f"train_tokenizer: skipped {message}", file=sys.stderr))
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"train_tokenizer: error: {e}", file=sys.stderr)
        return 2
    if info["skipped"]:
        print(f"train_tokenizer: skipped {sum(info['skipped'].values())} unreadable "
              "file(s) or line(s) (--on-error raise stops at the first): "
              + ", ".join(f"{rule} {n}" for rule, n in info["skipped"].items()),
              file=sys.stderr)
    print(json.dumps(info, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
