"""The deployment files in export/ parse as the TF Serving protos the server reads them into."""

import os

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def read(name):
    with open(os.path.join(REPO, "export", name)) as f:
        return f.read()


def test_models_config_is_a_model_server_config():
    model_server_config_pb2 = pytest.importorskip(
        "tensorflow_serving.config.model_server_config_pb2",
        reason="tensorflow-serving-api provides the ModelServerConfig proto",
    )
    config = text_format.Parse(read("models.config"), model_server_config_pb2.ModelServerConfig())
    (model,) = config.model_config_list.config
    assert model.name == "tfhash"
    assert model.base_path == "/models/tfhash"
    assert model.model_platform == "tensorflow"
    assert model.model_version_policy.latest.num_versions == 1


def batching_parameters_class():
    """tensorflow.serving.BatchingParameters (session_bundle_config.proto; not in the pip
    package), declared here field for field."""
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    from google.protobuf import wrappers_pb2

    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    proto = descriptor_pb2.FileDescriptorProto(
        name="batching_parameters.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    message = proto.message_type.add(name="BatchingParameters")
    F = descriptor_pb2.FieldDescriptorProto
    for number, name, type_name in [
        (1, "max_batch_size", ".google.protobuf.Int64Value"),
        (2, "batch_timeout_micros", ".google.protobuf.Int64Value"),
        (3, "max_enqueued_batches", ".google.protobuf.Int64Value"),
        (4, "num_batch_threads", ".google.protobuf.Int64Value"),
        (5, "thread_pool_name", ".google.protobuf.StringValue"),
    ]:
        message.field.add(
            name=name,
            number=number,
            type=F.TYPE_MESSAGE,
            type_name=type_name,
            label=F.LABEL_OPTIONAL,
        )
    message.field.add(
        name="allowed_batch_sizes", number=6, type=F.TYPE_INT64, label=F.LABEL_REPEATED
    )
    message.field.add(
        name="pad_variable_length_inputs", number=7, type=F.TYPE_BOOL, label=F.LABEL_OPTIONAL
    )
    pool.Add(proto)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters")
    )


def test_batching_parameters_are_valid():
    params = text_format.Parse(read("batching_parameters.txt"), batching_parameters_class()())
    assert params.max_batch_size.value == 64
    assert params.num_batch_threads.value >= 1
    assert params.batch_timeout_micros.value > 0
    # The server's rule for allowed sizes, if any: increasing, the last one max_batch_size.
    sizes = list(params.allowed_batch_sizes)
    assert sizes == sorted(set(sizes)) and sizes[-1:] in ([], [params.max_batch_size.value])


def test_readme_commands_use_these_files():
    readme = read("README.md")
    for needed in [
        "--batching_parameters_file=export/batching_parameters.txt",
        "--model_config_file=/config/models.config",
        "python -m tfhash.export --run_dir=",
        "python export/client.py",
    ]:
        assert needed in readme
    for name in ["models.config", "batching_parameters.txt", "client.py", "c_api_predict.c"]:
        assert os.path.isfile(os.path.join(REPO, "export", name))
