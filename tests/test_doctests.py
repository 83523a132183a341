"""The examples in the package's docstrings, run as tests against the installed package.

Collected here rather than with ``--doctest-modules``: that collects the checkout's files, which
clash with the installed package the other tests import (pytest's "import file mismatch").
"""

import doctest
import importlib
import pkgutil

import pytest

import tfhash

# numba source compiled on import (no examples); the rest of the package is collected.
SKIPPED = {"tfhash.evaluation._kernels"}
MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(tfhash.__path__, "tfhash.")
    if info.name not in SKIPPED
)


def test_the_package_has_examples():
    finder = doctest.DocTestFinder()
    examples = sum(
        len(test.examples)
        for name in MODULES
        for test in finder.find(importlib.import_module(name))
    )
    assert examples >= 50


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), report=True, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
