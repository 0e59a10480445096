"""``torch.nn`` as pure functions: layers (frozen dataclasses) and ``functional``."""

from funcnets.nn import functional
from funcnets.nn._conv import conv_lowering
from funcnets.nn._onednn import error as onednn_error
from funcnets.nn.layers import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Identity,
    Linear,
    MaxPool2d,
    ReLU,
    Sequential,
)
from funcnets.nn.module import Module, Scope, replace

__all__ = [
    "functional",
    "conv_lowering",
    "onednn_error",
    "Module",
    "Scope",
    "replace",
    "Linear",
    "Conv2d",
    "MaxPool2d",
    "AvgPool2d",
    "AdaptiveAvgPool2d",
    "ReLU",
    "Flatten",
    "Dropout",
    "BatchNorm2d",
    "Identity",
    "Sequential",
]
