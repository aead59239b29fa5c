"""Curate, tokenize and shard text into TFRecords + manifest (see docs/data.md).

Examples:
  massivetext prepare-data --source web='raw/web/*.jsonl.gz' --source zh='raw/zh/*.txt:lang=zh' \
      --eval-source wiki_eval='raw/eval/*.jsonl' --tokenizer tok.model --output data/run1
  massivetext prepare-data --input plays/ --eval-fraction 0.05 --train-tokenizer-vocab 1000 \
      --output data/shakespeare
  massivetext prepare-data ... --runner DataflowRunner --project P --region R \
      --temp_location gs://b/tmp          # unknown flags go to Apache Beam
  massivetext prepare-data --verify data/run1

(`python tools/prepare_data.py` takes the same flags.) Prints the curation table and, last, one JSON line with the output summary.
"""
import argparse
import json
import os
import sys


from massivetext_tf.data import source_args
from massivetext_tf.data.source_args import RUNNERS  # noqa: F401  (the runner names)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build_parser():
    """The flags of `massivetext prepare-data` (no TensorFlow import)."""
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", help="output directory (local or gs://)")
    source_args.add_source_args(p)
    p.add_argument("--eval-source", action="append", default=[], metavar="NAME=GLOB[:opts]",
                   help="a source written to split 'eval' (also used as the contamination "
                        "eval set for the train split)")
    p.add_argument("--eval-fraction", type=float, default=0.0,
                   help="send this fraction of train-source documents to 'eval' by a hash of "
                        "the text (deterministic)")
    p.add_argument("--tokenizer", help="SentencePiece model (copied to OUTPUT/tokenizer.model)")
    p.add_argument("--train-tokenizer-vocab", type=int,
                   help="no --tokenizer: train one of this size on the curated train split")
    p.add_argument("--num-sentinels", type=int, default=0,
                   help="with --train-tokenizer-vocab: <extra_id_i> pieces to add")
    p.add_argument("--shard-size", default=source_args.DEFAULT_SHARD_SIZE,
                   help="documents per shard (e.g. 10000) or text size (e.g. 64MB)")
    p.add_argument("--skip", action="append", default=[],
                   choices=source_args.SKIP_STAGES,
                   help="curation stage to skip (repeatable)")
    p.add_argument("--contamination-eval", action="append", default=[], metavar="GLOB",
                   help="evaluation texts that training documents must not overlap")
    p.add_argument("--curation-config", help="JSON file with CurationConfig overrides")
    p.add_argument("--keep-rejected", metavar="DIR",
                   help="write rejected documents as JSONL with their stage and rule")
    p.add_argument("--curate-only", action="store_true",
                   help="write kept documents as JSONL under OUTPUT/curated/ (no tokenizing)")
    p.add_argument("--on-error", choices=("skip", "raise"), default="skip",
                   help="unreadable inputs: count and skip (default) or fail naming the file")
    p.add_argument("--max-document-mb", type=float, default=source_args.DEFAULT_MAX_DOCUMENT_MB,
                   help="documents larger than this (UTF-8 MB) are counted as read:too_large "
                        "and skipped before curation, which bounds memory (default "
                        "%(default)g)")
    p.add_argument("--runner", default="local", choices=RUNNERS,
                   help="local (in-process, default) or an Apache Beam runner; other unknown "
                        "flags are passed to Beam's PipelineOptions")
    p.add_argument("--verify", metavar="DIR",
                   help="check DIR's shards against its manifest and exit")
    return p


def make_config(args):
    """Parsed flags -> `massivetext_tf.data.prepare.PrepareConfig`."""
    from massivetext_tf.data import prepare, records
    from massivetext_tf.data.curate import CurationConfig

    data = {}
    if args.curation_config:
        data = records.read_json(args.curation_config)
    curation = CurationConfig.from_dict(data)
    curation.skip = set(curation.skip) | set(args.skip)
    sources = prepare.sources_from_args(args)
    eval_sources = prepare.sources_from_flags(
        [], args.eval_source, text_field=args.text_field, format=args.format,
        text_unit=args.text_unit, flag="--eval-source")
    eval_files = list(curation.contamination.eval_files) + list(args.contamination_eval)
    eval_files += [p for s in eval_sources for p in s.patterns]
    curation.contamination.eval_files = eval_files
    curation.contamination.eval_text_field = args.text_field
    curation.__post_init__()
    return prepare.PrepareConfig(
        output=args.output, sources=sources, eval_sources=eval_sources,
        tokenizer=args.tokenizer, eval_fraction=args.eval_fraction, shard_size=args.shard_size,
        curation=curation, keep_rejected=args.keep_rejected, curate_only=args.curate_only,
        on_error=args.on_error, train_tokenizer_vocab=args.train_tokenizer_vocab,
        tokenizer_options={"num_sentinels": args.num_sentinels},
        max_document_mb=args.max_document_mb)


def main(argv=None):
    """Runs `massivetext prepare-data`; returns 0, 1 (--verify found problems) or 2 (bad input)."""
    parser = build_parser()
    args, beam_args = parser.parse_known_args(argv)
    from massivetext_tf.data import prepare, records

    try:
        if args.verify:
            problems = records.verify(args.verify)
            for problem in problems:
                print(problem, file=sys.stderr)
            print(json.dumps({"verify": args.verify, "ok": not problems,
                              "problems": len(problems)}))
            return 1 if problems else 0
        if beam_args and args.runner == "local":
            parser.error(f"unrecognized arguments: {' '.join(beam_args)} (Beam flags need "
                         "--runner)")
        if not args.output:
            parser.error("--output is required")
        cfg = make_config(args)
        if args.runner == "local":
            result = prepare.run_local(cfg, log=lambda m: print(m, file=sys.stderr))
        else:
            from massivetext_tf.data import beam

            result = beam.run_beam(cfg, runner=args.runner, beam_args=beam_args)
    except (ValueError, FileNotFoundError) as e:
        print(f"prepare_data: error: {e}", file=sys.stderr)
        return 2
    report = result.get("report", {})
    print(prepare.format_report(report))
    summary = {"output": args.output, "curate_only": args.curate_only}
    if "splits" in result:
        summary["splits"] = {k: {kk: v[kk] for kk in ("documents", "tokens", "bytes")}
                             for k, v in result["splits"].items()}
        summary["files"] = sum(len(v["files"]) for v in result["splits"].values())
    else:
        summary["files"] = len(result.get("files", []))
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
