"""``torch.nn.utils.parametrizations.weight_norm`` / ``spectral_norm`` and the older
hook-based ``torch.nn.utils.weight_norm`` / ``spectral_norm``.

A parametrized layer trains other tensors than its weight and computes the weight from
them at every call. Here a wrapper module holds the layer and stores those tensors under
torch's ``state_dict`` names, so torch's checkpoints load by name and
:func:`funcnets.from_torch` converts parametrized layers:

========================================  ==============================================  =========================
torch                                     parameters                                      buffers
========================================  ==============================================  =========================
``parametrizations.weight_norm(m)``       ``parametrizations.weight.original0`` (g),      --
                                          ``parametrizations.weight.original1`` (v)
``parametrizations.spectral_norm(m)``     ``parametrizations.weight.original``            ``parametrizations.weight.0._u``, ``._v``
``utils.weight_norm(m)`` (hooks)          ``weight_g``, ``weight_v``                      --
``utils.spectral_norm(m)`` (hooks)        ``weight_orig``                                 ``weight_u``, ``weight_v``
========================================  ==============================================  =========================

The layer's other parameters (``bias``) keep their names. Weight norm is
``w = v · g / ‖v‖`` with the norm over every dimension but ``dim`` (``dim=None``: over all).
Spectral norm is ``w = W / σ`` with ``σ = uᵀ W v`` for ``W`` seen as a matrix (``dim``
first); in training each call first runs ``n_power_iterations`` steps of the power method on
the (gradient-free) weight and returns the new ``u``, ``v`` as state, as torch updates its
buffers in place; in eval ``u``, ``v`` are used as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from funcnets.nn.module import Module

__all__ = ["WeightNorm", "SpectralNorm", "weight_norm", "spectral_norm"]


def _normalize(x, eps):
    """``F.normalize(x, dim=0, eps=eps)`` of a vector: ``x / max(‖x‖, eps)``."""
    return x / jnp.maximum(jnp.linalg.norm(x), eps)


def norm_except_dim(v, dim: int):
    """``torch.norm_except_dim(v, 2, dim)``: the 2-norm over every axis but ``dim``, kept
    as size-1 axes; ``dim == -1`` is torch's "no dim": the norm of the whole tensor (a scalar)."""
    if dim == -1:
        return jnp.sqrt(jnp.sum(jnp.square(v)))
    axes = tuple(a for a in range(v.ndim) if a != dim % v.ndim)
    return jnp.sqrt(jnp.sum(jnp.square(v), axis=axes, keepdims=True))


def _as_matrix(w, dim: int):
    """The weight as a ``(size(dim), -1)`` matrix, ``dim`` moved first (torch's reshape_weight_to_matrix)."""
    return jnp.moveaxis(w, dim, 0).reshape(w.shape[dim], -1)


class _Named(Module):
    """A node of torch's parametrization tree, printed with torch's class name."""

    def __init__(self, torch_name: str, kids=(), params=(), buffers=(), text: str = ""):
        object.__setattr__(self, "_spec", (torch_name, tuple(kids), tuple(params), tuple(buffers), text))

    def __eq__(self, other):
        return type(other) is _Named and self._spec == other._spec

    def __hash__(self):
        return hash(self._spec)

    def children(self):
        return list(self._spec[1])

    def param_names(self):
        return self._spec[2]

    def buffer_names(self):
        return self._spec[3]

    def extra_repr(self):
        return self._spec[4]

    def __repr__(self):
        return self._spec[0] + super().__repr__()[len("_Named"):]


def _split(tree: dict, names) -> tuple[dict, dict]:
    """``(tree without names, {name: tree[name]})``."""
    return {k: v for k, v in tree.items() if k not in names}, {k: tree[k] for k in names if k in tree}


@dataclass(frozen=True, repr=False)
class _Reparametrized(Module):
    module: Module
    name: str = "weight"
    legacy: bool = False  # torch.nn.utils.weight_norm/spectral_norm (hooks) rather than parametrizations

    # what a subclass defines
    def _originals(self) -> tuple[str, ...]: ...
    def _buffers(self, ndim: int) -> tuple[str, ...]: ...
    def _fn_name(self) -> str: ...
    def _from_weight(self, w, key) -> tuple[tuple, tuple]: ...
    def _weight(self, originals: tuple, buffers: tuple, train: bool) -> tuple: ...

    def _weight_ndim(self) -> int:
        return self._ndim  # type: ignore[attr-defined]

    def __post_init__(self):
        if self.name not in self.module.param_names():
            raise ValueError(f"{type(self).__name__}: {self.module!r} has no parameter {self.name!r} of its own; "
                             f"its parameters are {list(self.module.param_names())}")
        # the weight's rank decides the tree's names; shapes come from a trace of init, computed once
        object.__setattr__(self, "_ndim", len(self.module.shapes()[0][self.name].shape))

    def _own_names(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The tensors' names in params/state: torch's names for the hook style, else "parametrizations"."""
        buffers = self._buffers(self._weight_ndim())
        if self.legacy:
            return tuple(f"{self.name}{s}" for s in self._originals()), tuple(f"{self.name}{s}" for s in buffers)
        return ("parametrizations",), (("parametrizations",) if buffers else ())

    # --- the module contract -------------------------------------------------------
    def children(self):
        kids = list(self.module.children())
        if not self.legacy:
            buffers = self._buffers(self._weight_ndim())
            fn = _Named(self._fn_name(), buffers=buffers)
            plist = _Named("ParametrizationList", kids=[("0", fn)], params=self._originals())
            kids.append(("parametrizations", _Named("ModuleDict", kids=[(self.name, plist)])))
        return kids

    def param_names(self):
        own = tuple(n for n in self.module.param_names() if n != self.name)
        return own + (self._own_names()[0] if self.legacy else ())

    def buffer_names(self):
        return tuple(self.module.buffer_names()) + (self._own_names()[1] if self.legacy else ())

    def init_tree(self, key):
        k_inner, k_own = jax.random.split(key)
        params, state = self.module.init_tree(k_inner)
        params = dict(params)
        originals, buffers = self._from_weight(params.pop(self.name), k_own)
        return self._pack(params, dict(state), originals, buffers)

    def apply(self, params, state, x, *, train=False, key=None):
        originals, buffers, params, state = self._unpack(params, state)
        w, buffers = self._weight(originals, buffers, train)
        y, state = self.module.apply({**params, self.name: w}, state, x, train=train, key=key)
        new_state = self._pack({}, dict(state), (), buffers)[1]
        return y, new_state

    def extra_repr(self):
        return self.module.extra_repr()

    def __repr__(self):
        if self.legacy:  # torch prints a hooked layer as the layer
            return repr(self.module)
        # torch's Module.__repr__: the layer's extra_repr, then the children (funcnets' omits the former)
        lines = [self.extra_repr()] if self.extra_repr() else []
        lines += [f"({n}): " + repr(c).replace("\n", "\n  ") for n, c in self.children()]
        return f"Parametrized{type(self.module).__name__}(\n  " + "\n  ".join(lines) + "\n)"

    # --- torch's names ---------------------------------------------------------------
    def _pack(self, params, state, originals, buffers):
        if self.legacy:
            params.update({f"{self.name}{s}": v for s, v in zip(self._originals(), originals)})
            state.update({f"{self.name}{s}": v for s, v in zip(self._buffers(self._weight_ndim()), buffers)})
            return params, state
        if originals:
            params["parametrizations"] = {self.name: dict(zip(self._originals(), originals))}
        if buffers:
            state["parametrizations"] = {self.name: {"0": dict(zip(self._buffers(self._weight_ndim()), buffers))}}
        return params, state

    def _unpack(self, params, state):
        own_p, own_s = self._own_names()
        params, mine = _split(params, own_p)
        state, mine_s = _split(state, own_s)
        bnames = self._buffers(self._weight_ndim())
        if self.legacy:
            originals = tuple(mine[f"{self.name}{s}"] for s in self._originals())
            buffers = tuple(mine_s[f"{self.name}{s}"] for s in bnames)
        else:
            originals = tuple(mine["parametrizations"][self.name][s] for s in self._originals())
            buffers = tuple(mine_s["parametrizations"][self.name]["0"][s] for s in bnames) if bnames else ()
        return originals, buffers, params, state


@dataclass(frozen=True, repr=False)
class WeightNorm(_Reparametrized):
    """A layer with weight normalisation: ``weight = g · v / ‖v‖`` (norm over every axis but ``dim``).

    Build it with :func:`weight_norm`. ``params`` hold ``g`` and ``v`` under torch's names,
    not ``weight``: ``parametrizations.weight.original0`` / ``original1``, or ``weight_g`` /
    ``weight_v`` with ``legacy=True`` (the older ``torch.nn.utils.weight_norm``).
    """

    dim: int | None = 0

    def _originals(self):
        return ("_g", "_v") if self.legacy else ("original0", "original1")

    def _buffers(self, ndim):
        return ()

    def _fn_name(self):
        return "_WeightNorm"

    def _axis(self):
        return -1 if self.dim is None else self.dim

    def _from_weight(self, w, key):
        return (norm_except_dim(w, self._axis()).astype(w.dtype), w), ()

    def _weight(self, originals, buffers, train):
        g, v = originals
        # torch's _weight_norm: v * (g / ‖v‖); for bfloat16 g the norm is taken in float32
        norm = norm_except_dim(v.astype(jnp.float32) if g.dtype == jnp.bfloat16 else v, self._axis())
        return v * (g / norm.astype(g.dtype)), ()


@dataclass(frozen=True, repr=False)
class SpectralNorm(_Reparametrized):
    """A layer with spectral normalisation: ``weight = W / σ(W)``, ``σ`` by the power method.

    Build it with :func:`spectral_norm`. ``params`` hold ``W`` as
    ``parametrizations.weight.original`` (``weight_orig`` with ``legacy=True``), ``state``
    the power method's vectors ``u``, ``v`` (``parametrizations.weight.0._u``/``_v``, or
    ``weight_u``/``weight_v``). With ``train=True`` each call advances them
    ``n_power_iterations`` steps and returns them in the new state; gradients do not flow
    through the power method (torch runs it under ``no_grad``). A 1-D weight is just
    normalised (``W / max(‖W‖, eps)``), with no ``u``/``v``, as torch's parametrization does.
    """

    n_power_iterations: int = 1
    dim: int = 0
    eps: float = 1e-12

    def __post_init__(self):
        super().__post_init__()
        if self.n_power_iterations <= 0 and not self.legacy:
            raise ValueError("Expected n_power_iterations to be positive, but got "
                             f"n_power_iterations={self.n_power_iterations}")
        ndim = self._weight_ndim()
        if not -ndim <= self.dim < ndim:
            raise IndexError(f"Dimension out of range (expected to be in range of [-{ndim}, {ndim - 1}] but got {self.dim})")

    def _originals(self):
        return ("_orig",) if self.legacy else ("original",)

    def _buffers(self, ndim):
        if ndim <= 1 and not self.legacy:
            return ()
        return ("_u", "_v")

    def _fn_name(self):
        return "_SpectralNorm"

    def _from_weight(self, w, key):
        if w.ndim <= 1 and not self.legacy:
            return (w,), ()
        mat = _as_matrix(w, self.dim % w.ndim)
        ku, kv = jax.random.split(key)
        u = _normalize(jax.random.normal(ku, (mat.shape[0],), w.dtype), self.eps)
        v = _normalize(jax.random.normal(kv, (mat.shape[1],), w.dtype), self.eps)
        if not self.legacy:  # torch's parametrization runs 15 steps when it is created
            u, v = self._power(mat, u, v, 15)
        return (w,), (u, v)

    def _power(self, mat, u, v, steps):
        for _ in range(steps):
            if self.legacy:  # torch.nn.utils.spectral_norm: v first, then u
                v = _normalize(mat.T @ u, self.eps)
                u = _normalize(mat @ v, self.eps)
            else:
                u = _normalize(mat @ v, self.eps)
                v = _normalize(mat.conj().T @ u, self.eps)
        return u, v

    def _weight(self, originals, buffers, train):
        (w,) = originals
        if not buffers:
            return _normalize(w, self.eps), ()
        u, v = buffers
        mat = _as_matrix(w, self.dim % w.ndim)
        if train:
            u, v = self._power(jax.lax.stop_gradient(mat), u, v, self.n_power_iterations)
        sigma = jnp.vdot(u, mat @ v)
        return w / sigma, (u, v)


def weight_norm(module: Module, name: str = "weight", dim: int | None = 0, *, legacy: bool = False) -> WeightNorm:
    """``torch.nn.utils.parametrizations.weight_norm(module, name, dim)``; with
    ``legacy=True``, the older ``torch.nn.utils.weight_norm`` (parameters ``weight_g``/``weight_v``).

    ``weight = g · v / ‖v‖``, the norm over every axis but ``dim`` (``None``: the whole
    tensor). At init ``v`` is the layer's initial weight and ``g`` its norm, so the layer
    starts as it would without the wrapper.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> from funcnets.nn.parametrizations import weight_norm
        >>> m = weight_norm(nn.Linear(3, 2))
        >>> params, state = m.init(jax.random.key(0))
        >>> [n for n, _ in m.named_parameters(params)]  # torch's names
        ['bias', 'parametrizations.weight.original0', 'parametrizations.weight.original1']
        >>> params["parametrizations"]["weight"]["original0"].shape  # g: one norm per output row
        (2, 1)
        >>> m(params, state, jnp.ones((4, 3)))[0].shape
        (4, 2)
    """
    return WeightNorm(module, name, legacy, dim)


def spectral_norm(module: Module, name: str = "weight", n_power_iterations: int = 1, eps: float = 1e-12,
                  dim: int | None = None, *, legacy: bool = False) -> SpectralNorm:
    """``torch.nn.utils.parametrizations.spectral_norm(module, name, n_power_iterations, eps, dim)``;
    with ``legacy=True``, the older ``torch.nn.utils.spectral_norm`` (``weight_orig``,
    ``weight_u``, ``weight_v``). ``dim=None`` is 1 for a ConvTranspose layer, else 0, as in torch.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> from funcnets.nn.parametrizations import spectral_norm
        >>> m = spectral_norm(nn.Linear(3, 2))
        >>> params, state = m.init(jax.random.key(0))
        >>> [n for n, _ in m.named_buffers(state)]
        ['parametrizations.weight.0._u', 'parametrizations.weight.0._v']
        >>> y, new_state = m(params, state, jnp.ones((4, 3)), train=True)  # one power-method step
        >>> bool(jnp.allclose(new_state["parametrizations"]["weight"]["0"]["_u"],
        ...                   state["parametrizations"]["weight"]["0"]["_u"], atol=1e-3))  # converged at init
        True
    """
    if dim is None:
        dim = 1 if type(module).__name__.startswith("ConvTranspose") else 0
    return SpectralNorm(module, name, legacy, n_power_iterations, dim, eps)
