"""benchmarks/gpu_finetune.py at a tiny setting on the CPU: pack the training images, train
(throughput in float32 and mixed_float16, resumable), encode and score here; the encoded codes
are the trained network's."""

import json

import keras
import numpy as np
import pytest

from tfhash import data

from helpers import load_benchmark


@pytest.fixture(scope="module")
def gpu():
    return load_benchmark("gpu_finetune")


@pytest.mark.slow  # trains and encodes: tens of seconds
def test_pack_train_encode_at_a_tiny_setting(gpu, tmp_path, folder, weights_file):
    packed = str(tmp_path / "train.npz")
    gpu.main(["pack", f"--data_dir={folder}", "--protocol=fraction", "--out=" + packed])
    arrays = np.load(packed)
    collection = data.load_collection("folder", str(folder))
    split = data.make_split(collection, "fraction")
    assert arrays["train_images"].shape == (len(split.train), 32, 32, 3)
    np.testing.assert_array_equal(arrays["val_labels"], collection.labels[split.val])

    train = [
        "train",
        "--data=" + packed,
        f"--out={tmp_path / 'out'}",
        f"--work={tmp_path / 'work'}",
        "--methods=lsdh",
        "--bits=8",
        "--backbone=resnet_small",
        f"--weights={weights_file}",
        "--image_size=32",
        "--throughput_steps=1",
        "--override=epochs=2,steps_per_epoch=2,head_warmup_epochs=1,eval_every=1,"
        "batch_size=16,images_per_class=4,head_hidden=8,lr_warmup_epochs=0",
    ]
    try:
        gpu.main(train)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    throughput = json.loads((tmp_path / "out" / "throughput.json").read_text())
    assert set(throughput) == {"float32", "mixed_float16"}
    assert all(rate > 0 for rate in throughput.values())
    model_file = tmp_path / "out" / "lsdh_8.npz"
    saved = np.load(model_file)
    assert 0 <= float(saved["val_map"]) <= 1 and int(saved["epoch"]) >= 1
    assert all(saved[name].dtype == np.float16 for name in saved.files if name.startswith("w"))

    # A second call on the same machine trains nothing again.
    before = model_file.read_bytes()
    try:
        gpu.main(train)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert (tmp_path / "out" / "lsdh_8.npz").read_bytes() == before

    run_dir = tmp_path / "run"
    gpu.main(
        [
            "encode",
            f"--model={model_file}",
            f"--run_dir={run_dir}",
            f"--data_dir={folder}",
            "--protocol=fraction",
        ]
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0 <= metrics["map"] <= 1
    codes = np.load(run_dir / "codes" / "query_codes.npy")
    assert codes.shape == (len(split.query), 8) and set(np.unique(codes)) <= {-1, 1}
    np.testing.assert_array_equal(
        np.load(run_dir / "codes" / "query_labels.npy"), collection.labels[split.query]
    )
