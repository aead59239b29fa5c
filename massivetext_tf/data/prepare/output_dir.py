"""Which directory prepare_data may write, and which files in it are its own.

The output directory belongs to prepare_data: `claim_output` (after every input has been
checked) refuses a non-empty directory without prepare_data's marker `.prepare_data.json`,
and the marker records every file a run wrote, so stale-file cleanup (`_record_outputs`) only
ever removes files recorded there (see docs/data.md, "Which files prepare_data touches").
"""
from __future__ import annotations

import logging
import os

import tensorflow as tf

from massivetext_tf import io
from massivetext_tf.data import records
from massivetext_tf.data.prepare.plan import (_OUTPUT_LAYOUT, CURATED_DIR, OWNER_MARKER,
                                              PROGRESS_DIR, PrepareConfig, _progress_path)

logger = logging.getLogger("massivetext_tf.data.prepare")


class OutputDirError(ValueError):
    """The output (or --keep-rejected) directory is not prepare_data's to write; names it."""


def _marker_path(directory: str) -> str:
    return os.path.join(directory, OWNER_MARKER)


def _read_marker(directory: str) -> dict | None:
    path = _marker_path(directory)
    if not tf.io.gfile.exists(path):
        return None
    try:
        marker = io.read_json(path)
    except io.JSONFileError as e:
        raise OutputDirError(f"{e}; it is prepare_data's marker: restore it or use a new "
                             "--output directory") from None
    if not isinstance(marker, dict) or marker.get("tool") != "prepare_data":
        raise OutputDirError(f"{path}: not a prepare_data marker; use a new --output directory")
    return marker


def _write_marker(directory: str, fingerprint: str | None, files) -> None:
    io.write_json(_marker_path(directory), {
        "tool": "prepare_data", "format": 1, "fingerprint": fingerprint,
        "files": sorted(set(files)),
        "note": "files massivetext prepare-data wrote here; it deletes or overwrites only these"})


def _progress_recorded(output: str, skip: set = frozenset()) -> set:
    """Shard files named by the per-shard done markers under `.progress/` (markers named in
    `skip` are not read: one read per marker adds up on Cloud Storage)."""
    progress = os.path.join(output, PROGRESS_DIR)
    out = set()
    if not tf.io.gfile.isdir(progress):
        return out
    for name in tf.io.gfile.listdir(progress):
        if (name.endswith(".json") and name != "config.json" and not io.is_tmp_name(name)
                and name not in skip):
            try:
                entry = records.read_json(os.path.join(progress, name))
            except records.DataError:
                continue
            if isinstance(entry, dict) and isinstance(entry.get("file"), str):
                out.add(entry["file"])
    return out


def _legacy_files(output: str) -> set | None:
    """An output of prepare_data from before the marker existed: only prepare_data's own
    names at the top level and its `.progress/config.json`. Returns the files that can be
    proven to be its own (shards named by done markers, curated files in the index, the
    manifest, report and tokenizer), or None when the directory is something else."""
    names = {n.rstrip("/") for n in tf.io.gfile.listdir(output)}
    if not names <= _OUTPUT_LAYOUT or not tf.io.gfile.exists(
            os.path.join(output, PROGRESS_DIR, "config.json")):
        return None
    files = _progress_recorded(output)
    files |= {n for n in (records.MANIFEST, records.REPORT, records.TOKENIZER_FILE) if n in names}
    index = os.path.join(output, CURATED_DIR, "index.json")
    if tf.io.gfile.exists(index):
        try:
            files |= {e["file"] for e in records.read_json(index).get("files", [])}
            files.add(f"{CURATED_DIR}/index.json")
        except (records.DataError, KeyError, TypeError, AttributeError):
            pass
    return files


def claim_output(directory: str, fingerprint: str | None, *, flag: str = "--output") -> None:
    """Makes `directory` prepare_data's, or refuses it (`OutputDirError` naming it); see
    `check_output`. Leftover temporaries of a killed run (`*.tmp-*`) are removed."""
    files, old_fp = check_output(directory, fingerprint, flag=flag)
    io.makedirs(directory)
    for sub in ("", PROGRESS_DIR, records.SHARD_DIR, CURATED_DIR):
        io.remove_tmp_leftovers(os.path.join(directory, sub))
    _write_marker(directory, fingerprint if fingerprint is not None else old_fp, files)


def check_output(directory: str, fingerprint: str | None, *, flag: str = "--output"
                 ) -> tuple[set, str | None]:
    """Whether prepare_data may write `directory`; returns (files recorded there, the
    recorded fingerprint) or raises `OutputDirError` naming the directory. Writes nothing.

    Accepted: a missing or empty directory; one with prepare_data's marker (a rerun or a
    resume: refused when `fingerprint` differs and the directory holds more than the marker);
    an older prepare_data output without the marker (only prepare_data's names and its
    `.progress/config.json`), which is adopted. Anything else (a non-empty directory
    prepare_data did not create) is refused, so no file of the user's is ever overwritten or
    deleted.
    """
    gfile = tf.io.gfile
    if gfile.exists(directory) and not gfile.isdir(directory):
        raise OutputDirError(f"{flag} {directory}: is a file, not a directory")
    marker = _read_marker(directory) if gfile.isdir(directory) else None
    if marker is not None:
        files = set(marker.get("files", []))
        old_fp = marker.get("fingerprint")
    elif not gfile.exists(directory) or not gfile.listdir(directory):
        files, old_fp = set(), None
    else:
        files = _legacy_files(directory) if gfile.isdir(directory) else None
        if files is None:
            raise OutputDirError(
                f"{flag} {directory}: directory is not empty and was not written by "
                f"prepare_data (no {OWNER_MARKER}); refusing to overwrite or delete its files. "
                "Give a new or empty directory")
        config = os.path.join(directory, PROGRESS_DIR, "config.json")
        try:
            old_fp = records.read_json(config).get("fingerprint")
        except (records.DataError, AttributeError):
            old_fp = None
    if fingerprint is not None and old_fp is not None and old_fp != fingerprint:
        contents = {n.rstrip("/") for n in gfile.listdir(directory)} - {OWNER_MARKER}
        if contents or files:
            raise OutputDirError(
                f"{flag} {directory} was prepared with different inputs or options; use a new "
                "--output directory (or delete it)")
    return files, old_fp


def _record_outputs(output: str, written: list[str], scope: str) -> None:
    """Removes files under `scope/` that earlier runs recorded and this run did not write
    (with their done markers), warns about files there prepare_data never wrote (left alone),
    and records `written` in the marker."""
    marker = _read_marker(output) or {}
    written = set(written)
    mine = {os.path.splitext(os.path.basename(f))[0] + ".json" for f in written
            if f.startswith(records.SHARD_DIR + "/")}
    recorded = set(marker.get("files", [])) | _progress_recorded(output, skip=mine)
    prefix = scope + "/"
    stale = sorted(f for f in recorded if f.startswith(prefix) and f not in written)
    for rel in stale:
        path = os.path.join(output, rel)
        if tf.io.gfile.exists(path):
            tf.io.gfile.remove(path)
        name = os.path.splitext(os.path.basename(rel))[0]
        if scope == records.SHARD_DIR and tf.io.gfile.exists(_progress_path(output, name)):
            tf.io.gfile.remove(_progress_path(output, name))
    scope_dir = os.path.join(output, scope)
    if tf.io.gfile.isdir(scope_dir):
        foreign = sorted(f"{prefix}{n}" for n in tf.io.gfile.listdir(scope_dir)
                         if f"{prefix}{n}" not in recorded | written and not n.endswith("/"))
        if foreign:
            logger.warning("%s: left %d file(s) prepare_data did not write: %s", scope_dir,
                           len(foreign), ", ".join(foreign[:5]))
    keep = (set(marker.get("files", [])) - set(stale)) | written
    _write_marker(output, marker.get("fingerprint"), keep)


def check_state(cfg: PrepareConfig) -> None:
    """Claims `cfg.output` (refusing a directory prepared with different inputs or options,
    or one prepare_data did not write) and `--keep-rejected`."""
    keep = cfg.keep_rejected and (os.path.normpath(cfg.keep_rejected) !=
                                  os.path.normpath(cfg.output))
    if keep and not _inside(cfg.keep_rejected, cfg.output):
        check_output(cfg.keep_rejected, None, flag="--keep-rejected")  # refuse before writing
    claim_output(cfg.output, cfg.fingerprint())
    if keep:
        claim_output(cfg.keep_rejected, None, flag="--keep-rejected")


def _inside(path: str, directory: str) -> bool:
    path, directory = os.path.normpath(path), os.path.normpath(directory)
    return path.startswith(directory.rstrip("/") + "/")
