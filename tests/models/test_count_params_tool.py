"""`massivetext count-params` as a user runs it: one real subprocess of tools/count_params.py,
the other cases through the same `main(argv)` in this process (each subprocess pays the
TensorFlow import; tests/test_packaging.py runs the installed command from a wheel too)."""
import json
import subprocess
import sys

import pytest

from massivetext_tf import models
from massivetext_tf.cli import count_params


def _main(capsys, *args):
    """(exit status, stdout, stderr) of `massivetext count-params ARGS` run in this process."""
    try:
        rc = count_params.main(list(args))
    except SystemExit as e:  # argparse's error(): status 2 and one usage line on stderr
        rc = e.code
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_prints_total_and_json_breakdown(repo_root, capsys):
    out = subprocess.run([sys.executable, str(repo_root / "tools" / "count_params.py"),
                          "gopher_280b"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) == models.count_params("gopher_280b")
    rc, stdout, _ = _main(capsys, "chinchilla_70b", "--json")
    data = json.loads(stdout)
    assert rc == 0
    assert data["total"] == data["embedding"] + data["decoder"] + data["learned_positions"]
    assert abs(data["total"] - 70e9) / 70e9 < 0.02 and data["paper_params"] == 70e9
    rc, stdout, _ = _main(capsys, "gopher_tiny", "--set", "num_layers=4")
    assert rc == 0 and int(stdout) == models.count_params("gopher_tiny", num_layers=4)


@pytest.mark.parametrize("args, named", [(("gopher_9000",), "gopher_9000"),
                                         (("gopher_tiny", "--set", "num_layers=0"), "num_layers")])
def test_bad_preset_and_field_are_named(capsys, args, named):
    rc, _, err = _main(capsys, *args)
    assert rc != 0 and named in err and "Traceback" not in err
