"""The bundled experiment configs, addressable by name or by path.

    from massivetext_tf import configs
    configs.names()              # ['demo', 'demo_ci', 'gopher_44m', ...]
    configs.resolve("gopher_44m")  # .../massivetext_tf/configs/gopher_44m.yaml
    configs.resolve("my/exp.yaml") # a path (local or gs://) is returned unchanged

`--config` of every command goes through `resolve`, so `--config gopher_44m` and
`--config massivetext_tf/configs/gopher_44m.yaml` name the same file. A name that is neither a
bundled config nor an existing path is an error that lists the bundled names.
"""
import os

DIR = os.path.dirname(os.path.abspath(__file__))


def names() -> list[str]:
    """The bundled config names (file names without `.yaml`), sorted."""
    return sorted(f[:-5] for f in os.listdir(DIR) if f.endswith(".yaml"))


def path(name: str) -> str:
    """The file of bundled config `name` (with or without `.yaml`)."""
    base = name[:-5] if name.endswith(".yaml") else name
    return os.path.join(DIR, base + ".yaml")


def resolve(name_or_path: str | None) -> str | None:
    """A bundled config name becomes its file; anything else is returned as given.

    Paths win over names: an existing file `gopher_44m` in the working directory is read as a
    file. Raises ValueError naming `--config` and the bundled names when `name_or_path` has no
    path separator, no `.yaml` file exists under it and it is not a bundled name.
    """
    if not name_or_path:
        return name_or_path
    if "://" in name_or_path or os.path.exists(name_or_path):
        return name_or_path
    looks_like_name = os.sep not in name_or_path and "/" not in name_or_path
    if looks_like_name and os.path.exists(path(name_or_path)):
        return path(name_or_path)
    if looks_like_name and not name_or_path.endswith((".yaml", ".yml")):
        raise ValueError(f"--config: {name_or_path!r} is neither a file nor a bundled config "
                         f"(bundled: {', '.join(names())})")
    return name_or_path
