"""``torch.optim.LBFGS`` with torch's algorithm, as a pure, jit-able ``step`` that takes
the loss function (torch's closure) and returns new parameters and state.

L-BFGS does not fit optax's ``update(grads, state)``: one ``step`` runs up to
``max_iter`` quasi-Newton iterations, each of which evaluates the loss again (after a
fixed step, or several times inside the strong-Wolfe line search). So, as torch's
``LBFGS.step(closure)`` takes a closure, :meth:`LBFGSOptimizer.step` takes
``loss_fn(params) -> scalar`` and differentiates it with ``jax.value_and_grad``::

    opt = optim.lbfgs(lr=1, max_iter=20, line_search_fn="strong_wolfe")
    state = opt.init(params)
    step = jax.jit(functools.partial(opt.step, loss_fn))     # torch: closure
    params, state, loss = step(params, state)                # loss = opt.step(closure)

Why not ``optax.lbfgs`` / ``optax.scale_by_lbfgs``: they take one quasi-Newton step per
``update``, with no inner ``max_iter``/``max_eval`` loop and none of torch's stopping
tests; they store every curvature pair (a zero ``yᵀs`` gets weight 0) where torch skips
pairs with ``yᵀs ≤ 1e-10``; their first step is scaled by ``min(1, 1/‖g‖₂)`` where
torch's is ``min(1, 1/‖g‖₁)·lr``; and ``optax.lbfgs``'s zoom line search has other
initial steps, tests and limits than torch's ``_strong_wolfe``. Trajectories differ from
the first step on.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.flatten_util import ravel_pytree

from funcnets.optim._base import ScalarOrSchedule, _at, _check

__all__ = ["lbfgs", "LBFGSOptimizer", "LBFGSState"]


class LBFGSState(NamedTuple):
    """torch's ``LBFGS.state`` (kept on its first parameter), with fixed shapes for JAX.

    ``n`` is the number of parameter elements (``ravel_pytree``'s flat vector, torch's
    ``_numel()``), ``h`` is ``history_size``. torch's lists ``old_dirs``/``old_stps``/``ro``
    grow to ``h`` and then drop their oldest entry; here they are ``(h, ...)`` buffers
    whose first ``num_old`` rows are torch's list, oldest first.
    """

    func_evals: jax.Array  # () int32: loss evaluations over all steps
    n_iter: jax.Array  # () int32: L-BFGS iterations over all steps
    d: jax.Array  # (n,): the last search direction
    t: jax.Array  # (): the last step length
    old_dirs: jax.Array  # (h, n): gradient differences y
    old_stps: jax.Array  # (h, n): steps s = t·d
    ro: jax.Array  # (h,): 1/(yᵀs)
    num_old: jax.Array  # () int32: len(old_dirs)
    H_diag: jax.Array  # (): the initial inverse Hessian's scale yᵀs/yᵀy
    prev_flat_grad: jax.Array  # (n,)
    prev_loss: jax.Array  # ()
    count: jax.Array  # () int32: step() calls so far (the step count of an lr schedule)


class LBFGSOptimizer(NamedTuple):
    """What :func:`lbfgs` returns: a pair of pure functions, as optax's
    ``GradientTransformation`` is, but whose ``step`` takes the loss function.

    Attributes:
      init: ``init(params) -> LBFGSState``.
      step: ``step(loss_fn, params, state) -> (params, state, loss)``, one call of torch's
        ``LBFGS.step(closure)``; ``loss`` is ``loss_fn(params)`` at the parameters it
        was given (what torch's ``step`` returns). Jit it with ``loss_fn`` fixed
        (``jax.jit(functools.partial(opt.step, loss_fn))``) or static
        (``jax.jit(opt.step, static_argnums=0)``).
    """

    init: Callable[[Any], LBFGSState]
    step: Callable[[Callable[[Any], jax.Array], Any, LBFGSState], tuple[Any, LBFGSState, jax.Array]]


def lbfgs(
    lr: ScalarOrSchedule = 1,
    max_iter: int = 20,
    max_eval: int | None = None,
    tolerance_grad: float = 1e-7,
    tolerance_change: float = 1e-9,
    history_size: int = 100,
    line_search_fn: str | None = None,
    *,
    maximize: bool = False,
) -> LBFGSOptimizer:
    """``torch.optim.LBFGS``: each ``step`` runs up to ``max_iter`` L-BFGS iterations on the
    flattened parameters ``x`` (gradient ``g``, loss ``f``)::

        stop at once if max|g| ≤ tolerance_grad
        repeat:
          d ← -g                                    on the first iteration ever
          d ← -H·g  (two-loop recursion, H₀ = H_diag·I)  otherwise, after storing
                    y = g - g_prev, s = t·d, ρ = 1/yᵀs and H_diag = yᵀs/yᵀy if yᵀs > 1e-10
          t ← min(1, 1/‖g‖₁)·lr on the first iteration ever, else lr
          stop if gᵀd > -tolerance_change
          x ← x + t·d, t from torch's strong-Wolfe search (c₁ = 1e-4, c₂ = 0.9, at most
              max_eval - evaluations so far) or fixed; f, g at the new x (not after the
              last fixed step, as torch)
          stop after max_iter iterations or max_eval evaluations, or if max|g| ≤
              tolerance_grad, max|t·d| ≤ tolerance_change or |f - f_prev| < tolerance_change

    The state (direction, step, history, iteration and evaluation counts) carries over
    between ``step`` calls, as torch's does. ``step`` is jit-able: the iterations and the
    line search are ``lax.while_loop``s, the history is an ``(history_size, n)`` buffer
    with a count (so it takes ``2·history_size·n`` elements from ``init`` on, the most
    torch's lists reach). torch keeps the losses as Python floats (float64) even for
    float32 parameters; here they are in the parameters' dtype, so a float32 run can
    take another branch than torch's where a test on the losses is close (float64 runs
    follow torch's to rounding).

    Args:
      lr: learning rate, a float or an optax schedule of the number of ``step`` calls
        (0 for the first), as a torch lr scheduler stepped once per ``step``.
      max_iter: iterations per ``step``.
      max_eval: loss evaluations per ``step`` (default ``max_iter * 5 // 4``); with
        strong Wolfe a step can end one past it, as torch's (the line search's first
        evaluation is not counted in its limit).
      tolerance_grad: stop when the largest gradient element is at most this.
      tolerance_change: stop when the loss or the step changes less than this.
      history_size: number of curvature pairs kept.
      line_search_fn: ``None`` (fixed step ``lr``) or ``"strong_wolfe"``.
      maximize: ascend the objective.

    Returns:
      An :class:`LBFGSOptimizer` ``(init, step)``. Parameters are any pytree of real
      arrays, flattened with ``jax.flatten_util.ravel_pytree`` as torch concatenates its
      parameters' flat views; ``state.func_evals`` and ``state.n_iter`` are torch's
      ``state['func_evals']`` and ``state['n_iter']``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import optim
        >>> params = {"x": jnp.array([-1.5, 2.0])}
        >>> rosenbrock = lambda p: (1 - p["x"][0]) ** 2 + 100 * (p["x"][1] - p["x"][0] ** 2) ** 2
        >>> opt = optim.lbfgs(lr=1, max_iter=50, line_search_fn="strong_wolfe")
        >>> state = opt.init(params)  # torch.optim.LBFGS([x], ...)
        >>> step = jax.jit(lambda p, s: opt.step(rosenbrock, p, s))  # torch: opt.step(closure)
        >>> params, state, loss = step(params, state)
        >>> round(float(loss), 2), [round(v, 3) for v in params["x"].tolist()]
        (12.5, [1.0, 1.0])
    """
    _check_lbfgs_args(lr, max_iter, max_eval, history_size, line_search_fn)
    if max_eval is None:
        max_eval = max_iter * 5 // 4
    strong_wolfe = line_search_fn == "strong_wolfe"
    sign = -1 if maximize else 1
    h = history_size

    def init_fn(params: Any) -> LBFGSState:
        flat, _ = ravel_pytree(params)
        n, dtype = flat.shape[0], flat.dtype
        zero = jnp.zeros((), dtype)
        return LBFGSState(
            func_evals=jnp.zeros((), jnp.int32),
            n_iter=jnp.zeros((), jnp.int32),
            d=jnp.zeros((n,), dtype),
            t=zero,
            old_dirs=jnp.zeros((h, n), dtype),
            old_stps=jnp.zeros((h, n), dtype),
            ro=jnp.zeros((h,), dtype),
            num_old=jnp.zeros((), jnp.int32),
            H_diag=jnp.ones((), dtype),
            prev_flat_grad=jnp.zeros((n,), dtype),
            prev_loss=zero,
            count=jnp.zeros((), jnp.int32),
        )

    def step_fn(loss_fn: Callable[[Any], jax.Array], params: Any, state: LBFGSState):
        x0, unravel = ravel_pytree(params)
        dtype = x0.dtype
        if jnp.issubdtype(dtype, jnp.complexfloating):
            # torch views a complex parameter as (real, imag) pairs; jax.grad gives the
            # conjugate of torch's gradient, which this flattening would not undo
            raise TypeError(f"lbfgs: complex parameters are not supported (flat dtype {dtype}); "
                            "optimize their real and imaginary parts as separate real arrays")

        def flat(x):
            # the parameters as torch holds them: x + t·d rounded to each parameter's dtype
            return ravel_pytree(unravel(x))[0]

        # jitted, so that its up to five call sites (the step's first evaluation, the one
        # after a fixed step, three in the line search) trace loss_fn once
        @jax.jit
        def evaluate(x):
            """torch's closure at ``x``: (loss, flat gradient), negated if maximize."""
            value, grads = jax.value_and_grad(loss_fn)(unravel(x))
            return value, sign * jnp.asarray(value, dtype), sign * ravel_pytree(grads)[0]

        orig_loss, loss, g = evaluate(x0)
        if x0.shape[0] == 0:  # torch: nothing to optimize, only the closure's loss
            return params, state._replace(count=state.count + 1), orig_loss
        state = state._replace(func_evals=state.func_evals + 1)
        lr_now = jnp.asarray(_at(lr, state.count), dtype).reshape(())  # a 1-element lr array too

        def iteration(c: _Carry) -> _Carry:
            s, g = c.state, c.g
            n_iter = c.n_iter + 1
            first = s.n_iter == 0
            d, old_dirs, old_stps, ro, num_old, H_diag = lax.cond(
                first,
                lambda: (-g, s.old_dirs, s.old_stps, s.ro, jnp.zeros((), jnp.int32), jnp.ones((), dtype)),
                lambda: _lbfgs_direction(g, s, h),
            )
            t = jnp.where(first, _pymin(jnp.ones((), dtype), 1.0 / jnp.sum(jnp.abs(g))) * lr_now, lr_now)
            s = s._replace(n_iter=s.n_iter + 1, d=d, t=t, old_dirs=old_dirs, old_stps=old_stps, ro=ro,
                           num_old=num_old, H_diag=H_diag, prev_flat_grad=g, prev_loss=c.loss)
            gtd = g @ d

            def move(_):
                if strong_wolfe:
                    def obj(x, t, d):
                        return evaluate(flat(x + t * d))[1:]

                    loss, g_new, t_new, ls_evals = _strong_wolfe(
                        obj, c.x, t, d, c.loss, g, gtd, max_ls=max_eval - c.current_evals)
                    x = flat(c.x + t_new * d)
                    opt_cond = jnp.max(jnp.abs(g_new)) <= tolerance_grad
                else:
                    t_new, x = t, flat(c.x + t * d)

                    def reevaluate():
                        _, loss, g_new = evaluate(x)
                        return loss, g_new, jnp.max(jnp.abs(g_new)) <= tolerance_grad, jnp.ones((), jnp.int32)

                    # torch skips the evaluation after the last iteration's step
                    loss, g_new, opt_cond, ls_evals = lax.cond(
                        n_iter != max_iter, reevaluate, lambda: (c.loss, g, c.opt_cond, jnp.zeros((), jnp.int32)))
                current_evals = c.current_evals + ls_evals
                done = ((n_iter == max_iter) | (current_evals >= max_eval) | opt_cond
                        | (jnp.max(jnp.abs(d * t_new)) <= tolerance_change)
                        | (jnp.abs(loss - s.prev_loss) < tolerance_change))
                return _Carry(x, loss, g_new, opt_cond, s._replace(t=t_new, func_evals=s.func_evals + ls_evals),
                              n_iter, current_evals, done)

            # the directional derivative is below tolerance: stop before moving
            stop = c._replace(state=s, n_iter=n_iter, done=jnp.ones((), bool))
            return lax.cond(gtd > -tolerance_change, lambda _: stop, move, None)

        opt_cond = jnp.max(jnp.abs(g)) <= tolerance_grad
        carry = _Carry(x0, loss, g, opt_cond, state, jnp.zeros((), jnp.int32), jnp.ones((), jnp.int32), opt_cond)
        carry = lax.while_loop(lambda c: ~c.done & (c.n_iter < max_iter), iteration, carry)
        return unravel(carry.x), carry.state._replace(count=state.count + 1), orig_loss

    return LBFGSOptimizer(init_fn, step_fn)


class _Carry(NamedTuple):
    x: jax.Array  # (n,) parameters
    loss: jax.Array  # () loss at x (or before the last fixed step)
    g: jax.Array  # (n,) its gradient
    opt_cond: jax.Array  # () max|g| <= tolerance_grad
    state: LBFGSState
    n_iter: jax.Array  # () iterations in this step
    current_evals: jax.Array  # () evaluations in this step
    done: jax.Array  # ()


def _check_lbfgs_args(lr, max_iter, max_eval, history_size, line_search_fn) -> None:
    """torch's messages where torch checks; where torch fails later (a bad
    ``line_search_fn`` at the first line search, ``history_size=0`` at the first stored
    pair, ``max_eval < 1`` with strong Wolfe in the line search), the check is here."""
    if isinstance(lr, (jax.Array, np.ndarray)) and np.size(lr) != 1:
        raise ValueError("Tensor lr must be 1-element")
    if isinstance(lr, (jax.Array, np.ndarray)) and not isinstance(lr, jax.core.Tracer):
        lr = float(np.asarray(lr).reshape(()))
    _check("learning rate", lr)
    if line_search_fn not in (None, "strong_wolfe"):
        raise RuntimeError(f"only 'strong_wolfe' is supported; got line_search_fn={line_search_fn!r}: "
                           "pass 'strong_wolfe' or None")
    for name, value, low in (("max_iter", max_iter, 0), ("history_size", history_size, 1)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
            raise ValueError(f"Invalid {name}: {value!r}; it must be an int >= {low} (JAX needs it static: "
                             "it sizes the loop and the history buffers).")
    if max_eval is not None and (not isinstance(max_eval, (int, np.integer)) or isinstance(max_eval, bool)):
        raise ValueError(f"Invalid max_eval: {max_eval!r}; it must be an int or None (max_iter * 5 // 4).")
    if line_search_fn == "strong_wolfe" and max_eval is not None and max_eval < 1 and max_iter > 0:
        raise ValueError(f"Invalid max_eval: {max_eval!r}; the strong-Wolfe line search needs max_eval >= 1 "
                         "(torch fails in the line search with 'bracket' unbound).")


def _lbfgs_direction(g, s: LBFGSState, h: int):
    """torch's memory update and two-loop recursion: ``d = -H·g``."""
    y = g - s.prev_flat_grad
    stp = s.d * s.t
    ys = y @ stp

    def store():
        # torch pops the oldest pair when full and appends: shift by one row, write the last
        full = s.num_old == h
        dirs = jnp.where(full, jnp.roll(s.old_dirs, -1, axis=0), s.old_dirs)
        stps = jnp.where(full, jnp.roll(s.old_stps, -1, axis=0), s.old_stps)
        ro = jnp.where(full, jnp.roll(s.ro, -1), s.ro)
        i = jnp.minimum(s.num_old, h - 1)
        return (dirs.at[i].set(y), stps.at[i].set(stp), ro.at[i].set(1.0 / ys),
                jnp.minimum(s.num_old + 1, h), ys / (y @ y))

    dirs, stps, ro, num_old, H_diag = lax.cond(
        ys > 1e-10, store, lambda: (s.old_dirs, s.old_stps, s.ro, s.num_old, s.H_diag))

    def newest_first(k, carry):
        q, al = carry
        i = num_old - 1 - k
        a = (stps[i] @ q) * ro[i]
        return q + (-a) * dirs[i], al.at[i].set(a)

    q, al = lax.fori_loop(0, num_old, newest_first, (-g, jnp.zeros_like(ro)))

    def oldest_first(i, r):
        be_i = (dirs[i] @ r) * ro[i]
        return r + (al[i] - be_i) * stps[i]

    d = lax.fori_loop(0, num_old, oldest_first, q * H_diag)
    return d, dirs, stps, ro, num_old, H_diag


def _pymax(a, b):
    """Python's ``max(a, b)``: ``a`` unless ``b > a`` (so a NaN ``a`` is kept, as in torch)."""
    return jnp.where(b > a, b, a)


def _pymin(a, b):
    """Python's ``min(a, b)``: ``a`` unless ``b < a``."""
    return jnp.where(b < a, b, a)


def _cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds=None):
    """torch's ``_cubic_interpolate``: the minimiser of the cubic through two points with
    their values and slopes, clamped to ``bounds`` (default ``[x1, x2]`` sorted); the
    bounds' midpoint where the cubic has no real minimiser."""
    if bounds is not None:
        xmin_bound, xmax_bound = bounds
    else:
        xmin_bound, xmax_bound = jnp.where(x1 <= x2, x1, x2), jnp.where(x1 <= x2, x2, x1)
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1**2 - g1 * g2
    real = d2_square >= 0
    d2 = jnp.sqrt(jnp.where(real, d2_square, 0))
    min_pos = jnp.where(x1 <= x2,
                        x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2)),
                        x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2)))
    return jnp.where(real, _pymin(_pymax(min_pos, xmin_bound), xmax_bound), (xmin_bound + xmax_bound) / 2.0)


def _strong_wolfe(obj_func, x, t, d, f, g, gtd, c1=1e-4, c2=0.9, tolerance_change=1e-9, max_ls=25):
    """torch's ``_strong_wolfe`` (a port of Torch7's ``lswolfe.lua``): bracket a step
    satisfying the strong Wolfe conditions, then zoom into the bracket by cubic
    interpolation. Returns ``(f, g, t, evaluations)``. The brackets are 2-element arrays;
    torch's 1-element bracket (Wolfe point found while bracketing) is two equal entries."""
    d_norm = jnp.max(jnp.abs(d))
    f_new, g_new = obj_func(x, t, d)
    gtd_new = g_new @ d
    zero = jnp.zeros((), jnp.int32)

    def armijo_fails(b):
        t, _, f_prev, _, _, f_new, _, _, ls_iter = b
        return (f_new > (f + c1 * t * gtd)) | ((ls_iter > 1) & (f_new >= f_prev))

    def wolfe(gtd_new):
        return jnp.abs(gtd_new) <= -c2 * gtd

    def bracketing(b):
        return (b[-1] < max_ls) & ~(armijo_fails(b) | wolfe(b[7]) | (b[7] >= 0))

    def extrapolate(b):
        t, t_prev, f_prev, g_prev, gtd_prev, f_new, g_new, gtd_new, ls_iter = b
        min_step = t + 0.01 * (t - t_prev)
        max_step = t * 10
        t_next = _cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=(min_step, max_step))
        f_next, g_next = obj_func(x, t_next, d)
        return t_next, t, f_new, g_new, gtd_new, f_next, g_next, g_next @ d, ls_iter + 1

    b = (t, jnp.zeros_like(t), f, g, gtd, f_new, g_new, gtd_new, zero)
    b = lax.while_loop(bracketing, extrapolate, b)
    t, t_prev, f_prev, g_prev, gtd_prev, f_new, g_new, gtd_new, ls_iter = b
    exhausted = ls_iter >= max_ls
    done = ~exhausted & ~armijo_fails(b) & wolfe(gtd_new)

    def pick(on_exhausted, on_done, otherwise):
        return jnp.where(exhausted, on_exhausted, jnp.where(done, on_done, otherwise))

    bt = jnp.stack([pick(jnp.zeros_like(t), t, t_prev), t])
    bf = jnp.stack([pick(f, f_new, f_prev), f_new])
    bg = jnp.stack([pick(g, g_new, g_prev), g_new])
    bgtd = jnp.stack([pick(gtd, gtd_new, gtd_prev), gtd_new])
    low = jnp.where(bf[0] <= bf[1], 0, 1)

    def zooming(z):
        bt, _, _, _, _, _, done, ls_iter = z
        return ~done & (ls_iter < max_ls) & ~(jnp.abs(bt[1] - bt[0]) * d_norm < tolerance_change)

    def zoom(z):
        bt, bf, bg, bgtd, low, insuf_progress, done, ls_iter = z
        high = 1 - low
        t = _cubic_interpolate(bt[0], bf[0], bgtd[0], bt[1], bf[1], bgtd[1])
        # a trial near the bracket's ends makes little progress: after two such in a row
        # (or one outside the bracket), move it to 0.1 of the bracket from the nearer end
        bmax, bmin = _pymax(bt[0], bt[1]), _pymin(bt[0], bt[1])
        eps = 0.1 * (bmax - bmin)
        near_end = _pymin(bmax - t, t - bmin) < eps
        at_end = insuf_progress | (t >= bmax) | (t <= bmin)
        moved = jnp.where(jnp.abs(t - bmax) < jnp.abs(t - bmin), bmax - eps, bmin + eps)
        t = jnp.where(near_end & at_end, moved, t)
        insuf_progress = near_end & ~at_end

        f_new, g_new = obj_func(x, t, d)
        gtd_new = g_new @ d
        ls_iter = ls_iter + 1
        new = (t, f_new, g_new, gtd_new)
        old = (bt, bf, bg, bgtd)

        # Armijo fails or no lower than the low end: the trial becomes the high end
        shrink = (f_new > (f + c1 * t * gtd)) | (f_new >= bf[low])
        hi = tuple(a.at[high].set(v) for a, v in zip(old, new))
        hi_low = jnp.where(hi[1][0] <= hi[1][1], 0, 1)
        # otherwise it becomes the low end, the old low the high end if the slope points
        # past it
        wolfe_now = wolfe(gtd_new)
        flip = ~wolfe_now & (gtd_new * (bt[high] - bt[low]) >= 0)
        lo = tuple(jnp.where(flip, a.at[high].set(a[low]), a) for a in old)
        lo = tuple(a.at[low].set(v) for a, v in zip(lo, new))

        out = tuple(jnp.where(shrink, a, b) for a, b in zip(hi, lo))
        return (*out, jnp.where(shrink, hi_low, low), insuf_progress, done | (~shrink & wolfe_now), ls_iter)

    z = (bt, bf, bg, bgtd, low, jnp.zeros((), bool), done, ls_iter)
    bt, bf, bg, _, low, _, _, ls_iter = lax.while_loop(zooming, zoom, z)
    return bf[low], bg[low], bt[low], ls_iter + 1
