"""The zoo's layers and backbones compute the same values under TensorFlow and JAX.

`backend_check.py` runs every layer (RMSNorm, feed-forward, attention with each position
scheme, cached attention steps, decoder/encoder blocks, position layers) and both backbones
in a subprocess per backend: first under TensorFlow with fresh weights, which it saves, then
under JAX with those weights loaded (`set_weights` for layers, `load_weights` of a
`.weights.h5` for backbones). A raw `tf.*` op inside a layer fails the JAX run.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def _run(backend, out_dir, weights_dir=None):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2", JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])))
    out_dir.mkdir()
    args = [sys.executable, os.path.join(HERE, "backend_check.py"), str(out_dir)]
    if weights_dir is not None:
        args.append(str(weights_dir))
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{backend} run failed:\n{result.stderr[-4000:]}"
    assert (out_dir / "backend.txt").read_text() == backend
    return dict(np.load(out_dir / "outputs.npz"))


@pytest.mark.slow
def test_layers_and_backbones_agree_under_tensorflow_and_jax(tmp_path):
    pytest.importorskip("jax", reason="the multi-backend check needs JAX (pip install jax[cpu])")
    reference = _run("tensorflow", tmp_path / "tensorflow")
    outputs = _run("jax", tmp_path / "jax", weights_dir=tmp_path / "tensorflow")
    assert sorted(outputs) == sorted(reference)
    # Every kind of case ran: layers, cached steps, both backbones.
    for key in ("attention_relative/cached_step", "decoder_block_rotary/step_1",
                "gopher_relative/cached_step", "t5_t5_bias/logits"):
        assert key in reference
    for key, expected in reference.items():
        assert outputs[key].shape == expected.shape, key
        np.testing.assert_allclose(outputs[key], expected, rtol=1e-5, atol=1e-5, err_msg=key)


def test_layers_and_backbones_import_no_tensorflow():
    """The zoo's layers and backbones are written in `keras.ops`: their sources name no
    TensorFlow (tokenizers, preprocessors and file I/O are where TensorFlow stays)."""
    import ast
    import pathlib

    package = pathlib.Path(REPO) / "massivetext_tf"
    files = sorted((package / "layers").glob("*.py")) + [
        package / "models" / "decoder_only" / "backbone.py",
        package / "models" / "encoder_decoder" / "backbone.py",
    ]
    for path in files:
        tree = ast.parse(path.read_text())
        imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                    if isinstance(node, (ast.Import, ast.ImportFrom))
                    for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])}
        names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
        assert "tensorflow" not in imported and "tf" not in names, f"{path} uses TensorFlow directly"
