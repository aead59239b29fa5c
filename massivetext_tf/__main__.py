"""`python -m massivetext_tf SUBCOMMAND ...`: the same as the `massivetext` command."""
from massivetext_tf.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
