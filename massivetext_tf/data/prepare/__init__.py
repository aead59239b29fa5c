"""prepare_data: raw text -> curated -> tokenized TFRecord shards + manifest (library logic).

The pipeline is written as small deterministic steps that the local runner (`local.py`) and
the Apache Beam runner (`massivetext_tf.data.beam`) both call, so the two produce the same
shards, manifest and report:

1. `plan_files` (plan.py): every input file gets an order key `(source_index, file_index)`;
   train sources come first, then `--eval-source`s.
2. `FileProcessor.process` (steps.py): read one file, give each document its split (eval
   sources -> eval; `eval_fraction` -> a hash of the text, so exact duplicates share a split),
   run the per-document stages (quality, repetition, contamination for train) and compute the
   dedup keys (exact digest, MinHash signature). Counts go to a per-split `CurationReport`.
3. `Deduper` (steps.py; global, in key order): exact then MinHash near-duplicate removal per
   split, the first-seen document kept, exactly as `Curator`'s dedup stage.
4. `ShardAssigner` (steps.py; global, in key order): consecutive kept documents of one
   (split, source) fill `{split}-{source}-{index:05d}` shards of at most `--shard-size`
   documents or MB.
5. `write_tfrecord_shard` (write.py): tokenize (`Encoder`, encoder.py) and write one shard
   (temp name + rename), plus a done marker under `OUTPUT/.progress/` holding its stats and a
   fingerprint of its documents; a rerun skips every shard whose marker and file match, so an
   interrupted run resumes.
6. `finalize` (write.py): manifest.json, report.json and tokenizer.model.

The output directory belongs to prepare_data (output_dir.py): `claim_output` (after every input
has been checked) refuses a non-empty directory without prepare_data's marker
`.prepare_data.json`, and the marker records every file a run wrote, so stale-file cleanup only
ever removes files recorded there (see docs/data.md, "Which files prepare_data touches").

The flags' vocabulary (`add_source_args`, `parse_source_flag`, `parse_shard_size`, defaults)
is in `massivetext_tf.data.source_args`, which imports without TensorFlow; every name is
re-exported here, where it used to live.
"""
from massivetext_tf.data.prepare.encoder import (ENCODE_BATCH_CHARS, ENCODE_PIECE_CHARS,
                                                 Encoder, split_for_encoding)
from massivetext_tf.data.prepare.local import run_local, validate_inputs
from massivetext_tf.data.prepare.output_dir import (OutputDirError, check_output, check_state,
                                                    claim_output)
from massivetext_tf.data.prepare.plan import (CURATED_DIR, OWNER_MARKER, PROGRESS_DIR, SPLITS,
                                              FileTask, PrepareConfig, _text_field, all_specs,
                                              doc_split, plan_files)
from massivetext_tf.data.prepare.steps import (Deduper, FileProcessor, Rejected,
                                               ShardAssigner, Survivor, dedup_rejected,
                                               shard_name)
from massivetext_tf.data.prepare.write import (doc_fingerprint, finalize, format_report,
                                               merge_reports, rejected_path, write_jsonl_shard,
                                               write_rejected, write_tfrecord_shard)
from massivetext_tf.data.source_args import (DEFAULT_MAX_DOCUMENT_MB, DEFAULT_SHARD_SIZE,
                                             add_source_args, parse_shard_size,
                                             parse_source_flag, sources_from_args,
                                             sources_from_flags)

__all__ = [
    "CURATED_DIR", "DEFAULT_MAX_DOCUMENT_MB", "DEFAULT_SHARD_SIZE", "ENCODE_BATCH_CHARS",
    "ENCODE_PIECE_CHARS", "OWNER_MARKER", "PROGRESS_DIR", "SPLITS", "Deduper", "Encoder",
    "FileProcessor", "FileTask", "OutputDirError", "PrepareConfig", "Rejected", "ShardAssigner",
    "Survivor", "_text_field", "add_source_args", "all_specs", "check_output", "check_state",
    "claim_output", "dedup_rejected", "doc_fingerprint", "doc_split", "finalize",
    "format_report", "merge_reports", "parse_shard_size", "parse_source_flag", "plan_files",
    "rejected_path", "run_local", "shard_name", "sources_from_args", "sources_from_flags",
    "split_for_encoding", "validate_inputs", "write_jsonl_shard", "write_rejected",
    "write_tfrecord_shard",
]
