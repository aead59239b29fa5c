"""Position-wise feed-forward network: GELU/ReLU MLP or gated (SwiGLU, GeGLU) variants."""
import keras
from keras import ops

ACTIVATIONS = ("gelu", "relu", "swiglu", "geglu")


@keras.saving.register_keras_serializable(package="massivetext_tf")
class FeedForward(keras.layers.Layer):
    """`out = W_out · act(W_in · x)`, or `W_out · (act(W_gate · x) * W_in · x)` when gated.

    Args:
        hidden_dim: model width (input and output features).
        intermediate_dim: inner width (Gopher: 4 x hidden_dim).
        activation: one of `"gelu"`, `"relu"` (plain MLP) or `"swiglu"`, `"geglu"` (gated).
        dropout: dropout rate on the inner activations.
        use_bias: whether the projections have biases (Gopher: no).
        kernel_initializer: initializer for the projections.

    Call arguments:
        inputs: `[batch, length, hidden_dim]`.
        training: whether dropout is active.

    Example:
    >>> FeedForward(8, 32, activation="swiglu")(keras.ops.ones((1, 2, 8))).shape
    (1, 2, 8)

    References:
        Shazeer, "GLU Variants Improve Transformer", 2020.
    """

    def __init__(
        self,
        hidden_dim,
        intermediate_dim,
        activation="gelu",
        dropout=0.0,
        use_bias=False,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"`activation` must be one of {ACTIVATIONS}, got {activation!r}."
            )
        for field, value in (("hidden_dim", hidden_dim), ("intermediate_dim", intermediate_dim)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"`{field}` must be a positive integer, got {value!r}.")
        self.hidden_dim = hidden_dim
        self.intermediate_dim = intermediate_dim
        self.activation = activation
        self.dropout = dropout
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.gated = activation in ("swiglu", "geglu")

        def dense(units, name):
            # A fresh copy per projection: one unseeded initializer instance returns the
            # same values every call, which would start W_in and W_gate identical.
            init = self.kernel_initializer
            return keras.layers.Dense(
                units,
                use_bias=use_bias,
                kernel_initializer=init.__class__.from_config(init.get_config()),
                dtype=self.dtype_policy,
                name=name,
            )

        self.input_dense = dense(intermediate_dim, "input_dense")
        self.gate_dense = dense(intermediate_dim, "gate_dense") if self.gated else None
        self.output_dense = dense(hidden_dim, "output_dense")
        self.dropout_layer = keras.layers.Dropout(dropout, dtype=self.dtype_policy)

    def build(self, input_shape):
        self.input_dense.build(input_shape)
        if self.gate_dense is not None:
            self.gate_dense.build(input_shape)
        self.output_dense.build(tuple(input_shape[:-1]) + (self.intermediate_dim,))
        self.built = True

    def _act(self, x):
        if self.activation in ("gelu", "geglu"):
            return keras.activations.gelu(x, approximate=True)
        if self.activation == "swiglu":
            return keras.activations.silu(x)
        return keras.activations.relu(x)

    def call(self, inputs, training=None):
        h = self.input_dense(inputs)
        h = self._act(self.gate_dense(inputs)) * h if self.gated else self._act(h)
        return self.output_dense(self.dropout_layer(h, training=training))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "hidden_dim": self.hidden_dim,
            "intermediate_dim": self.intermediate_dim,
            "activation": self.activation,
            "dropout": self.dropout,
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        }
