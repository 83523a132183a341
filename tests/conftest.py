"""Test-wide settings (quiet TensorFlow logs, no GPU) and the fixtures several test files share.

tests/ goes on ``sys.path`` so that test files in any subdirectory ``import helpers``.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
if os.path.dirname(os.path.abspath(__file__)) not in sys.path:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


import pytest  # noqa: E402

import helpers  # noqa: E402


@pytest.fixture(scope="module")
def images():
    """Six random 32 x 32 RGB images, float32 pixels in [0, 255)."""
    import numpy as np

    return np.random.default_rng(0).uniform(0, 255, size=(6, 32, 32, 3)).astype("float32")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A four-colour image folder (``helpers.write_folder``), written once per test module.

    A module that needs another folder defines its own ``folder`` fixture, which wins.
    """
    return helpers.write_folder(tmp_path_factory.mktemp("colours"))


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A 'pretrained' small ResNet as a user's local weights file (CI has no ImageNet weights)."""
    import keras

    from tfhash.models import backbones

    keras.utils.set_random_seed(1)
    path = str(tmp_path_factory.mktemp("weights") / "small.weights.h5")
    backbones.build_backbone("resnet_small", 32).save_weights(path)
    return path


@pytest.fixture(scope="session")
def model():
    """The default hashing network at 12 bits and 32 x 32 pixels, built once for the session.

    12 is not a multiple of 8, so packed codes carry 4 bits of padding. test_export,
    test_export_runtimes and test_encode use it (their BITS and SIZE constants say so);
    test_client defines its own 20-bit model.
    """
    import keras

    from tfhash import models

    keras.utils.set_random_seed(0)
    return models.build_model("resnet_small", bits=12, image_size=32)


@pytest.fixture(scope="session")
def version_dir(model, tmp_path_factory):
    """``model`` exported once as version 1 of a base directory that no test writes into."""
    from tfhash import serving

    return serving.export_model(model, str(tmp_path_factory.mktemp("models") / "tfhash"))


# The files that take longest, in that order, run first. Under `-n 2 --dist loadfile` each file
# runs whole on one worker, taking the next file in collection order when it finishes; a long
# file collected last (tests/training/ sorts last) kept one worker busy while the other sat
# idle. Longest first lets the short files even the two workers out at the end.
LONGEST_FIRST = (
    "tests/training/test_train.py",
    "tests/training/test_run_dir.py",
    "tests/integration/test_distribute.py",
    "tests/commands/test_cli.py",
    "tests/commands/test_export.py",
)


def pytest_collection_modifyitems(items):
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))
