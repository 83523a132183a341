"""export/client.py against stand-in TF Serving endpoints that run the exported SavedModel.

No TF Serving binary can be installed here, so each protocol gets a small server
in this process that decodes a request the way TF Serving documents it (REST:
columnar ``inputs`` with ``{"b64": ...}`` for binary strings; gRPC: a
``PredictRequest`` whose tensors are ``TensorProto``), runs the named signature of
the loaded SavedModel and answers as TF Serving does (REST: ``{"outputs": {...}}``
or ``{"error": ...}`` with an HTTP error status; gRPC: ``PredictResponse`` tensors
in their typed value fields, or an INVALID_ARGUMENT status).
"""

import base64
import importlib.util
import json
import os
import re
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2

from tfhash import data, models, serving

pytestmark = pytest.mark.slow  # trains or exports models, or runs commands in subprocesses

try:
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
except ImportError:  # the gRPC side of the client needs tensorflow-serving-api
    predict_pb2 = prediction_service_pb2_grpc = None

needs_serving_api = pytest.mark.skipif(
    predict_pb2 is None,
    reason="the gRPC client needs tensorflow-serving-api (pip install tensorflow-serving-api)",
)

BITS = 20
SIZE = 32
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_client():
    spec = importlib.util.spec_from_file_location(
        "tfhash_serving_client", os.path.join(REPO, "export", "client.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


client = load_client()


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(5)
    return models.build_model("resnet_small", bits=BITS, image_size=SIZE)


@pytest.fixture(scope="module")
def signatures(model, tmp_path_factory):
    version_dir = serving.export_model(model, str(tmp_path_factory.mktemp("models") / "tfhash"))
    return tf.saved_model.load(version_dir).signatures


@pytest.fixture(scope="module")
def files():
    rng = np.random.default_rng(6)
    return [
        tf.io.encode_jpeg(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)).numpy(),
        tf.io.encode_png(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).numpy(),
    ]


def expected_outputs(model, files):
    h = model.predict(np.stack([data.decode_image(f, SIZE) for f in files]), verbose=0)
    b = np.where(h >= 0, 1, -1).astype(np.int8)
    return {"codes": b, "packed": np.packbits(b > 0, axis=1), "embedding": h}


def assert_outputs_equal(outputs, expected):
    for key in ("codes", "packed"):
        assert outputs[key].dtype == expected[key].dtype, key
        np.testing.assert_array_equal(outputs[key], expected[key], err_msg=key)
    assert outputs["embedding"].dtype == np.float32
    np.testing.assert_allclose(outputs["embedding"], expected["embedding"], rtol=0, atol=1e-6)


def run_signature(signatures, name, inputs):
    """Runs a signature on NumPy inputs, converted to the signature's input dtypes."""
    function = signatures[name]
    specs = function.structured_input_signature[1]
    outputs = function(**{k: tf.constant(v, dtype=specs[k].dtype) for k, v in inputs.items()})
    return {k: v.numpy() for k, v in outputs.items()}


# --- REST: POST /v1/models/<name>:predict


def decode_json_tensor(value):
    """A JSON tensor value as TF Serving reads it: {"b64": ...} objects are binary strings."""
    if isinstance(value, dict):
        assert list(value) == ["b64"], value
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [decode_json_tensor(v) for v in value]
    return value


@pytest.fixture(scope="module")
def rest_server(signatures):
    requests = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            requests.append((self.path, self.headers["Content-Type"], body))
            match = re.fullmatch(r"/v1/models/([^/:]+):predict", self.path)
            if not match or match.group(1) != "tfhash":
                return self.answer(404, {"error": f"Servable not found for request: {self.path}"})
            inputs = {k: decode_json_tensor(v) for k, v in body["inputs"].items()}
            try:
                outputs = run_signature(
                    signatures, body.get("signature_name", "serving_default"), inputs
                )
            except tf.errors.InvalidArgumentError as e:
                return self.answer(400, {"error": e.message})
            self.answer(200, {"outputs": {k: v.tolist() for k, v in outputs.items()}})

        def answer(self, status, body):
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", requests
    server.shutdown()
    server.server_close()


def test_rest_request_body_is_columnar_base64():
    assert client.rest_request([b"\x00\xff", b"jpg"]) == {
        "signature_name": "encode_images",
        "inputs": {"image_bytes": [{"b64": "AP8="}, {"b64": "anBn"}]},
    }


def test_rest_round_trip(rest_server, model, files):
    url, requests = rest_server
    outputs = client.encode_rest(files, url, "tfhash")
    path, content_type, body = requests[-1]
    assert path == "/v1/models/tfhash:predict" and content_type == "application/json"
    assert decode_json_tensor(body["inputs"]["image_bytes"]) == files
    assert_outputs_equal(outputs, expected_outputs(model, files))


def test_rest_errors_carry_the_server_message(rest_server):
    url, _ = rest_server
    with pytest.raises(client.ServingError, match="Unknown image file format"):
        client.encode_rest([b"not an image"], url, "tfhash")
    with pytest.raises(client.ServingError, match="Servable not found"):
        client.encode_rest([b"not an image"], url, "no_such_model")


def test_parse_rest_response_gives_the_output_dtypes():
    outputs = client.parse_rest_response(
        {"outputs": {"codes": [[1, -1]], "packed": [[128]], "embedding": [[0.25, -0.5]]}}
    )
    assert outputs["codes"].dtype == np.int8 and outputs["packed"].dtype == np.uint8
    np.testing.assert_array_equal(outputs["packed"], [[128]])
    np.testing.assert_array_equal(outputs["embedding"], np.array([[0.25, -0.5]], np.float32))


# --- gRPC: tensorflow.serving.PredictionService/Predict


def as_proto_field(array):
    """A TensorProto with values in the typed field, as TF Serving's Tensor::AsProtoField."""
    proto = tensor_pb2.TensorProto(dtype=tf.as_dtype(array.dtype).as_datatype_enum)
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    if array.dtype == np.float32:
        proto.float_val.extend(array.ravel().tolist())
    else:
        proto.int_val.extend(array.ravel().tolist())
    return proto


@pytest.fixture(scope="module")
def grpc_server(signatures):
    requests = []

    class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):
            requests.append(request.SerializeToString())
            if request.model_spec.name != "tfhash":
                context.abort(
                    grpc.StatusCode.NOT_FOUND,
                    f"Servable not found for request: {request.model_spec.name}",
                )
            inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
            try:
                outputs = run_signature(
                    signatures, request.model_spec.signature_name or "serving_default", inputs
                )
            except tf.errors.InvalidArgumentError as e:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, e.message)
            response = predict_pb2.PredictResponse()
            response.model_spec.CopyFrom(request.model_spec)
            for key, value in outputs.items():
                response.outputs[key].CopyFrom(as_proto_field(value))
            return response

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", requests
    server.stop(None)


@needs_serving_api
def test_grpc_request_fields(files):
    request = predict_pb2.PredictRequest.FromString(
        client.grpc_request(files, "tfhash").SerializeToString()
    )
    assert request.model_spec.name == "tfhash"
    assert request.model_spec.signature_name == "encode_images"
    assert list(request.inputs) == ["image_bytes"]
    tensor = request.inputs["image_bytes"]
    assert tensor.dtype == tf.string.as_datatype_enum
    assert [d.size for d in tensor.tensor_shape.dim] == [len(files)]
    assert list(tensor.string_val) == files


@needs_serving_api
def test_grpc_round_trip(grpc_server, model, files):
    target, requests = grpc_server
    outputs = client.encode_grpc(files, target, "tfhash")
    assert (
        predict_pb2.PredictRequest.FromString(requests[-1]).inputs["image_bytes"].string_val
        == files
    )
    assert_outputs_equal(outputs, expected_outputs(model, files))


@needs_serving_api
def test_grpc_errors_carry_the_server_message(grpc_server):
    target, _ = grpc_server
    with pytest.raises(
        client.ServingError, match="(?s)INVALID_ARGUMENT: .*Unknown image file format"
    ):
        client.encode_grpc([b"not an image"], target, "tfhash")


@needs_serving_api
def test_parse_grpc_response_reads_tensor_content_too(signatures, model, files):
    outputs = run_signature(signatures, "encode_images", {"image_bytes": files})
    response = predict_pb2.PredictResponse()
    for key, value in outputs.items():
        response.outputs[key].CopyFrom(tf.make_tensor_proto(value))  # packed tensor_content
    assert response.outputs["packed"].tensor_content
    assert_outputs_equal(client.parse_grpc_response(response), expected_outputs(model, files))


# --- The command line.


@needs_serving_api
def test_cli_prints_packed_codes_per_file(rest_server, grpc_server, model, files, tmp_path, capsys):
    paths = []
    for i, f in enumerate(files):
        paths.append(str(tmp_path / f"{i}.img"))
        with open(paths[-1], "wb") as out:
            out.write(f)
    packed = expected_outputs(model, files)["packed"]
    expected = [f"{p} {row.tobytes().hex()}" for p, row in zip(paths, packed)]
    assert client.main(["--server", rest_server[0], *paths]) == 0
    assert capsys.readouterr().out.splitlines() == expected
    assert client.main(["--protocol=grpc", "--server", grpc_server[0], *paths]) == 0
    assert capsys.readouterr().out.splitlines() == expected


def test_cli_reports_an_unreachable_server(tmp_path, capsys):
    (tmp_path / "a.jpg").write_bytes(b"x")
    assert client.main(["--server", "http://127.0.0.1:9", str(tmp_path / "a.jpg")]) == 1
    assert capsys.readouterr().err.startswith("error: ")
