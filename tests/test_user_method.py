"""A user's method is one loss file and one registry line; --helpfull lists every method's
hyperparameters."""

import json
import subprocess
import sys

import pytest

from tfhash import losses, methods
from tfhash.errors import UsageError
from tfhash.methods import Method, register
from tfhash.train import train

from test_train import _config, _write_folder

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
    folder = _write_folder(tmp_path / "colours")
    run_dir = tmp_path / "run"
    metrics = train(_config(run_dir, folder, method=user_method, method_args="margin=4.0",
                            epochs=1, steps_per_epoch=3))
    assert metrics["run"]["method"] == "contrastive" and 0 <= metrics["map"] <= 1
    header = (run_dir / "history.csv").read_text().splitlines()[0].split(",")
    assert header == ["epoch", "loss", "similar", "dissimilar", "val_map"]
    assert json.loads((run_dir / "flags.json").read_text())["method_args"] == "margin=4.0"
    assert losses.defaults(user_method) == {"margin": 8.0, "name": "contrastive",
                                            "reduction": "sum_over_batch_size"}
    with pytest.raises(UsageError, match="takes no argument 'margn'"):
        train(_config(tmp_path / "other", folder, method=user_method, method_args="margn=1"))


def test_helpfull_lists_every_method_with_its_hyperparameters():
    result = subprocess.run([sys.executable, "-m", "tfhash.train", "--helpfull"],
                            capture_output=True, text=True, timeout=120)
    text = " ".join(result.stdout.split())  # absl wraps the help text (and exits with 1)
    for name in methods.REGISTRY:
        assert f"{name}: " in text, name
    for listed in ("lsdh: margin=1.0, quantization_weight=0.8, isometric_weight=None, "
                   "mining=random, quadruplets_per_anchor=128",
                   "hashnet: alpha=None, beta_step=0.005", "ksh: anchors=300, labelled=2000"):
        assert listed in text, listed
