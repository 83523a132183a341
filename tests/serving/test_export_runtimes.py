"""The exported SavedModel outside this process: a fresh Python process and TensorFlow's C API.

TF Serving itself cannot be installed here; its SavedModel loader can. A fresh
interpreter that never imports tfhash must get the same codes as the in-memory
Keras model, and so must a C program that loads the model with
``TF_LoadSessionFromSavedModel`` — the loader TF Serving is built on — linked
against the libtensorflow shipped inside the tensorflow wheel.
"""

import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from tfhash import data

pytestmark = pytest.mark.slow  # trains or exports models, or runs commands in subprocesses

BITS = 12  # the conftest's shared model
SIZE = 32
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUIET = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(3).uniform(0, 255, (4, SIZE, SIZE, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    """A JPEG and two PNGs (one grey) of other sizes than the model's."""
    rng = np.random.default_rng(4)
    directory = tmp_path_factory.mktemp("images")
    paths = []
    for name, encoded in [
        ("a.jpg", tf.io.encode_jpeg(rng.integers(0, 256, (40, 52, 3), dtype=np.uint8))),
        ("b.png", tf.io.encode_png(rng.integers(0, 256, (64, 64, 1), dtype=np.uint8))),
        ("c.png", tf.io.encode_png(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))),
    ]:
        paths.append(str(directory / name))
        with open(paths[-1], "wb") as f:
            f.write(encoded.numpy())
    return paths


def decoded(paths):
    """The images as training decodes them (tfhash.data.decode_image)."""
    return np.stack([data.decode_image(open(p, "rb").read(), SIZE) for p in paths])


def reference_outputs(h):
    b = np.where(h >= 0, 1, -1).astype(np.int8)
    return {"codes": b, "packed": np.packbits(b > 0, axis=1), "embedding": h}


def assert_outputs_equal(outputs, h):
    expected = reference_outputs(h)
    for key in ("codes", "packed"):
        assert outputs[key].dtype == expected[key].dtype, key
        np.testing.assert_array_equal(outputs[key], expected[key], err_msg=key)
    assert outputs["embedding"].dtype == np.float32
    np.testing.assert_allclose(outputs["embedding"], h, rtol=0, atol=1e-6)


# --- A fresh Python process that does not import tfhash.

FRESH_PROCESS = textwrap.dedent("""
    import sys
    import numpy as np
    import tensorflow as tf

    model_dir, images_path, out_path, *files = sys.argv[1:]
    loaded = tf.saved_model.load(model_dir)
    pixels = loaded.signatures["serving_default"](images=tf.constant(np.load(images_path)))
    files = tf.constant([open(path, "rb").read() for path in files])
    encoded = loaded.signatures["encode_images"](image_bytes=files)
    np.savez(out_path, **{"images_" + k: v.numpy() for k, v in pixels.items()},
             **{"bytes_" + k: v.numpy() for k, v in encoded.items()})
    imported = sorted(m for m in sys.modules if m.split(".")[0] == "tfhash")
    assert not imported, imported
""")


def test_fresh_process_gets_the_same_codes(version_dir, model, images, image_files, tmp_path):
    script = tmp_path / "load.py"
    script.write_text(FRESH_PROCESS)
    np.save(tmp_path / "images.npy", images)
    result = subprocess.run(
        [
            sys.executable,
            str(script),
            version_dir,
            str(tmp_path / "images.npy"),
            str(tmp_path / "out.npz"),
            *image_files,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=QUIET,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = np.load(tmp_path / "out.npz")
    assert_outputs_equal(
        {k: out["images_" + k] for k in ("codes", "packed", "embedding")},
        model.predict(images, verbose=0),
    )
    assert_outputs_equal(
        {k: out["bytes_" + k] for k in ("codes", "packed", "embedding")},
        model.predict(decoded(image_files), verbose=0),
    )


# --- TensorFlow's C API: TF_LoadSessionFromSavedModel, as TF Serving loads models.

TF_DTYPES = {1: np.float32, 4: np.uint8, 6: np.int8}  # TF_FLOAT, TF_UINT8, TF_INT8


@pytest.fixture(scope="module")
def c_program(tmp_path_factory):
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler (cc/gcc) to build export/c_api_predict.c")
    tf_dir = os.path.dirname(tf.__file__)
    if not os.path.isfile(os.path.join(tf_dir, "include", "tensorflow", "c", "c_api.h")):
        pytest.skip(f"the tensorflow wheel in {tf_dir} ships no C headers (include/tensorflow/c)")
    binary = str(tmp_path_factory.mktemp("c") / "c_api_predict")
    result = subprocess.run(
        [
            compiler,
            "-O1",
            "-Wall",
            "-o",
            binary,
            os.path.join(REPO, "export", "c_api_predict.c"),
            "-I",
            os.path.join(tf_dir, "include"),
            "-L",
            tf_dir,
            "-l:libtensorflow_cc.so.2",
            "-l:libtensorflow_framework.so.2",
            f"-Wl,-rpath,{tf_dir}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return binary


def tensor_names(version_dir, signature):
    """Input and output tensor names of a signature, as saved_model_cli shows them."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    with open(os.path.join(version_dir, "saved_model.pb"), "rb") as f:
        saved.ParseFromString(f.read())
    signature = saved.meta_graphs[0].signature_def[signature]
    (input_info,) = signature.inputs.values()
    return input_info.name, {key: info.name for key, info in signature.outputs.items()}


def run_c(binary, version_dir, signature, input_arg, tmp_path):
    """Runs the C program; returns (returncode, outputs by key, stderr)."""
    input_name, outputs = tensor_names(version_dir, signature)
    files = {key: str(tmp_path / f"{key}.bin") for key in outputs}
    result = subprocess.run(
        [
            binary,
            version_dir,
            input_name,
            input_arg,
            *[f"{name}={files[key]}" for key, name in outputs.items()],
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=QUIET,
    )
    if result.returncode != 0:
        return result.returncode, None, result.stderr
    arrays = {}
    lines = dict(line.split(" ", 1) for line in result.stdout.strip().splitlines())
    for key, name in outputs.items():
        dtype_text, shape_text = lines[name].split(" ")
        dtype = TF_DTYPES[int(dtype_text.removeprefix("dtype="))]
        shape = tuple(int(d) for d in shape_text.removeprefix("shape=").split(","))
        arrays[key] = np.fromfile(files[key], dtype=dtype).reshape(shape)
    return 0, arrays, result.stderr


def test_c_api_runs_serving_default(c_program, version_dir, model, images, tmp_path):
    images.tofile(tmp_path / "images.f32")
    arg = f"float32:{','.join(map(str, images.shape))}:{tmp_path / 'images.f32'}"
    rc, outputs, stderr = run_c(c_program, version_dir, "serving_default", arg, tmp_path)
    assert rc == 0, stderr
    assert_outputs_equal(outputs, model.predict(images, verbose=0))


def test_c_api_runs_encode_images(c_program, version_dir, model, image_files, tmp_path):
    rc, outputs, stderr = run_c(
        c_program, version_dir, "encode_images", "bytes:" + ",".join(image_files), tmp_path
    )
    assert rc == 0, stderr
    assert_outputs_equal(outputs, model.predict(decoded(image_files), verbose=0))


@pytest.mark.parametrize("shape", [(2, SIZE, SIZE, 1), (SIZE, SIZE, 3)])
def test_c_api_refuses_images_of_the_wrong_shape(c_program, version_dir, shape, tmp_path):
    # Without the in-graph check, the rank-3 batch aborts the process in the convolution.
    np.zeros(shape, np.float32).tofile(tmp_path / "bad.f32")
    arg = f"float32:{','.join(map(str, shape))}:{tmp_path / 'bad.f32'}"
    rc, _, stderr = run_c(c_program, version_dir, "serving_default", arg, tmp_path)
    assert rc == 1, stderr[-2000:]
    got = ",".join(map(str, shape))
    assert f"[{got}] is not compatible with expected shape [?,{SIZE},{SIZE},3]" in stderr


def test_c_api_refuses_undecodable_bytes(c_program, version_dir, tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"these bytes are not an image")
    rc, _, stderr = run_c(
        c_program, version_dir, "encode_images", f"bytes:{tmp_path / 'bad.jpg'}", tmp_path
    )
    assert rc == 1, stderr[-2000:]
    assert "Unknown image file format" in stderr
