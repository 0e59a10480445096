"""Normalisation layers against torch: BatchNorm1d/2d/3d, InstanceNorm1d/2d/3d, LayerNorm,
GroupNorm, RMSNorm, LocalResponseNorm and their functional forms.

Option spaces are drawn by hypothesis; each case runs the same weights and inputs through
torch and funcnets and compares outputs, input gradients, parameter gradients and (for
the layers with buffers) the running statistics after each train step, in float64
(1e-10) and float32 (1e-5 values, 1e-4 gradients, relative to the largest reference value).

Shapes come from a short fixed list while the options vary, which keeps the compiling
(one program per layer and mode) short.
Normalising fewer than three values is avoided: one value normalises to 0 and two to ±1,
whose input gradient is 0 up to rounding, so a relative comparison means nothing.
"""

import warnings
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

from funcnets import ShapeError, nn
from funcnets.nn import functional as F
from helpers import assert_close, to_np

DTYPES = st.sampled_from([np.float32, np.float64])
SEEDS = st.integers(0, 2**31 - 1)
TOL = {np.float64: (1e-10, 1e-10), np.float32: (1e-5, 1e-4)}  # (values, gradients)


def _copy_random_weights(tlayer, rng):
    """Give the torch layer random weights and return them as funcnets params."""
    with torch.no_grad():
        for p in tlayer.parameters():
            p.copy_(torch.tensor(rng.standard_normal(tuple(p.shape))))
    return {n: jnp.asarray(to_np(p)) for n, p in tlayer.named_parameters()}


@partial(jax.jit, static_argnums=(0, 1))
def _fwd_bwd(layer, train, params, state, x, g):
    """Output, (parameter, input) gradients for cotangent ``g``, new buffers: one compiled
    program per layer (measured: half the test time of the same steps run eagerly)."""
    y, pull, new_state = jax.vjp(lambda p, x: layer.apply(p, state, x, train=train), params, x, has_aux=True)
    return y, pull(g), new_state


def _step(layer, tlayer, params, state, x, train, rng, what):
    """One forward and backward pass through both layers (the same cotangent); compares
    the output, the input and parameter gradients and the buffers; returns the new state."""
    dtype = x.dtype.type
    rtol_v, rtol_g = TOL[dtype]
    tlayer.train(train)
    xt = torch.tensor(x, requires_grad=True)
    yt = tlayer(xt)
    g = rng.standard_normal(tuple(yt.shape)).astype(dtype)
    yt.backward(torch.tensor(g))

    y, (dp, dx), new_state = _fwd_bwd(layer, train, params, state, jnp.asarray(x), jnp.asarray(g))
    assert y.dtype == dtype and y.shape == x.shape
    assert_close(y, to_np(yt), rtol_v, f"{what}: output")
    assert_close(dx, to_np(xt.grad), rtol_g, f"{what}: input gradient")
    assert set(dp) == {n for n, _ in tlayer.named_parameters()}, what
    for n, p in tlayer.named_parameters():
        assert_close(dp[n], to_np(p.grad), rtol_g, f"{what}: {n} gradient")
        p.grad = None
    assert set(new_state) == {n for n, _ in tlayer.named_buffers()}, what
    for n, b in tlayer.named_buffers():
        if n == "num_batches_tracked":
            assert int(new_state[n]) == int(b), f"{what}: {n}"
        else:
            assert_close(new_state[n], to_np(b), rtol_v, f"{what}: {n}")
    return new_state


def _pair(layer, tlayer, dtype, rng):
    """funcnets' initial state and random affine weights copied from the torch layer."""
    tlayer = tlayer.to(torch.float64 if dtype == np.float64 else torch.float32)
    params = _copy_random_weights(tlayer, rng)
    _, state = layer.init(jax.random.PRNGKey(0))
    return tlayer, params, state


# ------------------------------------------------------------------ BatchNorm1d/2d/3d
BN_SHAPES = {"1d (N, C)": (nn.BatchNorm1d, torch.nn.BatchNorm1d, 0), "1d (N, C, L)": (nn.BatchNorm1d, torch.nn.BatchNorm1d, 1),
             "2d": (nn.BatchNorm2d, torch.nn.BatchNorm2d, 2), "3d": (nn.BatchNorm3d, torch.nn.BatchNorm3d, 3)}


@settings(max_examples=12, deadline=None)
@given(kind=st.sampled_from(list(BN_SHAPES)), momentum=st.sampled_from([0.1, None, 0.3]), affine=st.booleans(),
       bias=st.booleans(), track=st.booleans(), dtype=DTYPES, seed=SEEDS)
@example(kind="1d (N, C, L)", momentum=0.1, affine=True, bias=True, track=True, dtype=np.float64, seed=0)
@example(kind="1d (N, C)", momentum=None, affine=True, bias=True, track=True, dtype=np.float64, seed=1)
@example(kind="3d", momentum=None, affine=True, bias=False, track=True, dtype=np.float64, seed=2)
@example(kind="3d", momentum=0.1, affine=False, bias=True, track=True, dtype=np.float32, seed=3)
def test_batchnorm_matches_torch(kind, momentum, affine, bias, track, dtype, seed):
    """Three train steps (output, gradients, running_mean/var, num_batches_tracked), then
    eval (running statistics, or the batch's without track_running_stats)."""
    ours, theirs, spatial = BN_SHAPES[kind]
    c = 3
    rng = np.random.default_rng(seed)
    with jax.enable_x64(dtype == np.float64):
        layer = ours(c, momentum=momentum, affine=affine, track_running_stats=track, bias=bias)
        tlayer, params, state = _pair(layer, theirs(c, momentum=momentum, affine=affine, track_running_stats=track, bias=bias), dtype, rng)
        shape = (3, c) + (4, 3, 2)[:spatial]
        for step in range(3):
            x = (rng.standard_normal(shape) * 2 + step).astype(dtype)
            state = _step(layer, tlayer, params, state, x, True, rng, f"{layer!r} train step {step}")
        _step(layer, tlayer, params, state, rng.standard_normal(shape).astype(dtype), False, rng, f"{layer!r} eval")


# ------------------------------------------------------------------ InstanceNorm1d/2d/3d
IN_KINDS = {1: (nn.InstanceNorm1d, torch.nn.InstanceNorm1d), 2: (nn.InstanceNorm2d, torch.nn.InstanceNorm2d),
            3: (nn.InstanceNorm3d, torch.nn.InstanceNorm3d)}


@settings(max_examples=12, deadline=None)
@given(dims=st.sampled_from([1, 2, 3]), unbatched=st.booleans(), momentum=st.sampled_from([0.1, None]),
       affine=st.booleans(), bias=st.booleans(), track=st.booleans(), dtype=DTYPES, seed=SEEDS)
@example(dims=1, unbatched=False, momentum=0.1, affine=True, bias=True, track=True, dtype=np.float64, seed=0)
@example(dims=2, unbatched=True, momentum=0.1, affine=False, bias=True, track=True, dtype=np.float64, seed=1)
@example(dims=2, unbatched=False, momentum=None, affine=True, bias=False, track=True, dtype=np.float64, seed=2)
def test_instance_norm_matches_torch(dims, unbatched, momentum, affine, bias, track, dtype, seed):
    """Two train steps (with track_running_stats: running statistics averaged over the
    batch, num_batches_tracked left at 0 as torch leaves it), then eval."""
    ours, theirs = IN_KINDS[dims]
    c = 3
    rng = np.random.default_rng(seed)
    with jax.enable_x64(dtype == np.float64):
        layer = ours(c, momentum=momentum, affine=affine, track_running_stats=track, bias=bias)
        tlayer, params, state = _pair(layer, theirs(c, momentum=momentum, affine=affine, track_running_stats=track, bias=bias), dtype, rng)
        shape = ((2,) if not unbatched else ()) + (c,) + (4, 3, 2)[:dims]
        for step in range(2):
            x = (rng.standard_normal(shape) * 3 - step).astype(dtype)
            state = _step(layer, tlayer, params, state, x, True, rng, f"{layer!r} train step {step}")
        _step(layer, tlayer, params, state, rng.standard_normal(shape).astype(dtype), False, rng, f"{layer!r} eval")


# ------------------------------------------------------------------ LayerNorm, RMSNorm
SHAPES = [(4,), (2, 3), (2, 1, 4), (2, 3, 2, 3)]  # the last k dimensions hold at least 3 values for every k


@settings(max_examples=12, deadline=None)
@given(shape=st.sampled_from(SHAPES), k=st.integers(1, 4), affine=st.booleans(),
       bias=st.booleans(), eps=st.sampled_from([1e-5, 1e-3, 0.5]), dtype=DTYPES, seed=SEEDS)
def test_layer_norm_matches_torch(shape, k, affine, bias, eps, dtype, seed):
    k = min(k, len(shape))
    normalized = tuple(shape[len(shape) - k:])
    rng = np.random.default_rng(seed)
    with jax.enable_x64(dtype == np.float64):
        arg = normalized[0] if k == 1 and seed % 2 else normalized  # int or tuple, as torch takes it
        layer = nn.LayerNorm(arg, eps=eps, elementwise_affine=affine, bias=bias)
        tlayer, params, state = _pair(layer, torch.nn.LayerNorm(arg, eps=eps, elementwise_affine=affine, bias=bias), dtype, rng)
        x = (rng.standard_normal(shape) * 2 + 1).astype(dtype)
        _step(layer, tlayer, params, state, x, True, rng, repr(layer))
        y = F.layer_norm(jnp.asarray(x), arg, params.get("weight"), params.get("bias"), eps)
        assert_close(y, to_np(torch.nn.functional.layer_norm(torch.tensor(x), normalized, tlayer.weight, tlayer.bias, eps)),
                     TOL[dtype][0], "F.layer_norm")


@settings(max_examples=10, deadline=None)
@given(shape=st.sampled_from(SHAPES), k=st.integers(1, 4), affine=st.booleans(),
       eps=st.sampled_from([None, 1e-6, 0.1]), dtype=DTYPES, seed=SEEDS)
def test_rms_norm_matches_torch(shape, k, affine, eps, dtype, seed):
    k = min(k, len(shape))
    normalized = tuple(shape[len(shape) - k:])
    rng = np.random.default_rng(seed)
    with jax.enable_x64(dtype == np.float64):
        layer = nn.RMSNorm(normalized, eps=eps, elementwise_affine=affine)
        tlayer, params, state = _pair(layer, torch.nn.RMSNorm(normalized, eps=eps, elementwise_affine=affine), dtype, rng)
        x = (rng.standard_normal(shape) * 0.1).astype(dtype)  # small values: eps matters
        _step(layer, tlayer, params, state, x, True, rng, repr(layer))
        y = F.rms_norm(jnp.asarray(x), normalized, params.get("weight"), eps)
        assert_close(y, to_np(torch.nn.functional.rms_norm(torch.tensor(x), normalized, tlayer.weight, eps)),
                     TOL[dtype][0], "F.rms_norm")


# ------------------------------------------------------------------ GroupNorm
@settings(max_examples=12, deadline=None)
@given(groups=st.sampled_from([1, 4]), spatial=st.sampled_from([(), (3, 2)]), affine=st.booleans(),
       bias=st.booleans(), eps=st.sampled_from([1e-5, 0.1]), dtype=DTYPES, seed=SEEDS)
def test_group_norm_matches_torch(groups, spatial, affine, bias, eps, dtype, seed):
    n, c = 2, 12  # 3 to 12 channels a group
    rng = np.random.default_rng(seed)
    with jax.enable_x64(dtype == np.float64):
        layer = nn.GroupNorm(groups, c, eps=eps, affine=affine, bias=bias)
        tlayer, params, state = _pair(layer, torch.nn.GroupNorm(groups, c, eps=eps, affine=affine, bias=bias), dtype, rng)
        x = (rng.standard_normal([n, c, *spatial]) * 2 - 1).astype(dtype)
        _step(layer, tlayer, params, state, x, True, rng, repr(layer))
        y = F.group_norm(jnp.asarray(x), groups, params.get("weight"), params.get("bias"), eps)
        assert_close(y, to_np(tlayer(torch.tensor(x))), TOL[dtype][0], "F.group_norm")


# ------------------------------------------------------------------ LocalResponseNorm
@settings(max_examples=12, deadline=None)
@given(ndim=st.integers(3, 5), c=st.sampled_from([1, 5]), size=st.integers(1, 7), alpha=st.sampled_from([1e-4, 1e-2, 0.5]),
       beta=st.sampled_from([0.75, 0.5, 2.0]), k=st.sampled_from([1.0, 2.0, 0.5]), dtype=DTYPES, seed=SEEDS)
def test_local_response_norm_matches_torch(ndim, c, size, alpha, beta, k, dtype, seed):
    """torch's window: channels c - size//2 ... c + (size-1)//2, zeros outside, and
    alpha divided by size (it average-pools the squares)."""
    rng = np.random.default_rng(seed)
    with jax.enable_x64(dtype == np.float64):
        layer = nn.LocalResponseNorm(size, alpha=alpha, beta=beta, k=k)
        tlayer, params, state = _pair(layer, torch.nn.LocalResponseNorm(size, alpha=alpha, beta=beta, k=k), dtype, rng)
        x = (rng.standard_normal((2, c) + (4, 3, 2)[: ndim - 2]) * 2).astype(dtype)
        _step(layer, tlayer, params, state, x, True, rng, repr(layer))


def test_local_response_norm_hand_computed(x64):
    # one sample, channels 1..4, size 3 (window c-1..c+1, zero padded), alpha 3, beta 1, k 1
    x = jnp.arange(1.0, 5.0).reshape(1, 4, 1)
    y = F.local_response_norm(x, 3, alpha=3.0, beta=1.0, k=1.0)
    sums = np.array([1 + 4, 1 + 4 + 9, 4 + 9 + 16, 9 + 16])
    np.testing.assert_allclose(np.asarray(y).ravel(), np.arange(1.0, 5.0) / (1 + sums), rtol=1e-14)


def test_second_order_and_forward_mode(x64):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, 4, 3)))
    w, b = jnp.asarray(rng.standard_normal(4)), jnp.asarray(rng.standard_normal(4))
    # jitted: check_grads evaluates each function many times at one shape
    check_grads(jax.jit(lambda x: F.local_response_norm(x, 3, alpha=0.5, beta=0.75, k=1.0)), (x,), order=2, modes=["fwd", "rev"])
    check_grads(jax.jit(lambda x, w, b: F.group_norm(x, 2, w, b)), (x, w, b), order=1, modes=["fwd", "rev"])
    check_grads(jax.jit(lambda x: F.rms_norm(x, 3)), (x,), order=1, modes=["fwd", "rev"])
    # the output and the running statistics
    inst = jax.jit(lambda x, w, b: F.instance_norm(x, jnp.zeros(4), jnp.ones(4), w, b, True, 0.1))
    check_grads(inst, (x, w, b), order=1, modes=["fwd", "rev"])


# ------------------------------------------------------------------ vmap, jit
@pytest.mark.parametrize("layer,tlayer,shape", [
    (nn.LayerNorm((3, 4)), torch.nn.LayerNorm((3, 4)), (3, 2, 3, 4)),
    (nn.GroupNorm(2, 4), torch.nn.GroupNorm(2, 4), (3, 4, 5)),
], ids=["LayerNorm", "GroupNorm"])
def test_per_sample_gradients_with_vmap(x64, layer, tlayer, shape):
    """jit(vmap(grad)): each sample's parameter gradients equal torch's for that sample alone."""
    rng = np.random.default_rng(0)
    tlayer = tlayer.double()
    params = _copy_random_weights(tlayer, rng)
    x = rng.standard_normal(shape)
    target = rng.standard_normal(shape[1:])

    def loss(p, xi):  # one sample; GroupNorm needs its batch axis back
        xb = xi[None] if isinstance(layer, nn.GroupNorm) else xi
        y, _ = layer(p, {}, xb)
        return jnp.sum(jnp.sin(y.reshape(target.shape)) * target)

    per_sample = jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0)))(params, jnp.asarray(x))
    for i in range(shape[0]):
        tlayer.zero_grad()
        xi = torch.tensor(x[i: i + 1] if isinstance(layer, nn.GroupNorm) else x[i])
        (torch.sin(tlayer(xi).reshape(target.shape)) * torch.tensor(target)).sum().backward()
        for n, p in tlayer.named_parameters():
            assert_close(per_sample[n][i], to_np(p.grad), 1e-10, f"sample {i} {n}")


def test_layers_under_jit(x64):
    """Layers are static jit arguments; the compiled train step updates the buffers."""
    rng = np.random.default_rng(1)
    layer = nn.InstanceNorm1d(3, affine=True, track_running_stats=True)
    params, state = layer.init(jax.random.PRNGKey(0))
    x = jnp.asarray(rng.standard_normal((2, 3, 5)))
    step = jax.jit(layer.apply, static_argnames="train")
    y, new = step(params, state, x, train=True)
    y0, new0 = layer.apply(params, state, x, train=True)
    assert_close(y, y0, 1e-14, "jit output")
    assert_close(new["running_var"], new0["running_var"], 1e-14, "jit running_var")
    for mod, shape in [(nn.BatchNorm3d(2), (2, 2, 3, 3, 3)), (nn.LocalResponseNorm(2), (2, 3, 4)), (nn.RMSNorm(4), (3, 4))]:
        p, s = mod.init(jax.random.PRNGKey(0))
        xs = jnp.asarray(rng.standard_normal(shape))
        assert_close(jax.jit(lambda p, s, x, m=mod: m(p, s, x, train=True)[0])(p, s, xs), mod(p, s, xs, train=True)[0], 1e-14, repr(mod))


# ------------------------------------------------------------------ layouts
LAYOUTS = {"channels_last": (F.channels_last, (0, 2, 3, 1), (0, 3, 1, 2)), "batch_last": (F.batch_last, (1, 2, 3, 0), (3, 0, 1, 2))}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_image_layouts_equal_nchw(x64, layout):
    """Inside channels_last/batch_last a 4-D input is an image in that layout: the same
    numbers, buffers and gradients as NCHW (the 3-D unbatched image too, for InstanceNorm2d)."""
    block, to_layout, to_nchw = LAYOUTS[layout]
    rng = np.random.default_rng(2)
    cases = [(nn.InstanceNorm2d(3, affine=True, track_running_stats=True), (2, 3, 4, 5)), (nn.GroupNorm(3, 3), (2, 3, 4, 5)),
             (nn.LocalResponseNorm(2), (2, 3, 4, 5)), (nn.LayerNorm((3, 4, 5)), (2, 3, 4, 5)), (nn.RMSNorm(5), (2, 3, 4, 5))]
    states = [layer.init(jax.random.PRNGKey(0))[1] for layer, _ in cases]
    params = [jax.tree_util.tree_map(lambda p: p + 0.1 * jnp.asarray(rng.standard_normal(p.shape)),
                                     layer.init(jax.random.PRNGKey(0))[0]) for layer, _ in cases]
    xs = [jnp.asarray(rng.standard_normal(shape)) for _, shape in cases]
    gs = [jnp.asarray(rng.standard_normal(shape)) for _, shape in cases]  # a norm keeps its input's shape

    @jax.jit
    def run(params, xs, gs):  # every layer, NCHW and in the layout: one compiled program
        out = []
        for (layer, _), state, p, x, g in zip(cases, states, params, xs, gs):
            def in_layout(p, x, layer=layer, state=state):
                with block():  # read while tracing
                    y, s = layer.apply(p, state, x.transpose(to_layout), train=True)
                return y.transpose(to_nchw), s

            def nchw(p, x, layer=layer, state=state):
                return layer.apply(p, state, x, train=True)

            both = []
            for f in (nchw, in_layout):
                (y, s), pull = jax.vjp(f, p, x)
                both.append((y, s, pull((g, jax.tree_util.tree_map(jnp.zeros_like, s)))))
            out.append(both)
        return out

    for (layer, _), ((y0, s0, g0), (y1, s1, g1)) in zip(cases, run(params, xs, gs)):
        assert y1.dtype == jnp.float64
        assert_close(y1, y0, 1e-12, f"{layer!r} {layout}")
        for a, b in zip(jax.tree_util.tree_leaves((s1, g1)), jax.tree_util.tree_leaves((s0, g0))):
            assert_close(a, b, 1e-12, f"{layer!r} {layout} buffers/gradients")
    layer = nn.InstanceNorm2d(3)
    x = jnp.asarray(rng.standard_normal((3, 4, 5)))
    with block():  # unbatched: (H, W, C) channels-last, (C, H, W) batch-last
        y, _ = layer({}, {}, x.transpose(1, 2, 0) if layout == "channels_last" else x)
    y = y.transpose(2, 0, 1) if layout == "channels_last" else y
    assert_close(y, layer({}, {}, x)[0], 1e-12, f"unbatched InstanceNorm2d {layout}")


# ------------------------------------------------------------------ reprs, names, init
MODULE_PAIRS = [
    (nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3)),
    (nn.BatchNorm2d(2, 1e-3, 0.2, True, False, bias=False), torch.nn.BatchNorm2d(2, 1e-3, 0.2, True, False, bias=False)),
    (nn.BatchNorm3d(4, momentum=None, affine=False), torch.nn.BatchNorm3d(4, momentum=None, affine=False)),
    (nn.InstanceNorm1d(3), torch.nn.InstanceNorm1d(3)),
    (nn.InstanceNorm2d(3, affine=True, track_running_stats=True), torch.nn.InstanceNorm2d(3, affine=True, track_running_stats=True)),
    (nn.InstanceNorm3d(2, 1e-4, None, True, bias=False), torch.nn.InstanceNorm3d(2, 1e-4, None, True, bias=False)),
    (nn.LayerNorm((3, 4)), torch.nn.LayerNorm((3, 4))),
    (nn.LayerNorm(5, eps=1e-6, elementwise_affine=False), torch.nn.LayerNorm(5, eps=1e-6, elementwise_affine=False)),
    (nn.LayerNorm([5], bias=False), torch.nn.LayerNorm([5], bias=False)),
    (nn.GroupNorm(2, 4), torch.nn.GroupNorm(2, 4)),
    (nn.GroupNorm(1, 3, 1e-3, False), torch.nn.GroupNorm(1, 3, 1e-3, False)),
    (nn.GroupNorm(3, 6, bias=False), torch.nn.GroupNorm(3, 6, bias=False)),
    (nn.RMSNorm(4), torch.nn.RMSNorm(4)),
    (nn.RMSNorm([2, 3], eps=1e-6, elementwise_affine=False), torch.nn.RMSNorm([2, 3], eps=1e-6, elementwise_affine=False)),
    (nn.LocalResponseNorm(3), torch.nn.LocalResponseNorm(3)),
    (nn.LocalResponseNorm(2, alpha=1e-3, beta=0.5, k=2), torch.nn.LocalResponseNorm(2, alpha=1e-3, beta=0.5, k=2)),
]


def test_repr_state_dict_names_and_init_match_torch(x64):
    """print(layer), state_dict names in torch's order, shapes, dtypes and initial values
    (γ = 1, β = 0, running_mean = 0, running_var = 1, num_batches_tracked = 0 int64)."""
    for layer, tlayer in MODULE_PAIRS:
        assert repr(layer) == repr(tlayer)
        model, tmodel = nn.Sequential(layer), torch.nn.Sequential(tlayer).double()  # dotted names, as a model holds them
        params, state = model.init(jax.random.PRNGKey(0))
        ours = model.named_parameters(params) + model.named_buffers(state)
        theirs = list(tmodel.named_parameters()) + list(tmodel.named_buffers())
        assert [n for n, _ in ours] == [n for n, _ in theirs], repr(layer)
        assert list(tmodel.state_dict()) == [n for n, _ in model.named_parameters(params)] + [n for n, _ in model.named_buffers(state)]
        for (n, a), (_, t) in zip(ours, theirs):
            assert a.shape == tuple(t.shape) and a.dtype == to_np(t).dtype, f"{layer!r} {n}"
            np.testing.assert_array_equal(np.asarray(a), to_np(t), err_msg=f"{layer!r} {n}")


# ------------------------------------------------------------------ errors
def test_errors_name_the_layer_and_the_fix():
    def run(layer, shape, train=True):
        params, state = layer.init(jax.random.PRNGKey(0))
        return layer(params, state, jnp.ones(shape), train=train)

    with pytest.raises(ShapeError, match=r"BatchNorm1d\(3, .*expected input \(N, 3\) or \(N, 3, L\), got \(2, 4, 5\): the input has 4 channels; build the layer with num_features=4"):
        run(nn.BatchNorm1d(3), (2, 4, 5))
    with pytest.raises(ShapeError, match=r"BatchNorm3d\(2, .*expected input \(N, 2, D, H, W\), got \(2, 2, 3, 3\): an \(N, C, H, W\) input is BatchNorm2d's"):
        run(nn.BatchNorm3d(2), (2, 2, 3, 3))
    with pytest.raises(ShapeError, match=r"BatchNorm2d\(2, .*got \(2, 3, 3\): .*add the batch dimension, jnp.expand_dims\(x, 0\)"):
        run(nn.BatchNorm2d(2), (2, 3, 3))
    with pytest.raises(ValueError, match=r"Expected more than 1 value per channel when training, got input of shape \(1, 3\)"):
        run(nn.BatchNorm1d(3), (1, 3))
    run(nn.BatchNorm1d(3), (1, 3), train=False)  # eval mode: the running statistics, any batch
    with pytest.raises(ShapeError, match=r"InstanceNorm1d\(3, .*affine=True.*expected input \(N, 3, L\) or \(3, L\), got \(2, 4, 5\): the input has 4 channels"):
        run(nn.InstanceNorm1d(3, affine=True), (2, 4, 5))
    with pytest.raises(ShapeError, match=r"InstanceNorm2d\(3, .*expected input \(N, 3, H, W\), or one image without N, got \(2, 3\)"):
        run(nn.InstanceNorm2d(3), (2, 3))
    with pytest.warns(UserWarning, match=r"does not match num_features \(3\)"):
        run(nn.InstanceNorm1d(3), (2, 4, 5))  # torch: without weights or buffers only a warning
    with pytest.raises(ValueError, match=r"Expected more than 1 spatial element when training, got input size \[2, 3, 1\]"):
        run(nn.InstanceNorm1d(3), (2, 3, 1))
    with pytest.raises(ValueError, match="running_mean and running_var to be defined"):
        F.instance_norm(jnp.ones((2, 3, 4)), use_input_stats=False)
    with pytest.raises(ValueError, match=r"num_channels \(4\) must be divisible by num_groups \(3\)"):
        nn.GroupNorm(3, 4)
    with pytest.raises(ShapeError, match=r"GroupNorm\(2, 4, .*expected input \(N, 4, \*\), got \(2, 6, 5\): the input has 6 channels; build the layer with num_channels=6"):
        run(nn.GroupNorm(2, 4), (2, 6, 5))
    with pytest.raises(ShapeError, match=r"group_norm: expected the number of channels to be divisible by num_groups=4"):
        F.group_norm(jnp.ones((2, 6, 5)), 4)
    with pytest.raises(ValueError, match=r"Expected more than 1 value per channel when training, got input size \[1, 2\]"):
        run(nn.GroupNorm(2, 2), (1, 2))
    with pytest.raises(ShapeError, match=r"LayerNorm\(\(3, 4\), .*expected input \(\*, 3, 4\), got \(2, 4, 3\): its last 2 dimension\(s\) must equal normalized_shape=\(3, 4\)"):
        run(nn.LayerNorm((3, 4)), (2, 4, 3))
    with pytest.raises(ShapeError, match=r"rms_norm expected input \(\*, 5\), got \(2, 4\)"):
        F.rms_norm(jnp.ones((2, 4)), 5)
    with pytest.raises(ShapeError, match=r"LocalResponseNorm\(3, .*expected a 3-D or higher input \(N, C, \*\), got 2 dimensions \(2, 4\)"):
        run(nn.LocalResponseNorm(3), (2, 4))
    with pytest.raises(ShapeError, match=r"LayerNorm\(\(4,\).*floating-point input, got dtype int32"):
        nn.LayerNorm(4)({}, {}, jnp.ones((2, 4), jnp.int32))
    with pytest.raises(ValueError, match="eps must be positive during training"):
        F.batch_norm(jnp.ones((4, 2)), None, None, training=True, eps=0.0)
    with warnings.catch_warnings():  # the channel mismatch warning is for InstanceNorm only
        warnings.simplefilter("error")
        run(nn.InstanceNorm1d(3), (2, 3, 5))
