"""Keras layers of a hashing network: the hashing layer (LSDH Eq. 4), sign (Eq. 5) and DNNH's
divide-and-encode head."""

import math

import keras
from keras import ops

from tfhash.errors import UsageError


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


@keras.saving.register_keras_serializable(package="tfhash")
class DivideAndEncode(keras.layers.Layer):
    """DNNH's divide-and-encode module: one bit from each slice of the features.

    Lai, Pan, Liu, Yan, "Simultaneous Feature Learning and Hash Coding with Deep
    Neural Networks", CVPR 2015. The features ``x`` (``50·q`` wide) are split into
    ``q`` contiguous slices ``x⁽¹⁾ … x⁽q⁾`` of 50; slice ``k`` has its own
    fully connected unit, a sigmoid and a piece-wise threshold:

        s_k = σ(w_kᵀ x⁽ᵏ⁾ + v_k)
        g(s) = 0 if s < 0.5 − ε;  s if 0.5 − ε ≤ s ≤ 0.5 + ε;  1 if s > 0.5 + ε

    Gradients pass inside the band only (``g`` is constant outside it), and the
    bit is 1 where ``g(s) ≥ 0.5``, i.e. where ``s ≥ 0.5``. Each bit sees only its
    own slice, which the paper argues makes the bits less redundant.

    Where the input is not ``50·q`` wide (any backbone but a NIN whose last layer
    has ``50·q`` channels), a learned projection ``ReLU(P x + c)`` to ``50·q``
    comes first (``projection="auto"``). In the paper that projection is the NIN's
    last 1 × 1 convolution and its ReLU, before the global average pooling; here it
    follows the pooling, which is the same linear map (pooling commutes with a 1 × 1
    convolution) with the ReLU after instead of before the pooling.

    The output keeps tfhash's convention that every head's sign is the code: the
    layer returns ``h = 2·g(s) − 1 ∈ [−1, 1]``, so ``sign(h)`` (with
    ``sign(0) = +1``) is the paper's bit ``[s ≥ 0.5]`` in ±1 form, and a loss on
    DNNH's ``[0, 1]`` codes uses ``(h + 1) / 2 = g(s)``.

    Args:
        bits: q, the code length.
        epsilon: ε, the half-width of the band, in (0, 0.5). The paper's value could not
            be read (only its abstract was available); 0.1 is tfhash's choice.
        slice_width: features per bit (the paper: 50).
        projection: ``"auto"`` (project when the input width is not
            ``slice_width · bits``), ``"always"`` or ``"none"`` (the input must be
            exactly ``slice_width · bits`` wide).
        learning_rate_multiplier: factor on the gradients of the layer's weights, as
            in :class:`HashingLayer`.
        kernel_initializer: of the per-slice units (the DNNH prototxt: Gaussian,
            standard deviation 0.1).
        **kwargs: base ``keras.layers.Layer`` arguments.

    Raises:
        UsageError: ε outside (0, 0.5), bits or slice_width below 1, an unknown
            ``projection``, or (``projection="none"``) an input of the wrong width.

    Example:

    >>> layer = DivideAndEncode(bits=12, epsilon=0.1)
    >>> h = layer(keras.ops.ones((2, 600)))
    >>> tuple(h.shape)
    (2, 12)
    """

    def __init__(
        self,
        bits,
        epsilon=0.1,
        slice_width=50,
        projection="auto",
        learning_rate_multiplier=1.0,
        kernel_initializer=None,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if isinstance(bits, bool) or int(bits) != bits or bits < 1:
            raise UsageError(f"divide-and-encode needs a whole number of bits >= 1, got {bits!r}")
        if isinstance(slice_width, bool) or int(slice_width) != slice_width or slice_width < 1:
            raise UsageError(f"slice_width must be an integer >= 1, got {slice_width!r}")
        try:
            epsilon = float(epsilon)
        except (TypeError, ValueError):
            epsilon = math.nan
        if not 0.0 < epsilon < 0.5:
            raise UsageError(
                f"epsilon (the threshold band of DNNH) must be in (0, 0.5), got {epsilon!r}"
            )
        if projection not in ("auto", "always", "none"):
            raise UsageError(f"projection must be auto, always or none, got {projection!r}")
        if learning_rate_multiplier <= 0:
            raise UsageError(
                f"learning_rate_multiplier must be positive, got {learning_rate_multiplier!r}"
            )
        self.bits, self.slice_width = int(bits), int(slice_width)
        self.epsilon, self.projection = epsilon, projection
        self.learning_rate_multiplier = float(learning_rate_multiplier)
        self.kernel_initializer = keras.initializers.get(
            kernel_initializer or keras.initializers.RandomNormal(stddev=0.1)
        )

    @property
    def width(self):
        """``slice_width · bits``, the width the slices need."""
        return self.slice_width * self.bits

    def build(self, input_shape):
        width = input_shape[-1]
        self.projects = self.projection == "always" or (
            self.projection == "auto" and width != self.width
        )
        if not self.projects and width != self.width:
            raise UsageError(
                f"divide-and-encode with projection='none' needs {self.slice_width} x {self.bits}"
                f" = {self.width} features, got {width}: use projection='auto'"
            )
        if self.projects:
            self.projection_kernel = self.add_weight(
                name="projection_kernel", shape=(width, self.width), initializer="glorot_uniform"
            )
            self.projection_bias = self.add_weight(
                name="projection_bias", shape=(self.width,), initializer="zeros"
            )
        self.kernel = self.add_weight(
            name="kernel", shape=(self.bits, self.slice_width), initializer=self.kernel_initializer
        )
        self.bias = self.add_weight(name="bias", shape=(self.bits,), initializer="zeros")

    def call(self, inputs):
        factor = self.learning_rate_multiplier
        x = ops.cast(inputs, self.compute_dtype)
        if self.projects:
            x = ops.relu(
                ops.matmul(x, _scale_gradient(self.projection_kernel, factor))
                + _scale_gradient(self.projection_bias, factor)
            )
        slices = ops.reshape(x, (-1, self.bits, self.slice_width))
        z = ops.sum(slices * _scale_gradient(self.kernel, factor), axis=-1)
        s = ops.sigmoid(z + _scale_gradient(self.bias, factor))
        return 2.0 * piecewise_threshold(s, self.epsilon) - 1.0

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.bits,)

    def get_config(self):
        config = super().get_config()
        config.update(
            bits=self.bits,
            epsilon=self.epsilon,
            slice_width=self.slice_width,
            projection=self.projection,
            learning_rate_multiplier=self.learning_rate_multiplier,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config


def piecewise_threshold(s, epsilon):
    """DNNH's ``g(s)``: 0 below ``0.5 − ε``, ``s`` inside the band, 1 above ``0.5 + ε``.

    The gradient is 1 inside the band and 0 outside (the constant branch).

    Example:

    >>> g = piecewise_threshold(keras.ops.convert_to_tensor([0.2, 0.4375, 0.5625, 0.9]), 0.1)
    >>> keras.ops.convert_to_numpy(g).tolist()
    [0.0, 0.4375, 0.5625, 1.0]
    """
    s = ops.convert_to_tensor(s)
    inside = ops.abs(s - 0.5) <= epsilon
    return ops.where(inside, s, ops.cast(s > 0.5, s.dtype))


#: The heads :func:`hashing_head` builds (``tfhash.methods.Method.head``).
HEADS = ("tanh", "linear", "divide_encode")


def hashing_head(head, bits, learning_rate_multiplier=1.0, name="hashing"):
    """The hashing layer a method's head name stands for.

    ``"tanh"`` and ``"linear"``: :class:`HashingLayer` with that activation;
    ``"divide_encode"``: :class:`DivideAndEncode` with its defaults (DNNH). Every
    head's output has the binary code as its sign.
    """
    if head == "divide_encode":
        return DivideAndEncode(bits, learning_rate_multiplier=learning_rate_multiplier, name=name)
    if head not in HEADS:
        raise UsageError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}")
    return HashingLayer(
        bits, learning_rate_multiplier=learning_rate_multiplier, activation=head, name=name
    )
