"""torchvision's MNASNet 0.5/0.75/1.0/1.3 (``torchvision/models/mnasnet.py``, the B1 variant).

Input ``(N, 3, H, W)`` with H, W ≥ 1 (torchvision's ``min_size``) → logits
``(N, num_classes)``. ``layers`` is a 3×3/2 stem conv, a depthwise-separable 3×3 conv,
six stacks of :class:`_InvertedResidual` blocks (1×1 expansion → k×k depthwise → linear
1×1 projection, with the input added when the stride is 1 and the channels unchanged),
and a 1×1 conv to 1280; the head is the spatial mean → ``classifier`` (dropout →
``Linear``). Depths are torchvision's ``[32, 16, 24, 40, 80, 96, 192, 320]·alpha``
rounded up to multiples of 8 (:func:`_get_depths`). Every BatchNorm has momentum
1 − 0.9997 (TensorFlow's 0.9997 decay).

Versions: torchvision's model is version 2 (the stem scales with ``alpha``); its weights
files are the version-2 layout. A version-1 file (stem fixed at 32/32/16 channels,
``alpha != 1``) is recognised by its stem's shape and loaded into a version-1 model with
torchvision's warning, as torchvision's ``_load_from_state_dict`` does. torchvision's
``MNASNet.load_state_dict`` refuses a state_dict without ``_metadata`` (version None):
to load funcnets' exported arrays into it, wrap them in an ``OrderedDict`` and set
``sd._metadata = {"": {"version": model.version}}``.

torchvision's initialisation: convolutions ``kaiming_normal_(mode="fan_out")`` (gain
sqrt(2)), BatchNorm γ=1, β=0, the classifier ``kaiming_uniform_(mode="fan_out",
nonlinearity="sigmoid")`` = U(±sqrt(3/num_classes)) with a zero bias.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import jax

from funcnets.models._registry import (
    check_input, constant, kaiming_normal, load_pretrained, register_model, reinit,
)
from funcnets.nn import BatchNorm2d, Conv2d, Dropout, Linear, ReLU, Sequential
from funcnets.nn.module import Module, Scope
from funcnets.torch_io import load_file

__all__ = ["MNASNet", "mnasnet0_5", "mnasnet0_75", "mnasnet1_0", "mnasnet1_3"]

# Paper suggests 0.9997 momentum, for TensorFlow. Equivalent PyTorch momentum is 1.0 - tensorflow.
_BN_MOMENTUM = 1 - 0.9997


@dataclass(frozen=True, repr=False)
class _InvertedResidual(Module):
    """``x: (N, in_ch, H, W) -> (N, out_ch, H/stride, W/stride)``: 1×1 → BN → ReLU →
    depthwise k×k → BN → ReLU → 1×1 → BN (``layers``), plus ``x`` when
    ``in_ch == out_ch and stride == 1``."""

    in_ch: int
    out_ch: int
    kernel_size: int
    stride: int
    expansion_factor: int
    bn_momentum: float = 0.1
    layers: Sequential = field(init=False)

    def __post_init__(self):
        if self.stride not in [1, 2]:
            raise ValueError(f"stride should be 1 or 2 instead of {self.stride}")
        if self.kernel_size not in [3, 5]:
            raise ValueError(f"kernel_size should be 3 or 5 instead of {self.kernel_size}")
        mid = self.in_ch * self.expansion_factor
        bn = partial(BatchNorm2d, momentum=self.bn_momentum)
        object.__setattr__(self, "layers", Sequential(
            Conv2d(self.in_ch, mid, 1, bias=False), bn(mid), ReLU(),
            Conv2d(mid, mid, self.kernel_size, padding=self.kernel_size // 2, stride=self.stride, groups=mid,
                   bias=False), bn(mid), ReLU(),
            Conv2d(mid, self.out_ch, 1, bias=False), bn(self.out_ch),  # linear pointwise: no activation
        ))  # fmt: skip

    @property
    def apply_residual(self) -> bool:
        return self.in_ch == self.out_ch and self.stride == 1

    def apply(self, params, state, x, *, train=False, key=None):
        s = Scope(params, state, train, key)
        y = s("layers", self.layers, x)
        return (y + x if self.apply_residual else y), s.state


def _stack(in_ch: int, out_ch: int, kernel_size: int, stride: int, exp_factor: int, repeats: int,
           bn_momentum: float) -> Sequential:
    """A stack of inverted residuals; only the first changes the stride and channels."""
    if repeats < 1:
        raise ValueError(f"repeats should be >= 1, instead got {repeats}")
    first = _InvertedResidual(in_ch, out_ch, kernel_size, stride, exp_factor, bn_momentum=bn_momentum)
    rest = [_InvertedResidual(out_ch, out_ch, kernel_size, 1, exp_factor, bn_momentum=bn_momentum)
            for _ in range(1, repeats)]
    return Sequential(first, *rest)


def _round_to_multiple_of(val: float, divisor: int, round_up_bias: float = 0.9) -> int:
    """Asymmetric rounding to a multiple of ``divisor``: up, unless ``val`` is no more than
    10% above the smaller multiple ((83, 8) -> 80, (84, 8) -> 88)."""
    if not 0.0 < round_up_bias < 1.0:
        raise ValueError(f"round_up_bias should be greater than 0.0 and smaller than 1.0 instead of {round_up_bias}")
    new_val = max(divisor, int(val + divisor / 2) // divisor * divisor)
    return new_val if new_val >= round_up_bias * val else new_val + divisor


def _get_depths(alpha: float) -> list[int]:
    """The eight stage depths scaled by ``alpha``, preferring to round up."""
    depths = [32, 16, 24, 40, 80, 96, 192, 320]
    return [_round_to_multiple_of(depth * alpha, 8) for depth in depths]


@dataclass(frozen=True, repr=False)
class MNASNet(Module):
    """``torchvision.models.MNASNet(alpha, num_classes=1000, dropout=0.2)``.

    ``version=1`` builds the old fixed-size stem (torchvision patches a model into it when
    it loads a version-1 checkpoint). Replace the head with
    ``nn.replace(model, params, state, "classifier.1", Linear(1280, 10), key)``.
    """

    alpha: float
    num_classes: int = 1000
    dropout: float = 0.2
    version: int = 2
    arch: str = "mnasnet"
    layers: Sequential = field(init=False)
    classifier: Sequential = field(init=False)

    min_size = 1

    def __post_init__(self):
        if self.alpha <= 0.0:
            raise ValueError(f"alpha should be greater than 0.0 instead of {self.alpha}")
        if self.version not in (1, 2):
            raise ValueError(f"version should be set to 1 or 2 instead of {self.version}")
        d = _get_depths(self.alpha)
        m = _BN_MOMENTUM
        bn = partial(BatchNorm2d, momentum=m)
        # version 1 (alpha != 1 only differs) had a fixed 32/32/16 stem
        s0, s1 = (32, 16) if self.version == 1 else (d[0], d[1])
        layers = [
            Conv2d(3, s0, 3, padding=1, stride=2, bias=False), bn(s0), ReLU(),
            Conv2d(s0, s0, 3, padding=1, stride=1, groups=s0, bias=False), bn(s0), ReLU(),  # depthwise separable
            Conv2d(s0, s1, 1, padding=0, stride=1, bias=False), bn(s1),
            _stack(s1, d[2], 3, 2, 3, 3, m),
            _stack(d[2], d[3], 5, 2, 3, 3, m),
            _stack(d[3], d[4], 5, 2, 6, 3, m),
            _stack(d[4], d[5], 3, 1, 6, 2, m),
            _stack(d[5], d[6], 5, 2, 6, 4, m),
            _stack(d[6], d[7], 3, 1, 6, 1, m),
            Conv2d(d[7], 1280, 1, padding=0, stride=1, bias=False), bn(1280), ReLU(),
        ]  # fmt: skip
        object.__setattr__(self, "layers", Sequential(*layers))
        object.__setattr__(self, "classifier", Sequential(Dropout(p=self.dropout), Linear(1280, self.num_classes)))

    def init_tree(self, key):
        k_default, k_mn = jax.random.split(key)
        params, state = super().init_tree(k_default)

        def rule(name, m, k, own):
            if isinstance(m, Conv2d):
                return {"weight": kaiming_normal(k, own["weight"], mode="fan_out")}  # no conv has a bias
            if isinstance(m, BatchNorm2d):
                return {"weight": constant(own["weight"], 1.0), "bias": constant(own["bias"], 0.0)}
            if isinstance(m, Linear):
                w = own["weight"]  # kaiming_uniform_(fan_out, "sigmoid"): gain 1, bound sqrt(3 / fan_out)
                bound = math.sqrt(3.0 / w.shape[0])
                return {"weight": jax.random.uniform(k, w.shape, w.dtype, -bound, bound),
                        "bias": constant(own["bias"], 0.0)}
            return None

        return reinit(self, params, k_mn, rule), state

    def apply(self, params, state, x, *, train=False, key=None):
        """``x: (N, 3, H, W) -> (N, num_classes)``; ``key`` drives dropout when ``train``."""
        check_input(self, x, self.min_size)
        s = Scope(params, state, train, key)
        x = s("layers", self.layers, x).mean(axis=(2, 3))
        return s("classifier", self.classifier, x), s.state


_V1_WARNING = (
    "A new version of MNASNet model has been implemented. Your checkpoint was saved using the previous "
    "version. This checkpoint will load and work as before, but you may want to upgrade by training a "
    "newer model or transfer learning from an updated ImageNet checkpoint."
)


def _mnasnet(alpha: float, arch: str, weights, **kwargs: Any) -> Any:
    model = MNASNet(alpha, arch=arch, **kwargs)
    if weights is None:
        return model
    stem = load_file(weights, arch=arch).get("layers.0.weight")
    if model.version == 2 and alpha != 1.0 and stem is not None and stem.shape[0] == 32 != _get_depths(alpha)[0]:
        # a version-1 checkpoint: torchvision swaps in the old stem and warns
        warnings.warn(_V1_WARNING, UserWarning, stacklevel=3)
        model = MNASNet(alpha, arch=arch, **{**kwargs, "version": 1})
    return load_pretrained(model, weights)


_DOC = """MNASNet with depth multiplier {alpha} from "MnasNet: Platform-Aware Neural Architecture
    Search for Mobile".

    Args:
      weights: None (torchvision's initialisation) or a local torchvision weights file
        (``.pth``/``.safetensors``; version-1 checkpoints are recognised); nothing is
        downloaded.
      progress: accepted for torchvision's signature; unused.
      **kwargs: ``MNASNet``'s ``num_classes=1000``, ``dropout=0.2``.
    Returns:
      ``MNASNet``, or ``(model, params, state)`` when ``weights`` is given.
    """


def _builder(arch: str, alpha: float):
    def build(*, weights: str | os.PathLike | None = None, progress: bool = True, **kwargs: Any) -> Any:
        return _mnasnet(alpha, arch, weights, **kwargs)

    build.__name__ = build.__qualname__ = arch
    build.__module__ = __name__
    build.__doc__ = _DOC.format(alpha=alpha)
    return register_model(arch)(build)


mnasnet0_5 = _builder("mnasnet0_5", 0.5)
mnasnet0_75 = _builder("mnasnet0_75", 0.75)
mnasnet1_0 = _builder("mnasnet1_0", 1.0)
mnasnet1_3 = _builder("mnasnet1_3", 1.3)
