"""Convert HuggingFace T5 checkpoints to keras-hub presets of this toolkit and back
(the `massivetext convert` command; see docs/models.md).

    python tools/convert_checkpoint.py --from hf flan-t5-small/ --output presets/flan_t5_small
    python tools/convert_checkpoint.py --to hf presets/flan_t5_small --output hf_out/

Exit status 2 with one line on stderr on bad input; nothing is written then.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    from massivetext_tf.models.convert.checkpoint import main as convert

    return convert(argv)


if __name__ == "__main__":
    sys.exit(main())
