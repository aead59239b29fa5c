"""The `massivetext` command: one subcommand per tool (`massivetext_tf.cli.main`).

Each subcommand is a module here with `build_parser()` and `main(argv=None) -> int`; both
import TensorFlow only once the flags are parsed, so every `--help` is fast. `tools/*.py` and
`trainers/*.py` are wrappers of the same `main`s.
"""
