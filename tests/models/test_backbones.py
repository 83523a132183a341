"""Backbones: local weights files, the Keras applications, their sizes and their errors."""

import keras
import numpy as np
import pytest

from tfhash.errors import UsageError
from tfhash.models import backbones, build_model


def test_local_weights_file_is_loaded(images, tmp_path):
    source = backbones.build_backbone("resnet_small", 32)
    path = str(tmp_path / "backbone.weights.h5")
    source.save_weights(path)
    loaded = backbones.build_backbone("resnet_small", 32, weights=path)
    np.testing.assert_array_equal(
        loaded.predict(images, verbose=0), source.predict(images, verbose=0)
    )


def test_keras_application_backbone_loads_a_local_weights_file(tmp_path):
    source = backbones.build_backbone("mobilenetv3", 32)
    path = str(tmp_path / "mnv3.weights.h5")
    source.save_weights(path)
    loaded = backbones.build_backbone("mobilenetv3", 32, weights=path)
    for a, b in zip(source.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name,size,features", [("resnet50", 32, 2048), ("mobilenetv3", 32, 960)])
def test_keras_applications_backbones(name, size, features):
    model = build_model(name, bits=16, image_size=size)
    assert model.layers[1].output.shape[-1] == features
    assert model.output.shape[-1] == 16


def test_vgg16_uses_fc7_at_224():
    backbone = backbones.build_backbone("vgg16", 224)
    assert backbone.output.shape[-1] == 4096
    with pytest.raises(UsageError, match="image_size=224"):
        backbones.build_backbone("vgg16", 32)


@pytest.mark.parametrize(
    "name,weights,message",
    [
        ("alexnet", "none", "unknown backbone"),
        ("resnet_small", "imagenet", "no ImageNet weights"),
        ("resnet_small", "/nonexistent/w.h5", "does not exist"),
    ],
)
def test_backbone_errors_name_the_problem(name, weights, message):
    with pytest.raises(UsageError, match=message):
        backbones.build_backbone(name, 32, weights)


def test_imagenet_download_failure_says_how_to_proceed(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(keras.applications, "ResNet50", offline)
    with pytest.raises(UsageError, match="weights=<path>.*weights=none"):
        backbones.build_backbone("resnet50", 32, "imagenet")
