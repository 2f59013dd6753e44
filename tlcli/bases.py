"""The registry of base networks: every `keras.applications` base looks the same to tlcli.

Adding a base is one entry in `BASES`. Nothing here imports TensorFlow, so config validation
can check base names and image sizes instantly; `build_base` imports Keras only when called.

>>> BASES["vgg16"].preprocessing
'caffe'
>>> base_names()[:3]
['densenet121', 'efficientnet_b0', 'mobilenet_v2']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Preprocessing = Literal["caffe", "tf", "torch", "none"]


@dataclass(frozen=True)
class BaseSpec:
    """How to build one base and feed it: the facts that differ between applications."""

    name: str
    constructor: str  # attribute of keras.applications
    # What the application's own `preprocess_input` does, rebuilt from plain layers in model.py
    # so that a saved model needs no tlcli code to load: caffe = RGB->BGR minus the ImageNet
    # mean; tf = scale to [-1, 1]; torch = scale to [0, 1] then standardise; none = the
    # network rescales inside itself (EfficientNet, ConvNeXt).
    preprocessing: Preprocessing
    default_size: int = 224
    min_size: int = 32
    # Layer-name prefixes of the base's blocks, bottom to top: `unfreeze.from_block` names one,
    # and the block outputs are clean points to cut the network for caching.
    blocks: tuple[str, ...] = ()


def _numbered(prefix: str, first: int, last: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}" for i in range(first, last + 1))


BASES: dict[str, BaseSpec] = {
    spec.name: spec
    for spec in [
        BaseSpec("vgg16", "VGG16", "caffe", blocks=_numbered("block", 1, 5)),
        BaseSpec("vgg19", "VGG19", "caffe", blocks=_numbered("block", 1, 5)),
        BaseSpec("resnet50", "ResNet50", "caffe", blocks=_numbered("conv", 1, 5)),
        BaseSpec("resnet101", "ResNet101", "caffe", blocks=_numbered("conv", 1, 5)),
        BaseSpec("resnet152", "ResNet152", "caffe", blocks=_numbered("conv", 1, 5)),
        BaseSpec("mobilenet_v2", "MobileNetV2", "tf", blocks=_numbered("block_", 1, 16)),
        BaseSpec("efficientnet_b0", "EfficientNetB0", "none", blocks=_numbered("block", 1, 7)),
        BaseSpec("densenet121", "DenseNet121", "torch", blocks=_numbered("conv", 2, 5)),
    ]
}


def base_names() -> list[str]:
    return sorted(BASES)


def build_base(name: str, image_size: tuple[int, int], weights: str | None):
    """Build the headless base network (`include_top=False`, no pooling).

    `weights` is `"imagenet"`, `None`, or a path Keras can load into the application.

    >>> build_base("vgg16", (32, 32), None).output.shape
    (None, 1, 1, 512)
    """
    import keras  # on call: the config reads this registry without TensorFlow

    spec = BASES[name]
    constructor = getattr(keras.applications, spec.constructor)
    return constructor(include_top=False, weights=weights, input_shape=(*image_size, 3))
