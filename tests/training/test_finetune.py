"""Fine-tuning a pretrained backbone end to end on images: which weights move, batch
normalisation, the head warm-up, the learning-rate warm-up, and the export's codes."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfhash import losses, models
from tfhash.errors import UsageError
from tfhash.models import backbones
from tfhash.train import learning_rate_schedule, train
from tfhash.training import trainer

from helpers import assert_export_gives_the_report_codes as _assert_export_gives_the_report_codes
from helpers import train_config as _config

pytestmark = pytest.mark.slow  # trains networks


def _kernel(model, name):
    (kernel,) = [w.numpy() for w in model.weights if w.path.endswith(f"{name}/kernel")]
    return kernel


def _bn_statistics(model):
    return {
        w.path: w.numpy()
        for w in model.weights
        if w.path.endswith(("moving_mean", "moving_variance"))
    }


def _one_step(batch_norm, trainable_blocks):
    """A fine-tuning model of the small ResNet with random 'pretrained' weights, before and
    after one LSDH step on a class-balanced batch."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    head = models.build_head(
        rng.normal(size=(32, 128)).astype(np.float32),
        bits=8,
        hidden=16,
        head_learning_rate_multiplier=1.0,
    )
    model = models.fine_tuning_model(head, "resnet_small", 32, "none", trainable_blocks, batch_norm)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=losses.get("lsdh"))
    before = {w.path: w.numpy() for w in model.weights}
    images = rng.integers(0, 256, (16, 32, 32, 3)).astype(np.float32)
    labels = np.repeat(np.arange(4), 4)
    step = trainer.make_step(model, tf.distribute.get_strategy())
    step((tf.constant(images), tf.constant(labels)))
    return model, before


def test_a_step_moves_the_trainable_blocks_and_leaves_the_frozen_ones_and_statistics():
    model, before = _one_step("frozen", trainable_blocks=2)
    after = {w.path: w.numpy() for w in model.weights}
    # The small ResNet's 6 blocks: the last two (stage3_block1, stage3_block2) train.
    for name in ("stage3_block1_conv1", "stage3_block2_conv2"):
        path = next(p for p in after if p.endswith(f"{name}/kernel"))
        assert np.abs(after[path] - before[path]).max() > 0, name
    for name in ("stem_conv", "stage1_block1_conv1", "stage2_block2_conv2"):
        path = next(p for p in after if p.endswith(f"{name}/kernel"))
        np.testing.assert_array_equal(after[path], before[path])
    # Frozen batch normalisation keeps its statistics (and its scale and offset).
    for path, value in _bn_statistics(model).items():
        np.testing.assert_array_equal(value, before[path])
    gammas = [p for p in after if p.endswith("gamma")]
    assert gammas and all(np.array_equal(after[p], before[p]) for p in gammas)
    # The head trains.
    assert (
        np.abs(
            _kernel(model, "hashing")
            - next(v for p, v in before.items() if p.endswith("hashing/kernel"))
        ).max()
        > 0
    )


def test_batch_norm_train_updates_the_statistics_and_every_layer_trains():
    model, before = _one_step("train", trainable_blocks=0)
    moved = [
        path
        for path, value in _bn_statistics(model).items()
        if not np.array_equal(value, before[path])
    ]
    assert len(moved) == len(_bn_statistics(model))
    stem = next(p for p in before if p.endswith("stem_conv/kernel"))
    assert np.abs(_kernel(model, "stem_conv") - before[stem]).max() > 0


def test_frozen_batch_norm_normalises_with_the_moving_statistics_in_training():
    """Keras 3's frozen BatchNormalization runs in inference mode even with training=True:
    the output is the same in both modes."""
    keras.utils.set_random_seed(0)
    backbone = backbones.freeze_batch_norm(backbones.build_backbone("resnet_small", 32))
    images = np.random.default_rng(1).integers(0, 256, (8, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(
        backbone(images, training=True), backbone(images, training=False), rtol=1e-5, atol=1e-5
    )


def test_an_end_to_end_run_warms_the_head_up_and_exports_its_training_codes(
    tmp_path, folder, weights_file
):  # noqa: F811
    run_dir = tmp_path / "run"
    metrics = train(
        _config(
            run_dir,
            folder,
            weights=weights_file,
            trainable_blocks=2,
            head_hidden=16,
            head_warmup_epochs=2,
            lr_warmup_epochs=1,
            feature_cache=str(tmp_path / "cache"),
            epochs=3,
            steps_per_epoch=6,
            optimizer="adam",
            learning_rate=1e-4,
        )
    )
    assert metrics["map"] > 0.5  # four colour classes: chance ~0.25
    # The exported model is the one trained: the pretrained trunk unchanged, the last
    # blocks moved.
    pretrained = backbones.build_backbone("resnet_small", 32, weights_file)
    best = keras.saving.load_model(run_dir / "checkpoints" / "best.keras")
    np.testing.assert_array_equal(
        _kernel(best, "stage2_block2_conv1"),
        pretrained.get_layer("stage2_block2_conv1").kernel.numpy(),
    )
    assert (
        np.abs(
            _kernel(best, "stage3_block2_conv1")
            - pretrained.get_layer("stage3_block2_conv1").kernel.numpy()
        ).max()
        > 0
    )
    _assert_export_gives_the_report_codes(run_dir, folder, tmp_path / "models")


def test_the_learning_rate_warms_up_linearly_then_decays_to_zero():
    schedule = learning_rate_schedule(1e-3, 100, warmup_steps=10)
    values = [float(schedule(step)) for step in (0, 5, 10, 55, 100)]
    np.testing.assert_allclose(values, [0.0, 5e-4, 1e-3, 5e-4, 0.0], atol=1e-9)
    no_warmup = learning_rate_schedule(1e-3, 100)
    np.testing.assert_allclose(
        [float(no_warmup(s)) for s in (0, 50, 100)], [1e-3, 5e-4, 0.0], atol=1e-9
    )


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(batch_norm="frozen"), "batch_norm=frozen .* weights=none"),
        (dict(trainable_blocks=1), "`trainable_blocks` .* give `weights`"),
        (dict(head_warmup_epochs=2), "`head_warmup_epochs` .* pretrained backbone"),
        (dict(lr_warmup_epochs=2), r"`lr_warmup_epochs` must be in \[0, epochs=2\)"),
    ],
)
def test_fine_tuning_settings_that_cannot_work_are_refused(
    tmp_path,
    folder,
    overrides,  # noqa: F811
    message,
):
    with pytest.raises(UsageError, match=message):
        train(_config(tmp_path / "run", folder, **overrides))


def test_a_run_made_before_these_settings_existed_still_resumes(tmp_path, folder):  # noqa: F811
    run_dir = tmp_path / "run"
    train(_config(run_dir, folder, epochs=1))
    flags = json.loads((run_dir / "flags.json").read_text())
    for name in (
        "batch_norm",
        "head_warmup_epochs",
        "head_warmup_learning_rate",
        "lr_warmup_epochs",
    ):
        del flags[name]  # what a run of the version before them recorded
    (run_dir / "flags.json").write_text(json.dumps(flags))
    train(_config(run_dir, folder, epochs=2))  # extends it, not refused
    assert json.loads((run_dir / "checkpoints" / "latest.keras.json").read_text())["epoch"] == 2
    with pytest.raises(UsageError, match="batch_norm='auto' there vs 'train' now"):
        train(_config(run_dir, folder, epochs=3, batch_norm="train"))
