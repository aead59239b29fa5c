"""Is a usable TensorFlow installed? A cheap check (package metadata only, no TensorFlow import).

TensorFlow, tensorflow-text and keras-hub are not base requirements of massivetext_tf: one of
the extras installs them (`[cpu]`, `[gpu]`, or `[tpu]` plus a second step, see
docs/install.md), so that a TPU VM gets `tensorflow-tpu` and not stock `tensorflow` beside it.
`require_tensorflow()` turns a missing or doubled install into one ImportError that says what
to install; the `massivetext` command calls it before a subcommand that needs TensorFlow, and
the TensorFlow-needing subpackages call it on import.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util

INSTALL_HINT = ('pip install "massivetext_tf[cpu]" (or [gpu] for the CUDA build; on a TPU VM '
                '"massivetext_tf[tpu]" and then pip install --no-deps "tensorflow-text==2.20.*" '
                '"keras-hub>=0.32,<0.40"; see docs/install.md)')

# Distributions that write the `tensorflow` package (pip cannot tell they conflict).
TENSORFLOW_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tensorflow-tpu",
                            "tensorflow-intel", "tensorflow-macos", "tensorflow-aarch64",
                            "tf-nightly", "tf-nightly-cpu", "tf-nightly-gpu", "tf-nightly-tpu")

_checked = False


def tensorflow_distributions() -> dict[str, str]:
    """{distribution name: version} of every installed distribution that provides the
    `tensorflow` package (more than one is a broken install)."""
    found = {}
    for name in TENSORFLOW_DISTRIBUTIONS:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def require_tensorflow() -> None:
    """Raises ImportError naming the extras when TensorFlow, tensorflow-text or keras-hub is
    missing, or when two distributions (e.g. `tensorflow` and `tensorflow-tpu`) both installed
    the `tensorflow` package. Cheap: metadata lookups, once per process."""
    global _checked
    if _checked:
        return
    missing = [dist for module, dist in (("tensorflow", "tensorflow"),
                                         ("tensorflow_text", "tensorflow-text"),
                                         ("keras_hub", "keras-hub"))
               if importlib.util.find_spec(module) is None]
    if missing:
        raise ImportError(f"massivetext_tf needs {', '.join(missing)}, which "
                          f"{'is' if len(missing) == 1 else 'are'} not installed: {INSTALL_HINT}")
    dists = tensorflow_distributions()
    if len(dists) > 1:
        listed = ", ".join(f"{k}=={v}" for k, v in sorted(dists.items()))
        raise ImportError(
            f"more than one TensorFlow distribution is installed ({listed}); they overwrite "
            f"each other's files. Uninstall them all (pip uninstall -y {' '.join(sorted(dists))}) "
            f"and install one: {INSTALL_HINT}")
    _checked = True
