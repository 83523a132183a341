"""tfhash: deep hashing networks for large-scale image retrieval.

The package is organised along the path of the data:

* ``tfhash.data``        sources, protocol splits and balanced tf.data batches;
* ``tfhash.models.layers``      the hashing layer and the sign layer;
* ``tfhash.models.backbones``   feature extractors (VGG-16, ResNet50, MobileNetV3, a small CIFAR ResNet);
* ``tfhash.models``      backbone + preprocessing + hashing layer;
* ``tfhash.losses``      one module per method (``lsdh`` first);
* ``tfhash.evaluation``  NumPy-only Hamming ranking metrics (no TensorFlow import);
* ``tfhash.train`` / ``export`` / ``encode`` / ``evaluate``: the command-line jobs.

Importing ``tfhash`` itself imports nothing heavy, so ``tfhash.evaluation`` can be
used where TensorFlow is not installed.
"""

__version__ = "0.1.0"
