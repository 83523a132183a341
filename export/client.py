r"""Sends images to a TensorFlow Serving model exported by ``python -m tfhash.export``.

    python export/client.py --model=tfhash cat.jpg dog.png                 # REST, port 8501
    python export/client.py --protocol=grpc --server=localhost:8500 cat.jpg

prints one line per image: the file and its packed code in hex. Both protocols
call the ``encode_images`` signature, which decodes and resizes the JPEG/PNG
files inside the served graph exactly as at training time, and get back

    codes      int8  [B, K]        ±1 binary codes
    packed     uint8 [B, ⌈K/8⌉]    np.packbits(codes > 0, axis=1)
    embedding  float32 [B, K]      relaxed codes in (−1, 1)

REST (``POST /v1/models/<model>:predict``) needs only the standard library and
NumPy; the request is in TF Serving's columnar form with each file base64
encoded as ``{"b64": ...}``. gRPC (``PredictionService/Predict``) needs the
``tensorflow-serving-api`` package (``pip install tensorflow-serving-api``).

The module is self-contained (it does not import tfhash), so it can be copied
to any machine that talks to the server. As a library::

    outputs = encode_rest([open("cat.jpg", "rb").read()], "http://localhost:8501", "tfhash")
    outputs["packed"]   # uint8 [1, ⌈K/8⌉]
"""

import argparse
import base64
import json
import sys
import urllib.error
import urllib.request

import numpy as np

SIGNATURE = "encode_images"
INPUT = "image_bytes"
OUTPUT_DTYPES = {"codes": np.int8, "packed": np.uint8, "embedding": np.float32}


class ServingError(RuntimeError):
    """The server refused a request; the message is the server's."""


# ------------------------------------------------------------------------------------------
# REST


def rest_request(images, signature=SIGNATURE):
    """The JSON body of a REST predict request for encoded image files (a list of bytes)."""
    encoded = [{"b64": base64.b64encode(image).decode("ascii")} for image in images]
    return {"signature_name": signature, "inputs": {INPUT: encoded}}


def parse_rest_response(body):
    """The outputs of a columnar REST predict response as NumPy arrays of their dtypes."""
    if "error" in body:
        raise ServingError(body["error"])
    outputs = body["outputs"]
    return {name: np.asarray(outputs[name], dtype=dtype) for name, dtype in OUTPUT_DTYPES.items()}


def encode_rest(images, server="http://localhost:8501", model="tfhash", timeout=60.0):
    """Encodes image files through the REST API of a TF Serving server; returns the outputs."""
    request = urllib.request.Request(
        f"{server.rstrip('/')}/v1/models/{model}:predict",
        data=json.dumps(rest_request(images)).encode("utf-8"),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as e:  # TF Serving answers errors as {"error": message}
        try:
            message = json.loads(e.read())["error"]
        except (ValueError, KeyError):
            message = f"HTTP {e.code} {e.reason}"
        raise ServingError(message) from e
    return parse_rest_response(body)


# ------------------------------------------------------------------------------------------
# gRPC


def _serving_api():
    try:
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
    except ImportError as e:
        raise ImportError(
            f"the gRPC client needs the tensorflow-serving-api package ({e}); "
            "pip install tensorflow-serving-api, or use the REST API"
        ) from e
    return tf, predict_pb2, prediction_service_pb2_grpc


def grpc_request(images, model="tfhash", signature=SIGNATURE):
    """The ``PredictRequest`` for encoded image files (a list of bytes)."""
    tf, predict_pb2, _ = _serving_api()
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    request.inputs[INPUT].CopyFrom(tf.make_tensor_proto(list(images), dtype=tf.string))
    return request


def parse_grpc_response(response):
    """The outputs of a ``PredictResponse`` as NumPy arrays of their dtypes."""
    tf, _, _ = _serving_api()
    return {
        name: tf.make_ndarray(response.outputs[name]).astype(dtype, copy=False)
        for name, dtype in OUTPUT_DTYPES.items()
    }


def encode_grpc(images, server="localhost:8500", model="tfhash", timeout=60.0):
    """Encodes image files through the gRPC API of a TF Serving server; returns the outputs."""
    import grpc

    _, _, prediction_service_pb2_grpc = _serving_api()
    with grpc.insecure_channel(server) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            response = stub.Predict(grpc_request(images, model), timeout=timeout)
        except grpc.RpcError as e:
            raise ServingError(f"{e.code().name}: {e.details()}") from e
    return parse_grpc_response(response)


# ------------------------------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="+", help="JPEG or PNG files")
    parser.add_argument("--protocol", choices=("rest", "grpc"), default="rest")
    parser.add_argument(
        "--server", default=None, help="REST: http://host:8501 (default); gRPC: host:8500 (default)"
    )
    parser.add_argument("--model", default="tfhash", help="--model_name of the server")
    args = parser.parse_args(argv)
    images = []
    for path in args.images:
        with open(path, "rb") as f:
            images.append(f.read())
    try:
        if args.protocol == "rest":
            outputs = encode_rest(images, args.server or "http://localhost:8501", args.model)
        else:
            outputs = encode_grpc(images, args.server or "localhost:8500", args.model)
    except (ServingError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for path, packed in zip(args.images, outputs["packed"]):
        print(path, packed.tobytes().hex())
    return 0


if __name__ == "__main__":
    sys.exit(main())
