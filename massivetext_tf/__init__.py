"""massivetext_tf: train Gopher/Chinchilla-style language models with TensorFlow and Keras 3.

Subpackages:
    layers    Keras layers (RMSNorm, attention with four position schemes, blocks), keras.ops only.
    models    Decoder-only and encoder-decoder backbones/tasks on keras-hub, presets, kind(), load().
    data      MassiveText-style curation, SentencePiece, TFRecord shards, tf.data pipeline.
    training  Strategy factory, XLA-compiled distributed loop, optimizer, checkpoints.
    evaluation  Bits per byte by source, tasks from YAML, the lm-evaluation-harness model.
    export    SavedModels for TF Serving with in-graph generation, TFLite for LiteRT.
    tuning    keras-tuner search over the zoo.
    demo      The Shakespeare end-to-end demo, stage by stage.
    configs   The bundled experiment configs, addressable by name (`--config gopher_44m`).
    cli       The `massivetext` command: one module per subcommand (`python -m massivetext_tf`).

TensorFlow, tensorflow-text and keras-hub come with an extra (`[cpu]`, `[gpu]`, `[tpu]`; see
docs/install.md); importing this package itself needs none of them.
"""

__version__ = "0.1.0"
