"""The serving graph and the SavedModel export (tfhash.serving, python -m tfhash.export)."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfhash import data, losses, models, serving
from tfhash.errors import UsageError
from tfhash.export import export_run

pytestmark = pytest.mark.slow  # trains or exports models, or runs commands in subprocesses

BITS = (
    12  # the conftest's shared model; not a multiple of 8: the packed codes carry 4 bits of padding
)
SIZE = 32


def reference_outputs(h):
    """The signature outputs written plainly from the package contract."""
    b = np.where(h >= 0, 1, -1).astype(np.int8)
    return {"codes": b, "packed": np.packbits(b > 0, axis=1), "embedding": h}


def assert_outputs_equal(outputs, h):
    expected = reference_outputs(h)
    assert set(outputs) == set(expected)
    assert outputs["codes"].dtype == tf.int8
    assert outputs["packed"].dtype == tf.uint8
    assert outputs["embedding"].dtype == tf.float32
    np.testing.assert_array_equal(outputs["codes"], expected["codes"])
    np.testing.assert_array_equal(outputs["packed"], expected["packed"])
    np.testing.assert_allclose(outputs["embedding"], expected["embedding"], rtol=0, atol=1e-6)


def encoded_images():
    """JPEG and PNG files of several sizes, grey and RGB, as the encode_images signature takes."""
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (45, 60, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (SIZE, SIZE, 1), dtype=np.uint8)
    small = rng.integers(0, 256, (17, 23, 3), dtype=np.uint8)
    return [
        tf.io.encode_jpeg(rgb).numpy(),
        tf.io.encode_png(grey).numpy(),
        tf.io.encode_png(small).numpy(),
    ]


@pytest.fixture(scope="module")
def loaded(version_dir):
    return tf.saved_model.load(version_dir)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).uniform(0, 255, (5, SIZE, SIZE, 3)).astype(np.float32)


@pytest.mark.parametrize("bits", range(1, 18))
def test_pack_codes_is_np_packbits(bits):
    codes = np.where(np.random.default_rng(bits).random((6, bits)) < 0.5, 1, -1).astype(np.int8)
    packed = serving.pack_codes(tf.constant(codes))
    assert packed.dtype == tf.uint8
    np.testing.assert_array_equal(packed, np.packbits(codes > 0, axis=1))


def test_serving_outputs_sign_of_zero_is_plus_one():
    outputs = serving.serving_outputs(
        tf.constant([[0.0, -0.0, -1e-7, 1e-7, 0.5, -0.5, 0.0, 0.0, -0.9]])
    )
    np.testing.assert_array_equal(outputs["codes"], [[1, 1, -1, 1, 1, -1, 1, 1, -1]])
    np.testing.assert_array_equal(outputs["packed"], [[0b11011011, 0b00000000]])


def test_export_writes_version_one_in_the_serving_layout(version_dir):
    assert os.path.basename(version_dir) == "1"
    assert os.path.isfile(os.path.join(version_dir, "saved_model.pb"))
    assert os.listdir(os.path.dirname(version_dir)) == ["1"]  # no partial directory left
    assert serving.next_version(os.path.dirname(version_dir)) == 2


def test_serving_default_matches_the_keras_model(loaded, model, images):
    outputs = loaded.signatures["serving_default"](images=tf.constant(images))
    assert_outputs_equal(outputs, model.predict(images, verbose=0))


@pytest.mark.parametrize("batch", [1, 3])
def test_any_batch_size(loaded, model, images, batch):
    outputs = loaded.signatures["serving_default"](images=tf.constant(images[:batch]))
    assert outputs["codes"].shape == (batch, BITS)
    assert outputs["packed"].shape == (batch, 2)
    assert_outputs_equal(outputs, model.predict(images[:batch], verbose=0))


def test_encode_images_decodes_as_at_training_time(loaded, model):
    files = encoded_images()
    expected = model.predict(np.stack([data.decode_image(f, SIZE) for f in files]), verbose=0)
    outputs = loaded.signatures["encode_images"](image_bytes=tf.constant(files))
    assert_outputs_equal(outputs, expected)


def test_signature_defs_declare_dtypes_and_a_dynamic_batch(version_dir):
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    with open(os.path.join(version_dir, "saved_model.pb"), "rb") as f:
        saved.ParseFromString(f.read())
    signatures = saved.meta_graphs[0].signature_def

    def shape(info):
        return [d.size for d in info.tensor_shape.dim]

    for name, key, dtype, input_shape in [
        ("serving_default", "images", tf.float32, [-1, SIZE, SIZE, 3]),
        ("encode_images", "image_bytes", tf.string, [-1]),
    ]:
        signature = signatures[name]
        assert signature.method_name == "tensorflow/serving/predict"
        assert list(signature.inputs) == [key]
        assert signature.inputs[key].dtype == dtype.as_datatype_enum
        assert shape(signature.inputs[key]) == input_shape
        outputs = signature.outputs
        assert {k: (outputs[k].dtype, shape(outputs[k])) for k in outputs} == {
            "codes": (tf.int8.as_datatype_enum, [-1, BITS]),
            "packed": (tf.uint8.as_datatype_enum, [-1, 2]),
            "embedding": (tf.float32.as_datatype_enum, [-1, BITS]),
        }


def test_saved_model_cli_lists_the_signatures(version_dir):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tensorflow.python.tools.saved_model_cli",
            "show",
            "--all",
            "--dir",
            version_dir,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    default = out[out.index("signature_def['serving_default']") :]
    default = default[: default.index("Method name is: tensorflow/serving/predict")]
    assert "inputs['images']" in default and "dtype: DT_FLOAT" in default
    assert "shape: (-1, 32, 32, 3)" in default
    for output, dtype, shape in [
        ("codes", "DT_INT8", "(-1, 12)"),
        ("packed", "DT_UINT8", "(-1, 2)"),
        ("embedding", "DT_FLOAT", "(-1, 12)"),
    ]:
        block = default[default.index(f"outputs['{output}']") :]
        assert block.index(f"dtype: {dtype}") < block.index("name:")
        assert block.index(f"shape: {shape}") < block.index("name:")
    encode = out[out.index("signature_def['encode_images']") :]
    encode = encode[: encode.index("Method name is: tensorflow/serving/predict")]
    assert "inputs['image_bytes']" in encode and "dtype: DT_STRING" in encode
    assert "shape: (-1)\n" in encode


@pytest.mark.parametrize(
    "shape", [(2, SIZE, SIZE, 1), (2, SIZE, SIZE, 4), (SIZE, SIZE, 3), (2, 16, 16, 3)]
)
def test_images_of_the_wrong_shape_are_refused(loaded, shape):
    got = ",".join(map(str, shape))
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=rf"Shape of tensor images \[{got}\] is not compatible with "
        rf"expected shape \[\?,{SIZE},{SIZE},3\]",
    ):
        loaded.signatures["serving_default"](images=tf.zeros(shape))


def test_undecodable_bytes_are_refused(loaded):
    with pytest.raises(tf.errors.InvalidArgumentError, match="Unknown image file format"):
        loaded.signatures["encode_images"](image_bytes=tf.constant([b"not an image"]))


def test_a_batch_of_bytes_must_be_a_vector(loaded):
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=r"Shape of tensor image_bytes \[1,1\] is not compatible with "
        r"expected shape \[\?\]",
    ):
        loaded.signatures["encode_images"](image_bytes=tf.constant([[encoded_images()[0]]]))


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_outputs_keep_their_dtypes_under_mixed_precision(policy, images, tmp_path):
    keras.mixed_precision.set_global_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        model = models.build_model("resnet_small", bits=BITS, image_size=SIZE)
        assert model.outputs[0].dtype == "float32"
        version_dir = serving.export_model(model, str(tmp_path))
        h = model.predict(images, verbose=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    signature = tf.saved_model.load(version_dir).signatures["serving_default"]
    assert_outputs_equal(signature(images=tf.constant(images)), h)


def test_versions_are_the_integer_directories(tmp_path):
    for name in ["1", "7", "notes", ".partial-9", "10"]:
        (tmp_path / name).mkdir()
    (tmp_path / "7" / "saved_model.pb").write_bytes(b"")
    assert serving.versions(str(tmp_path)) == [1, 7, 10]
    assert serving.next_version(str(tmp_path)) == 11
    assert serving.next_version(str(tmp_path / "new")) == 1
    assert serving.resolve_version_dir(str(tmp_path / "7")) == str(tmp_path / "7")
    assert serving.resolve_version_dir(str(tmp_path)) == str(tmp_path / "10")


def test_explicit_versions(model, tmp_path):
    export_dir = str(tmp_path / "m")
    with pytest.raises(UsageError, match="`version` must be a positive integer, got 0"):
        serving.export_model(model, export_dir, version=0)
    assert serving.export_model(model, export_dir, version=5) == os.path.join(export_dir, "5")
    with pytest.raises(UsageError, match=r"m/5 already exists; omit `version`"):
        serving.export_model(model, export_dir, version=5)
    assert serving.versions(export_dir) == [5]


def test_export_dir_that_is_a_file_is_refused(model, tmp_path):
    path = tmp_path / "model.txt"
    path.write_text("not a directory")
    with pytest.raises(UsageError, match=r"`export_dir` .*model.txt is a file; pass a directory"):
        serving.export_model(model, str(path))


def test_no_saved_model_to_resolve(tmp_path):
    with pytest.raises(
        UsageError,
        match=r"no SavedModel in .*; export one with python -m "
        r"tfhash.export",
    ):
        serving.resolve_version_dir(str(tmp_path))


# --- python -m tfhash.export: a training run directory in, a versioned SavedModel out.


def write_run_dir(run_dir, model, method):
    """A run directory as python -m tfhash.train leaves it: flags.json and a compiled checkpoint."""
    os.makedirs(os.path.join(run_dir, "checkpoints"))
    with open(os.path.join(run_dir, "flags.json"), "w") as f:
        json.dump(
            {
                "dataset": "digits",
                "method": method,
                "backbone": "resnet_small",
                "bits": BITS,
                "image_size": SIZE,
            },
            f,
        )
    model.compile(optimizer="sgd", loss=losses.get(method))
    model.save(os.path.join(run_dir, "checkpoints", "best.keras"))


@pytest.mark.parametrize("method", sorted(losses.METHODS))
def test_every_method_exports(method, model, images, tmp_path):
    write_run_dir(str(tmp_path / "run"), model, method)
    version_dir = export_run(str(tmp_path / "run"), str(tmp_path / "models"))
    signature = tf.saved_model.load(version_dir).signatures["serving_default"]
    assert_outputs_equal(signature(images=tf.constant(images)), model.predict(images, verbose=0))


def test_run_dir_without_a_checkpoint_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(
        UsageError,
        match=r"no checkpoint at .*run/checkpoints/best.keras; train "
        r"the run first",
    ):
        export_run(str(tmp_path / "run"), str(tmp_path / "models"))
    with pytest.raises(UsageError, match=r"run_dir=.*missing is not a directory"):
        export_run(str(tmp_path / "missing"), str(tmp_path / "models"))


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "tfhash.export", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )


def test_cli_exports_the_next_version(model, images, tmp_path):
    write_run_dir(str(tmp_path / "run"), model, "lsdh")
    export_dir = tmp_path / "models"
    (export_dir / "3").mkdir(parents=True)
    result = run_cli(f"--run_dir={tmp_path / 'run'}", f"--export_dir={export_dir}")
    assert result.returncode == 0, result.stderr
    assert f"exported to {export_dir / '4'}" in result.stdout
    signature = tf.saved_model.load(str(export_dir / "4")).signatures["serving_default"]
    assert_outputs_equal(signature(images=tf.constant(images)), model.predict(images, verbose=0))


def test_cli_usage_errors_are_one_line(tmp_path):
    (tmp_path / "run").mkdir()
    result = run_cli(f"--run_dir={tmp_path / 'run'}", f"--export_dir={tmp_path / 'models'}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: no checkpoint at {tmp_path / 'run' / 'checkpoints' / 'best.keras'}; train the "
        f"run first (python -m tfhash.train --run_dir={tmp_path / 'run'}) or pass the directory "
        "of a trained run"
    ]

    (tmp_path / "run" / "checkpoints").mkdir()
    (tmp_path / "run" / "checkpoints" / "best.keras").write_bytes(b"")
    (tmp_path / "models").write_text("a file")
    result = run_cli(f"--run_dir={tmp_path / 'run'}", f"--export_dir={tmp_path / 'models'}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: --export_dir {tmp_path / 'models'} is a file; pass a directory (created if "
        "missing)"
    ]
