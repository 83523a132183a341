"""Test-wide settings: quiet TensorFlow logs, deterministic seeds, small thread pools."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


import pytest  # noqa: E402


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
