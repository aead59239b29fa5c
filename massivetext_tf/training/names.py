"""The names the command line, the configs and the strategy factory share (no TensorFlow).

Each list exists here once: `training/cli.py` and `tuning/cli.py` take their `choices` from it,
`training/config.py` validates against it and `training/strategy.py` builds from it.
"""

# Strategies, in the order the docs present them: tf.distribute's four, and model_parallel
# (keras.distribution.ModelParallel over a data x model mesh; runtime.backend jax only).
STRATEGIES = ("one_device", "mirrored", "multi_worker_mirrored", "tpu", "model_parallel")

# runtime.backend: the Keras backend that runs the training step. TensorFlow runs every
# tf.distribute strategy; JAX runs one_device and model_parallel (training/jax_trainer.py).
BACKENDS = ("tensorflow", "jax")
JAX_STRATEGIES = ("one_device", "model_parallel")

# runtime.mixed_precision values (Keras dtype policies: float32, mixed_bfloat16, mixed_float16).
PRECISIONS = ("float32", "bfloat16", "float16")
