r"""What the shallow methods share: input checks, the encoder steps, the model class, save/load.

A fitted shallow method encodes a feature vector ``x`` (float64 ``[d]``) by a short
pipeline of **steps**, each a pure function of the previous output and some
fitted arrays:

==============  ====================================================  ====================
step            output                                                used by
==============  ====================================================  ====================
``subtract``    ``x − μ``                                             LSH, ITQ, KSH
``project``     ``x W``                                               all
``rbf``         ``exp(−γ ‖x − a_j‖²)`` for each anchor ``a_j``        KSH, SDH
``append_one``  ``[x, 1]`` (a bias feature)                           SDH
``cosine``      ``cos(ω_k (x_{j_k} − o_k))`` for each bit ``k``       SH
==============  ====================================================  ====================

The relaxed code ``h`` is the last step's output, rounded to float32; the code
is ``b = sign(h)`` with ``sign(0) = +1`` (the package contract, LSDH Eq. 5). The
same steps are written in NumPy here (:func:`apply_steps`) and as TensorFlow
ops in ``tfhash.shallow.export``, both in float64, so an exported SavedModel
gives the codes of :meth:`ShallowHash.encode`. Squared distances are always
computed as ``‖x‖² − 2 x·a + ‖a‖²`` clipped at 0, in both.

A fitted model is a directory: ``model.json`` (method, bits, seed, parameters,
the input dimension and the fit's diagnostics) and one ``<array>.npy`` per
fitted array; :func:`load` reads it back bit for bit.

This module imports NumPy and SciPy only, never TensorFlow.
"""

import json
import os

import numpy as np

from tfhash.errors import UsageError

FORMAT = "tfhash.shallow"
FORMAT_VERSION = 1
STEPS = ("subtract", "project", "rbf", "append_one", "cosine")


# ---------------------------------------------------------------------------------------------
# Input checks.


def check_features(features, what="features", dim=None):
    """``features`` as a float64 ``[n, d]`` array, or a :class:`UsageError` naming the problem.

    Example:

    >>> check_features([[1, 2], [3, 4]]).dtype
    dtype('float64')
    """
    try:
        x = np.asarray(features, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise UsageError(
            f"{what} must be a numeric [n, d] array ({e}); pass an array of "
            "feature vectors, one row per image"
        ) from None
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise UsageError(
            f"{what} must be a non-empty [n, d] array, one row per image, got shape {x.shape}"
        )
    if dim is not None and x.shape[1] != dim:
        raise UsageError(
            f"{what} have {x.shape[1]} dimensions but the model was fitted on "
            f"{dim}; encode features from the same extractor"
        )
    if not np.isfinite(x).all():
        bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
        raise UsageError(
            f"{what} hold NaN or Inf in {len(bad)} rows (first: row {bad[0]}); "
            "drop or repair those rows"
        )
    return x


def label_matrix(labels, n):
    """float64 ``[n, C]``: one-hot rows for class ids ``[n]``, or multi-hot rows ``[n, C]`` as given.

    Class ids may be any integers; column ``c`` is the ``c``-th distinct id in
    ascending order. Two items are similar iff their rows share a 1.

    Example:

    >>> label_matrix(np.array([7, 3, 7]), 3)
    array([[0., 1.],
           [1., 0.],
           [0., 1.]])
    """
    y = np.asarray(labels)
    if y.ndim == 0 or len(y) != n:
        raise UsageError(
            f"got {n} feature rows but {1 if y.ndim == 0 else len(y)} labels; "
            "give one label (or label vector) per row"
        )
    if y.ndim == 1:
        if not np.issubdtype(y.dtype, np.integer):
            if not np.issubdtype(y.dtype, np.floating) or not np.all(y == np.round(y)):
                raise UsageError(f"single labels must be integer class ids, got dtype {y.dtype}")
        _, ids = np.unique(y, return_inverse=True)
        return np.eye(ids.max() + 1)[ids]
    if y.ndim == 2:
        if not np.isin(y, (0, 1)).all():
            raise UsageError("multi-hot labels [n, C] must hold only 0 and 1")
        return y.astype(np.float64)
    raise UsageError(f"labels must be [n] class ids or [n, C] multi-hot rows, got shape {y.shape}")


# ---------------------------------------------------------------------------------------------
# Numerical pieces shared by several methods.


def squared_distances(x, anchors):
    """``[n, m]`` squared Euclidean distances ``‖x_i‖² − 2 x_i·a_j + ‖a_j‖²``, clipped at 0."""
    d2 = (
        np.sum(x * x, axis=1)[:, None]
        - 2.0 * (x @ anchors.T)
        + np.sum(anchors * anchors, axis=1)[None, :]
    )
    return np.maximum(d2, 0.0)


def pca_directions(x, k):
    """The ``k`` leading principal directions ``[d, k]`` of ``x`` (its covariance's top eigenvectors).

    Ordered by decreasing variance; each direction's sign is fixed so that its
    largest-magnitude entry is positive, so the result does not depend on the
    eigensolver's sign choice.
    """
    centred = x - x.mean(axis=0)
    cov = centred.T @ centred / max(len(x) - 1, 1)
    values, vectors = np.linalg.eigh(cov)
    top = vectors[:, np.argsort(values)[::-1][:k]]
    signs = np.sign(top[np.argmax(np.abs(top), axis=0), np.arange(top.shape[1])])
    return top * np.where(signs == 0, 1.0, signs)


def sign_codes(h):
    """int8 ±1 codes of relaxed codes ``h`` with ``sign(0) = +1``."""
    return np.where(np.asarray(h) >= 0, 1, -1).astype(np.int8)


def random_anchors(x, m, rng):
    """``m`` distinct rows of ``x``, drawn uniformly without replacement."""
    return x[np.sort(rng.choice(len(x), m, replace=False))]


# ---------------------------------------------------------------------------------------------
# The encoder steps in NumPy (float64). tfhash.shallow.export writes the same in TensorFlow.


def apply_steps(steps, x):
    """Runs the encoder ``steps`` (a list of ``(name, arrays)``) on float64 ``x [n, d]``."""
    for name, a in steps:
        if name == "subtract":
            x = x - a["mean"]
        elif name == "project":
            x = x @ a["matrix"]
        elif name == "rbf":
            x = np.exp(-a["gamma"] * squared_distances(x, a["anchors"]))
        elif name == "append_one":
            x = np.concatenate([x, np.ones((len(x), 1))], axis=1)
        elif name == "cosine":
            x = np.cos(a["omega"] * (x[:, a["dims"]] - a["offset"]))
        else:
            raise ValueError(f"unknown encoder step {name!r}")
    return x


# ---------------------------------------------------------------------------------------------
# The model.


class ShallowHash:
    """A shallow hashing method: ``fit`` on features (and labels), then ``encode`` to ±1 codes.

    Subclasses set :attr:`name`, :attr:`supervised`, :attr:`defaults` (the
    method's parameters and their defaults) and implement ``_fit`` (returns the
    fitted arrays and a JSON-able dict of diagnostics) and ``_steps`` (the
    encoder pipeline of those arrays); the fitting itself lives in pure
    functions of each method's module.

    Args:
        bits: K, the code length.
        seed: seed of the method's random draws (hyperplanes, rotation, anchors).
        **params: the method's parameters (see its :attr:`defaults`).

    Example:

    >>> from tfhash import shallow
    >>> x = np.random.default_rng(0).normal(size=(100, 8))
    >>> model = shallow.get("lsh", bits=4, seed=0).fit(x)
    >>> model.encode(x[:2]).shape, model.encode(x[:2]).dtype
    ((2, 4), dtype('int8'))
    """

    name = None
    supervised = False
    defaults = {}

    def __init__(self, bits, seed=0, **params):
        if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or bits < 1:
            raise UsageError(f"bits must be a positive integer, got {bits!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise UsageError(f"seed must be a non-negative integer, got {seed!r}")
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            known = ", ".join(self.defaults) or "none"
            raise UsageError(
                f"{self.name} has no parameter {', '.join(unknown)}; its parameters are: {known}"
            )
        self.bits = int(bits)
        self.seed = int(seed)
        self.params = {
            k: _coerce(self.name, k, v, self.defaults[k])
            for k, v in {**self.defaults, **params}.items()
        }
        self._check_params()
        self.arrays = None
        self.info = {}
        self.input_dim = None

    def __repr__(self):
        state = f"fitted on {self.input_dim}-d features" if self.fitted else "not fitted"
        return f"<{type(self).__name__} {self.bits} bits, seed {self.seed}, {state}>"

    # -- subclass hooks
    def _check_params(self):
        """Raises :class:`UsageError` for a parameter out of range."""

    def min_samples(self):
        """The fewest training samples the method can fit with these settings."""
        return 2

    def _check_fit_shape(self, n, d):
        """Raises :class:`UsageError` when ``n`` samples of dimension ``d`` cannot be fitted."""

    def _fit(self, x, y, rng):
        raise NotImplementedError

    def _steps(self, arrays):
        raise NotImplementedError

    # -- the API
    @property
    def fitted(self):
        return self.arrays is not None

    def fit(self, features, labels=None):
        """Fits the method on ``features [n, d]`` (and ``labels`` for a supervised one); returns self.

        Raises:
            UsageError: non-finite features, too few samples, labels missing for
                a supervised method or of another length, too many bits for PCA.
        """
        x = check_features(features)
        n, d = x.shape
        y = None
        if labels is not None:
            y = label_matrix(labels, n)
        elif self.supervised:
            raise UsageError(
                f"{self.name} is supervised and needs labels: call "
                "fit(features, labels) with one label per row"
            )
        if n < self.min_samples():
            raise UsageError(
                f"{self.name} with {self._size_text()} needs at least "
                f"{self.min_samples()} training samples, got {n}; pass more "
                "features or lower " + self._size_knob()
            )
        self._check_fit_shape(n, d)
        arrays, info = self._fit(x, y, np.random.default_rng(self.seed))
        self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
        self.info = info
        self.input_dim = d
        return self

    def steps(self):
        """The encoder pipeline: a list of ``(step name, {array name: array})``."""
        self._require_fitted()
        return self._steps(self.arrays)

    def relaxed(self, features):
        """float32 ``[n, K]``: the real-valued codes whose signs are the bits."""
        self._require_fitted()
        x = check_features(features, dim=self.input_dim)
        return apply_steps(self.steps(), x).astype(np.float32)

    def encode(self, features):
        """int8 ``[n, K]`` ±1 codes of ``features [n, d]`` (``sign(0) = +1``)."""
        return sign_codes(self.relaxed(features))

    def save(self, directory):
        """Writes ``model.json`` and one ``.npy`` per fitted array into ``directory``."""
        self._require_fitted()
        os.makedirs(directory, exist_ok=True)
        for key, array in self.arrays.items():
            np.save(os.path.join(directory, f"{key}.npy"), array, allow_pickle=False)
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "method": self.name,
            "bits": self.bits,
            "seed": self.seed,
            "params": self.params,
            "input_dim": self.input_dim,
            "arrays": sorted(self.arrays),
            "info": self.info,
        }
        with open(os.path.join(directory, "model.json"), "w") as f:
            json.dump(meta, f, indent=2)
        return directory

    # -- helpers
    def _require_fitted(self):
        if not self.fitted:
            raise UsageError(
                f"this {self.name} model is not fitted; call .fit(features) first "
                "or load a saved one with tfhash.shallow.load(dir)"
            )

    def _size_text(self):
        return f"{self.bits} bits"

    def _size_knob(self):
        return "bits"


class AnchoredHash(ShallowHash):
    """A method on an RBF kernel to ``anchors`` sampled training points (KSH, SDH): it needs at
    least that many samples, and its size errors name the anchors."""

    def min_samples(self):
        return max(2, self.params["anchors"])

    def _size_text(self):
        return f"{self.params['anchors']} anchors"

    def _size_knob(self):
        return "the anchors parameter (anchors=…)"


def _coerce(method, key, value, default):
    """``value`` as the type of the parameter's default (so ``"300"`` from a flag becomes 300)."""
    if value is None or default is None:
        return value if value is None or not isinstance(value, str) else _number(method, key, value)
    kind = type(default)
    try:
        if kind is int:
            number = float(value)
            if number != int(number):
                raise ValueError
            return int(number)
        return kind(value)
    except (TypeError, ValueError):
        raise UsageError(
            f"{method} parameter {key} must be a {kind.__name__}, got {value!r}"
        ) from None


def _number(method, key, value):
    try:
        return float(value)
    except ValueError:
        raise UsageError(f"{method} parameter {key} must be a number, got {value!r}") from None


def load_model(directory, methods):
    """Reads a model written by :meth:`ShallowHash.save`; ``methods`` maps names to classes."""
    path = os.path.join(directory, "model.json")
    if not os.path.isfile(path):
        raise UsageError(
            f"no shallow hashing model in {directory} (no model.json); save one "
            "with model.save(dir)"
        )
    with open(path) as f:
        meta = json.load(f)
    if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise UsageError(f"{path} is not a {FORMAT} v{FORMAT_VERSION} model; refit and save it")
    if meta["method"] not in methods:
        raise UsageError(
            f"{path} holds an unknown method {meta['method']!r}; known: {', '.join(methods)}"
        )
    model = methods[meta["method"]](meta["bits"], meta["seed"], **meta["params"])
    missing = [k for k in meta["arrays"] if not os.path.isfile(os.path.join(directory, f"{k}.npy"))]
    if missing:
        raise UsageError(
            f"the model in {directory} lacks {', '.join(missing)}.npy; refit and save it again"
        )
    model.arrays = {
        k: np.load(os.path.join(directory, f"{k}.npy"), allow_pickle=False) for k in meta["arrays"]
    }
    model.info = meta["info"]
    model.input_dim = meta["input_dim"]
    return model
