"""A user's method is one file and one registry line, a prepare step and its run-directory file
included; --helpfull lists every method's hyperparameters."""

import json
import subprocess
import sys

import numpy as np
import pytest

from tfhash import losses, methods
from tfhash.errors import UsageError
from tfhash.methods import Method, register
from tfhash.train import train

from helpers import assert_export_gives_the_report_codes, write_folder
from helpers import train_config as _config

pytestmark = pytest.mark.slow  # trains networks

# The user's file: a contrastive loss on every pair of the batch, from the pairwise helpers
# (queries and keys: here the batch against itself).
CONTRASTIVE = '''
import keras
import tensorflow as tf

from tfhash.losses.base import HashingLoss
from tfhash.losses.pairwise import label_similarity, squared_distances


@keras.saving.register_keras_serializable(package="my_hashing")  # the checkpoints reload it
class ContrastiveLoss(HashingLoss):
    """Pulls similar pairs together, pushes dissimilar ones beyond a margin."""

    term_names = ("similar", "dissimilar")

    def __init__(self, margin=8.0, name="contrastive", reduction="sum_over_batch_size"):
        super().__init__(name=name, reduction=reduction)
        self.margin = margin

    def terms(self, y_true, y_pred):
        h = tf.cast(y_pred, tf.float32)
        d = squared_distances(h, h)
        s = tf.cast(label_similarity(y_true, y_true), tf.float32)
        similar = tf.reduce_sum(s * d) / tf.maximum(tf.reduce_sum(s), 1.0)
        dissimilar = (tf.reduce_sum((1.0 - s) * tf.nn.relu(self.margin - d))
                      / tf.maximum(tf.reduce_sum(1.0 - s), 1.0))
        return {"loss": similar + dissimilar, "similar": similar, "dissimilar": dissimilar}

    def get_config(self):
        return {**super().get_config(), "margin": self.margin}
'''


# A two-stage user method in one file: its prepare step draws a code per class once, keeps them
# in the run directory (prototypes.npz) and hands each training image its class's code; the
# loss regresses the relaxed codes onto them.
PROTOTYPE = """
import os

import keras
import numpy as np
import tensorflow as tf

from tfhash.losses.base import HashingLoss

COMPUTED = []  # one entry per time the prototypes were drawn rather than read back


def prepare(config, collection, split, run_dir):
    path = os.path.join(run_dir, "prototypes.npz")
    if os.path.isfile(path):
        codes = np.load(path)["codes"]
    else:
        rng = np.random.default_rng(config.seed)
        codes = np.where(rng.random((len(collection.class_names), config.bits)) < 0.5, -1, 1)
        np.savez(path, codes=codes.astype(np.int8))
        COMPUTED.append(path)
    return {"train_targets": codes[collection.labels[split.train]].astype(np.int8)}


@keras.saving.register_keras_serializable(package="my_hashing")
class PrototypeLoss(HashingLoss):
    term_names = ("regression",)

    def __init__(self, name="prototype", reduction="sum_over_batch_size"):
        super().__init__(name=name, reduction=reduction)

    def terms(self, y_true, y_pred):
        value = tf.reduce_mean(tf.square(tf.cast(y_pred, tf.float32) - tf.cast(y_true, tf.float32)))
        return {"loss": value, "regression": value}
"""


@pytest.fixture
def user_method(tmp_path, monkeypatch):
    package = tmp_path / "user_package" / "my_hashing"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "contrastive.py").write_text(CONTRASTIVE)
    monkeypatch.syspath_prepend(str(tmp_path / "user_package"))
    monkeypatch.setattr(methods, "REGISTRY", dict(methods.REGISTRY))  # restored afterwards
    # The one line a user adds:
    register(Method("contrastive", "my_hashing.contrastive:ContrastiveLoss", "a user's loss"))
    return "contrastive"


def test_a_user_method_trains_through_tfhash_train(tmp_path, user_method):
    folder = write_folder(tmp_path / "colours")
    run_dir = tmp_path / "run"
    metrics = train(
        _config(
            run_dir,
            folder,
            method=user_method,
            method_args="margin=4.0",
            epochs=1,
            steps_per_epoch=3,
        )
    )
    assert metrics["run"]["method"] == "contrastive" and 0 <= metrics["map"] <= 1
    header = (run_dir / "history.csv").read_text().splitlines()[0].split(",")
    assert header == ["epoch", "loss", "similar", "dissimilar", "val_map"]
    assert json.loads((run_dir / "flags.json").read_text())["method_args"] == "margin=4.0"
    assert losses.defaults(user_method) == {
        "margin": 8.0,
        "name": "contrastive",
        "reduction": "sum_over_batch_size",
    }
    with pytest.raises(UsageError, match="takes no argument 'margn'"):
        train(_config(tmp_path / "other", folder, method=user_method, method_args="margn=1"))


@pytest.fixture
def two_stage_method(tmp_path, monkeypatch):
    package = tmp_path / "user_package" / "my_two_stage"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "prototype.py").write_text(PROTOTYPE)
    monkeypatch.syspath_prepend(str(tmp_path / "user_package"))
    monkeypatch.setattr(methods, "REGISTRY", dict(methods.REGISTRY))  # restored afterwards
    # The one line a user adds: the loss, the prepare step and the file it keeps in a run.
    register(
        Method(
            "prototype",
            "my_two_stage.prototype:PrototypeLoss",
            "class prototypes",
            prepare="my_two_stage.prototype:prepare",
            run_dir_files=("prototypes.npz",),
        )
    )
    return "prototype"


def test_a_user_method_with_a_prepare_step_trains_resumes_and_exports(tmp_path, two_stage_method):
    import importlib

    folder = write_folder(tmp_path / "colours")
    run_dir = tmp_path / "run"
    first = train(_config(run_dir, folder, method=two_stage_method, epochs=1, steps_per_epoch=4))
    assert first["run"]["epochs"] == 1
    saved = np.load(run_dir / "prototypes.npz")["codes"]
    assert saved.shape == (4, 8)  # four colour classes, 8 bits
    header = (run_dir / "history.csv").read_text().splitlines()[0].split(",")
    assert header == ["epoch", "loss", "regression", "val_map"]
    # Extended: the run directory, its own file in it, is resumed, and the prototypes are read
    # back, not drawn again.
    metrics = train(_config(run_dir, folder, method=two_stage_method, epochs=2, steps_per_epoch=4))
    assert metrics["run"]["epochs"] == 2 and (run_dir / "finished_at_1").is_dir()
    module = importlib.import_module("my_two_stage.prototype")
    assert module.COMPUTED == [str(run_dir / "prototypes.npz")]
    np.testing.assert_array_equal(np.load(run_dir / "prototypes.npz")["codes"], saved)
    assert_export_gives_the_report_codes(run_dir, folder, tmp_path / "models")
    # Without its registry line the same directory is not a tfhash run: the file is the method's.
    methods.REGISTRY.pop(two_stage_method)
    with pytest.raises(UsageError, match="holds no tfhash run but other files.*prototypes.npz"):
        train(_config(run_dir, folder, epochs=2))


def test_helpfull_lists_every_method_with_its_hyperparameters():
    result = subprocess.run(
        [sys.executable, "-m", "tfhash.train", "--helpfull"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    text = " ".join(result.stdout.split())  # absl wraps the help text (and exits with 1)
    for name in methods.REGISTRY:
        assert f"{name}: " in text, name
    for listed in (
        "lsdh: margin=None, quantization_weight=0.8, isometric_weight=None, "
        "mining=random, quadruplets_per_anchor=128",
        "quadruplet_chen: margin=1.0,",
        "hashnet: alpha=None, beta_step=0.005",
        "ksh: anchors=300, labelled=2000",
    ):
        assert listed in text, listed
