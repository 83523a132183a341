"""tfhash: deep hashing networks for large-scale image retrieval.

The package is organised along the path of the data:

* ``tfhash.data``        sources, protocol splits, balanced and semi-supervised tf.data batches,
  augmentation;
* ``tfhash.models``      backbones (a small CIFAR ResNet, NIN, VGG-16, ResNet50, MobileNetV3,
  EfficientNet-Lite0/1/2), the hashing layers, the model builders, the frozen-feature cache,
  a safe reader of torch checkpoints;
* ``tfhash.losses``      one module per deep method (14: LSDH, LSDH-L1, triplet, DSH, HashNet,
  DHN, lifted structured, Chen's quadruplet, angular, DNNH, LCDSH, DMSSPH, SSDH-ZP, CNNH);
* ``tfhash.methods``     the one method table, deep and shallow (TensorFlow-free);
* ``tfhash.config``      ``TrainConfig``: every training setting, its default and help, once;
* ``tfhash.training``    one run as named stages, the training loop, callbacks, the run directory;
* ``tfhash.shallow``     LSH, SH, ITQ, KSH, SDH on fixed features, NumPy and SciPy only;
* ``tfhash.evaluation``  NumPy-only Hamming ranking metrics (no TensorFlow import);
* ``tfhash.serving``     the versioned SavedModel, and images encoded through one;
* ``tfhash.retrieval``   packed codes in a FAISS or Milvus index, with one tie rule;
* ``tfhash.gallery``     queries drawn with their results;
* ``tfhash.errors``, ``tfhash.locking``, ``tfhash.tf_import``: the one exception for bad
  input, one writer per directory, TensorFlow imported quietly;
* the commands ``tfhash.train`` / ``export`` / ``encode`` / ``evaluate`` / ``index`` /
  ``search`` / ``convert_weights`` / ``write_folder`` (``python -m tfhash.<command>`` or the
  ``tfhash <command>`` console script, :mod:`tfhash.cli`).

Importing ``tfhash`` itself imports nothing heavy, so ``tfhash.evaluation`` can be
used where TensorFlow is not installed.
"""

__version__ = "0.1.0"
