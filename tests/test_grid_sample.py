"""grid_sample and affine_grid (nn/vision.py) against torch 2.14.1: forward values, the gradient
w.r.t. the input and w.r.t. the grid (jax.grad vs torch's backward) for every mode x padding x
align_corners on 4-D inputs and a 5-D subset, in float64 (1e-12) and float32 (1e-5 relative to
the largest value), on grids holding random points, points far outside [-1, 1], points exactly
on the borders, on pixel centres and on nearest-neighbour ties; NaN/inf points as torch's;
affine_grid's grids and errors; a spatial transformer's gradient w.r.t. theta."""

import itertools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

from funcnets import ShapeError
from funcnets.nn import functional as F

MODES = ("bilinear", "nearest", "bicubic")
PADDINGS = ("zeros", "border", "reflection")
TOL = {np.float64: 1e-12, np.float32: 1e-5}
_STATIC = ("mode", "padding_mode", "align_corners")


def _loss(x, g, w, mode, padding_mode, align_corners):
    y = F.grid_sample(x, g, mode, padding_mode, align_corners)
    return jnp.sum(y * w), y


# one compilation gives the output and both gradients per (mode, padding, align_corners, dtype, shape)
_fwd = jax.jit(F.grid_sample, static_argnames=_STATIC)
_affine = jax.jit(F.affine_grid, static_argnums=(1, 2))
_value_and_grads = jax.jit(jax.grad(_loss, argnums=(0, 1), has_aux=True), static_argnums=(3, 4, 5))


def _special_coords(size: int, align_corners: bool) -> np.ndarray:
    """Normalised positions along one axis of ``size`` pixels: the borders, pixel centres,
    the half-way points between them (ties for nearest), and points far outside."""
    k = np.arange(size)
    if align_corners:
        centres = 2 * k / max(size - 1, 1) - 1
        halves = (2 * k + 1) / max(size - 1, 1) - 1
    else:
        centres = (2 * k + 1) / size - 1
        halves = 2 * k / size - 1
    far = np.array([-25.6, -7.3, -3.1, -1.7, 1.7, 3.1, 7.3, 25.6, -1.0, 1.0, 0.0])
    return np.concatenate([centres, halves, far])


def _make_grid(rng, n, spatial_in, out, align_corners):
    """(n, *out, dim) grid: half random in [-3, 3], half special points per axis."""
    dim = len(spatial_in)
    g = rng.uniform(-3, 3, (n, *out, dim))
    flat = g.reshape(n, -1, dim)
    m = flat.shape[1] // 2
    for c in range(dim):  # coordinate c indexes spatial axis dim-1-c
        sp = _special_coords(spatial_in[dim - 1 - c], align_corners)
        flat[:, :m, c] = rng.choice(sp, (n, m))
    return flat.reshape(g.shape)


def _torch(x, g, w, mode, padding_mode, align_corners):
    tx = torch.tensor(x, requires_grad=True)
    tg = torch.tensor(g, requires_grad=True)
    ty = TF.grid_sample(tx, tg, mode=mode, padding_mode=padding_mode, align_corners=align_corners)
    (ty * torch.tensor(w)).sum().backward()
    return ty.detach().numpy(), tx.grad.numpy(), tg.grad.numpy()


def _check(x, g, mode, padding_mode, align_corners, dtype, seed=0):
    x, g = x.astype(dtype), g.astype(dtype)
    out_shape = (x.shape[0], x.shape[1], *g.shape[1:-1])
    w = np.random.default_rng(seed + 1).standard_normal(out_shape).astype(dtype)
    ty, tgx, tgg = _torch(x, g, w, mode, padding_mode, align_corners)
    with jax.enable_x64(dtype == np.float64):
        (gx, gg), y = _value_and_grads(x, g, w, mode, padding_mode, align_corners)
    assert y.dtype == dtype and gx.dtype == dtype and gg.dtype == dtype
    for what, ours, ref in (("output", y, ty), ("input grad", gx, tgx), ("grid grad", gg, tgg)):
        ours = np.asarray(ours)
        assert ours.shape == ref.shape, what
        scale = max(1.0, float(np.abs(ref).max()))
        err = float(np.abs(ours - ref).max()) / scale
        assert err <= TOL[dtype], f"{what}: {mode}/{padding_mode}/align_corners={align_corners}/{dtype.__name__}: {err:.2e}"
    return np.asarray(gg)


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("padding_mode", PADDINGS)
@pytest.mark.parametrize("mode", MODES)
def test_4d_matches_torch(mode, padding_mode, align_corners):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4, 5))
    g = _make_grid(rng, 2, (4, 5), (3, 6), align_corners)
    for dtype in (np.float64, np.float32):
        gg = _check(x, g, mode, padding_mode, align_corners, dtype)
        if mode == "nearest":  # torch's grid gradient in nearest mode is exactly zero
            assert not gg.any()
        else:
            assert np.abs(gg).max() > 0.1  # the grid gradient is really compared


@pytest.mark.parametrize(
    "mode,padding_mode,align_corners",
    [("bilinear", "zeros", False), ("bilinear", "border", True), ("bilinear", "reflection", False),
     ("bilinear", "reflection", True), ("nearest", "zeros", True), ("nearest", "reflection", False),
     ("nearest", "border", False)],
)
def test_5d_matches_torch(mode, padding_mode, align_corners):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 2, 3, 4, 5))
    g = _make_grid(rng, 2, (3, 4, 5), (2, 3, 4), align_corners)
    for dtype in (np.float64, np.float32):
        _check(x, g, mode, padding_mode, align_corners, dtype)


def test_nearest_ties_round_half_to_even():
    """W = 4, align_corners=False: x = 2 (g + 1) - 0.5, so g = -0.5, 0, 0.5 land exactly on
    0.5, 1.5, 2.5 and take pixels 0, 2, 2 (half to even, torch's nearbyint); g = 1 lands on
    3.5 -> pixel 4: outside (0) under zeros, the border pixel 3 under border."""
    x = np.array([[[[10.0, 11.0, 12.0, 13.0]]]])
    g = np.array([[[[-0.5, 0.0], [0.0, 0.0], [0.5, 0.0], [1.0, 0.0]]]])
    with jax.enable_x64(True):
        zeros = np.asarray(_fwd(x, g, mode="nearest", padding_mode="zeros", align_corners=False))[0, 0, 0]
        border = np.asarray(_fwd(x, g, mode="nearest", padding_mode="border", align_corners=False))[0, 0, 0]
    assert zeros.tolist() == [10.0, 12.0, 12.0, 0.0]
    assert border.tolist() == [10.0, 12.0, 12.0, 13.0]
    ref = TF.grid_sample(torch.tensor(x), torch.tensor(g), mode="nearest", align_corners=False)
    assert zeros.tolist() == ref[0, 0, 0].tolist()
    # 5-D (the scalar kernel's unnormalisation): D = H = W = 4, ties along every axis
    x5 = np.arange(64.0).reshape(1, 1, 4, 4, 4)
    t = np.array([-0.5, 0.0, 0.5])
    g5 = np.stack(np.meshgrid(t, t, t, indexing="ij"), -1).reshape(1, 3, 3, 3, 3)
    for pad in PADDINGS:
        with jax.enable_x64(True):
            ours = np.asarray(_fwd(x5, g5, mode="nearest", padding_mode=pad, align_corners=False))
        ref = TF.grid_sample(torch.tensor(x5), torch.tensor(g5), mode="nearest", padding_mode=pad, align_corners=False)
        np.testing.assert_array_equal(ours, ref.numpy())
    assert ours[0, 0, 1, 1, 1] == 42.0  # (z, y, x) = (2, 2, 2): 1.5 rounds up to the even 2


def test_hand_computed_bilinear_and_bicubic():
    """A 2x2 image: the centre of the image averages all four pixels; with align_corners the
    corners are the pixel centres; bicubic on a pixel centre reads that pixel (Keys' weights
    0, 1, 0, 0) and keeps a constant image constant, even at the borders (border padding)."""
    x = jnp.array([[[[0.0, 2.0], [4.0, 6.0]]]])
    g = jnp.array([[[[0.0, 0.0], [-1.0, -1.0], [1.0, 1.0]]]])
    with jax.enable_x64(True):
        assert _fwd(x, g, align_corners=True)[0, 0, 0].tolist() == [3.0, 0.0, 6.0]
        assert _fwd(x, g, align_corners=False)[0, 0, 0].tolist() == [3.0, 0.0, 1.5]  # zeros outside
        img = jnp.arange(81.0).reshape(1, 1, 9, 9)
        # align_corners, 9 pixels: x = (g + 1) * 4, so (g_x, g_y) = (-0.25, 0.5) is pixel (row 6, col 3)
        y = _fwd(img, jnp.array([[[[-0.25, 0.5]]]]), mode="bicubic", padding_mode="zeros", align_corners=True)
        const = _fwd(jnp.full((1, 1, 3, 4), 2.5), jnp.array([[[[-0.97, 0.99], [0.3, -1.2]]]]),
                     mode="bicubic", padding_mode="border", align_corners=False)
    assert float(y[0, 0, 0, 0]) == 6 * 9 + 3
    np.testing.assert_allclose(np.asarray(const), 2.5, rtol=1e-14)


@pytest.mark.parametrize("dim", [2, 3])
def test_nonfinite_points_as_torch(dim):
    """NaN, +-inf and huge grid points: torch's CPU results (NaN under zeros for bilinear and
    bicubic on 4-D inputs, 0 on 5-D ones; a clipped border pixel under border/reflection).
    5-D reflection is compared on points within int range only (torch casts the reflection count
    to int, undefined for NaN, inf and beyond 2**31; see nn/vision.py)."""
    nonfinite = [np.nan, np.inf, -np.inf, 1e300, -1e300, 3e9, -3e9, 0.3]
    for dtype in (np.float64, np.float32):
        x = np.arange(1, 1 + 2 * 3 ** dim, dtype=dtype).reshape((1, 2) + (3,) * dim)
        for mode, pad, ac in itertools.product(MODES, PADDINGS, (False, True)):
            if (dim == 3 and mode == "bicubic") or (dtype == np.float32 and ac):  # (time: float32 on one alignment)
                continue
            vals = [1e6 + 0.3, -12.25, 7.5, 0.3] if (dim == 3 and pad == "reflection") else nonfinite
            with np.errstate(over="ignore"):
                v = np.array(vals, dtype=dtype)
            g = np.stack(np.meshgrid(*([v] * dim), indexing="ij"), -1).reshape((1,) + (1,) * (dim - 1) + (-1, dim))
            ref = TF.grid_sample(torch.tensor(x), torch.tensor(g), mode=mode, padding_mode=pad, align_corners=ac)
            with jax.enable_x64(dtype == np.float64):
                ours = np.asarray(_fwd(x, g, mode=mode, padding_mode=pad, align_corners=ac))
            np.testing.assert_allclose(ours, ref.numpy(), rtol=1e-5, atol=1e-5, equal_nan=True,
                                       err_msg=f"{mode}/{pad}/{ac}/{dtype.__name__}")
            if pad != "zeros" and mode != "bicubic":
                assert not np.isnan(ours).any()


def test_spatial_transformer_gradient_wrt_theta():
    """theta -> affine_grid -> grid_sample -> loss: d loss / d theta and d loss / d input as
    torch's, 4-D (bilinear, bicubic) and 5-D (trilinear)."""
    rng = np.random.default_rng(3)
    cases = [((2, 3, 5, 6), (2, 3, 4, 7), "bilinear", "zeros", False),
             ((2, 3, 5, 6), (2, 3, 4, 4), "bicubic", "reflection", True),
             ((1, 2, 3, 4, 5), (1, 2, 2, 3, 4), "bilinear", "border", False)]
    for in_shape, size, mode, pad, ac in cases:
        dim = len(in_shape) - 2
        theta = np.concatenate([np.eye(dim), np.zeros((dim, 1))], 1)[None] + 0.3 * rng.standard_normal((in_shape[0], dim, dim + 1))
        x = rng.standard_normal(in_shape)
        w = rng.standard_normal(size)

        def loss(theta, x):
            return jnp.sum(F.grid_sample(x, F.affine_grid(theta, size, ac), mode, pad, ac) * w)

        tt = torch.tensor(theta, requires_grad=True)
        tx = torch.tensor(x, requires_grad=True)
        tl = (TF.grid_sample(tx, TF.affine_grid(tt, size, align_corners=ac), mode=mode, padding_mode=pad,
                             align_corners=ac) * torch.tensor(w)).sum()
        tl.backward()
        with jax.enable_x64(True):
            val, (gt, gx) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(theta, x)
        assert abs(float(val) - tl.item()) < 1e-12 * max(1.0, abs(tl.item()))
        np.testing.assert_allclose(np.asarray(gt), tt.grad.numpy(), rtol=1e-11, atol=1e-12)
        np.testing.assert_allclose(np.asarray(gx), tx.grad.numpy(), rtol=1e-11, atol=1e-12)
        assert np.abs(tt.grad.numpy()).max() > 0.1


def test_gradients_numerically():
    """jax.grad agrees with finite differences away from the kinks (float64)."""
    from jax.test_util import check_grads

    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 2, 4, 5))
    g = rng.uniform(-0.9, 0.9, (1, 3, 3, 2))
    with jax.enable_x64(True):
        for mode, pad in (("bilinear", "reflection"), ("bicubic", "border")):
            f = jax.jit(lambda a, b, mode=mode, pad=pad: F.grid_sample(a, b, mode, pad, False))
            check_grads(f, (x, g), order=1, modes=["rev"], eps=1e-6)


@pytest.mark.parametrize("align_corners", [False, True])
def test_affine_grid_matches_torch(align_corners):
    rng = np.random.default_rng(5)
    for size in [(2, 3, 4, 5), (2, 1, 1, 6), (1, 1, 7, 1), (2, 3, 2, 3, 4), (1, 1, 1, 2, 3)]:
        dim = len(size) - 2
        theta = rng.standard_normal((size[0], dim, dim + 1))
        for dtype in (np.float64, np.float32):
            th = theta.astype(dtype)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch warns for unit sizes with align_corners
                ref = TF.affine_grid(torch.tensor(th), size, align_corners=align_corners).numpy()
            with jax.enable_x64(dtype == np.float64):
                ours = np.asarray(_affine(th, size, align_corners))
            assert ours.shape == ref.shape and ours.dtype == dtype
            np.testing.assert_allclose(ours, ref, rtol=0, atol=TOL[dtype] * 10, err_msg=str((size, dtype)))


def test_align_corners_none_is_false_without_warning():
    rng = np.random.default_rng(6)
    x, g = rng.standard_normal((1, 1, 3, 4)), rng.uniform(-1, 1, (1, 2, 2, 2))
    theta = rng.standard_normal((1, 2, 3))
    with jax.enable_x64(True), warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(_fwd(x, g), _fwd(x, g, align_corners=False))
        np.testing.assert_array_equal(_affine(theta, (1, 1, 3, 4)), _affine(theta, (1, 1, 3, 4), False))
        assert not np.allclose(_fwd(x, g, align_corners=True), _fwd(x, g, align_corners=False))


def _torch_message(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(Exception) as e:
            fn()
    return str(e.value).split("\n")[0]


def test_grid_sample_errors():
    x, g = np.zeros((1, 1, 3, 3), np.float32), np.zeros((1, 2, 2, 2), np.float32)
    tx, tg = torch.tensor(x), torch.tensor(g)
    cases = [  # (ours, torch) with the same message
        (lambda: F.grid_sample(x, g, mode="foo"), lambda: TF.grid_sample(tx, tg, mode="foo")),
        (lambda: F.grid_sample(x, g, padding_mode="foo"), lambda: TF.grid_sample(tx, tg, padding_mode="foo")),
        (lambda: F.grid_sample(x, np.zeros((2, 2, 2, 2), np.float32)),
         lambda: TF.grid_sample(tx, torch.zeros(2, 2, 2, 2), align_corners=False)),
        (lambda: F.grid_sample(x, np.zeros((1, 2, 2, 3), np.float32)),
         lambda: TF.grid_sample(tx, torch.zeros(1, 2, 2, 3), align_corners=False)),
        (lambda: F.grid_sample(np.zeros((1, 1, 0, 3), np.float32), g),
         lambda: TF.grid_sample(torch.zeros(1, 1, 0, 3), tg, align_corners=False)),
        (lambda: F.grid_sample(np.zeros((1, 1, 3, 3, 3), np.float32), np.zeros((1, 2, 2, 2, 3), np.float32), "bicubic"),
         lambda: TF.grid_sample(torch.zeros(1, 1, 3, 3, 3), torch.zeros(1, 2, 2, 2, 3), mode="bicubic", align_corners=False)),
    ]
    for ours, theirs in cases:
        with pytest.raises(ValueError) as e:
            ours()
        assert str(e.value) == _torch_message(theirs)
    with pytest.raises(ShapeError, match="expected 4D or 5D input and grid with same number of dimensions"):
        F.grid_sample(x[0], g)
    with pytest.raises(ShapeError, match="same dtype.*astype"):
        with jax.enable_x64(True):
            F.grid_sample(x, g.astype(np.float64))
    with pytest.raises(ShapeError, match="floating-point"):
        F.grid_sample(x.astype(np.int32), g.astype(np.int32))


def test_empty_shapes():
    def shape(x, g):
        return jax.eval_shape(lambda a, b: F.grid_sample(a, b, align_corners=False), x, g).shape

    s = jax.ShapeDtypeStruct
    assert shape(s((1, 1, 3, 3), jnp.float32), s((1, 0, 2, 2), jnp.float32)) == (1, 1, 0, 2)
    assert shape(s((0, 1, 3, 3), jnp.float32), s((0, 2, 2, 2), jnp.float32)) == (0, 1, 2, 2)
    assert shape(s((1, 0, 3, 3), jnp.float32), s((1, 2, 2, 2), jnp.float32)) == (1, 0, 2, 2)
    y = _fwd(jnp.ones((1, 0, 3, 3)), jnp.zeros((1, 2, 2, 2)), align_corners=False)  # runs, no division by 0
    assert y.shape == (1, 0, 2, 2)


def test_affine_grid_errors():
    th = np.zeros((2, 2, 3), np.float32)
    cases = [
        (lambda: F.affine_grid(th, (2, 1, 4, 4, 4)), lambda: TF.affine_grid(torch.tensor(th), (2, 1, 4, 4, 4))),
        (lambda: F.affine_grid(th[0], (2, 1, 4, 4)), lambda: TF.affine_grid(torch.tensor(th[0]), (2, 1, 4, 4))),
        (lambda: F.affine_grid(th.astype(np.int32), (2, 1, 4, 4)),
         lambda: TF.affine_grid(torch.tensor(th).long(), (2, 1, 4, 4))),
        (lambda: F.affine_grid(th, (2, 1, 0, 4)), lambda: TF.affine_grid(torch.tensor(th), (2, 1, 0, 4))),
        (lambda: F.affine_grid(th, (2, 1, 4)), lambda: TF.affine_grid(torch.tensor(th), (2, 1, 4))),
    ]
    for ours, theirs in cases:
        with pytest.raises((ValueError, NotImplementedError)) as e:
            ours()
        assert str(e.value).replace("torch.Size([", "(").replace("])", ")").replace("torch.int64", "int32") \
            == _torch_message(theirs).replace("torch.Size([", "(").replace("])", ")").replace("torch.int64", "int32")
    with pytest.raises(ShapeError, match="theta holds 2 affine matrices but size asks for a batch of 3"):
        F.affine_grid(th, (3, 1, 4, 4))


class _SpatialTransformer(torch.nn.Module):
    """The torch tutorial's STN: a localisation net predicts theta, affine_grid + grid_sample warp."""

    def __init__(self):
        super().__init__()
        self.loc = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2 * 6 * 6, 6))

    def forward(self, x):
        theta = self.loc(x).view(-1, 2, 3) + torch.tensor([[1.0, 0, 0], [0, 1.0, 0]], dtype=x.dtype)
        grid = TF.affine_grid(theta, x.size(), align_corners=False)
        return TF.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def test_from_torch_converts_a_spatial_transformer(x64):
    import funcnets

    torch.manual_seed(0)
    t = _SpatialTransformer().double()
    x = torch.randn(2, 2, 6, 6, dtype=torch.float64)
    net, params, state = funcnets.from_torch(t, x)
    y = net.apply(params, state, jnp.asarray(x.numpy()))[0]
    np.testing.assert_allclose(np.asarray(y), t(x).detach().numpy(), rtol=1e-12, atol=1e-12)
    g = jax.grad(lambda p: jnp.sum(net.apply(p, state, jnp.asarray(x.numpy()))[0] ** 2))(params)
    (t(x) ** 2).sum().backward()
    np.testing.assert_allclose(np.asarray(g["loc"]["1"]["weight"]), t.loc[1].weight.grad.numpy(), rtol=1e-10, atol=1e-12)
