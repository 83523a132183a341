"""The frozen-feature cache: computed once then read, keyed by everything that changes the
features (images by content, weights by digest, size, order), and never half-written."""

import json
import os

import numpy as np
import pytest

from tfhash.data import Collection
from tfhash.errors import UsageError
from tfhash.models import backbones, features, torch_legacy


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A small ResNet's random weights, saved: a stand-in for pretrained weights."""
    import keras

    keras.utils.set_random_seed(0)
    path = str(tmp_path_factory.mktemp("weights") / "small.weights.h5")
    backbones.resnet_small(32, widths=(8, 8, 8), blocks_per_stage=1).save_weights(path)
    return path


@pytest.fixture()
def tiny_backbone(monkeypatch):
    """resnet_small with 8 filters: the cache does not care what network it caches."""
    real = backbones.resnet_small
    monkeypatch.setattr(
        backbones, "resnet_small", lambda size: real(size, widths=(8, 8, 8), blocks_per_stage=1)
    )


def collection(seed=0, n=10):
    rng = np.random.default_rng(seed)
    return Collection(
        "toy",
        labels=np.arange(n) % 2,
        class_names=["a", "b"],
        item_ids=np.array([f"toy/{i}" for i in range(n)]),
        pixels=rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8),
    )


def _files(directory):
    return sorted(p for p in os.listdir(directory))


def test_features_are_computed_once_then_read(tmp_path, weights_file, tiny_backbone, monkeypatch):
    c, idx = collection(), np.array([3, 1, 4, 0])
    first = features.backbone_features(c, idx, "resnet_small", weights_file, 32, tmp_path)
    assert first.dtype == np.float32 and first.shape == (4, 8)
    direct = features.compute_features(c, idx, "resnet_small", weights_file, 32)
    np.testing.assert_allclose(first, direct, rtol=1e-6, atol=1e-6)
    names = _files(tmp_path)
    assert len(names) == 2 and names[0].startswith("resnet_small-32px-")  # .json, .npz
    stored = json.loads((tmp_path / names[0]).read_text())
    assert stored["weights"]["sha256"] == torch_legacy.sha256_of(weights_file)
    monkeypatch.setattr(
        features, "compute_features", lambda *a, **k: pytest.fail("recomputed a cached array")
    )
    np.testing.assert_array_equal(
        features.backbone_features(c, idx, "resnet_small", weights_file, 32, tmp_path), first
    )


def test_other_settings_never_reuse_or_overwrite_a_cache(tmp_path, weights_file, tiny_backbone):
    c, idx = collection(), np.arange(6)
    features.backbone_features(c, idx, "resnet_small", weights_file, 32, tmp_path)
    (original,) = [p for p in _files(tmp_path) if p.endswith(".npz")]
    before = (tmp_path / original).read_bytes()
    changed_pixels = collection(seed=1)  # same ids and labels (fingerprint), other images
    other_weights = str(tmp_path / "other.weights.h5")
    backbones.resnet_small(32).save_weights(other_weights)  # another random draw
    for args in [
        (c, idx[::-1], weights_file, 32),
        (c, idx, weights_file, 40),
        (changed_pixels, idx, weights_file, 32),
        (c, idx, other_weights, 32),
    ]:
        features.backbone_features(args[0], args[1], "resnet_small", args[2], args[3], tmp_path)
    assert changed_pixels.fingerprint() == c.fingerprint()
    assert len([p for p in _files(tmp_path) if p.endswith(".npz")]) == 5
    assert (tmp_path / original).read_bytes() == before
    with pytest.raises(UsageError, match="weights=none"):
        features.backbone_features(c, idx, "resnet_small", "none", 32, tmp_path)


def test_image_files_are_keyed_by_content_not_by_path_or_time(tmp_path):
    """A dataset copied again (new paths, new modification times) keeps its cache key; an
    edited image changes it; a missing one is a one-line error."""

    def folder(name, payloads):
        directory = tmp_path / name
        directory.mkdir()
        paths = []
        for i, payload in enumerate(payloads):
            path = directory / f"{i}.png"
            path.write_bytes(payload)
            os.utime(path, (1e9 + 7 * i, 1e9 + 7 * i) if name == "a" else None)
            paths.append(str(path))
        return Collection(
            "toy",
            labels=np.arange(3) % 2,
            class_names=["a", "b"],
            item_ids=np.array([f"toy/{i}" for i in range(3)]),
            files=np.array(paths),
        )

    payloads = [b"one", b"two", b"three"]
    original, copied = folder("a", payloads), folder("b", payloads)
    edited = folder("c", [b"one", b"tw0", b"three"])
    idx = np.arange(3)
    assert features._image_digest(original, idx) == features._image_digest(copied, idx)
    assert features._image_digest(original, idx) != features._image_digest(edited, idx)
    os.remove(copied.files[1])
    with pytest.raises(UsageError, match="1.png is missing or unreadable; restore it"):
        features._image_digest(copied, idx)


def test_a_file_with_another_key_under_this_name_is_left_alone(
    tmp_path, weights_file, tiny_backbone
):
    c, idx = collection(), np.arange(4)
    key = features.feature_key(c, idx, "resnet_small", weights_file, 32)
    path = features._free_or_matching_path(str(tmp_path), key)
    planted = dict(key, image_size=999)
    np.savez(path, features=np.zeros((4, 8), np.float32), key=np.array(json.dumps(planted)))
    before = open(path, "rb").read()
    result = features.backbone_features(c, idx, "resnet_small", weights_file, 32, tmp_path)
    assert result.any()  # computed, not the planted zeros
    assert open(path, "rb").read() == before
    assert os.path.exists(path[: -len(".npz")] + "-1.npz")


def test_an_interrupted_write_leaves_no_cache(tmp_path, weights_file, tiny_backbone, monkeypatch):
    c, idx = collection(), np.arange(4)

    def dies_halfway(file, **arrays):
        file.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(features.np, "savez", dies_halfway)
        with pytest.raises(KeyboardInterrupt):
            features.backbone_features(c, idx, "resnet_small", weights_file, 32, tmp_path)
    assert _files(tmp_path) == []  # neither the partial file nor a cache file
    result = features.backbone_features(c, idx, "resnet_small", weights_file, 32, tmp_path)
    assert result.shape == (4, 8) and len(_files(tmp_path)) == 2
