"""The `massivetext` command: every tool is a subcommand, every --help is fast and imports no
TensorFlow, tools/*.py and trainers/*.py are thin wrappers of the same mains, and a missing or
doubled TensorFlow is one clear error."""
import ast
import importlib
import json
import os
import pathlib
import subprocess
import sys
import time

import pytest

from massivetext_tf import _tf
from massivetext_tf.cli import main as cli_main

REPO = pathlib.Path(__file__).resolve().parents[1]
PY = sys.executable
HELP_BUDGET_S = 1.5  # issue 12: `massivetext --help` and every subcommand's --help


def _env():
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


# One child process for the whole table: a fresh interpreter (this one may hold TensorFlow
# already) imports each subcommand's module, prints its --help, and records whether
# TensorFlow got imported and how long that took.
_PROBE = r"""
import contextlib, io, json, sys, time
from massivetext_tf.cli.main import COMMANDS, main
out = {}
for name in COMMANDS:
    buf, start = io.StringIO(), time.perf_counter()
    try:
        with contextlib.redirect_stdout(buf):
            code = main([name, "--help"])
    except SystemExit as e:
        code = e.code
    out[name] = {"code": code, "help": buf.getvalue(), "seconds": time.perf_counter() - start,
                 "tensorflow": "tensorflow" in sys.modules}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def helps():
    proc = subprocess.run([PY, "-c", _PROBE], capture_output=True, text=True, env=_env(),
                          timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])


def test_every_subcommand_helps_without_tensorflow(helps):
    assert set(helps) == set(cli_main.COMMANDS)
    for name, h in helps.items():
        assert h["code"] == 0, (name, h)
        assert h["help"].startswith(f"usage: massivetext {name}"), (name, h["help"][:200])
        assert "--help" in h["help"], name
        assert not h["tensorflow"], f"`massivetext {name} --help` imported TensorFlow"
        assert h["seconds"] < HELP_BUDGET_S, (name, h["seconds"])
    # the flags a user knows are there
    assert "--source" in helps["prepare-data"]["help"] and "--runner" in helps["prepare-data"]["help"]
    assert "--mode" in helps["train"]["help"] and "--init-from" in helps["train"]["help"]
    assert "--project-dir" in helps["tune"]["help"]


def test_top_level_help_lists_every_subcommand(capsys):
    assert cli_main.main(["--help"]) == 0
    text = capsys.readouterr().out
    for name, (module, _, summary) in cli_main.COMMANDS.items():
        assert f"  {name} " in text and summary in text, name
        # every registered module exists and has the two entry points of the contract
        spec = importlib.util.find_spec(f"massivetext_tf.cli.{module}")
        assert spec is not None, module
        tree = ast.parse(pathlib.Path(spec.origin).read_text())
        defs = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert {"build_parser", "main"} <= defs, module
    for required in ("prepare-data", "train-tokenizer", "train", "finetune", "tune", "export",
                     "count-params", "demo", "benchmark-train", "benchmark-generate"):
        assert required in cli_main.COMMANDS


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"], ["prepare-data", "--help"],
                                  ["count-params", "--help"], ["export", "--help"]])
def test_help_wall_clock(args):
    """A whole process, as a user types it: `python -m massivetext_tf ...` (the `massivetext`
    script runs the same function; the wheel test runs the script itself)."""
    start = time.perf_counter()
    proc = subprocess.run([PY, "-m", "massivetext_tf", *args], capture_output=True, text=True,
                          env=_env(), timeout=60)
    seconds = time.perf_counter() - start
    assert proc.returncode == 0 and "usage:" in proc.stdout, proc.stderr
    assert seconds < HELP_BUDGET_S, f"massivetext {' '.join(args)}: {seconds:.2f} s"


def test_unknown_subcommand_and_alias(capsys):
    assert cli_main.main(["trian"]) == 2
    err = capsys.readouterr().err
    assert "unknown subcommand 'trian'" in err and "massivetext --help" in err
    assert cli_main.main([]) == 2 and "subcommands:" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:  # `massivetext convert` is convert-checkpoint
        cli_main.main(["convert", "--help"])
    assert e.value.code == 0 and "--from" in capsys.readouterr().out


def test_bad_flag_names_the_subcommand():
    proc = subprocess.run([PY, "-m", "massivetext_tf", "plan", "--devices", "many"],
                          capture_output=True, text=True, env=_env(), timeout=60)
    assert proc.returncode == 2
    assert "massivetext plan: error:" in proc.stderr and "--devices" in proc.stderr
    assert "Traceback" not in proc.stderr


def _wrappers():
    for folder in ("tools", "trainers"):
        for path in sorted((REPO / folder).glob("*.py")):
            if path.name != "make_t5_fixtures.py":  # needs torch: a tool-only script
                yield path


def test_tools_and_trainers_are_thin_wrappers():
    names = {"pretrain": "train", "make_pictures": "pictures"}
    seen = set()
    for path in _wrappers():
        text = path.read_text()
        module = names.get(path.stem, path.stem)
        assert f"from massivetext_tf.cli.{module} import main" in text, path
        assert "sys.path" not in text, path
        assert len(text.splitlines()) <= 8, path
        seen.add(module)
    registered = {m for m, _, _ in cli_main.COMMANDS.values()}
    assert seen == registered


def test_wrapper_runs_the_same_program(tmp_path):
    """`python tools/make_web_testdata.py` and `massivetext make-web-testdata`: same flags,
    same output, same exit status (a command that needs no TensorFlow, to stay fast)."""
    args = ["--root", str(tmp_path / "no-debs"), "--output", str(tmp_path / "out")]
    a = subprocess.run([PY, str(REPO / "tools" / "make_web_testdata.py"), *args],
                       capture_output=True, text=True, env=_env(), timeout=60)
    b = subprocess.run([PY, "-m", "massivetext_tf", "make-web-testdata", *args],
                       capture_output=True, text=True, env=_env(), timeout=60)
    assert a.returncode == b.returncode == 2
    assert (a.stdout, a.stderr) == (b.stdout, b.stderr)
    assert b.stderr.startswith("make_web_testdata: error:") and "no-debs" in b.stderr


def test_training_and_tuning_share_one_base_parser():
    from massivetext_tf.training import cli as train_cli
    from massivetext_tf.tuning import cli as tune_cli

    def flags(p):
        return {a.option_strings[-1]: (a.dest, a.choices, a.type) for a in p._actions
                if a.option_strings}

    base = flags(train_cli.base_parser("x", config_help="y"))
    train, tune = flags(train_cli.parser("x")), flags(tune_cli.parser())
    assert {"--config", "--strategy", "--data", "--tpu", "--devices", "--mixed-precision",
            "--set", "--logical-cpus", "--verbose"} <= set(base)
    for flag, spec in base.items():
        assert train[flag] == spec and tune[flag] == spec, flag
    assert tune_cli.parser().parse_args(["--config", "c", "--project-dir", "p"]).config == "c"


def test_require_tensorflow_names_the_extras(monkeypatch):
    monkeypatch.setattr(_tf, "_checked", False)
    _tf.require_tensorflow()  # this environment is a good one
    monkeypatch.setattr(_tf, "_checked", False)
    monkeypatch.setitem(sys.modules, "tensorflow_text", None)  # find_spec -> None
    with pytest.raises(ImportError) as e:
        _tf.require_tensorflow()
    assert "tensorflow-text" in str(e.value) and "massivetext_tf[cpu]" in str(e.value)
    assert "[tpu]" in str(e.value)


def test_two_tensorflows_are_refused(monkeypatch):
    real = importlib.metadata.version

    def version(name):
        return "2.20.0" if name == "tensorflow-tpu" else real(name)

    monkeypatch.setattr(_tf, "_checked", False)
    monkeypatch.setattr(importlib.metadata, "version", version)
    with pytest.raises(ImportError) as e:
        _tf.require_tensorflow()
    msg = str(e.value)
    assert "tensorflow-tpu==2.20.0" in msg and "tensorflow==" in msg
    assert "pip uninstall -y tensorflow tensorflow-tpu" in msg


def test_command_without_tensorflow_is_one_error_line(monkeypatch, capsys):
    monkeypatch.setattr(_tf, "_checked", False)
    monkeypatch.setitem(sys.modules, "keras_hub", None)
    assert cli_main.main(["count-params", "gopher_tiny"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("massivetext count-params: error: massivetext_tf needs keras-hub")
    assert len(err.strip().splitlines()) == 1


def test_tensorflow_subpackages_name_the_extras_without_tensorflow():
    """A fresh process where TensorFlow cannot be found (sys.modules entry None: find_spec
    returns None and `import tensorflow` fails, as on a machine without it)."""
    code = ("import sys; sys.modules['tensorflow'] = None\n"
            "import massivetext_tf.training.cli, massivetext_tf.data.source_args  # TF-free\n"
            "for stmt in ('import massivetext_tf.evaluation',\n"
            "             'from massivetext_tf.training import train'):\n"
            "    try:\n"
            "        exec(stmt)\n"
            "    except ImportError as e:\n"
            "        print(e)\n")
    proc = subprocess.run([PY, "-c", code], capture_output=True, text=True, env=_env(),
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2, proc.stdout
    for line in lines:
        assert line.startswith("massivetext_tf needs tensorflow, which is not installed")
        assert "massivetext_tf[cpu]" in line and "docs/install.md" in line
