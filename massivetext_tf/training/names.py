"""The names the command line, the configs and the strategy factory share (no TensorFlow).

Each list exists here once: `training/cli.py` and `tuning/cli.py` take their `choices` from it,
`training/config.py` validates against it and `training/strategy.py` builds from it.
"""

# tf.distribute strategies, in the order the docs present them.
STRATEGIES = ("one_device", "mirrored", "multi_worker_mirrored", "tpu")

# runtime.mixed_precision values (Keras dtype policies: float32, mixed_bfloat16, mixed_float16).
PRECISIONS = ("float32", "bfloat16", "float16")
