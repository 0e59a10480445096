"""The checks every torchvision-zoo test file runs (``tests/test_zoo*.py``), one function each.

A family's test file declares ``CASES`` (name: (input side, batch, kwargs), full float32
parity), ``STRUCTURE_ONLY`` (large variants of a fully tested sibling: names, shapes and
weights both ways) and ``F64`` (one small member per family in float64), and
parametrizes the three ``check_*`` functions over them; ``tests/test_zoo.py`` checks that
every registered model appears in some file's ``CASES`` or ``STRUCTURE_ONLY``.
"""

from __future__ import annotations

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torchvision

from funcnets import torch_io
from funcnets.models import get_model
from funcnets.torch_io import flatten
from helpers import assert_close, to_np

# These one-shot parity programs compile at XLA's lowest optimisation level without the
# fusion emitters (tests/conftest.py sets it for the whole suite): the full pipeline took
# most of their time (GoogLeNet's train step: 34 -> 6 s of compile). The results are the
# same computation; the parity tolerances are unchanged.


def torch_model(name: str, dtype=torch.float32, seed: int = 0, **kwargs):
    """torchvision's ``weights=None`` model with a fixed seed and randomised BatchNorms."""
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # googlenet's/inception's init_weights notice
        tm = torchvision.models.get_model(name, weights=None, **kwargs).to(dtype)
    return randomise_bn(tm)


def logits(out):
    """The main output of a model that returns (logits, aux...) in train mode."""
    return out[0] if isinstance(out, tuple) else out


def randomise_bn(tm):
    """BatchNorm statistics and affine parameters away from 0/1, so eval mode tests more
    than the identity."""
    with torch.no_grad():
        for m in tm.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                if m.affine:
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.1, 0.1)
    return tm


def check_float32_parity_and_export(name: str, size: int, batch: int, kwargs: dict, rtol: float = 1e-4):
    """Strict load of torchvision's state_dict (names in torch's order), eval logits within
    ``rtol``, and the weights exported back load into torchvision strictly, same logits."""
    tm = torch_model(name, num_classes=10, **kwargs).eval()
    sd = tm.state_dict()
    model = get_model(name, num_classes=10, **kwargs)
    params, state, missing, unexpected = torch_io.load_state_dict(model, sd)  # strict
    assert list(torch_io._template(model)) == list(sd)  # names, and torch's order
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = to_np(logits(tm(x)))
    y, _ = jax.jit(lambda p, s, x: model(p, s, x))(params, state, jnp.asarray(to_np(x)))
    assert y.shape == (batch, 10)
    assert_close(y, ref, rtol, f"{name} eval logits")
    out = torch_io.state_dict(model, params, state)
    assert list(out) == list(sd)
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        back = torchvision.models.get_model(name, weights=None, num_classes=10, **kwargs)
    back.load_state_dict({k: torch.from_numpy(v) for k, v in out.items()}, strict=True, assign=True)
    with torch.no_grad():
        np.testing.assert_array_equal(to_np(logits(back.eval()(x))), ref)


# The weights round trip runs the same name-keyed code for every model; past this many
# entries it only moves gigabytes (regnet_y_128gf: 644M) and took minutes of the suite,
# so the largest variants check names, order and shapes, and their smaller siblings
# (and every CASES model, through check_float32_parity_and_export) the arrays too.
ROUND_TRIP_MAX = 30_000_000


def check_structure_and_weights_both_ways(name: str, **kwargs):
    """Every state_dict name and shape in torch's order (no forward pass: torchvision's
    model is built on the meta device), and (up to ROUND_TRIP_MAX entries) random weights in,
    the same arrays out, loading strictly into torchvision."""
    model = get_model(name, num_classes=10, **kwargs)
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        meta = torchvision.models.get_model(name, weights=None, num_classes=10, **kwargs)
    assert list(torch_io._template(model)) == list(meta.state_dict())
    shapes = {k: v for k, (_, v) in torch_io._template(model).items()}
    assert shapes == {k: tuple(v.shape) for k, v in meta.state_dict().items()}
    if sum(math.prod(s) for s in shapes.values()) > ROUND_TRIP_MAX:
        return
    rng = np.random.default_rng(0)
    sd = {k: (np.full(s, 3, np.int64) if k.endswith("num_batches_tracked") else
              rng.standard_normal(s, dtype=np.float32)) for k, s in shapes.items()}
    params, state, *_ = torch_io.load_state_dict(model, sd)
    out = torch_io.state_dict(model, params, state)
    assert list(out) == list(sd) and all(np.array_equal(out[k], sd[k]) for k in sd)
    meta.load_state_dict({k: torch.from_numpy(v) for k, v in out.items()}, strict=True, assign=True)


def check_grads(name: str, grads, tm, rtol: float = 1e-8):
    """Every parameter gradient against torch's ``.grad`` (after ``backward``)."""
    flat_g = flatten(grads)
    ref_g = {n: to_np(p.grad) for n, p in tm.named_parameters()}
    assert set(flat_g) == set(ref_g)

    def max_abs(a):  # max |a| without an |a| temporary: VGG's classifier gradient is 800 MB
        return max(float(a.max()), -float(a.min()))

    ref_max = {n: max_abs(g) for n, g in ref_g.items()}
    # a conv bias before a train-mode BatchNorm has gradient 0 up to rounding (~1e-15):
    # its error is measured against 1e-6 of the largest gradient instead of its own
    floor = 1e-6 * max(ref_max.values())
    for n, g in ref_g.items():
        err = max_abs(np.subtract(flat_g[n], g)) / max(ref_max[n], floor)
        assert err <= rtol, f"{name} grad {n}: relative error {err:.3e}"


def check_float64(name: str, size: int, batch: int, torch_factory, our_factory, grads: bool = True,
                  train_key=None):
    """Float64: eval logits and train outputs (1e-9), every parameter gradient of a fixed
    random linear functional of the outputs (1e-8; not a loss through train-mode BatchNorm,
    which is ill-conditioned, DESIGN.md), and the buffers after the train step.

    Train mode must be deterministic on both sides (dropout and stochastic depth 0), or the
    caller passes ``train_key`` and a model whose randomness it has made equal.
    """
    torch.manual_seed(0)
    tm = randomise_bn(torch_factory().double())
    model = our_factory()
    params, state, *_ = torch_io.load_state_dict(model, tm.state_dict())
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(batch, 3, size, size, dtype=torch.float64, generator=gen)
    xj = jnp.asarray(to_np(x))
    with torch.no_grad():
        ref_eval = to_np(logits(tm.eval()(x)))
    y_eval, _ = jax.jit(lambda p, s, x: model(p, s, x))(params, state, xj)
    assert_close(y_eval, ref_eval, 1e-9, f"{name} float64 eval logits")

    tm.train()
    outs = tm(x)
    outs = tuple(outs) if isinstance(outs, tuple) else (outs,)
    # buffers before backward: torch's checkpointing (memory_efficient) runs the
    # BatchNorms a second time in the backward pass and updates their statistics twice
    ref_buffers = {n: to_np(b).copy() for n, b in tm.named_buffers()}
    weights = [torch.randn(o.shape, dtype=torch.float64, generator=gen) for o in outs]
    sum((o * w).sum() for o, w in zip(outs, weights)).backward()

    def functional(p, s):
        y, new = model(p, s, xj, train=True, key=train_key)
        ys = tuple(y) if isinstance(y, tuple) else (y,)
        return sum(jnp.sum(o * jnp.asarray(to_np(w))) for o, w in zip(ys, weights)), (ys, new)

    if grads:
        g, (ys, new_state) = jax.jit(jax.grad(functional, has_aux=True))(params, state)
    else:
        g, (ys, new_state) = None, jax.jit(lambda p, s: functional(p, s)[1])(params, state)
    assert len(ys) == len(outs)
    for i, (o, r) in enumerate(zip(ys, outs)):
        assert_close(o, to_np(r), 1e-9, f"{name} float64 train output {i}")
    if g is not None:
        check_grads(name, g, tm)
    flat_s = flatten(new_state)
    assert set(flat_s) == set(ref_buffers)
    for n, b in ref_buffers.items():
        if b.dtype == np.int64:
            np.testing.assert_array_equal(flat_s[n], b, err_msg=n)
        else:
            assert_close(flat_s[n], b, 1e-9, f"{name} buffer {n}")


def torch_weights(model, torch_factory):
    """torchvision's initialisation (seed 0) loaded into ``model``: milliseconds, where
    compiling ``model.init`` takes seconds; for tests that need weights, not the init."""
    torch.manual_seed(0)
    params, state, *_ = torch_io.load_state_dict(model, torch_factory().state_dict())
    return params, state


def init_leaves(model, *names):
    """Selected parameters and buffers of ``model.init`` (torch's names): XLA drops the
    draws of every other parameter, which for a 100M-entry classifier would take seconds."""

    def leaves(k):
        params, state = model.init_tree(k)
        flat = {**flatten(state), **flatten(params)}
        return {n: flat[n] for n in names}

    f = jax.jit(leaves)(jax.random.PRNGKey(0))
    return {n: np.asarray(v) for n, v in f.items()}


def std_ok(w, std, what):
    """Mean 0 and standard deviation ``std`` within sampling error."""
    w = np.asarray(w, np.float64)
    assert abs(w.mean()) < 5 * std / np.sqrt(w.size), f"{what}: mean {w.mean():.3g}"
    assert abs(w.std() / std - 1) < 0.05 + 5 / np.sqrt(w.size), f"{what}: std {w.std():.4g}, expected {std:.4g}"
