"""torchvision's AlexNet (``torchvision/models/alexnet.py``), with its names and initialisation.

Input ``(N, 3, H, W)`` with H, W ≥ 63 (torchvision's ``min_size``) → logits
``(N, num_classes)``. ``features`` (five convolutions, three 3×3/2 max-pools), a 6×6
adaptive average pool (any input size), then ``classifier``: dropout → 9216→4096 → ReLU →
dropout → 4096→4096 → ReLU → 4096→num_classes. torchvision keeps torch's default
initialisation for AlexNet, and so does this. Dropout needs ``key=`` in ``train=True``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from funcnets.models._registry import check_input, load_pretrained, register_model
from funcnets.nn import functional as F
from funcnets.nn import AdaptiveAvgPool2d, Conv2d, Dropout, Linear, MaxPool2d, ReLU, Sequential
from funcnets.nn.module import Module, Scope

__all__ = ["AlexNet", "alexnet"]


@dataclass(frozen=True, repr=False)
class AlexNet(Module):
    """``torchvision.models.AlexNet(num_classes=1000, dropout=0.5)``.

    Replace the head with ``nn.replace(model, params, state, "classifier.6", Linear(4096, 10), key)``.
    """

    num_classes: int = 1000
    dropout: float = 0.5
    arch: str = "alexnet"
    features: Sequential = field(init=False)
    avgpool: AdaptiveAvgPool2d = field(init=False)
    classifier: Sequential = field(init=False)

    min_size = 63

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        set_("features", Sequential(
            Conv2d(3, 64, kernel_size=11, stride=4, padding=2), ReLU(), MaxPool2d(kernel_size=3, stride=2),
            Conv2d(64, 192, kernel_size=5, padding=2), ReLU(), MaxPool2d(kernel_size=3, stride=2),
            Conv2d(192, 384, kernel_size=3, padding=1), ReLU(),
            Conv2d(384, 256, kernel_size=3, padding=1), ReLU(),
            Conv2d(256, 256, kernel_size=3, padding=1), ReLU(), MaxPool2d(kernel_size=3, stride=2),
        ))  # fmt: skip
        set_("avgpool", AdaptiveAvgPool2d((6, 6)))
        set_("classifier", Sequential(
            Dropout(p=self.dropout), Linear(256 * 6 * 6, 4096), ReLU(),
            Dropout(p=self.dropout), Linear(4096, 4096), ReLU(),
            Linear(4096, self.num_classes),
        ))  # fmt: skip

    def apply(self, params, state, x, *, train=False, key=None):
        """``x: (N, 3, H, W) -> (N, num_classes)``; ``key`` drives dropout when ``train``."""
        check_input(self, x, self.min_size)
        s = Scope(params, state, train, key)
        x = s("avgpool", self.avgpool, s("features", self.features, x))
        return s("classifier", self.classifier, F.flatten(x, 1)), s.state


@register_model()
def alexnet(*, weights: str | os.PathLike | None = None, progress: bool = True, **kwargs: Any) -> Any:
    """AlexNet, from "One weird trick for parallelizing convolutional neural networks".

    Args:
      weights: None (torch's default initialisation) or a local torchvision weights file
        (``.pth``/``.safetensors``); nothing is downloaded.
      progress: accepted for torchvision's signature; unused.
      **kwargs: ``AlexNet``'s ``num_classes=1000``, ``dropout=0.5``.
    Returns:
      ``AlexNet``, or ``(model, params, state)`` when ``weights`` is given.
    """
    model = AlexNet(**kwargs)
    return model if weights is None else load_pretrained(model, weights)
