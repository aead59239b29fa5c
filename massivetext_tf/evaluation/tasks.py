"""Task files: a small YAML file per task plus local JSONL data (no downloads).

```yaml
name: capitals                 # default: the file name without .yaml
kind: multiple_choice          # see KINDS
data: capitals.jsonl           # relative to this file; local or gs://
prompt: "Q: What is the capital of {country}?\\nA:"
choices: choices               # the JSONL field holding the list of choices
answer: answer                 # the field holding the gold: an index or one of the choices
num_fewshot: 2                 # k-shot; examples drawn from fewshot_data (default: data,
fewshot_data: train.jsonl      #   never the item itself), seeded per item
seed: 1234
metrics: [accuracy, accuracy_per_byte]   # default: every metric of the kind
```

Every problem is a `TaskError` (a `ValueError`) with one line naming the file, the line and
the field: `capitals.yaml:3: field 'kind': unknown kind 'mc'; known kinds: ...` or
`capitals.jsonl:7: field 'answer': 5 is not an index into 'choices' (4 choices)`.
"""
from __future__ import annotations

import dataclasses
import json
import os
import random
import string

KINDS = {
    # kind: (metrics, default fields)
    "multiple_choice": (["accuracy", "accuracy_per_token", "accuracy_per_byte", "accuracy_unconditional"],
                        {"prompt": "{question}", "choices": "choices", "answer": "answer"}),
    "last_word": (["accuracy", "perplexity"], {"prompt": "{text}"}),
    "cloze": (["accuracy"], {"text": "text", "blank": "_", "choices": "choices", "answer": "answer"}),
    "generative_qa": (["exact_match", "f1"],
                      {"prompt": "Question: {question}\nAnswer:", "answers": "answers",
                       "generation": {"max_new_tokens": 32, "until": ["\n"]}}),
    "classification": (["accuracy", "macro_precision", "macro_recall", "macro_f1", "per_class"],
                       {"prompt": "{text}", "label": "label"}),
    "translation": (["bleu"], {"prompt": "{source}", "reference": "reference",
                               "generation": {"max_new_tokens": 64, "until": ["\n"]}}),
    "summarization": (["rouge1", "rouge2", "rougeL"],
                      {"prompt": "{document}\nSummary:", "reference": "reference",
                       "generation": {"max_new_tokens": 64, "until": ["\n\n"]}}),
}
COMMON_FIELDS = {"name", "kind", "data", "fewshot_data", "num_fewshot", "seed", "prompt",
                 "target_delimiter", "fewshot_separator", "description", "metrics", "limit"}
KIND_FIELDS = {
    "multiple_choice": {"choices", "answer"},
    "last_word": set(),
    "cloze": {"text", "blank", "choices", "answer"},
    "generative_qa": {"answers", "generation"},
    "classification": {"label", "labels", "verbalizers"},
    "translation": {"reference", "generation"},
    "summarization": {"reference", "generation"},
}
DEFAULT_SEED = 1234


class TaskError(ValueError):
    """A malformed task file or data line (one line: file, line, field)."""


def _where(path, line):
    return f"{path}:{line}" if line else str(path)


def _fail(path, line, field, message):
    raise TaskError(f"{_where(path, line)}: field {field!r}: {message}")


@dataclasses.dataclass
class Item:
    index: int
    line: int
    record: dict
    path: str = ""          # the data file the item comes from (for error messages)


@dataclasses.dataclass
class Task:
    name: str
    kind: str
    path: str                    # the YAML file
    data_path: str
    config: dict                 # every field, defaults filled in
    items: list
    fewshot_items: list
    fewshot_path: str

    @property
    def metrics(self):
        return self.config["metrics"]

    # ------------------------------------------------------------------ prompts

    def render(self, item: Item, field: str = "prompt", path=None) -> str:
        return render_template(self.config[field], item.record, path or self._path_of(item), item.line, field)

    def _path_of(self, item):
        return item.path or self.data_path

    def gold_index(self, item: Item) -> int:
        """Multiple choice / cloze: index of the gold choice (checked at load time)."""
        return _gold_index(self, item, self._path_of(item))

    def choices(self, item: Item) -> list:
        return item.record[self.config["choices"]]

    def label_texts(self) -> list:
        verbalizers = self.config.get("verbalizers") or {}
        return [str(verbalizers.get(label, label)) for label in self.config["labels"]]

    def gold_label(self, item: Item) -> str:
        value = item.record[self.config["label"]]
        labels = self.config["labels"]
        return labels[value] if isinstance(value, int) and not isinstance(value, bool) else value

    def references(self, item: Item) -> list:
        key = self.config["answers"] if self.kind == "generative_qa" else self.config["reference"]
        value = item.record[key]
        return [value] if isinstance(value, str) else list(value)

    def cloze_parts(self, item: Item, choice: str):
        """(context, continuation) of Winogrande-style partial scoring: the text up to the
        blank with `choice` filled in, then the rest of the text; blank at the end: the
        choice itself is the continuation."""
        text = item.record[self.config["text"]]
        prefix, _, suffix = text.partition(self.config["blank"])
        if suffix.strip():
            return prefix + choice, suffix
        return prefix, choice + suffix

    def example_text(self, item: Item) -> str:
        """A solved example, as shown in a few-shot prompt."""
        kind, delim = self.kind, self.config["target_delimiter"]
        if kind == "last_word":
            return self.render(item)
        if kind == "cloze":
            text = item.record[self.config["text"]]
            return text.replace(self.config["blank"], self.choices(item)[self.gold_index(item)], 1)
        prompt = self.render(item)
        if kind == "multiple_choice":
            target = str(self.choices(item)[self.gold_index(item)])
        elif kind == "classification":
            target = self.label_texts()[self.config["labels"].index(self.gold_label(item))]
        else:
            target = self.references(item)[0]
        return prompt + delim + target

    def fewshot_prefix(self, item: Item) -> str:
        """Description + k solved examples + separator, sampled with a per-item seeded RNG
        (`random.Random(f"{seed}:{index}")`), never the item itself."""
        k = self.config["num_fewshot"]
        parts = [self.config["description"]] if self.config.get("description") else []
        if k:
            pool = [e for e in self.fewshot_items if not (self.fewshot_path == self.data_path and e.index == item.index)]
            rng = random.Random(f"{self.config['seed']}:{item.index}")
            parts += [self.example_text(e) for e in rng.sample(pool, k)]
        return "".join(p + self.config["fewshot_separator"] for p in parts)


class _StrictFormatter(string.Formatter):
    def get_value(self, key, args, kwargs):
        if isinstance(key, int):
            raise KeyError(key)
        return kwargs[key]


def render_template(template: str, record: dict, path, line, field="prompt") -> str:
    """`template` with `{name}` replaced by `record[name]`; a missing name is a TaskError
    naming the data file, line and field."""
    try:
        return _StrictFormatter().format(template, **record)
    except KeyError as e:
        _fail(path, line, e.args[0], f"missing (used by the task's {field!r} template; "
              f"the line has {sorted(record)[:12]})")
    except (ValueError, IndexError, AttributeError) as e:
        _fail(path, line, field, f"cannot render the template ({e})")


# ---------------------------------------------------------------------------------- loading

def _gfile():
    import tensorflow as tf

    return tf.io.gfile


def _key_lines(text: str) -> dict:
    """Line (1-based) of each top-level key of a YAML mapping."""
    import yaml

    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return {}
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {k.value: k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)}


def _resolve(base_dir, path):
    if "://" in path or os.path.isabs(path) or not base_dir:
        return path
    return f"{base_dir.rstrip('/')}/{path}"


def read_jsonl(path: str) -> list:
    """Items of a JSONL file; each non-blank line must be a JSON object (TaskError otherwise)."""
    gfile = _gfile()
    if not gfile.exists(path):
        raise TaskError(f"{path}: file does not exist")
    items = []
    with gfile.GFile(path, "rb") as f:
        for line_no, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                raise TaskError(f"{path}:{line_no}: invalid UTF-8 at byte {e.start}") from None
            except json.JSONDecodeError as e:
                raise TaskError(f"{path}:{line_no}: bad JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(record, dict):
                raise TaskError(f"{path}:{line_no}: expected a JSON object, got {type(record).__name__}")
            items.append(Item(len(items), line_no, record, path))
    if not items:
        raise TaskError(f"{path}: no items (empty file)")
    return items


def load_task(path: str, *, num_fewshot=None, limit=None, seed=None) -> Task:
    """Parse and check a task YAML file and its data (every line checked up front)."""
    import yaml

    gfile = _gfile()
    path = str(path)
    if not gfile.exists(path):
        raise TaskError(f"{path}: task file does not exist")
    with gfile.GFile(path, "r") as f:
        text = f.read()
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise TaskError(f"{_where(path, line)}: invalid YAML ({problem})") from None
    if not isinstance(raw, dict):
        raise TaskError(f"{path}: a task file must be a YAML mapping (name, kind, data, ...)")
    lines = _key_lines(text)

    def fail(field, message):
        _fail(path, lines.get(field), field, message)

    kind = raw.get("kind")
    if kind is None:
        fail("kind", f"missing; known kinds: {', '.join(KINDS)}")
    if kind not in KINDS:
        fail("kind", f"unknown kind {kind!r}; known kinds: {', '.join(KINDS)}")
    known_metrics, defaults = KINDS[kind]
    allowed = COMMON_FIELDS | KIND_FIELDS[kind]
    for key in raw:
        if key not in allowed:
            fail(key, f"unknown field for kind {kind}; known fields: {', '.join(sorted(allowed))}")
    config = {"target_delimiter": " ", "fewshot_separator": "\n\n", "num_fewshot": 0,
              "seed": DEFAULT_SEED, "description": "", "metrics": list(known_metrics), "limit": None,
              **defaults, **raw}
    if "generation" in defaults:
        gen = raw.get("generation", {})
        if not isinstance(gen, dict) or set(gen) - {"max_new_tokens", "until"}:
            fail("generation", "expected a mapping with max_new_tokens and until")
        config["generation"] = {**defaults["generation"], **gen}
        if not isinstance(config["generation"]["max_new_tokens"], int) or config["generation"]["max_new_tokens"] < 1:
            fail("generation", "max_new_tokens must be a positive integer")
        until = config["generation"]["until"]
        if isinstance(until, str):
            config["generation"]["until"] = [until]
        elif not isinstance(until, list) or not all(isinstance(u, str) for u in until):
            fail("generation", "until must be a string or a list of strings")
    if num_fewshot is not None:
        config["num_fewshot"] = num_fewshot
    if limit is not None:
        config["limit"] = limit
    if seed is not None:
        config["seed"] = seed
    for key in ("num_fewshot", "seed"):
        if not isinstance(config[key], int) or isinstance(config[key], bool) or config[key] < 0:
            fail(key, f"must be a non-negative integer, got {config[key]!r}")
    if config["limit"] is not None and (not isinstance(config["limit"], int) or config["limit"] < 1):
        fail("limit", f"must be a positive integer, got {config['limit']!r}")
    for key in ("prompt", "target_delimiter", "fewshot_separator", "description", "data"):
        if key in config and not isinstance(config[key], str):
            fail(key, f"must be a string, got {type(config[key]).__name__}")
    if not config.get("data"):
        fail("data", "missing: the JSONL file of the items (relative to the task file)")
    metrics = config["metrics"]
    if isinstance(metrics, str):
        metrics = [metrics]
    if not isinstance(metrics, list) or not metrics:
        fail("metrics", f"expected a list; known metrics for {kind}: {', '.join(known_metrics)}")
    for m in metrics:
        if m not in known_metrics:
            fail("metrics", f"unknown metric {m!r} for kind {kind}; known metrics: {', '.join(known_metrics)}")
    config["metrics"] = metrics
    if "prompt" in config:
        try:
            list(string.Formatter().parse(config["prompt"]))
        except ValueError as e:
            fail("prompt", f"bad template ({e}); use {{field}} for a data field and {{{{ }}}} for braces")
    if kind == "classification":
        labels = config.get("labels")
        if not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(x, str) for x in labels):
            fail("labels", "classification needs `labels`: a list of at least two class names")
        if len(set(labels)) != len(labels):
            fail("labels", "class names must be distinct")
        verbalizers = config.get("verbalizers") or {}
        if not isinstance(verbalizers, dict) or set(verbalizers) - set(labels):
            fail("verbalizers", f"expected a mapping from class names {labels} to the text scored for each")
    if kind == "cloze" and (not isinstance(config["blank"], str) or not config["blank"]):
        fail("blank", "must be a non-empty string (the blank marker in the text)")

    base = path.rsplit("/", 1)[0] if "/" in path else ""
    data_path = _resolve(base, config["data"])
    all_items = read_jsonl(data_path)
    items = all_items[: config["limit"]] if config["limit"] else all_items
    fewshot_path = _resolve(base, config["fewshot_data"]) if config.get("fewshot_data") else data_path
    # The few-shot pool does not depend on --limit, so a limited run sees the same prompts.
    fewshot_items = read_jsonl(fewshot_path) if fewshot_path != data_path else all_items
    name = config.get("name") or os.path.basename(path).rsplit(".", 1)[0]
    task = Task(name, kind, path, data_path, config, items, fewshot_items, fewshot_path)
    for item in all_items:
        _check_item(task, item, data_path)
    if config["num_fewshot"]:
        for item in fewshot_items if fewshot_items is not all_items else []:
            _check_item(task, item, fewshot_path)
        pool = len(fewshot_items) - (1 if fewshot_path == data_path else 0)
        if pool < config["num_fewshot"]:
            fail("num_fewshot", f"{config['num_fewshot']} examples asked for but {fewshot_path} "
                                f"has only {pool} to draw from")
    return task


def _gold_index(task, item, path):
    key = task.config["answer"]
    choices = item.record[task.config["choices"]]
    value = item.record.get(key)
    if isinstance(value, bool) or value is None:
        _fail(path, item.line, key, "missing: the gold answer (an index into the choices or a choice)")
    if isinstance(value, int):
        if not 0 <= value < len(choices):
            _fail(path, item.line, key, f"{value} is not an index into {task.config['choices']!r} "
                                        f"({len(choices)} choices)")
        return value
    if isinstance(value, str) and value in choices:
        return choices.index(value)
    _fail(path, item.line, key, f"{value!r} is neither an index nor one of the choices {choices}")


def _check_item(task: Task, item: Item, path: str):
    """Every field the task uses must be present and of the right type on this line."""
    record, kind, cfg, line = item.record, task.kind, task.config, item.line
    if "prompt" in cfg and kind != "cloze":
        render_template(cfg["prompt"], record, path, line)
    if kind in ("multiple_choice", "cloze"):
        key = cfg["choices"]
        choices = record.get(key)
        if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) for c in choices):
            _fail(path, line, key, "expected a list of at least two strings (the choices)")
        _gold_index(task, item, path)
    if kind == "cloze":
        key = cfg["text"]
        text = record.get(key)
        if not isinstance(text, str) or cfg["blank"] not in text:
            _fail(path, line, key, f"expected a string holding the blank {cfg['blank']!r}")
    if kind == "last_word":
        text = task.render(item, path=path).rstrip()
        if " " not in text.strip():
            _fail(path, line, "prompt", "the rendered text needs at least two words (context and last word)")
    if kind == "generative_qa" or kind in ("translation", "summarization"):
        key = cfg["answers"] if kind == "generative_qa" else cfg["reference"]
        value = record.get(key)
        ok = isinstance(value, str) or (isinstance(value, list) and value and all(isinstance(v, str) for v in value))
        if not ok:
            _fail(path, line, key, "expected a string or a non-empty list of strings")
    if kind == "classification":
        key = cfg["label"]
        value = record.get(key)
        labels = cfg["labels"]
        if isinstance(value, int) and not isinstance(value, bool):
            if not 0 <= value < len(labels):
                _fail(path, line, key, f"{value} is not an index into labels {labels}")
        elif value not in labels:
            _fail(path, line, key, f"{value!r} is not one of the labels {labels}")


def find_task(name_or_path: str, task_dirs=()) -> str:
    """A task file path: `name_or_path` itself if it exists, else `DIR/NAME.yaml` in one of
    `task_dirs`; otherwise a TaskError listing the known task names."""
    gfile = _gfile()
    if gfile.exists(name_or_path) and not gfile.isdir(name_or_path):
        return name_or_path
    known = {}
    for d in task_dirs:
        if gfile.isdir(d):
            for f in sorted(gfile.listdir(d)):
                if f.endswith((".yaml", ".yml")):
                    known.setdefault(f.rsplit(".", 1)[0], f"{d.rstrip('/')}/{f}")
    if name_or_path in known:
        return known[name_or_path]
    where = f" in {', '.join(task_dirs)}" if task_dirs else ""
    raise TaskError(f"--task {name_or_path}: unknown task (not a file, and no such name{where}); "
                    f"known tasks: {', '.join(sorted(known)) or 'none (give a task YAML file or --task-dir)'}")
