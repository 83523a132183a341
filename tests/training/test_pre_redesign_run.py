"""A run directory written by the code before the redesign (commit cbc203f, when the modules
were tfhash/layers.py, tfhash/models.py, tfhash/train.py …) resumes, finishes and exports with
today's code, and its checkpoints, whose Keras configs name the old module paths, load.

The fixture tests/fixtures/pre_redesign_run is an LSDH run on cached features of a frozen
backbone, 2 epochs of 3 steps, interrupted (Ctrl-C) after its first epoch; its flags name the
image folder ``colours`` and the weights file ``small.weights.h5`` by relative paths, which this
test writes again, identically, in its working directory (``helpers.write_folder``; the
backbone built under ``keras.utils.set_random_seed(1)``)."""

import json
import os
import shutil
import zipfile

import numpy as np
import pytest

from tfhash.config import TrainConfig
from tfhash.train import train

from helpers import assert_export_gives_the_report_codes, write_folder

pytestmark = pytest.mark.slow  # trains a network

FIXTURE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "pre_redesign_run"
)


@pytest.fixture
def old_run(tmp_path, monkeypatch):
    import keras

    from tfhash.models import backbones

    monkeypatch.chdir(tmp_path)
    write_folder(tmp_path / "colours")
    keras.utils.set_random_seed(1)
    backbones.build_backbone("resnet_small", 32).save_weights("small.weights.h5")
    shutil.copytree(FIXTURE, tmp_path / "pre_redesign_run")
    return tmp_path / "pre_redesign_run"


def test_the_fixture_was_written_by_the_old_layout():
    with zipfile.ZipFile(os.path.join(FIXTURE, "checkpoints", "latest.keras")) as archive:
        config = json.loads(archive.read("config.json"))
    modules = json.dumps(config)
    assert '"tfhash.layers"' in modules and '"tfhash.models"' in modules
    assert "tfhash.models.layers" not in modules
    assert json.load(open(os.path.join(FIXTURE, "checkpoints", "latest.keras.json"))) == {
        "epoch": 1
    }
    assert not os.path.exists(os.path.join(FIXTURE, "metrics.json"))  # unfinished


def test_an_old_run_resumes_to_the_end_and_exports(old_run, capsys):
    import keras

    # Its checkpoints load as they are (registered names, not module paths, find the classes).
    head = keras.saving.load_model(old_run / "checkpoints" / "best_head.keras")
    assert head.output.shape[-1] == 8
    settings = json.loads((old_run / "flags.json").read_text())
    assert settings["margin"] is None  # the old default: the loss's 1.0, kept on resume

    metrics = train(TrainConfig(**settings))
    assert "resuming pre_redesign_run after epoch 1 of 2" in capsys.readouterr().out
    assert metrics["run"]["epochs"] == 2 and 0 <= metrics["map"] <= 1
    rows = (old_run / "history.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows] == ["epoch", "0", "1"]
    # The resumed epoch trained with the loss the run started with (margin 1.0, not K/2 = 4).
    with zipfile.ZipFile(old_run / "checkpoints" / "latest.keras") as archive:
        loss = json.loads(archive.read("config.json"))["compile_config"]["loss"]
    assert loss["config"]["margin"] == 1.0
    assert np.load(old_run / "codes" / "query_codes.npy").shape[1] == 8
    assert_export_gives_the_report_codes(
        old_run, old_run.parent / "colours", old_run.parent / "models"
    )
