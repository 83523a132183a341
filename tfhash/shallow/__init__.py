r"""Shallow hashing baselines on fixed features: LSH, SH, ITQ, KSH, SDH, in NumPy and SciPy.

The LSDH paper compares with these on GIST and on CNN features (its "-CNN"
rows). Each method fits on a feature matrix ``[n, d]`` (raw pixels, a
backbone's pooled features, or your own) and encodes to int8 ±1 codes
``[n, K]``, the codes every other part of tfhash takes.

=======  ==========  ======================================================================
name     labels      what it fits
=======  ==========  ======================================================================
``lsh``  no          Gaussian hyperplanes through the mean (:mod:`~tfhash.shallow.lsh`)
``sh``   no          PCA box, lowest-frequency sinusoids (:mod:`~tfhash.shallow.sh`)
``itq``  no          PCA to K, then the rotation closest to the hypercube (:mod:`~tfhash.shallow.itq`)
``ksh``  yes         RBF kernel to 300 anchors, greedy bit-by-bit fit of ``K·S`` (:mod:`~tfhash.shallow.ksh`)
``sdh``  yes         RBF features to 1,000 anchors, discrete codes that predict the labels (:mod:`~tfhash.shallow.sdh`)
=======  ==========  ======================================================================

Example:

>>> import numpy as np
>>> from tfhash import shallow
>>> rng = np.random.default_rng(0)
>>> x, y = rng.normal(size=(300, 16)), rng.integers(0, 3, 300)
>>> model = shallow.get("itq", bits=8, seed=0).fit(x)
>>> model.encode(x).shape
(300, 8)
>>> shallow.get("ksh", bits=8, anchors=50).fit(x, y).encode(x[:1]).dtype
dtype('int8')

A fitted model saves to a directory (``model.json`` and ``.npy`` arrays) and
:func:`load` reads it back exactly. :mod:`tfhash.shallow.run` fits a method as a
training run (the same run directory as a deep method's) and :mod:`tfhash.shallow.export`
writes its encoding as TensorFlow ops for a SavedModel; those two import TensorFlow, this
package and its methods never do. See docs/shallow.md.
"""

import collections.abc

from tfhash import methods
from tfhash.errors import UsageError
from tfhash.shallow.base import ShallowHash, load_model
from tfhash.shallow.itq import ITQ
from tfhash.shallow.ksh import KSH
from tfhash.shallow.lsh import LSH
from tfhash.shallow.sdh import SDH
from tfhash.shallow.sh import SH


class _ShallowClasses(collections.abc.Mapping):
    """Method name → model class, a live view of the shallow methods of the one method table
    (:mod:`tfhash.methods`)."""

    def __getitem__(self, name):
        if name not in methods.names("shallow"):
            raise KeyError(name)
        return methods.REGISTRY[name].model_class()

    def __iter__(self):
        return iter(methods.names("shallow"))

    def __len__(self):
        return len(methods.names("shallow"))


METHODS = _ShallowClasses()


def get(name, bits, seed=0, **params):
    """An unfitted model of method ``name`` (one of :data:`METHODS`) with ``bits`` bits.

    Raises:
        UsageError: an unknown method, bits < 1, an unknown or out-of-range parameter.
    """
    if name not in METHODS:
        raise UsageError(f"unknown shallow method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name](bits, seed, **params)


def load(directory):
    """The fitted model saved in ``directory`` by ``model.save(directory)``."""
    return load_model(directory, METHODS)


def parse_params(text):
    """``"anchors=500,sigma=2.5"`` → ``{"anchors": "500", "sigma": "2.5"}`` (a flag's value).

    Values stay strings; :func:`get` converts them to each parameter's type.

    Example:

    >>> parse_params("anchors=500, sigma=2.5")
    {'anchors': '500', 'sigma': '2.5'}
    """
    params = {}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise UsageError(
                f"bad method parameter {item!r}; write name=value pairs separated "
                "by commas, e.g. anchors=500,sigma=2.5"
            )
        params[key.strip()] = value.strip()
    return params


__all__ = [
    "ITQ",
    "KSH",
    "LSH",
    "METHODS",
    "SDH",
    "SH",
    "ShallowHash",
    "get",
    "load",
    "parse_params",
]
