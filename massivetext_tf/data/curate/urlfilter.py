"""URL blocklists: a per-source file of blocked domains and URLs (`--source ...:blocklist=F`).

The file is UTF-8 text read through `tf.io.gfile`, one entry per line; blank lines and lines
starting with `#` are ignored. An entry is one of:

- `example.com`            the domain and every subdomain (`www.example.com`, `a.b.example.com`)
- `=example.com`           exactly that host
- `https://example.com/x`  a URL prefix (matched on the URL as read, scheme included)
- `/regex/`                a Python regular expression searched in the URL

A document whose `url` field matches is removed under `read:blocked_url:<kind>` with kind
`domain`, `host`, `url_prefix` or `regex`, so the report counts each kind like any other rule.
A bad line (a regex that does not compile, a blank host) is an error naming file and line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Blocklist:
    domains: set = field(default_factory=set)
    hosts: set = field(default_factory=set)
    prefixes: tuple = ()
    regexes: list = field(default_factory=list)

    def match(self, url: str) -> str | None:
        """The kind of the first entry that blocks `url`, or None."""
        try:
            host = (urlsplit(url.strip()).hostname or "").rstrip(".")
        except ValueError:
            host = ""
        if host:
            if host in self.hosts:
                return "host"
            parts = host.split(".")
            for i in range(len(parts)):
                if ".".join(parts[i:]) in self.domains:
                    return "domain"
        if self.prefixes and url.startswith(self.prefixes):
            return "url_prefix"
        for pattern in self.regexes:
            if pattern.search(url):
                return "regex"
        return None


def parse_blocklist(text: str, path: str = "<blocklist>") -> Blocklist:
    out, prefixes = Blocklist(), []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if len(line) >= 2 and line.startswith("/") and line.endswith("/"):
            try:
                out.regexes.append(re.compile(line[1:-1]))
            except re.error as e:
                raise ValueError(f"{path}:{lineno}: bad regular expression {line!r} ({e})") from None
        elif "://" in line:
            prefixes.append(line)
        elif line.startswith("="):
            host = line[1:].strip().lower().rstrip(".")
            if not host or " " in host:
                raise ValueError(f"{path}:{lineno}: bad host entry {line!r}")
            out.hosts.add(host)
        else:
            domain = line.lower().lstrip("*.").rstrip(".")
            if not domain or " " in domain or "/" in domain:
                raise ValueError(f"{path}:{lineno}: bad domain entry {line!r} (a URL needs "
                                 f"its scheme, a regex its slashes: /.../)")
            out.domains.add(domain)
    out.prefixes = tuple(prefixes)
    return out


def load_blocklist(path: str) -> Blocklist:
    """Read a blocklist file (any `tf.io.gfile` path); errors name the file (and line)."""
    import tensorflow as tf

    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            data = f.read()
    except tf.errors.OpError as e:
        raise ValueError(f"blocklist {path}: cannot read ({e.message})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"blocklist {path}: invalid UTF-8 at byte {e.start}") from None
    return parse_blocklist(text, path)
