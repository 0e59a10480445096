"""The tutorial's ``Net``: a LeNet-style CNN for 1×32×32 images.

conv1 (1→6, 3×3) → relu → 2×2 max-pool → conv2 (6→16, 3×3) → relu → 2×2 max-pool →
flatten (C, H, W order) → fc1 (576→120) → relu → fc2 (120→84) → relu → fc3 (84→10).
Spatial sizes: 32 → 30 → 15 → 13 → 6, so fc1 sees 16·6·6 = 576 features.

On CPU the convolutional trunk runs channels-last (:func:`funcnets.nn.functional.channels_last`)
where both convolutions are oneDNN's (float32, funcnets' extension built, the ``"auto"``
or ``"loop"`` lowering), and batch-last (:func:`funcnets.nn.functional.batch_last`, ``(C, H, W, N)``)
otherwise: with 1-16 channels on 30×30 maps, vectorizing along the batch and convolving
by GEMM without transposes is faster than XLA's NCHW convolution (train step, batch 64,
2-core CPU: 5.6 -> ~3.5 ms), and oneDNN's channels-last kernels faster still (same
process, interleaved with torch: 2.1-2.8 against 2.9-3.5 ms batch-last; torch 3.5-4.1 ms;
``benchmarks/README.md``). Same numbers every way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax

from funcnets.errors import ShapeError
from funcnets.nn import functional as F
from funcnets.nn import Conv2d, Linear
from funcnets.nn._conv import onednn_convolves
from funcnets.nn.module import Module, Scope

__all__ = ["LeNet"]

# the trunk's layouts on CPU: the layout block, and the transposes from NCHW and back
_TRUNK_LAYOUTS = {"NHWC": (F.channels_last, (0, 2, 3, 1), (0, 3, 1, 2)),
                  "CHWN": (F.batch_last, (1, 2, 3, 0), (3, 0, 1, 2))}


@dataclass(frozen=True, repr=False)
class LeNet(Module):
    """``x: (N, in_channels, 32, 32) -> logits (N, num_classes)``.

    Parameters (torch names and shapes): conv1.weight (6,1,3,3), conv1.bias (6,),
    conv2.weight (16,6,3,3), conv2.bias (16,), fc1.weight (120,576), fc1.bias (120,),
    fc2.weight (84,120), fc2.bias (84,), fc3.weight (10,84), fc3.bias (10,).
    """

    num_classes: int = 10
    in_channels: int = 1
    conv1: Conv2d = field(init=False)
    conv2: Conv2d = field(init=False)
    fc1: Linear = field(init=False)
    fc2: Linear = field(init=False)
    fc3: Linear = field(init=False)

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        set_("conv1", Conv2d(self.in_channels, 6, 3))
        set_("conv2", Conv2d(6, 16, 3))
        set_("fc1", Linear(16 * 6 * 6, 120))
        set_("fc2", Linear(120, 84))
        set_("fc3", Linear(84, self.num_classes))

    def apply(self, params, state, x, *, train=False, key=None):
        s = Scope(params, state, train, key)
        image_hw = tuple(x.shape[-2:])
        layout = self._trunk_layout(x, params)
        if layout == "NCHW":
            x = self._trunk(s, x)
        else:
            block, into, back = _TRUNK_LAYOUTS[layout]
            with block():
                x = self._trunk(s, x.transpose(into))
            x = x.transpose(back)
        x = F.flatten(x, 1)
        try:
            x = F.relu(s("fc1", self.fc1, x))
        except ShapeError as e:
            raise ShapeError(
                f"{e.message}: the image is {image_hw[0]}×{image_hw[1]}, LeNet expects 32×32 "
                f"(input (N, {self.in_channels}, 32, 32)); resize or pad the images.",
                e.path,
            ) from None
        x = F.relu(s("fc2", self.fc2, x))
        return s("fc3", self.fc3, x), s.state

    def _trunk(self, s: Scope, x):
        x = F.max_pool2d(F.relu(s("conv1", self.conv1, x)), (2, 2))
        return F.max_pool2d(F.relu(s("conv2", self.conv2, x)), 2)

    def _trunk_layout(self, x, params) -> str:
        """The trunk's layout for an input ``x``: on CPU, for an NCHW batch and conv1 and
        conv2 still Conv2d (a module swapped in with ``nn.replace`` keeps NCHW),
        ``"NHWC"`` where oneDNN convolves (:func:`funcnets.nn._conv.onednn_convolves`),
        else ``"CHWN"``; ``"NCHW"`` otherwise."""
        if not (
            jax.default_backend() == "cpu"
            and x.ndim == 4
            and x.shape[1] == self.in_channels
            and type(self.conv1) is Conv2d
            and type(self.conv2) is Conv2d
        ):
            return "NCHW"
        weight = params.get("conv1", {}).get("weight") if isinstance(params, dict) else None
        return "NHWC" if weight is not None and onednn_convolves(x, weight) else "CHWN"
