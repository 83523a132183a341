"""The trainable network: backbones, the hashing layers, the model builders, the feature cache.

* :mod:`tfhash.models.builders`  backbone + hashing head → :class:`HashingModel` (re-exported
  here);
* :mod:`tfhash.models.backbones`  the feature extractors (``resnet_small``, ``nin``, ``vgg16``,
  ``resnet50``, ``mobilenetv3``, EfficientNet-Lite) and their freezing rules;
* :mod:`tfhash.models.efficientnet_lite`  EfficientNet-Lite0/1/2 and reading their ImageNet
  checkpoints;
* :mod:`tfhash.models.preprocess`  the pixel normalisation and weights-file loading every
  backbone shares;
* :mod:`tfhash.models.layers`  the hashing layers (tanh, linear, DNNH's DivideAndEncode) and
  ``sign``;
* :mod:`tfhash.models.torch_legacy`  the PyTorch checkpoint reader (no torch needed);
* :mod:`tfhash.models.features`  frozen-backbone features, computed once and cached on disk.
"""

from tfhash.models.builders import (
    HashingModel,
    build_head,
    build_model,
    fine_tuning_model,
    term_names,
    with_backbone,
)

__all__ = [
    "HashingModel",
    "build_head",
    "build_model",
    "fine_tuning_model",
    "term_names",
    "with_backbone",
]
