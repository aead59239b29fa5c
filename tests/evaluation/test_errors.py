"""Malformed task files and data lines: one line naming the file, the line and the field;
unknown kinds, metrics and tasks list the known ones; the CLI exits 2."""
import json

import pytest

from massivetext_tf.evaluation import TaskError, load_task
from tests.evaluation.conftest import write_task

ITEMS = [{"question": "q1", "choices": ["a", "b"], "answer": 0},
         {"question": "q2", "choices": ["a", "b"], "answer": 1}]


def _error(path, **kwargs):
    with pytest.raises(TaskError) as e:
        load_task(path, **kwargs)
    message = str(e.value)
    assert "\n" not in message
    return message


def test_task_file_errors_name_file_line_and_field(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("name: t\ndata: t.jsonl\nkind: mc\n")
    (tmp_path / "t.jsonl").write_text(json.dumps(ITEMS[0]) + "\n")
    message = _error(str(path))
    assert message.startswith(f"{path}:3: field 'kind': unknown kind 'mc'; known kinds: multiple_choice, last_word")
    path.write_text("kind: multiple_choice\ndata: t.jsonl\nmetrics: [accuracy, acc_norm]\n")
    message = _error(str(path))
    assert message.startswith(f"{path}:3: field 'metrics': unknown metric 'acc_norm'")
    assert "known metrics: accuracy, accuracy_per_token, accuracy_per_byte, accuracy_unconditional" in message
    path.write_text("kind: multiple_choice\ndata: t.jsonl\nprompt: [unclosed\n")
    assert _error(str(path)).startswith(f"{path}:4: invalid YAML") or _error(str(path)).startswith(f"{path}:3: invalid YAML")
    path.write_text("kind: multiple_choice\ndata: t.jsonl\nnum_shots: 2\n")
    assert _error(str(path)).startswith(f"{path}:3: field 'num_shots': unknown field for kind multiple_choice")
    path.write_text("kind: classification\ndata: t.jsonl\nlabels: [yes]\n")
    assert _error(str(path)).startswith(f"{path}:3: field 'labels':")
    path.write_text("kind: multiple_choice\ndata: missing.jsonl\n")
    assert _error(str(path)) == f"{tmp_path}/missing.jsonl: file does not exist"
    path.write_text("kind: multiple_choice\ndata: t.jsonl\nnum_fewshot: 3\n")
    assert "num_fewshot" in _error(str(path)) and "only 0 to draw from" in _error(str(path))


def test_data_line_errors_name_file_line_and_field(tmp_path):
    path = write_task(tmp_path, "d", {"kind": "multiple_choice"}, ITEMS)
    data = tmp_path / "d.jsonl"
    good = data.read_text()
    data.write_text(good + "\n" + json.dumps({"question": "q3", "choices": ["a", "b"]}) + "\n")
    assert _error(path) == f"{data}:4: field 'answer': missing: the gold answer (an index into the choices or a choice)"
    data.write_text(good + json.dumps({"question": "q3", "choices": ["a", "b"], "answer": 5}) + "\n")
    assert _error(path) == f"{data}:3: field 'answer': 5 is not an index into 'choices' (2 choices)"
    data.write_text(good + '{"question": "q3", "choices": ["a", \n')
    assert _error(path).startswith(f"{data}:3: bad JSON")
    data.write_text(good + json.dumps({"choices": ["a", "b"], "answer": 0}) + "\n")
    assert _error(path).startswith(f"{data}:3: field 'question': missing")
    data.write_text(good + json.dumps({"question": "q", "choices": "ab", "answer": 0}) + "\n")
    assert _error(path).startswith(f"{data}:3: field 'choices': expected a list")
    path = write_task(tmp_path, "c", {"kind": "classification", "labels": ["yes", "no"]},
                      [{"text": "t", "label": "yes"}, {"text": "t", "label": "maybe"}])
    assert _error(path) == f"{tmp_path}/c.jsonl:2: field 'label': 'maybe' is not one of the labels ['yes', 'no']"


def _cli(argv, capsys):
    from tools.evaluate import main

    code = main(argv)
    return code, capsys.readouterr().err.strip().splitlines()


def test_cli_exits_2_with_one_line(tmp_path, capsys):
    path = write_task(tmp_path, "known", {"kind": "multiple_choice"}, ITEMS)
    code, err = _cli(["--model", str(tmp_path), "--task", "unknown", "--task-dir", str(tmp_path)], capsys)
    assert code == 2 and len(err) == 1
    assert err[0].startswith("evaluate: error: --task unknown: unknown task") and "known tasks: known" in err[0]
    code, err = _cli(["--model", str(tmp_path / "nope"), "--task", path], capsys)
    assert code == 2 and err == [f"evaluate: error: --model {tmp_path}/nope: does not exist"]
    code, err = _cli(["--model", str(tmp_path), "--task", path], capsys)
    assert code == 2 and len(err) == 1 and "neither a SavedModel" in err[0]
    code, err = _cli(["--model", str(tmp_path)], capsys)
    assert code == 2 and "nothing to evaluate" in err[0]
    code, err = _cli(["--model", str(tmp_path), "--source", "bad", "--task", path], capsys)
    assert code == 2 and len(err) == 1 and "expected NAME=GLOB" in err[0]
