"""The package users install: installs that resolve to exactly one TensorFlow, and the built
wheel working from outside the repository.

Resolution (`pip install --dry-run --report`) needs the package index: without it these tests
fail (they do not skip), as CI has PyPI.
"""
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time
import zipfile

import pytest

from massivetext_tf import _tf

REPO = pathlib.Path(__file__).resolve().parents[1]
PY = sys.executable
# Any distribution that writes the `tensorflow` package, judged by name (tensorflow,
# tensorflow-cpu, tensorflow-tpu, tf-nightly, ...); not tensorflow-text, -io, -datasets, ...
TF_PROVIDER = re.compile(r"^(tensorflow|tf-nightly)(-(cpu|gpu|tpu|intel|macos|aarch64|rocm))?$")
TPU_SECOND_STEP = ["tensorflow-text==2.20.*", "keras-hub>=0.32,<0.40"]  # docs/install.md


def _norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _dry_run(report, *requirements, no_deps=False):
    """Starts `pip install --dry-run --report`: what pip would install into an empty
    environment (this interpreter's Python and platform)."""
    cmd = [PY, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
           "--report", str(report), *requirements] + (["--no-deps"] if no_deps else [])
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=report.parent)


def _read_report(proc, report, requirements):
    """{normalized name: (version, requires_dist)} from a finished dry run."""
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, (f"pip could not resolve {requirements} (is the package index "
                                  f"reachable?):\n{err[-4000:]}")
    return {_norm(i["metadata"]["name"]): (i["metadata"]["version"],
                                           i["metadata"].get("requires_dist") or [])
            for i in json.loads(report.read_text())["install"]}


def _tensorflows(resolved):
    return {name: v for name, (v, _) in resolved.items() if TF_PROVIDER.match(name)}


def _minor(version):
    return tuple(int(x) for x in version.split(".")[:2])


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A copy of the source tree (no virtualenv, no build outputs), so building it writes
    nothing into the repository."""
    dst = tmp_path_factory.mktemp("src") / "massivetext_tf"
    shutil.copytree(REPO, dst, ignore=shutil.ignore_patterns(
        ".git", ".venv", "venv", "runs", "build", "dist", "*.egg-info", "__pycache__",
        ".pytest_cache", "saved_models"))
    return dst


def _package_files(tree):
    root = tree / "massivetext_tf"
    return {str(p.relative_to(tree)) for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


@pytest.fixture(scope="module")
def wheel(source, tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([PY, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out),
                           str(source)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    (path,) = out.glob("massivetext_tf-*.whl")
    return path


@pytest.fixture(scope="module")
def resolved(wheel, tmp_path_factory):
    """Every install the docs describe, resolved at once (the dry runs wait on the index, not
    the CPU): the wheel with no TensorFlow extra, with [cpu], [gpu], [tpu], and the TPU's
    second step."""
    work = tmp_path_factory.mktemp("resolve")
    runs = {"base": [f"massivetext_tf[test,data,eval,demo,litert] @ {wheel.as_uri()}"],
            "cpu": [f"massivetext_tf[cpu] @ {wheel.as_uri()}"],
            "gpu": [f"massivetext_tf[gpu] @ {wheel.as_uri()}"],
            "tpu": [f"massivetext_tf[tpu] @ {wheel.as_uri()}"],
            "tpu_second_step": TPU_SECOND_STEP}
    procs = {name: _dry_run(work / f"{name}.json", *reqs, no_deps=name == "tpu_second_step")
             for name, reqs in runs.items()}
    return {name: _read_report(proc, work / f"{name}.json", runs[name])
            for name, proc in procs.items()}


@pytest.mark.slow
def test_base_install_has_no_tensorflow(resolved):
    """The base requirements (and the non-TensorFlow extras `make install` adds) bring no
    TensorFlow: only [cpu], [gpu] and [tpu] do."""
    resolved = resolved["base"]
    assert "massivetext-tf" in resolved
    assert not _tensorflows(resolved), _tensorflows(resolved)
    assert "keras" in resolved and "tensorflow-text" not in resolved
    # the names massivetext_tf._tf checks for a doubled install are the ones judged here
    assert all(TF_PROVIDER.match(name) for name in _tf.TENSORFLOW_DISTRIBUTIONS)


@pytest.mark.slow
@pytest.mark.parametrize("extra,expected", [("cpu", "tensorflow"), ("gpu", "tensorflow")])
def test_cpu_and_gpu_resolve_to_one_tensorflow(resolved, extra, expected):
    resolved = resolved[extra]
    tfs = _tensorflows(resolved)
    assert list(tfs) == [expected], tfs
    assert _minor(resolved["tensorflow-text"][0]) == _minor(tfs[expected]), (resolved["tensorflow-text"], tfs)
    assert "keras-hub" in resolved
    cuda = [n for n in resolved if n.startswith("nvidia-")]
    assert bool(cuda) == (extra == "gpu"), cuda  # [gpu]: TensorFlow's CUDA build (and-cuda)


@pytest.mark.slow
def test_tpu_resolves_to_tensorflow_tpu_alone_plus_a_no_deps_second_step(resolved):
    first = resolved["tpu"]
    tfs = _tensorflows(first)
    assert list(tfs) == ["tensorflow-tpu"], tfs  # no stock tensorflow beside it
    assert _minor(tfs["tensorflow-tpu"]) == (2, 20)
    # The documented second step: tensorflow-text and keras-hub without their dependencies.
    second = resolved["tpu_second_step"]
    assert set(second) == {"tensorflow-text", "keras-hub"}
    assert _minor(second["tensorflow-text"][0]) == _minor(tfs["tensorflow-tpu"])
    # Everything keras-hub and tensorflow-text need, other than TensorFlow (and tensorflow-text
    # itself), came with the first step.
    installed = set(first) | set(second)
    for name in ("keras-hub", "tensorflow-text"):
        for req in second[name][1]:
            if ";" in req and "extra ==" in req.split(";", 1)[1]:
                continue
            dep = _norm(re.match(r"[A-Za-z0-9_.-]+", req).group(0))
            if dep in ("tensorflow", "tensorflow-text"):
                continue
            assert dep in installed, f"{name} needs {req}: add it to [tpu] in setup.cfg"


@pytest.mark.slow
def test_wheel_holds_every_module_config_and_the_command(source, wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(_package_files(source) - names)  # the tree the wheel was built from
    assert not missing, f"not in the wheel: {missing}"
    assert any(n.startswith("massivetext_tf/configs/") and n.endswith("gopher_44m.yaml") for n in names)
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert re.search(r"^massivetext\s*=\s*massivetext_tf\.cli\.main:main$", text, re.M), text
    (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    requires = [line for line in zipfile.ZipFile(wheel).read(metadata).decode().splitlines()
                if line.startswith("Requires-Dist:")]
    base = [r for r in requires if "extra ==" not in r]
    assert not any(re.match(r"Requires-Dist: (tensorflow|keras-hub)", r) for r in base), base


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory):
    """The wheel installed into a fresh virtualenv in a directory outside the repository.

    Its dependencies (TensorFlow and the rest, 2.5 GB) are not installed again: a `.pth` file
    makes the fresh environment see this test environment's site-packages, after its own. The
    fixture first checks that `massivetext_tf` then imports from the fresh environment's own
    site-packages (the wheel), not from the repository or this environment's editable install.
    """
    home = tmp_path_factory.mktemp("outside")
    venv = home / "venv"
    subprocess.run([PY, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    new_py = venv / "bin" / "python"
    proc = subprocess.run([PY, "-m", "pip", "--python", str(new_py), "install", "--no-deps",
                           "--no-index", "--quiet", str(wheel)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    site = subprocess.run([str(new_py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    import sysconfig

    (pathlib.Path(site) / "test_env_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FRESH")}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    where = subprocess.run([str(new_py), "-c", "import massivetext_tf, sys; print(massivetext_tf.__file__)"],
                           capture_output=True, text=True, cwd=home, env=env, timeout=120)
    assert where.returncode == 0, where.stderr
    assert where.stdout.strip().startswith(site), (where.stdout, site)
    assert str(REPO) not in where.stdout
    return {"home": home, "bin": venv / "bin", "env": env}


@pytest.mark.slow
def test_installed_command_counts_gopher_280b_from_outside_the_repository(installed):
    from massivetext_tf import models

    start = time.perf_counter()
    helped = subprocess.run([str(installed["bin"] / "massivetext"), "--help"], capture_output=True,
                            text=True, cwd=installed["home"], env=installed["env"], timeout=60)
    assert helped.returncode == 0 and "count-params" in helped.stdout, helped.stderr
    assert time.perf_counter() - start < 1.5
    proc = subprocess.run([str(installed["bin"] / "massivetext"), "count-params", "gopher_280b"],
                          capture_output=True, text=True, cwd=installed["home"],
                          env=installed["env"], timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # tools/count_params.py prints models.count_params (tests/models/test_count_params_tool.py)
    assert int(proc.stdout.strip()) == models.count_params("gopher_280b") == 279702421504


@pytest.mark.slow
def test_installed_demo_runs_from_outside_the_repository(installed):
    """`massivetext demo` at CI size from the wheel: the bundled config by name, nothing read
    from the repository (its directory is not on the path and not the working directory)."""
    run_dir = installed["home"] / "demo"
    proc = subprocess.run([str(installed["bin"] / "massivetext"), "demo", "--config", "demo_ci",
                           "--run-dir", str(run_dir)], capture_output=True, text=True,
                          cwd=installed["home"], env=installed["env"], timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert str(REPO) not in proc.stdout + proc.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["heldout_bits_per_byte"] > 0
    assert list(run_dir.rglob("saved_model.pb")), "the demo's export stage wrote no SavedModel"
