"""Vision functions: ``torch.nn.functional.grid_sample`` and ``affine_grid``.

``grid_sample`` reads ``input: (N, C, H, W)`` at the points of ``grid: (N, H_out, W_out, 2)``
(or ``(N, C, D, H, W)`` at ``(N, D_out, H_out, W_out, 3)``), whose last axis holds
``(x, y[, z])`` normalised to ``[-1, 1]`` (x indexes W, the last input axis). It is one
vectorised gather per neighbour (4 for bilinear, 8 for trilinear, 16 for bicubic) from
the flattened spatial axes, so it jit-compiles and differentiates with ``jax.grad`` in
both ``input`` (a scatter-add, torch's backward) and ``grid``.

The arithmetic is ATen's CPU kernels', operation by operation, so nearest-neighbour ties
fall on the same pixel and values agree with torch's to rounding (float64 1e-15, float32 a
few ulps, XLA contracting some products into FMAs):

* 4-D inputs follow the vectorised ``native/cpu/GridSamplerKernel.cpp``: unnormalise
  ``(g + 1) * size/2 - 0.5`` (``(g + 1) * (size-1)/2`` with ``align_corners``); reflection
  by ``trunc`` of ``|x - low| / (2 span)`` and ``min(extra, 2 span - extra)``; a NaN
  coordinate clips to 0; bilinear weights ``(1-dx)(1-dy)``... multiplied by the masked
  gathered values (so a NaN grid point under ``zeros`` gives NaN, as torch's).
* 5-D inputs follow the scalar ``GridSampler.h`` / ``GridSampler.cpp``: unnormalise
  ``((g + 1) * size - 1) / 2`` (``(g + 1) / 2 * (size-1)``); reflection by ``fmod`` and the
  parity of ``floor(|x - low| / span)``; a NaN coordinate clips to ``size - 1``; corners
  outside the input are skipped (a NaN or infinite point under ``zeros`` gives 0).
* ``nearest`` rounds half to even (``nearbyint``); its gradient w.r.t. ``grid`` is zero.
* ``bicubic`` (4-D only): Keys' kernel with ``A = -0.75`` on the unpadded coordinate,
  each of the 4x4 neighbours' integer indices padded on its own (clipped for ``border``,
  reflected then clipped for ``reflection``, masked for ``zeros``).
* The padding gradients are torch's: clipping passes no gradient on or past the border,
  reflection flips its sign.

Not copied: torch's 5-D ``reflection`` casts ``floor(|x| / span)`` to ``int`` to take its
parity, undefined for non-finite or out-of-``int``-range coordinates; its result there
depends on the neighbouring grid points (ours, the parity of the float, is what torch gives
for a lone such point in the cases tried). ``align_corners=None`` means ``False`` without torch's warning.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax.numpy as jnp

from funcnets._typing import Array
from funcnets.errors import ShapeError

__all__ = ["grid_sample", "affine_grid"]

_MODES = ("bilinear", "nearest", "bicubic")
_PADDINGS = ("zeros", "border", "reflection")
_CUBIC_A = -0.75  # ATen's choice, as in UpSampleBicubic2d


# --- coordinate rules, per spatial axis -------------------------------------------------------
def _unnormalize(g: Array, size: int, align_corners: bool, vectorised: bool) -> Array:
    if vectorised:  # GridSamplerKernel.cpp's ComputeLocationBase
        if align_corners:
            return (g + 1) * ((size - 1) / 2)
        return (g + 1) * (size / 2) - 0.5
    if align_corners:  # GridSampler.h's grid_sampler_unnormalize
        return ((g + 1) / 2) * (size - 1)
    return ((g + 1) * size - 1) / 2


def _clip(x: Array, size: int, vectorised: bool) -> Array:
    """Clamp to ``[0, size - 1]`` with torch's gradient (zero on and past the borders) and its
    NaN rule: the vectorised kernel sends NaN to 0, the scalar ``std::min/max`` to ``size - 1``."""
    hi = size - 1
    outside = jnp.where(x >= hi, hi, 0) if vectorised else jnp.where(x <= 0, 0, hi)
    return jnp.where((x > 0) & (x < hi), x, outside.astype(x.dtype))


def _reflect(x: Array, size: int, align_corners: bool, vectorised: bool) -> Array:
    """Reflect about the borders (pixel centres with ``align_corners``, else the image edges)
    until inside; ATen's two formulations, which differ in rounding far away."""
    low = 0.0 if align_corners else -0.5
    span = float(size - 1) if align_corners else float(size)
    if span == 0:  # a single pixel with align_corners: everything maps to it
        return jnp.zeros_like(x)
    d = x - low
    a = jnp.abs(d)  # its zero gradient at the kink is never seen: the clip after it passes none there
    if vectorised:
        twice = 2 * span
        extra = a - jnp.trunc(a / twice) * twice
        flipped = twice - extra
        return jnp.where(extra > flipped, flipped, extra) + low
    extra = jnp.fmod(a, span)
    even = jnp.fmod(jnp.floor(a / span), 2) == 0
    return jnp.where(even, extra + low, span - extra + low)


def _pad_coordinate(x: Array, size: int, padding_mode: str, align_corners: bool, vectorised: bool) -> Array:
    """ATen's ``compute_coordinates``: padding applied to an unnormalised coordinate."""
    if padding_mode == "border":
        return _clip(x, size, vectorised)
    if padding_mode == "reflection":
        return _clip(_reflect(x, size, align_corners, vectorised), size, vectorised)
    return x


def _cubic_coefficients(t: Array) -> list[Array]:
    """Keys' cubic convolution weights of the neighbours at offsets -1, 0, 1, 2 for a
    fractional position ``t`` in ``[0, 1)`` (ATen's ``get_cubic_coefficients``)."""
    A = _CUBIC_A

    def far(x):  # 1 < |x| < 2
        return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A

    def near(x):  # |x| <= 1
        return ((A + 2) * x - (A + 3)) * x * x + 1

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


# --- gathering --------------------------------------------------------------------------------
def _gather(input: Array, neighbours: Sequence[Sequence[Array]]) -> list[tuple[Array, Array]]:
    """Reads ``input[n, :, i_0, ..., i_k]`` for each neighbour's integer-valued float index
    arrays ``(N, M)`` (one per spatial axis), in ONE gather (one scatter-add, torch's input
    gradient, in the backward pass). Returns per neighbour ``(values (N, M, C), inside
    (N, M, 1))``; an index outside the input (or NaN) reads 0 and is flagged outside."""
    n, c, *spatial = input.shape
    k = len(neighbours)
    rows = input.reshape(n, c, math.prod(spatial)).transpose(0, 2, 1)  # (N, P, C): gather whole pixels
    idx = [jnp.stack([nb[a] for nb in neighbours], axis=1) for a in range(len(spatial))]  # (N, K, M) per axis
    inside = None
    for i, size in zip(idx, spatial):
        ok = (i > -1) & (i < size)
        inside = ok if inside is None else inside & ok
    flat = 0
    for i, size in zip(idx, spatial):
        # masked indices become 0 before the integer cast: NaN/inf/huge casts are undefined
        flat = flat * size + jnp.where(inside, i, 0).astype(jnp.int32)
    m = flat.shape[-1]
    vals = rows[jnp.arange(n)[:, None], flat.reshape(n, k * m)].reshape(n, k, m, c)
    return [(vals[:, j], inside[:, j, :, None]) for j in range(k)]


# --- public functions -------------------------------------------------------------------------
def grid_sample(
    input: Array,
    grid: Array,
    mode: str = "bilinear",
    padding_mode: str = "zeros",
    align_corners: bool | None = None,
) -> Array:
    """``torch.nn.functional.grid_sample``: sample ``input`` at the normalised points of ``grid``.

    Args:
        input: ``(N, C, H_in, W_in)`` or ``(N, C, D_in, H_in, W_in)``, floating point.
        grid: ``(N, H_out, W_out, 2)`` or ``(N, D_out, H_out, W_out, 3)``, same dtype;
            ``grid[..., 0]`` is x (along W), ``grid[..., 1]`` y (H), ``grid[..., 2]`` z (D);
            ``-1`` and ``1`` are the outer edges of the corner pixels, or their centres
            with ``align_corners=True``.
        mode: ``'bilinear'`` (trilinear for 5-D), ``'nearest'`` (round half to even) or
            ``'bicubic'`` (4-D only, ``A = -0.75``).
        padding_mode: values outside the input: ``'zeros'``, ``'border'`` (nearest border
            value) or ``'reflection'`` (mirrored at the borders until inside).
        align_corners: ``None`` means ``False``, torch's default (without its warning).

    Returns:
        ``(N, C, H_out, W_out)`` or ``(N, C, D_out, H_out, W_out)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets.nn import functional as F
        >>> x = jnp.arange(4.0).reshape(1, 1, 2, 2)
        >>> grid = jnp.array([[[[-0.5, -0.5], [0.0, 0.0], [0.5, 0.5]]]])  # pixel centres (0,0), middle, (1,1)
        >>> F.grid_sample(x, grid, align_corners=False)[0, 0].tolist()
        [[0.0, 1.5, 3.0]]
        >>> F.grid_sample(x, jnp.array([[[[2.0, 0.0]]]]), padding_mode="border", align_corners=False)[0, 0].tolist()
        [[2.0]]
    """
    if mode not in _MODES:
        raise ValueError(
            f"nn.functional.grid_sample(): expected mode to be 'bilinear', 'nearest' or 'bicubic', but got: '{mode}'"
        )
    if padding_mode not in _PADDINGS:
        raise ValueError(
            "nn.functional.grid_sample(): expected padding_mode to be 'zeros', 'border', or 'reflection', "
            f"but got: '{padding_mode}'"
        )
    align_corners = bool(align_corners)
    input, grid = jnp.asarray(input), jnp.asarray(grid)
    if input.ndim not in (4, 5) or grid.ndim != input.ndim:
        raise ShapeError(
            "grid_sampler(): expected 4D or 5D input and grid with same number of dimensions, but got input "
            f"with sizes {list(input.shape)} and grid with sizes {list(grid.shape)}; pass input (N, C, H, W) "
            "with grid (N, H_out, W_out, 2), or (N, C, D, H, W) with (N, D_out, H_out, W_out, 3)."
        )
    dim = input.ndim - 2
    if grid.shape[0] != input.shape[0]:
        raise ShapeError(
            "grid_sampler(): expected grid and input to have same batch size, but got input with sizes "
            f"{list(input.shape)} and grid with sizes {list(grid.shape)}"
        )
    if grid.shape[-1] != dim:
        raise ShapeError(
            f"grid_sampler(): expected grid to have size {dim} in last dimension, but got grid with sizes "
            f"{list(grid.shape)}"
        )
    for ax in range(2, input.ndim):
        if input.shape[ax] == 0:
            raise ShapeError(
                "grid_sampler(): expected input to have non-empty spatial dimensions, but input has sizes "
                f"{list(input.shape)} with dimension {ax} being empty"
            )
    if mode == "bicubic" and dim != 2:
        raise ShapeError("grid_sampler(): bicubic interpolation only supports 4D input")
    if not jnp.issubdtype(input.dtype, jnp.floating):
        raise ShapeError(f"grid_sampler(): expected a floating-point input, got dtype {input.dtype}")
    if grid.dtype != input.dtype:
        raise ShapeError(
            f"grid_sampler(): expected input and grid to have same dtype, but input has {input.dtype} and grid "
            f"has {grid.dtype}; cast the grid with grid.astype(input.dtype)."
        )

    n, c = input.shape[:2]
    out_spatial = grid.shape[1:-1]
    spatial = input.shape[2:]
    vectorised = dim == 2  # ATen runs 4-D inputs through its vectorised kernel, 5-D through the scalar one
    g = grid.reshape(n, math.prod(out_spatial), dim)  # explicit sizes: -1 fails on empty batches
    # grid's last axis is (x, y[, z]) = the input's spatial axes in reverse order
    raw = [_unnormalize(g[..., dim - 1 - k], spatial[k], align_corners, vectorised) for k in range(dim)]
    if mode == "bicubic":
        base = [jnp.floor(x) for x in raw]
        cy, cx = [[w[..., None] for w in _cubic_coefficients(x - b)] for x, b in zip(raw, base)]
        neighbours = [
            [_pad_coordinate(base[0] + (j - 1), spatial[0], padding_mode, align_corners, True),
             _pad_coordinate(base[1] + (i - 1), spatial[1], padding_mode, align_corners, True)]
            for j in range(4) for i in range(4)
        ]
        read = _gather(input, neighbours)
        out = 0
        for j in range(4):  # as ATen: interpolate each row along x, then the rows along y
            row = 0
            for i in range(4):
                vals, inside = read[4 * j + i]
                row = row + cx[i] * jnp.where(inside, vals, 0)
            out = out + cy[j] * row
    else:
        coords = [_pad_coordinate(x, s, padding_mode, align_corners, vectorised) for x, s in zip(raw, spatial)]
        if mode == "nearest":
            # jnp.round: half to even, as nearbyint; round's derivative is 0, torch's grid gradient here
            vals, inside = _gather(input, [[jnp.round(x) for x in coords]])[0]
            out = jnp.where(inside, vals, 0)
        else:
            base = [jnp.floor(x) for x in coords]
            frac = [x - b for x, b in zip(coords, base)]
            # corners in ATen's order (nw, ne, sw, se; top then bottom for 5-D)
            offsets = [(0, 0), (0, 1), (1, 0), (1, 1)] if dim == 2 else [
                (dz, dy, dx) for dz in (0, 1) for dy in (0, 1) for dx in (0, 1)]
            read = _gather(input, [[b + o for b, o in zip(base, off)] for off in offsets])
            out = 0
            for off, (vals, inside) in zip(offsets, read):
                w = 1
                if dim == 2:  # weights (1-dx)(1-dy)..., times the zero-filled values (NaN stays NaN)
                    for f, o in zip(frac, off):
                        w = w * (f if o else 1 - f)
                    out = out + w[..., None] * jnp.where(inside, vals, 0)
                else:  # ATen's 5-D weights: distances to the opposite corner; outside corners skipped
                    for x, b, o in zip(coords[::-1], base[::-1], off[::-1]):  # x, y, z order
                        w = w * (x - b if o else (b + 1) - x)
                    out = out + jnp.where(inside, vals * w[..., None], 0)
    out = jnp.moveaxis(jnp.asarray(out, input.dtype), -1, 1)  # (N, M, C) -> (N, C, M)
    return out.reshape(n, c, *out_spatial)


def _linspace_from_neg_one(num_steps: int, align_corners: bool, dtype) -> Array:
    """ATen's ``linspace_from_neg_one``: pixel-centre positions in ``[-1, 1]`` units."""
    if num_steps <= 1:
        return jnp.zeros((1,), dtype)
    r = jnp.linspace(-1.0, 1.0, num_steps, dtype=dtype)
    if not align_corners:
        r = r * (num_steps - 1) / num_steps
    return r


def affine_grid(theta: Array, size: Sequence[int], align_corners: bool | None = None) -> Array:
    """``torch.nn.functional.affine_grid``: the sampling grid of a batch of affine maps.

    ``grid[n, h, w] = theta[n] @ (x_w, y_h, 1)`` where ``x_w, y_h`` are the output pixel
    centres in ``[-1, 1]`` units (the corner centres are ``+-1`` with ``align_corners``);
    feed the grid to :func:`grid_sample` with the same ``align_corners``.

    Args:
        theta: ``(N, 2, 3)`` for a 4-D ``size`` or ``(N, 3, 4)`` for a 5-D one, floating point.
        size: the output ``(N, C, H, W)`` or ``(N, C, D, H, W)``.
        align_corners: ``None`` means ``False``, torch's default (without its warning).

    Returns:
        ``(N, H, W, 2)`` or ``(N, D, H, W, 3)`` in ``theta``'s dtype.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets.nn import functional as F
        >>> identity = jnp.array([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
        >>> F.affine_grid(identity, (1, 1, 2, 2), align_corners=False)[0].tolist()
        [[[-0.5, -0.5], [0.5, -0.5]], [[-0.5, 0.5], [0.5, 0.5]]]
    """
    align_corners = bool(align_corners)
    theta = jnp.asarray(theta)
    size = [int(s) for s in size]
    if not jnp.issubdtype(theta.dtype, jnp.floating):
        raise ValueError(f"Expected theta to have floating point type, but got {theta.dtype}")
    if len(size) == 4:
        if theta.ndim != 3 or theta.shape[-2] != 2 or theta.shape[-1] != 3:
            raise ValueError(
                f"Expected a batch of 2D affine matrices of shape Nx2x3 for size {tuple(size)}. "
                f"Got {tuple(theta.shape)}."
            )
    elif len(size) == 5:
        if theta.ndim != 3 or theta.shape[-2] != 3 or theta.shape[-1] != 4:
            raise ValueError(
                f"Expected a batch of 3D affine matrices of shape Nx3x4 for size {tuple(size)}. "
                f"Got {tuple(theta.shape)}."
            )
    else:
        raise NotImplementedError(
            "affine_grid only supports 4D and 5D sizes, for 2D and 3D affine transforms, respectively. "
            f"Got size {tuple(size)}."
        )
    spatial = size[2:]
    # torch skips this check for unit sizes under align_corners (it warns there instead)
    if not (align_corners and min(spatial) == 1) and min(size) <= 0:
        raise ValueError(f"Expected non-zero, positive output size. Got {tuple(size)}")
    if theta.shape[0] != size[0]:
        raise ShapeError(
            f"affine_grid: theta holds {theta.shape[0]} affine matrices but size asks for a batch of {size[0]}; "
            "pass one matrix per output example."
        )
    dim = len(spatial)
    # base[..., k] = (x, y[, z], 1): the last spatial axis varies along x
    axes = [_linspace_from_neg_one(s, align_corners, theta.dtype) for s in spatial]
    mesh = jnp.meshgrid(*axes, indexing="ij")  # in (D,) H, W order
    base = jnp.stack([*mesh[::-1], jnp.ones_like(mesh[0])], axis=-1).reshape(-1, dim + 1)
    grid = jnp.einsum("pk,njk->npj", base, theta)
    return grid.reshape(size[0], *spatial, dim)
