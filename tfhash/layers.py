"""Keras layers of a hashing network: the hashing layer (LSDH Eq. 4) and sign (Eq. 5)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tfhash")
class HashingLayer(keras.layers.Layer):
    """Projects features to K relaxed hash codes: LSDH Eq. 4 with a range constraint.

    LSDH (Wang et al., IEEE TIP 2019) computes the hashing layer output as

        h = W x + v                                    (Eq. 4)

    and the binary code as ``b = sign(h)`` (Eq. 5). To train with gradients the
    paper relaxes the integer constraint ``b ∈ {-1, +1}^K`` to a range
    constraint. This layer enforces the range with a ``tanh``:

        h = tanh(W x + v) ∈ (-1, 1)^K

    ``tanh`` is monotone and odd, so ``sign(h) = sign(W x + v)``: the codes are
    exactly the paper's, while the squared distances the losses use stay in
    ``[0, 4K]``, the same scale as ``|b_i - b_j|² = 4 · Hamming(b_i, b_j)``.

    The layer computes in float32 by default, whatever the global mixed
    precision policy, so that relaxed codes, distances and losses are float32
    (a K-wide dense layer costs nothing next to the backbone).

    The paper trains the hashing layer with 10 times the learning rate of the
    layers before it. ``learning_rate_multiplier`` does this inside the layer,
    whatever the training loop: the forward pass uses ``W`` and ``v`` exactly,
    and the backward pass multiplies their gradients by the factor. Under SGD
    (with or without momentum), the paper's optimizer and tfhash's default, that
    is exactly a ``learning_rate_multiplier`` times larger learning rate.
    Adaptive optimizers (Adam) normalise gradient scale away, so there the
    multiplier has (almost) no effect.

    Every head of tfhash outputs relaxed codes whose sign is the binary code, so
    export, evaluation and search need not know the method. ``activation="linear"``
    gives ``h = W x + v`` itself (DSH, LCDSH). A method whose paper uses sigmoid
    outputs ``s ∈ (0, 1)`` with bits ``s ≥ 0.5`` trains on ``s = (h + 1) / 2``
    of the tanh head, since ``(tanh(z) + 1) / 2 = σ(2z)``: the same codes, with
    the factor 2 absorbed into ``W`` and ``v``.

    Args:
        bits: K, the code length.
        learning_rate_multiplier: factor on the gradients of ``W`` and ``v``
            (the paper: 10; 1 disables it).
        activation: ``"tanh"`` (LSDH: ``h ∈ (−1, 1)``) or ``"linear"``.
        kernel_initializer, bias_initializer, kernel_regularizer: as in
            ``keras.layers.Dense``.
        **kwargs: base ``keras.layers.Layer`` arguments (``name``, ``dtype``…).

    Example:

    >>> layer = HashingLayer(bits=12)
    >>> h = layer(keras.ops.ones((2, 64)))
    >>> tuple(h.shape)
    (2, 12)
    """

    def __init__(
        self,
        bits,
        learning_rate_multiplier=1.0,
        activation="tanh",
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if int(bits) < 1:
            raise ValueError(f"bits must be at least 1, got {bits}")
        self.bits = int(bits)
        if learning_rate_multiplier <= 0:
            raise ValueError(
                f"learning_rate_multiplier must be positive, got {learning_rate_multiplier}"
            )
        self.learning_rate_multiplier = float(learning_rate_multiplier)
        if activation not in ("tanh", "linear"):
            raise ValueError(f"activation must be 'tanh' or 'linear', got {activation!r}")
        self.activation = activation
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

    def build(self, input_shape):
        self.kernel = self.add_weight(
            name="kernel",
            shape=(input_shape[-1], self.bits),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
        )
        self.bias = self.add_weight(
            name="bias", shape=(self.bits,), initializer=self.bias_initializer
        )

    def call(self, inputs):
        kernel = _scale_gradient(self.kernel, self.learning_rate_multiplier)
        bias = _scale_gradient(self.bias, self.learning_rate_multiplier)
        h = ops.matmul(inputs, kernel) + bias
        return ops.tanh(h) if self.activation == "tanh" else h

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.bits,)

    def get_config(self):
        config = super().get_config()
        config.update(
            bits=self.bits,
            learning_rate_multiplier=self.learning_rate_multiplier,
            activation=self.activation,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
            kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer),
        )
        return config


def _scale_gradient(x, factor):
    """Identity forward (exactly: ``x − x = 0``), gradient multiplied by ``factor``."""
    if factor == 1.0:
        return x
    x = ops.convert_to_tensor(x)
    return x + (factor - 1.0) * (x - ops.stop_gradient(x))


def sign(h, dtype="float32"):
    """``sign`` of LSDH Eq. 5 with ``sign(0) = +1``, so codes are always ±1."""
    return ops.cast(ops.where(h >= 0, 1, -1), dtype)


@keras.saving.register_keras_serializable(package="tfhash")
class Sign(keras.layers.Layer):
    """Binary codes ``b = sign(h)`` (LSDH Eq. 5), with ``sign(0) = +1``.

    Outputs are exactly ±1 in ``output_dtype`` (``int8`` for exported codes).
    The sign has no useful gradient: use this layer for inference and export,
    and train on the relaxed codes of :class:`HashingLayer`.

    Example::

        codes = Sign(output_dtype="int8")(keras.ops.convert_to_tensor([[0.3, 0.0, -2.0]]))
        # codes == [[1, 1, -1]], dtype int8
    """

    def __init__(self, output_dtype="float32", **kwargs):
        super().__init__(**kwargs)
        self.output_dtype = output_dtype

    def call(self, inputs):
        return sign(inputs, self.output_dtype)

    def compute_output_spec(self, inputs):
        return keras.KerasTensor(inputs.shape, dtype=self.output_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(output_dtype=self.output_dtype)
        return config
