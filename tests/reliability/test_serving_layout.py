"""The TF Serving layout under faults (issue 11, requirement 14), run as a user would:
`tools/export.py` merges into an existing models.config (other entries and their settings
kept, the previous file backed up) and removes the leftovers of a SIGKILLed export.
"""
import glob
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import pytest
import tensorflow as tf

from tests.export.conftest import spm_model, task  # noqa: F401  (session fixtures, used by name)
from tests.reliability.test_serving import _run_export

# ---------------------------------------------------------------------------------------
# 14. models.config is merged, never clobbered; killed exports are cleaned up
# ---------------------------------------------------------------------------------------

OPERATOR_CONFIG = """\
# Production models; edited by hand.
model_config_list {
  config {
    name: "gopher"   # the big one
    base_path: "gs://bucket/models/gopher"
    model_platform: "tensorflow"
    model_version_policy { specific { versions: 7 versions: 8 } }
    version_labels { key: "stable" value: 7 }
    version_labels { key: "canary" value: 8 }
    logging_config { sampling_config { sampling_rate: 0.01 } }
  }
  config {
    name: "tiny"
    base_path: "/old/place/tiny"
    model_platform: "tensorflow"
    model_version_policy { latest { num_versions: 2 } }
    version_labels { key: "stable" value: 1 }
  }
}
"""
GOPHER_ENTRY = OPERATOR_CONFIG[OPERATOR_CONFIG.index("  config {"):OPERATOR_CONFIG.index("  config {\n    name: \"tiny\"")]


def _fake_version(base, name, version=1):
    os.makedirs(os.path.join(base, name, str(version)))
    open(os.path.join(base, name, str(version), "saved_model.pb"), "wb").close()


def _proto(text):
    from massivetext_tf.export.models_config import parse_with_proto

    return {c.name: c for c in parse_with_proto(text).model_config_list.config}


def test_models_config_merge_keeps_other_entries_and_settings(tmp_path):
    from massivetext_tf.export import serving

    base = str(tmp_path)
    path = os.path.join(base, "models.config")
    open(path, "w").write(OPERATOR_CONFIG)
    _fake_version(base, "tiny")
    _fake_version(base, "new_model")

    result = serving.sync_models_config(base, "tiny")
    text = open(path).read()
    assert result["backup"] == path + ".bak" and open(path + ".bak").read() == OPERATOR_CONFIG
    assert result["checked"]  # verified with the real ModelServerConfig message
    assert GOPHER_ENTRY in text and text.startswith("# Production models; edited by hand.\n")
    before, after = _proto(OPERATOR_CONFIG), _proto(text)
    assert list(after) == ["gopher", "tiny", "new_model"]
    assert after["gopher"] == before["gopher"]
    expected_tiny = type(before["tiny"])()
    expected_tiny.CopyFrom(before["tiny"])
    expected_tiny.base_path = os.path.join(os.path.abspath(base), "tiny")
    assert after["tiny"] == expected_tiny  # version policy and labels kept, base_path moved
    assert after["new_model"].base_path == os.path.join(os.path.abspath(base), "new_model")
    assert any("was /old/place/tiny" in change for change in result["changes"])

    # Nothing to change: neither the file nor the backup is rewritten.
    again = serving.sync_models_config(base, "tiny")
    assert again["changes"] == [] and again["backup"] is None
    assert open(path).read() == text and open(path + ".bak").read() == OPERATOR_CONFIG


def test_models_config_merge_handles_the_whole_text_format(tmp_path):
    """`:` before messages, `< >` braces, `;` and `,` separators, lists, single quotes, escaped
    quotes, `#` inside strings, adjacent strings and comments with braces: all kept as written."""
    from massivetext_tf.export import serving

    other = """  config: <
    name: 'odd "one"'; base_path: "/srv/a#b/\\"c\\"" "/tail",
    model_platform: "tensorflow"
    model_version_policy: { specific: { versions: [1, 2, 3] } }
    version_labels: [{ key: "stable" value: 1 }, { key: "canary", value: 2 }]
  >
"""
    original = (
        "model_config_list: {\n  # a comment with braces } { and \"quotes\"\n" + other
        + '  config { name: "tiny" base_path: "/old" model_platform: "tensorflow" }  # trailing\n}'
    )
    (tmp_path / "models.config").write_text(original)
    _fake_version(str(tmp_path), "tiny")
    result = serving.sync_models_config(str(tmp_path), "tiny")
    merged = (tmp_path / "models.config").read_text()
    assert result["checked"] and other in merged
    assert merged == original.replace('"/old"', f'"{tmp_path / "tiny"}"')
    entry = _proto(merged)['odd "one"']
    assert entry.base_path == '/srv/a#b/"c"/tail' and list(entry.model_version_policy.specific.versions) == [1, 2, 3]
    assert dict(entry.version_labels) == {"stable": 1, "canary": 2}


def test_models_config_fields_of_a_newer_server_are_kept(tmp_path):
    from massivetext_tf.export import serving

    original = 'model_config_list {\n  config {\n    name: "other"\n    future_field { x: 1 }\n  }\n}\n'
    (tmp_path / "models.config").write_text(original)
    _fake_version(str(tmp_path), "tiny")
    result = serving.sync_models_config(str(tmp_path), "tiny")
    merged = (tmp_path / "models.config").read_text()
    assert merged.startswith(original[: -len("}\n")]) and 'name: "tiny"' in merged
    assert result["checked"] is False  # unknown to this ModelServerConfig: merged as text


@pytest.mark.parametrize(
    "content, message",
    [
        ('model_config_list {\n  config {\n    name: "a"\n', "end of file: missing '}'"),
        ('model_config_list {\n  config { name: "a" }\n  config { name: "a" }\n}\n', "line 3: model 'a' is listed twice"),
        ('model_config_list {\n  config { name: "a" base_path: @ }\n}\n', "line 2: unexpected character '@'"),
        ('custom_model_config {\n}\n', "custom_model_config"),
    ],
)
def test_unusable_models_config_stops_the_export_before_it_starts(task, tmp_path, content, message):
    from massivetext_tf.export import ExportError, export_model

    path = tmp_path / "models.config"
    path.write_text(content)
    with pytest.raises(ExportError, match=message) as error:
        export_model(task, "tiny", base_dir=str(tmp_path))
    assert str(path) in str(error.value) and "\n" not in str(error.value)
    assert path.read_text() == content
    assert sorted(os.listdir(tmp_path)) == ["models.config"]


def test_leftovers_of_dead_writers_go_running_ones_stay(tmp_path):
    from massivetext_tf.export import serving

    base = str(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    model_dir = tmp_path / "tiny"
    model_dir.mkdir()
    running = os.path.basename(serving.export_tmp_name(str(model_dir), "3"))  # this process
    killed = running.replace(f"-{os.getpid()}-", f"-{dead.pid}-")
    for name in (running, killed, ".tmp-2-0123abcd"):  # the last: an older export's name
        (model_dir / name).mkdir()
        (model_dir / name / "saved_model.pb").write_bytes(b"partial")
    (tmp_path / f"models.config.tmp-{dead.pid}-89abcdef").write_text("partial")
    scratch_dead = tempfile.mkdtemp(prefix=f"massivetext-export-{dead.pid}-")
    scratch_alive = tempfile.mkdtemp(prefix=f"massivetext-export-{os.getpid()}-")
    removed = serving.remove_export_leftovers(base, "tiny")
    assert sorted(os.path.basename(p) for p in removed) == sorted(
        [killed, ".tmp-2-0123abcd", f"models.config.tmp-{dead.pid}-89abcdef", os.path.basename(scratch_dead)]
    )
    assert os.listdir(model_dir) == [running]
    assert not os.path.exists(scratch_dead) and os.path.isdir(scratch_alive)
    os.rmdir(scratch_alive)


@pytest.mark.slow
def test_sigkilled_export_is_cleaned_up_and_config_merged(spm_model, tmp_path):
    base = tmp_path / "saved_models"
    base.mkdir()
    config = base / "models.config"
    config.write_text(OPERATOR_CONFIG)
    common = ["--preset", "gopher_tiny", "--tokenizer", spm_model, "--name", "tiny",
              "--base-dir", str(base), "--max-length", "32"]

    # Kill the export while its SavedModel is being written.
    proc = _run_export(*common, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    model_dir = base / "tiny"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if model_dir.is_dir() and any(n.startswith(".tmp-") for n in os.listdir(model_dir)):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the export finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    leftovers = [n for n in os.listdir(model_dir) if n.startswith(".tmp-")]
    assert len(leftovers) == 1
    scratch = glob.glob(os.path.join(tempfile.gettempdir(), f"massivetext-export-{proc.pid}-*"))
    assert scratch  # the local scratch directory of the SavedModel being written
    assert not (model_dir / "1").exists()  # no half version for TF Serving to load
    assert config.read_text() == OPERATOR_CONFIG and not (base / "models.config.bak").exists()

    # The next export removes the leftover, says so, and merges into models.config.
    again = _run_export(*common, "--max-batch-size", "3", "--no-warmup")
    assert again.returncode == 0, again.stderr[-3000:]
    result = json.loads(again.stdout.strip().splitlines()[-1])
    removed = result["removed_leftovers"]
    assert f"removed {len(removed)} leftover" in again.stdout and leftovers[0] in again.stdout
    assert result["version"] == 1 and str(model_dir / leftovers[0]) in removed
    assert set(scratch) <= set(removed)
    assert sorted(os.listdir(model_dir)) == ["1"]
    assert not any(os.path.exists(path) for path in scratch)
    assert (base / "models.config.bak").read_text() == OPERATOR_CONFIG
    merged = config.read_text()
    assert GOPHER_ENTRY in merged
    entries = _proto(merged)
    assert entries["gopher"] == _proto(OPERATOR_CONFIG)["gopher"]
    assert entries["tiny"].base_path == str(model_dir.resolve())
    assert entries["tiny"].version_labels["stable"] == 1
    assert entries["tiny"].model_version_policy.latest.num_versions == 2

    # The re-export's --max-batch-size is in its graph.
    loaded = tf.saved_model.load(result["saved_model"])
    assert loaded.generate(tf.constant(["a", "b", "c"]), max_new_tokens=tf.constant(1))["text"].shape == (3,)
    with pytest.raises(tf.errors.InvalidArgumentError, match="--max-batch-size 3"):
        loaded.generate(tf.constant(["a", "b", "c", "d"]))
