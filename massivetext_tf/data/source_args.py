"""The data tools' command-line vocabulary, importable without TensorFlow.

`prepare-data`, `train-tokenizer` and `evaluate` share the `--input` / `--source` flags and
their `NAME=GLOB[:options]` syntax; the parsers also need a few defaults and choices. They live
here, apart from the TensorFlow-importing modules that do the work (`prepare`, `tokenizer`,
`records`), so that every `--help` returns without importing TensorFlow. The old names
(`prepare.add_source_args`, `tokenizer.MODEL_TYPES`, `records.validate_source_name`, ...) are
re-exported from those modules.
"""
from __future__ import annotations

import re
from typing import Iterable

# prepare-data
DEFAULT_SHARD_SIZE = "64MB"
# Documents above this size are removed as `read:too_large` before any stage (bounds memory).
DEFAULT_MAX_DOCUMENT_MB = 16.0
RUNNERS = ("local", "DirectRunner", "DataflowRunner", "FlinkRunner", "SparkRunner",
           "PortableRunner", "PrismRunner")
SKIP_STAGES = ("quality", "repetition", "dedup", "contamination", "langid")

# train-tokenizer (the tokenizer contract itself is in `massivetext_tf.data.tokenizer`)
DEFAULT_VOCAB_SIZE = 32000
MODEL_TYPES = ("unigram", "bpe")
NORMALIZATIONS = ("identity", "nfkc", "nmt_nfkc", "nfkc_cf", "nmt_nfkc_cf")

_SOURCE_RE = re.compile(r"^[A-Za-z0-9_.]+$")
_SOURCE_OPTS = {"lang": "language", "language": "language", "format": "format",
                "unit": "text_unit", "text_unit": "text_unit", "field": "text_field",
                "text_field": "text_field", "normalize": "normalize", "blocklist": "blocklist"}
# Options may hold ':' (blocklist=gs://...): they start at the first ':OPTION='.
_OPTS_RE = re.compile(r"^(?P<pattern>.*?)(?::(?P<opts>(?:%s)=.*))?$"
                      % "|".join(_SOURCE_OPTS))


def add_source_args(p) -> None:
    """Adds --input / --source / --text-field / --format / --text-unit to parser `p`."""
    p.add_argument("--input", action="append", default=[], metavar="PATH_OR_GLOB",
                   help="input files/dirs/globs; the source is named after the file or dir")
    p.add_argument("--source", action="append", default=[],
                   metavar="NAME=GLOB[:lang=zh,format=jsonl,unit=line,field=body]",
                   help="a named source; repeat the flag (same NAME adds patterns). Options "
                        "after ':' set language (a code, or auto to identify it per "
                        "document), format (auto|text|jsonl|warc|html), text unit "
                        "(file|line|paragraph), JSONL text field, normalize "
                        "(auto|none|nfkc|ftfy) and blocklist (a file of blocked domains "
                        "and URLs) for that source")
    p.add_argument("--text-field", default="text", help="JSONL field holding the text")
    p.add_argument("--format", default="auto", choices=("auto", "text", "jsonl", "warc", "html"))
    p.add_argument("--text-unit", default="file", choices=("file", "line", "paragraph"),
                   help="plain-text files: one document per file, line or paragraph")


def validate_source_name(name: str, *, flag: str = "--source") -> str:
    """Returns `name`, or raises ValueError naming `flag` when it cannot be part of a shard
    file name."""
    if not _SOURCE_RE.match(name or ""):
        raise ValueError(f"{flag}: source name {name!r} must match [A-Za-z0-9_.]+ "
                         "(it becomes part of shard file names)")
    return name


def parse_source_flag(value: str, *, flag: str = "--source", defaults: dict | None = None):
    """`NAME=GLOB[:lang=zh,format=jsonl,unit=line,field=body]` -> (name, pattern, options)."""
    name, sep, rest = value.partition("=")
    if not sep or not name or not rest:
        raise ValueError(f"{flag} {value!r}: expected NAME=GLOB")
    validate_source_name(name, flag=flag)
    m = _OPTS_RE.match(rest)
    pattern, opts = m.group("pattern"), dict(defaults or {})
    if m.group("opts"):
        for item in m.group("opts").split(","):
            k, sep2, v = item.partition("=")
            if k not in _SOURCE_OPTS or not sep2 or not v:
                raise ValueError(f"{flag} {value!r}: bad option {item!r}; options are "
                                 f"{sorted(set(_SOURCE_OPTS))}")
            opts[_SOURCE_OPTS[k]] = v
    if not pattern:
        raise ValueError(f"{flag} {value!r}: empty GLOB")
    return name, pattern, opts


def sources_from_flags(inputs: Iterable[str], sources: Iterable[str], *, text_field="text",
                       format="auto", text_unit="file", flag="--source") -> list:
    """SourceSpecs from `--input` and `--source` values, in flag order (same NAME merges)."""
    from massivetext_tf.data.curate import SourceSpec

    defaults = {"text_field": text_field, "format": format, "text_unit": text_unit}
    specs: dict = {}
    for value in inputs:
        spec = SourceSpec.from_pattern(value, **defaults)
        spec.name = re.sub(r"[^A-Za-z0-9_.-]", "_", spec.name)
        if spec.name in specs:
            specs[spec.name].patterns.extend(spec.patterns)
        else:
            specs[spec.name] = spec
    for value in sources:
        name, pattern, opts = parse_source_flag(value, flag=flag, defaults=defaults)
        if name in specs:
            if any(getattr(specs[name], k) != v for k, v in opts.items()):
                raise ValueError(f"{flag} {value!r}: options differ from an earlier "
                                 f"{flag} {name}=...")
            specs[name].patterns.append(pattern)
        else:
            specs[name] = SourceSpec(name=name, patterns=[pattern], **opts)
    return list(specs.values())


def sources_from_args(args) -> list:
    """SourceSpecs from a namespace parsed with `add_source_args`."""
    return sources_from_flags(args.input, args.source, text_field=args.text_field,
                              format=args.format, text_unit=args.text_unit)


def parse_shard_size(value: str | int) -> tuple[int | None, int | None]:
    """'5000' -> (5000 docs, None); '64MB' / '0.5MB' -> (None, bytes)."""
    text = str(value).strip()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(MB|MiB|M)", text, re.IGNORECASE)
    try:
        if m:
            nbytes = int(float(m.group(1)) * (1 << 20))
            if nbytes < 1:
                raise ValueError
            return None, nbytes
        docs = int(text)
        if docs < 1:
            raise ValueError
        return docs, None
    except ValueError:
        raise ValueError(f"--shard-size {value!r}: expected a document count (e.g. 10000) or "
                         "a size like 64MB") from None
