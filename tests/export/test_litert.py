"""`LiteRTGenerator` runs in a process that never imports TensorFlow (an app, the demo's
fresh-process check) and decodes exactly as it does beside TensorFlow."""
import json
import os
import subprocess
import sys

from harness import subprocess_env
from tests.export.conftest import PROMPTS, encode

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CHILD = r'''
import json, sys
from massivetext_tf.export.litert import LiteRTGenerator
from massivetext_tf.export import LiteRTGenerator as Lazy

assert Lazy is LiteRTGenerator
gen = LiteRTGenerator(sys.argv[1])
out = [gen.generate(ids, 12) for ids in json.loads(sys.argv[2])]
print(json.dumps({"tokens": out, "tensorflow": "tensorflow" in sys.modules, "keras": "keras" in sys.modules}))
'''


def test_litert_generator_decodes_without_tensorflow(exported, spm_model):
    from massivetext_tf.export.tflite import LiteRTGenerator

    prompts = [[2] + encode(spm_model, p) for p in PROMPTS]
    path = exported["tflite_float32"]
    run = subprocess.run([sys.executable, "-c", CHILD, path, json.dumps(prompts)], capture_output=True,
                         text=True, env=subprocess_env(REPO), timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    child = json.loads(run.stdout.strip().splitlines()[-1])
    assert child["tensorflow"] is False and child["keras"] is False
    here = LiteRTGenerator(path)  # the old import path still works
    assert child["tokens"] == [here.generate(ids, 12) for ids in prompts]
    assert all(child["tokens"])
