"""Build web test sets from Debian documentation packages: WARC files of parallel English and
Chinese pages, and parallel JSONL of manual pages.

Sources (Debian packages; nothing is downloaded by this script, nothing large is committed):
- `debian-edu-doc-en` / `debian-edu-doc-zh-cn`: the Debian Edu manual as one HTML file per
  language; each `<h2>` section becomes one page (one WARC response record), so the two WARC
  files hold the same documents in English and in Chinese.
- `manpages-zh` (zh_CN) beside the English pages of the same names (`manpages` and the
  packages installed on the machine): rendered with `man -l` to plain text, one JSON line per
  page present in both languages.

Get the packages without installing them (`apt-get download manpages-zh debian-edu-doc-en
debian-edu-doc-zh-cn` then `dpkg-deb -x PKG.deb ROOT`), or install them and use `--root /`.

    massivetext make-web-testdata --root /tmp/debdocs --output /tmp/webdata [--max-man 200]

Writes OUTPUT/edu-en.warc.gz, OUTPUT/edu-zh.warc.gz (gzip member per record, as Common Crawl),
OUTPUT/man-en.jsonl, OUTPUT/man-zh.jsonl, the same pages as OUTPUT/man-en.warc.gz and
OUTPUT/man-zh.warc.gz (a paragraph per block of lines) and prints a JSON summary.
"""

from __future__ import annotations

import argparse
import glob
import gzip
import json
import os
import re
import subprocess
import sys
import uuid


EDU = "usr/share/doc/debian-edu-doc-{lang}/debian-edu-bookworm-manual.html"
_H2 = re.compile(r'<h2 class="title"')


def warc_record(url: str, html: bytes, *, date="2024-01-31T00:00:00Z",
                content_type="text/html; charset=utf-8", status="200 OK") -> bytes:
    """One gzip member holding one WARC/1.0 response record (HTTP headers + payload)."""
    http = (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(html)}\r\n\r\n").encode("ascii") + html
    rid = uuid.uuid5(uuid.NAMESPACE_URL, url)
    head = (f"WARC/1.0\r\nWARC-Type: response\r\nWARC-Target-URI: {url}\r\n"
            f"WARC-Date: {date}\r\nWARC-Record-ID: <urn:uuid:{rid}>\r\n"
            f"Content-Type: application/http; msgtype=response\r\n"
            f"Content-Length: {len(http)}\r\n\r\n").encode("ascii")
    return gzip.compress(head + http + b"\r\n\r\n", mtime=0)


def edu_sections(root: str, lang: str) -> list[str]:
    """The manual's `<h2>` sections, each wrapped as a page of its own."""
    path = os.path.join(root, EDU.format(lang=lang))
    with open(path, encoding="utf-8") as f:
        html = f.read()
    starts = [m.start() for m in _H2.finditer(html)]
    pages = []
    for a, b in zip(starts, starts[1:] + [len(html)]):
        pages.append('<html><head><meta charset="utf-8"></head><body><div class="section">'
                     f'{html[a:b]}</div></body></html>')
    return pages


def render_man(path: str) -> str | None:
    env = dict(os.environ, MANWIDTH="100", LANG="C.UTF-8", LC_ALL="C.UTF-8")
    try:
        out = subprocess.run(["man", "-l", "-E", "UTF-8", path], capture_output=True,
                             env=env, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = re.sub(r".\x08", "", out.stdout.decode("utf-8", "replace"))
    return text.strip() or None


def man_html(text: str) -> str:
    """A rendered man page as HTML: a paragraph per block of lines."""
    import html

    blocks = [b for b in re.split(r"\n\s*\n", text) if b.strip()]
    body = "".join(f"<p>{html.escape(b.strip())}</p>" for b in blocks)
    return f'<html><head><meta charset="utf-8"></head><body>{body}</body></html>'


def man_pairs(root: str, max_pages: int) -> list[tuple[str, str, str]]:
    out = []
    for zh in sorted(glob.glob(os.path.join(root, "usr/share/man/zh_CN/man[1-8]/*.gz"))):
        section, name = zh.split("/")[-2], os.path.basename(zh)
        en = os.path.join("/usr/share/man", section, name)
        if not os.path.exists(en):
            continue
        zh_text, en_text = render_man(zh), render_man(en)
        if zh_text and en_text:
            out.append((f"{section}/{name[:-3]}", en_text, zh_text))
        if len(out) >= max_pages:
            break
    return out


def build_parser():
    """The flags of `massivetext make-web-testdata` (no TensorFlow import)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default="/", help="where the packages' files are (extracted debs)")
    p.add_argument("--output", required=True)
    p.add_argument("--max-man", type=int, default=200, help="at most this many man page pairs")
    return p


def main(argv=None) -> int:
    """Runs `massivetext make-web-testdata`; returns the exit status."""
    args = build_parser().parse_args(argv)
    os.makedirs(args.output, exist_ok=True)
    summary = {}
    for lang, code in (("en", "en"), ("zh-cn", "zh")):
        try:
            pages = edu_sections(args.root, lang)
        except OSError as e:
            print(f"make_web_testdata: error: {e}", file=sys.stderr)
            return 2
        path = os.path.join(args.output, f"edu-{code}.warc.gz")
        with open(path, "wb") as f:
            for i, page in enumerate(pages):
                url = f"https://www.debian.org/edu/manual/bookworm/{code}/section-{i:02d}.html"
                f.write(warc_record(url, page.encode("utf-8")))
        summary[f"edu-{code}.warc.gz"] = len(pages)
    pairs = man_pairs(args.root, args.max_man)
    for code, column in (("en", 1), ("zh", 2)):
        with open(os.path.join(args.output, f"man-{code}.jsonl"), "w", encoding="utf-8") as f:
            for pair in pairs:
                f.write(json.dumps({"id": pair[0], "text": pair[column]}, ensure_ascii=False)
                        + "\n")
        summary[f"man-{code}.jsonl"] = len(pairs)
        with open(os.path.join(args.output, f"man-{code}.warc.gz"), "wb") as f:
            for pair in pairs:
                url = f"https://manpages.debian.org/bookworm/{code}/{pair[0]}.html"
                f.write(warc_record(url, man_html(pair[column]).encode("utf-8")))
        summary[f"man-{code}.warc.gz"] = len(pairs)
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
