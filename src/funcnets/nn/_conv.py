"""The convolution kernel behind ``conv2d``: NCHW / OIHW, explicit symmetric padding."""

from __future__ import annotations

from jax import lax

from funcnets._typing import Array


def conv2d(
    x: Array,
    w: Array,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
) -> Array:
    """``x: (N, C_in, H, W)``, ``w: (C_out, C_in/groups, kH, kW)`` -> ``(N, C_out, H', W')``."""
    return lax.conv_general_dilated(
        x,
        w,
        window_strides=stride,
        padding=[(padding[0], padding[0]), (padding[1], padding[1])],
        rhs_dilation=dilation,
        dimension_numbers=("NCHW", "OIHW", "NCHW"),
        feature_group_count=groups,
    )
