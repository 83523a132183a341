"""Talking to Milvus: the client, its connection errors and the two collections' schemas.

:class:`~tfhash.retrieval.milvus.MilvusIndex` keeps the index's logic (the manifest, deletes
committed before their rows go, the tie rule); this module holds what depends on ``pymilvus``
itself: importing it quietly, opening a client with one-line errors, checking a collection
name and creating the collections.
"""

import json
import os

from tfhash.errors import UsageError
from tfhash.retrieval import store


def import_pymilvus():
    """The ``pymilvus`` module (quiet), or a :class:`UsageError` saying how to install it."""
    try:
        import pymilvus
    except ImportError:
        raise UsageError(
            "the milvus backend needs pymilvus (and milvus-lite for a .db file): "
            "pip install 'tfhash[milvus]'"
        ) from None
    import logging

    logging.getLogger("pymilvus").setLevel(logging.CRITICAL)  # errors become UsageError lines
    return pymilvus


def quote(values):
    """``values`` as a Milvus filter's list of strings: ``["a", "b"]``."""
    return "[" + ", ".join(json.dumps(str(v)) for v in values) + "]"


def check_collection(collection):
    """Raises :class:`UsageError` unless ``collection`` is a valid Milvus collection name."""
    if not collection or not collection.replace("_", "a").isalnum() or collection[0].isdigit():
        raise UsageError(
            f"collection={collection!r} is not a Milvus collection name; use "
            "letters, digits and underscores, starting with a letter"
        )


def connect(uri, timeout):
    """A ``MilvusClient`` on ``uri`` (normalised) that has answered once within ``timeout`` s.

    Raises:
        UsageError: pymilvus missing, a Milvus Lite file in a missing directory or held by
            another process, or a server that does not answer.
    """
    pymilvus = import_pymilvus()
    if store.is_lite_file(uri) and not os.path.isdir(os.path.dirname(uri)):
        raise UsageError(
            f"the directory of the Milvus Lite file {uri} does not exist; create it first"
        )
    try:
        client = pymilvus.MilvusClient(uri=uri, timeout=timeout)
        client.list_collections(timeout=timeout)
    except Exception as e:  # noqa: BLE001 -- connection errors come as several types
        reason = str(getattr(e, "message", "") or e or type(e).__name__).splitlines()[0]
        if store.is_lite_file(uri):  # Milvus Lite: one process per file
            raise UsageError(
                f"the Milvus Lite file {uri} cannot be opened ({reason[:160]}); "
                "Milvus Lite lets one process at a time open a file: wait "
                "for the other command to finish"
            ) from None
        raise UsageError(
            f"Milvus at {uri} does not answer within {timeout:g} s "
            f"({reason[:160]}); start the server or fix `uri`"
        ) from None
    return client


def create_collections(client, collection, meta, code_bytes):
    """Creates the codes collection ``collection`` and the manifest collection ``meta``,
    dropping any of the same names (the fields are described by
    :class:`~tfhash.retrieval.milvus.MilvusIndex`)."""
    pymilvus = import_pymilvus()
    DataType = pymilvus.DataType
    for name in (collection, meta):
        if client.has_collection(name):
            client.drop_collection(name)
    schema = pymilvus.MilvusClient.create_schema(
        auto_id=False, enable_dynamic_field=False, description="tfhash Hamming index"
    )
    schema.add_field("seq", DataType.INT64, is_primary=True)
    schema.add_field("code", DataType.BINARY_VECTOR, dim=8 * code_bytes)
    schema.add_field("item_id", DataType.VARCHAR, max_length=4096)
    schema.add_field("path", DataType.VARCHAR, max_length=4096)
    schema.add_field("labels", DataType.VARCHAR, max_length=8192)
    params = client.prepare_index_params()
    params.add_index(field_name="code", index_type="BIN_FLAT", metric_type="HAMMING")
    client.create_collection(
        collection, schema=schema, index_params=params, consistency_level="Strong"
    )
    schema = pymilvus.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=64)
    schema.add_field("value", DataType.VARCHAR, max_length=65535)
    schema.add_field("dummy", DataType.BINARY_VECTOR, dim=8)  # Milvus needs a vector field
    params = client.prepare_index_params()
    params.add_index(field_name="dummy", index_type="BIN_FLAT", metric_type="HAMMING")
    client.create_collection(meta, schema=schema, index_params=params, consistency_level="Strong")
