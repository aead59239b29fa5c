"""Merge the exported model into TF Serving's `models.config`, keeping everything else.

`models.config` is a `tensorflow.serving.ModelServerConfig` in protobuf text format::

    model_config_list {
      config {
        name: "tiny"
        base_path: "/srv/saved_models/tiny"
        model_platform: "tensorflow"
        model_version_policy { specific { versions: 1 versions: 2 } }
        version_labels { key: "stable" value: 1 }
      }
      config { ... }
    }

An export must not lose what an operator wrote there: other models' entries, their version
policies, labels and logging settings, comments and layout. So the file is edited as text, not
regenerated: a small parser of the text format finds the `config { ... }` entries of
`model_config_list` (with each entry's `name` and `base_path`), and only two edits are made,
each a splice into the original text: the exported model's `base_path` is set (or its entry
appended), and models found in the export directory without an entry are appended. Everything
else, including fields this parser does not know, stays byte for byte.

The result is then checked with the real `ModelServerConfig` protobuf message (from the
`tensorflow-serving-api` package when installed, otherwise from the same descriptors embedded
below): the merged file must parse, and every entry other than the edited ones must equal the
one it had before, field for field. A file that cannot be parsed is an error naming its path and
line; the export never overwrites it. The previous file is kept as `models.config.bak`, and
both are written atomically (temporary sibling + rename) through `tf.io.gfile`.
"""
import json

from massivetext_tf import io
from massivetext_tf.export.models_config_proto import model_server_config_class

BACKUP_SUFFIX = ".bak"


class ModelsConfigError(ValueError):
    """`models.config` cannot be parsed or merged; the message names the file and line."""


# ----------------------------------------------------------------------------------------
# Protobuf text format: tokens and fields (only the structure; values kept as text)
# ----------------------------------------------------------------------------------------

_PUNCT = "{}<>:;,[]/"
_WORD = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.+-")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v",
            "\\": "\\", "'": "'", '"': '"', "?": "?"}


class _Token:
    __slots__ = ("kind", "text", "start", "end", "line")

    def __init__(self, kind, text, start, end, line):
        self.kind, self.text, self.start, self.end, self.line = kind, text, start, end, line


def _tokenize(text, path):
    tokens, pos, line, n = [], 0, 1, len(text)
    while pos < n:
        c = text[pos]
        if c in " \t\r\f\v":
            pos += 1
        elif c == "\n":
            line, pos = line + 1, pos + 1
        elif c == "#":
            while pos < n and text[pos] != "\n":
                pos += 1
        elif c in "\"'":
            end = pos + 1
            while end < n and text[end] != c:
                if text[end] == "\n":
                    break
                end += 2 if text[end] == "\\" else 1
            if end >= n or text[end] != c:
                raise ModelsConfigError(f"{path}: line {line}: unterminated string")
            tokens.append(_Token("str", text[pos : end + 1], pos, end + 1, line))
            pos = end + 1
        elif c in _PUNCT:
            tokens.append(_Token("punct", c, pos, pos + 1, line))
            pos += 1
        elif c in _WORD:
            end = pos
            while end < n and text[end] in _WORD:
                end += 1
            tokens.append(_Token("word", text[pos:end], pos, end, line))
            pos = end
        else:
            raise ModelsConfigError(f"{path}: line {line}: unexpected character {c!r}")
    return tokens


def _unquote(token_texts):
    """The value of adjacent quoted strings (C escapes decoded; bytes read as UTF-8)."""
    out = bytearray()
    for quoted in token_texts:
        body, i = quoted[1:-1], 0
        while i < len(body):
            c = body[i]
            if c != "\\":
                out += c.encode("utf-8")
                i += 1
                continue
            nxt = body[i + 1] if i + 1 < len(body) else ""
            if nxt in "01234567" and nxt:
                j = i + 1
                while j < len(body) and j < i + 4 and body[j] in "01234567":
                    j += 1
                out.append(int(body[i + 1 : j], 8) & 0xFF)
                i = j
            elif nxt in "xX":
                j = i + 2
                while j < len(body) and j < i + 4 and body[j] in "0123456789abcdefABCDEF":
                    j += 1
                out.append(int(body[i + 2 : j], 16))
                i = j
            else:
                out += _ESCAPES.get(nxt, nxt).encode("utf-8")
                i += 2
    return out.decode("utf-8", errors="replace")


def quote(value):
    """A text-format string literal (double quotes, JSON-style escapes, UTF-8 kept)."""
    return json.dumps(value, ensure_ascii=False)


class _Field:
    """One `name: value` / `name { ... }` of a message: character spans into the text, the
    nested fields of a message value, the raw tokens of a scalar value."""

    def __init__(self, name, start, line):
        self.name, self.start, self.line = name, start, line
        self.end = start
        self.value_start = self.value_end = start
        self.children = None  # list of _Field for a message value
        self.body_end = None  # offset of a message value's closing brace
        self.scalar = None  # list of token texts for a scalar value

    def string_value(self):
        if self.scalar and all(t[:1] in "\"'" for t in self.scalar):
            return _unquote(self.scalar)
        return None


class _Parser:
    def __init__(self, text, path):
        self.text, self.path = text, path
        self.tokens = _tokenize(text, path)
        self.i = 0

    def error(self, message, token=None):
        token = token or (self.tokens[self.i] if self.i < len(self.tokens) else None)
        where = f"line {token.line}" if token else "end of file"
        return ModelsConfigError(f"{self.path}: {where}: {message}")

    def peek(self, offset=0):
        j = self.i + offset
        return self.tokens[j] if j < len(self.tokens) else None

    def take(self):
        token = self.peek()
        if token is None:
            raise self.error("unexpected end of file")
        self.i += 1
        return token

    def message(self, closing=None):
        """Fields until `closing` ('}' or '>') or the end of the text."""
        fields = []
        while True:
            token = self.peek()
            if token is None:
                if closing:
                    raise self.error(f"missing {closing!r}")
                return fields
            if token.kind == "punct" and token.text == closing:
                return fields
            fields.append(self.field())

    def field_name(self):
        token = self.take()
        if token.kind == "word":
            return token.text, token
        if token.kind == "punct" and token.text == "[":  # extension or Any type URL
            parts = []
            while True:
                part = self.take()
                if part.kind == "punct" and part.text == "]":
                    return "[" + "".join(parts) + "]", token
                if part.kind == "str" or (part.kind == "punct" and part.text not in "/"):
                    raise self.error("bad extension name", part)
                parts.append(part.text)
        raise self.error(f"expected a field name, found {token.text!r}", token)

    def field(self):
        name, first = self.field_name()
        field = _Field(name, first.start, first.line)
        token = self.peek()
        colon = token is not None and token.kind == "punct" and token.text == ":"
        if colon:
            self.i += 1
            token = self.peek()
        if token is None:
            raise self.error(f"field {name!r} has no value")
        field.value_start = token.start
        if token.kind == "punct" and token.text in "{<":
            self.message_value(field)
        elif colon and token.kind == "punct" and token.text == "[":
            self.list_value(field)
        elif colon:
            field.scalar = self.scalar_value(name)
        else:
            raise self.error(f"expected ':' or '{{' after {name!r}", token)
        field.value_end = self.tokens[self.i - 1].end
        token = self.peek()
        if token is not None and token.kind == "punct" and token.text in ";,":
            self.i += 1
        field.end = self.tokens[self.i - 1].end
        return field

    def message_value(self, field):
        opening = self.take()
        closing = "}" if opening.text == "{" else ">"
        field.children = self.message(closing)
        field.body_end = self.take().start

    def list_value(self, field):
        self.take()  # '['
        while True:
            token = self.peek()
            if token is None:
                raise self.error("missing ']'")
            if token.kind == "punct" and token.text == "]":
                self.i += 1
                return
            if token.kind == "punct" and token.text in "{<":
                self.message_value(_Field(field.name, token.start, token.line))
            else:
                self.scalar_value(field.name)
            token = self.peek()
            if token is not None and token.kind == "punct" and token.text == ",":
                self.i += 1

    def scalar_value(self, name):
        token = self.take()
        if token.kind == "str":
            texts = [token.text]
            while self.peek() is not None and self.peek().kind == "str":
                texts.append(self.take().text)
            return texts
        if token.kind == "word":
            return [token.text]
        raise self.error(f"expected a value for {name!r}, found {token.text!r}", token)


# ----------------------------------------------------------------------------------------
# models.config: entries, merge, check with the real message
# ----------------------------------------------------------------------------------------


class _Entry:
    def __init__(self, field, name, name_field, base_path_field):
        self.field, self.name = field, name
        self.name_field, self.base_path_field = name_field, base_path_field

    @property
    def base_path(self):
        return self.base_path_field.string_value() if self.base_path_field else None


class ModelsConfig:
    """A parsed `models.config`: the original `text` and its `model_config_list` entries."""

    def __init__(self, text, path="models.config"):
        self.text, self.path = text, path
        parser = _Parser(text, path)
        fields = parser.message()
        self.list_field = None
        for field in fields:
            if field.name == "custom_model_config":
                raise ModelsConfigError(
                    f"{path}: line {field.line}: the file uses custom_model_config; exports can only "
                    "merge into a model_config_list. Add the model to your config yourself."
                )
            if field.name != "model_config_list":
                raise ModelsConfigError(
                    f"{path}: line {field.line}: unknown field {field.name!r} (a ModelServerConfig "
                    "holds model_config_list)"
                )
            if self.list_field is not None:
                raise ModelsConfigError(
                    f"{path}: line {field.line}: model_config_list appears twice "
                    f"(first on line {self.list_field.line}); merge them into one"
                )
            if field.children is None:
                raise ModelsConfigError(f"{path}: line {field.line}: model_config_list must be a message {{ ... }}")
            self.list_field = field
        self.entries = []
        for field in self.list_field.children if self.list_field else []:
            if field.name != "config" or field.children is None:
                raise ModelsConfigError(
                    f"{path}: line {field.line}: expected `config {{ ... }}` entries in "
                    f"model_config_list, found {field.name!r}"
                )
            names = [f for f in field.children if f.name == "name"]
            paths = [f for f in field.children if f.name == "base_path"]
            name = names[0].string_value() if len(names) == 1 else None
            if name is None or len(paths) > 1:
                raise ModelsConfigError(
                    f"{path}: line {field.line}: a config entry needs exactly one quoted `name` "
                    "and at most one `base_path`"
                )
            for entry in self.entries:
                if entry.name == name:
                    raise ModelsConfigError(
                        f"{path}: line {field.line}: model {name!r} is listed twice (also on line "
                        f"{entry.field.line}); TF Serving rejects that, remove one"
                    )
            self.entries.append(_Entry(field, name, names[0], paths[0] if paths else None))

    def entry(self, name):
        return next((e for e in self.entries if e.name == name), None)

    def names(self):
        return [e.name for e in self.entries]


def _line_indent(text, offset):
    """The whitespace that starts the line holding `offset`."""
    start = text.rfind("\n", 0, offset) + 1
    end = start
    while end < len(text) and text[end] in " \t":
        end += 1
    return text[start:end]


def _only_space_before(text, offset):
    start = text.rfind("\n", 0, offset) + 1
    return text[start:offset].strip(" \t") == ""


def _entry_text(name, base_path, indent):
    return (
        f"{indent}config {{\n"
        f"{indent}  name: {quote(name)}\n"
        f"{indent}  base_path: {quote(base_path)}\n"
        f'{indent}  model_platform: "tensorflow"\n'
        f"{indent}}}\n"
    )


def new_models_config_text(models):
    """A fresh `model_config_list` for `models` (name -> base_path, in order)."""
    return "model_config_list {\n" + "".join(_entry_text(n, p, "  ") for n, p in models.items()) + "}\n"


def merge_models_config(text, models, *, update=(), path="models.config"):
    """`text` (an existing models.config, or None) with `models` (name -> base_path) merged in.

    A model in `update` gets its `base_path` set (its other settings kept); any other model of
    `models` is only added when the file has no entry for it (an existing entry is left as the
    operator wrote it). Every other byte of `text` is kept. Returns `(new_text, changes)`, with
    `changes` a list of human-readable lines ("added 'x'", "set base_path of 'y' (was ...)").
    Raises `ModelsConfigError` (naming `path` and the line) when `text` cannot be parsed.
    """
    if text is None or not text.strip():
        changes = [f"added {n!r}" for n in models]
        return new_models_config_text(models), changes
    config = ModelsConfig(text, path)
    edits, changes, added = [], [], {}
    for name, base_path in models.items():
        entry = config.entry(name)
        if entry is None:
            added[name] = base_path
        elif name in update and entry.base_path != base_path:
            if entry.base_path_field is not None:
                field = entry.base_path_field
                edits.append((field.value_start, field.value_end, quote(base_path)))
            else:
                indent = _line_indent(text, entry.name_field.start)
                edits.append((entry.name_field.end, entry.name_field.end, f"\n{indent}base_path: {quote(base_path)}"))
            changes.append(f"set base_path of {name!r} to {base_path} (was {entry.base_path})")
    if added:
        changes += [f"added {n!r}" for n in added]
        if config.list_field is None:
            block = new_models_config_text(added)
            edits.append((len(text), len(text), ("" if text.endswith("\n") else "\n") + block))
        else:
            close = config.list_field.body_end
            closing_indent = _line_indent(text, close)
            first = config.entries[0].field.start if config.entries else None
            if first is not None and _only_space_before(text, first):
                indent = _line_indent(text, first)  # as the existing entries
            else:
                indent = closing_indent + "  "
            block = "".join(_entry_text(n, p, indent) for n, p in added.items())
            if _only_space_before(text, close):
                at = text.rfind("\n", 0, close) + 1
                edits.append((at, at, block))
            else:
                edits.append((close, close, "\n" + block + closing_indent))
    new_text = text
    for start, end, replacement in sorted(edits, reverse=True):
        new_text = new_text[:start] + replacement + new_text[end:]
    return new_text, changes


# ----------------------------------------------------------------------------------------
# The real ModelServerConfig message
# ----------------------------------------------------------------------------------------


def parse_with_proto(text, path="models.config"):
    """`text` parsed into a ModelServerConfig message; `ModelsConfigError` naming `path`."""
    from google.protobuf import text_format

    try:
        return text_format.Parse(text, model_server_config_class()())
    except text_format.ParseError as e:
        raise ModelsConfigError(f"{path}: not a valid ModelServerConfig: {e}") from None


def check_merge(old_text, new_text, models, update, path="models.config"):
    """Check a merge with the real message: `new_text` parses, entries not in `models` are
    unchanged and in order, updated entries differ only in `base_path`, added entries hold
    name, base_path and model_platform. Returns False (nothing checked) when `old_text` itself
    is not a valid ModelServerConfig for this protobuf definition; raises ModelsConfigError
    when the merge would change anything else."""
    try:
        old = parse_with_proto(old_text or "", path)
    except ModelsConfigError:
        return False
    new = parse_with_proto(new_text, path + " (merged)")
    old_entries = {c.name: c for c in old.model_config_list.config}
    new_names = [c.name for c in new.model_config_list.config]
    if new_names[: len(old_entries)] != [c.name for c in old.model_config_list.config]:
        raise ModelsConfigError(f"{path}: merging would reorder or drop entries; not written")
    for entry in new.model_config_list.config:
        expected = type(entry)()
        if entry.name in old_entries:
            expected.CopyFrom(old_entries[entry.name])
            if entry.name in update:
                expected.base_path = models[entry.name]
        else:
            expected.name, expected.base_path, expected.model_platform = entry.name, models.get(entry.name, ""), "tensorflow"
        if entry != expected:
            raise ModelsConfigError(f"{path}: merging would change the entry of {entry.name!r}; not written")
    return True


def read_text(path):
    """The file's text, or None when it does not exist."""
    gfile = io._gfile()
    if not gfile.exists(path):
        return None
    with gfile.GFile(path, "r") as f:
        return f.read()


def update_models_config(path, models, *, update=()):
    """Merge `models` (name -> base_path) into the models.config at `path` (see
    `merge_models_config`), checked with the real message, and write it atomically, the
    previous file first copied to `path + ".bak"`. Nothing is written when nothing changes.

    Returns `{"path", "backup" (None when no previous file was replaced), "changes",
    "checked" (whether the real-message check ran)}`.
    """
    old = read_text(path)
    new, changes = merge_models_config(old, models, update=update, path=path)
    checked = check_merge(old, new, models, update, path)
    backup = None
    if new != old:
        if old is not None:
            backup = path + BACKUP_SUFFIX
            io.atomic_write(backup, old)
        io.atomic_write(path, new)
    return {"path": path, "backup": backup, "changes": changes, "checked": checked}
