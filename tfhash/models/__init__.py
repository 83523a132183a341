"""The trainable network: backbones, the hashing layers, the model builders, the feature cache.

* :mod:`tfhash.models.builders`     backbone + hashing head → :class:`HashingModel` (re-exported here);
* :mod:`tfhash.models.backbones`    the feature extractors and their freezing rules;
* :mod:`tfhash.models.layers`       the hashing layers (tanh, DivideAndEncode, ...) and ``sign``;
* :mod:`tfhash.models.torch_legacy` the PyTorch checkpoint reader (no torch needed);
* :mod:`tfhash.models.features`     frozen-backbone features, computed once and cached on disk.
"""

from tfhash.models.builders import (HashingModel, build_head, build_model, fine_tuning_model,
                                    term_names, with_backbone)

__all__ = ["HashingModel", "build_head", "build_model", "fine_tuning_model", "term_names",
           "with_backbone"]
