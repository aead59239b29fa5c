"""Test helper: `python _run.py JSON_CONFIG [--logical-cpus N]` trains and prints
`RESULT {json}` (with the per-step loss history) as its last line."""
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main():
    data = json.loads(sys.argv[1])
    if "--logical-cpus" in sys.argv:
        from massivetext_tf.training.strategy import set_logical_cpus

        set_logical_cpus(int(sys.argv[sys.argv.index("--logical-cpus") + 1]))
    from massivetext_tf.training import config as config_lib
    from massivetext_tf.training.train_lib import train

    results = []
    for strategy in data.pop("strategies", [None]):
        cfg = config_lib.from_dict(json.loads(json.dumps(data)))
        if strategy:
            cfg.runtime.strategy = strategy
            cfg.model_dir = f"{data['model_dir']}/{strategy}"
            if strategy == "mirrored":
                cfg.runtime.devices = "CPU:0,CPU:1"
        results.append(train(cfg))
    print("RESULT " + json.dumps(results if len(results) > 1 else results[0], default=str),
          flush=True)


if __name__ == "__main__":
    main()
