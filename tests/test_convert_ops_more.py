"""funcnets.from_torch on torch's special functions, order statistics, linear algebra, FFT, complex
numbers and the remaining functional losses (src/funcnets/convert/ops.py): a small torch Module per
group, converted, its outputs and input gradients compared with torch's.

float64 to 1e-12 relative unless a test says otherwise; LAPACK decompositions are compared through
quantities that do not depend on their sign conventions (reconstructions, sign-normalised factors).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as TF

from funcnets.convert import UnsupportedOperationError, from_torch, ops
from helpers import rel_err, to_np


def Fn(fn, n=1):
    """A Module whose forward(x0, ..., x{n-1}) is ``fn(x0, ...)`` (fx needs named inputs, not ``*xs``)."""
    args = ", ".join(f"x{i}" for i in range(n))
    ns = {}
    exec(f"def forward(self, {args}):\n    return self.fn({args})", ns)
    m = type("Fn", (tnn.Module,), {"forward": ns["forward"]})()
    m.fn = fn
    return m


def _parity(fn, *xs, rtol=1e-12, grad=True, grad_rtol=None):
    """Outputs (each of a tuple) and d(sum_k sum(out_k * w_k))/d(float inputs) equal torch's."""
    m = Fn(fn, len(xs))
    model, params, state = from_torch(m, *xs)
    txs = [x.clone().requires_grad_(grad and x.is_floating_point()) for x in xs]
    out = m(*txs)
    outs = list(out) if isinstance(out, tuple) else [out]
    torch.manual_seed(1)
    ws = [torch.randn_like(o) if o.is_floating_point() else None for o in outs]
    jxs = [jnp.asarray(to_np(x)) for x in xs]
    fl = [i for i, x in enumerate(xs) if x.is_floating_point()]

    def loss(fx):
        inputs = list(jxs)
        for i, v in zip(fl, fx):
            inputs[i] = v
        y, _ = model.apply(params, state, inputs[0] if len(inputs) == 1 else tuple(inputs))
        ys = list(y) if isinstance(y, tuple) else [y]
        total = sum(jnp.sum(a * jnp.asarray(to_np(w))) for a, w in zip(ys, ws) if w is not None)
        return total, ys

    grad = grad and bool(fl) and any(w is not None for w in ws)
    if not grad:
        ys = jax.jit(loss)([jxs[i] for i in fl])[1]
    else:
        (_, ys), g = jax.jit(jax.value_and_grad(loss, has_aux=True))([jxs[i] for i in fl])
    assert len(ys) == len(outs)
    for k, (a, r) in enumerate(zip(ys, outs)):
        r = to_np(r)
        assert a.shape == r.shape, f"output {k}: shape {a.shape} != torch's {r.shape}"
        if r.dtype.kind in "iub":
            assert a.dtype.kind == r.dtype.kind and np.array_equal(np.asarray(a), r), f"output {k}: {a} != {r}"
        else:
            assert np.array_equal(np.isnan(np.asarray(a)), np.isnan(r)), f"output {k}: NaN at other places"
            ok = ~np.isnan(r)
            err = rel_err(np.asarray(a)[ok], r[ok]) if ok.any() else 0.0
            assert err <= rtol, f"output {k}: relative error {err:.2e} > {rtol:.0e}"
    if grad and any(w is not None and o.requires_grad for w, o in zip(ws, outs)):
        total = sum((o * w).sum() for o, w in zip(outs, ws) if w is not None and o.requires_grad)
        tg = torch.autograd.grad(total, [txs[i] for i in fl], allow_unused=True)
        for i, a, r in zip(fl, g, tg):
            r = np.zeros(xs[i].shape) if r is None else to_np(r)
            err = rel_err(a, r) if np.abs(r).max() > 0 else float(np.abs(a).max())
            assert err <= (grad_rtol or rtol * 10), f"input {i} gradient: error {err:.2e}"
    return ys


def _vi(r):
    """A (values, indices) pair as two outputs: fx cannot unpack ``*r`` while tracing."""
    return r[0], r[1]


def _t(*shape, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


# ----------------------------------------------------------------------------- elementwise
def test_special_elementwise(x64):
    p = torch.tensor([0.0, 1e-4, 0.3, 0.5, 0.97, 1.0], dtype=torch.float64)
    x, y = _t(2, 5), _t(2, 5, seed=1)
    _parity(lambda p: (torch.logit(p[1:-1]), p[1:-1].logit(), torch.logit(p, eps=1e-3), torch.special.logit(p, 0.01),
                       torch.special.expit(p), torch.special.erf(p), torch.special.erfc(p), p.erfc()), p)
    _parity(lambda x, y: (torch.hypot(x, y), x.hypot(y), torch.sinc(x), x.sinc(), torch.special.sinc(y)), x, y)
    def inplace(x, y):  # torch's in-place forms, converted to the new value of x
        a, b, c = x.clone(), x.clone(), torch.sigmoid(x) * 1
        a.hypot_(y)
        b.sinc_()
        torch.logit_(c, 1e-3)
        return a, b, c, torch.erfc_(x.clone())
    _parity(inplace, x, y)
    _parity(lambda m: (torch.median(m), torch.nanmedian(m), torch.median(m, 0)[0]), torch.tensor([3, 1, 2, 5]))
    z = torch.tensor([-2.0, -0.0, 0.0, 0.5, 0.0, -1.0], dtype=torch.float64)
    v = torch.tensor([7.0, 8.0, 9.0, 1.0, 0.5, 2.0], dtype=torch.float64)
    _parity(lambda z, v: (torch.signbit(z), z.signbit(), torch.heaviside(z, v), z.heaviside(v),
                          torch.sinc(z), z.clone().heaviside_(v)), z, v, grad=False)


def test_tensordot_isin(x64):
    a, b = _t(2, 3, 4), _t(3, 4, 5, seed=1)
    _parity(lambda a, b: (torch.tensordot(a, b), torch.tensordot(a, b.permute(1, 0, 2), dims=1),
                          torch.tensordot(a, b, dims=([1, 2], [0, 1])), torch.tensordot(a, b[:, 0], dims=([1], [0]))),
            a, b)
    e = torch.tensor([[1, 2, 3], [4, 5, 6]])
    t = torch.tensor([2, 5, 9])
    _parity(lambda e, t: (torch.isin(e, t), torch.isin(e, t, invert=True), torch.isin(e, 5)), e, t)


# ----------------------------------------------------------------------------- order statistics
def test_median_lower_middle_values_indices_and_gradient(x64):
    x = _t(3, 4)  # an even count: torch takes the lower middle, not the mean
    _parity(lambda x: (torch.median(x), x.median(), *_vi(torch.median(x, 1)), *_vi(x.median(dim=0, keepdim=True)),
                       torch.nanmedian(x), *_vi(x.nanmedian(-1))), x)
    ties = torch.tensor([1.0, 2.0, 2.0, 5.0, 2.0, 0.0], dtype=torch.float64)  # gradient spread over the three 2s
    _parity(lambda x: torch.median(x), ties)
    # rows of ties: the index torch's CPU kernel gives (stable order, the lower middle) on these rows
    rows = torch.tensor([[2.0, 1.0, 2.0, 2.0, 3.0], [1.0, 1.0, 1.0, 1.0, 0.0], [5.0, 5.0, 4.0, 4.0, 4.0]],
                        dtype=torch.float64)
    _parity(lambda r: (*_vi(torch.median(r, 1)), *_vi(torch.nanmedian(r, 1))), rows, grad=False)
    n = torch.tensor([[1.0, float("nan"), 3.0, 0.5], [2.0, 4.0, 1.0, 3.0], [float("nan")] * 4], dtype=torch.float64)
    # an all-NaN row's nanmedian index is whatever torch's nth_element leaves there: values only
    _parity(lambda n: (*_vi(torch.median(n, 1)), *_vi(torch.nanmedian(n[:2], 1)), torch.nanmedian(n, 1).values,
                       torch.median(n[1:2]), torch.nanmedian(n), torch.median(n)), n, grad=False)


@pytest.mark.parametrize("interpolation", ["linear", "lower", "higher", "midpoint", "nearest"])
def test_quantile(interpolation, x64):
    x = _t(3, 5)
    q = torch.tensor([0.0, 0.1, 0.25, 0.5, 0.625, 1.0], dtype=torch.float64)
    kw = {"interpolation": interpolation}
    _parity(lambda x, q: (torch.quantile(x, 0.3, **kw), torch.quantile(x, q, dim=1, **kw),
                          x.quantile(q, dim=0, keepdim=True, **kw), torch.quantile(x, 0.75, dim=-1, keepdim=True, **kw),
                          torch.quantile(x, q, keepdim=True, **kw), torch.nanquantile(x, q, 1, **kw)), x, q)
    n = torch.tensor([[1.0, float("nan"), 3.0, 0.5], [2.0, 4.0, 1.0, 3.0], [float("nan")] * 4], dtype=torch.float64)
    _parity(lambda n: (torch.quantile(n, 0.4, 1, **kw), torch.nanquantile(n, 0.4, 1, **kw)), n, grad=False)


def test_quantile_bad_arguments():
    with pytest.raises(ValueError, match="interpolation"):
        ops.quantile(jnp.ones(3), 0.5, interpolation="cubic")
    with pytest.raises(ValueError, match=r"q must be in the range \[0, 1\] but got 1.5"):
        ops.quantile(jnp.ones(3), 1.5)


def test_cummax_cummin_ties_take_the_later_index(x64):
    x = torch.tensor([[1.0, 3.0, 3.0, 2.0, 5.0, 5.0], [0.0, -1.0, -1.0, 4.0, -2.0, 4.0]], dtype=torch.float64)
    _parity(lambda x: (*_vi(torch.cummax(x, 1)), *_vi(x.cummin(1)), *_vi(torch.cummax(x, 0)), *_vi(x[0].cummin(0))), x)
    n = torch.tensor([1.0, float("nan"), 3.0, 0.5], dtype=torch.float64)
    _parity(lambda n: (*_vi(torch.cummax(n, 0)), *_vi(torch.cummin(n, 0))), n, grad=False)


def test_searchsorted_bucketize(x64):
    b = torch.tensor([1.0, 3.0, 3.0, 5.0, 7.0], dtype=torch.float64)
    v = torch.tensor([[0.0, 3.0, 6.0], [7.0, 9.0, 1.0]], dtype=torch.float64)
    seq = torch.tensor([[1.0, 2.0, 4.0], [0.0, 5.0, 6.0]], dtype=torch.float64)
    unsorted = torch.tensor([5.0, 1.0, 3.0], dtype=torch.float64)
    sorter = torch.tensor([1, 2, 0])
    _parity(lambda b, v, seq, u, s: (
        torch.bucketize(v, b), torch.bucketize(v, b, right=True), torch.bucketize(v, b, out_int32=True),
        torch.searchsorted(b, v), torch.searchsorted(b, v, right=True), torch.searchsorted(b, v, side="right"),
        torch.searchsorted(seq, v), torch.searchsorted(seq, v, side="right", out_int32=True),
        torch.searchsorted(u, v, sorter=s)), b, v, seq, unsorted, sorter, grad=False)


def test_block_diag_cartesian_prod(x64):
    a, b, c = _t(2, 3), _t(1, 2, seed=1), _t(3, seed=2)
    _parity(lambda a, b, c: (torch.block_diag(a, b, c), torch.block_diag(c), torch.cartesian_prod(c, b[0]),
                             torch.cartesian_prod(c)), a, b, c)


# ----------------------------------------------------------------------------- linear algebra
def test_norms(x64):
    x = _t(2, 3, 4)
    inf = float("inf")
    _parity(lambda x: (
        torch.linalg.norm(x), torch.linalg.norm(x, dim=1), torch.linalg.norm(x, 3, dim=-1, keepdim=True),
        torch.linalg.norm(x[0], "fro"), torch.linalg.norm(x[0], "nuc"), torch.linalg.norm(x[0], inf),
        torch.linalg.norm(x[0], -1), torch.linalg.norm(x[0, 0], 1), torch.linalg.norm(x, 2, dim=(1, 2)),
        torch.linalg.vector_norm(x), torch.linalg.vector_norm(x, inf, dim=(0, 2)), torch.linalg.vector_norm(x, -inf),
        torch.linalg.vector_norm(x, 0, 1), torch.linalg.vector_norm(x, 1.5, -1, True), torch.linalg.vector_norm(x, -2),
        torch.linalg.matrix_norm(x), torch.linalg.matrix_norm(x, "nuc", keepdim=True),
        torch.linalg.matrix_norm(x, -2, dim=(0, 2)), torch.linalg.matrix_norm(x, -inf),
        torch.linalg.matrix_norm(x, 1)), x, rtol=1e-11)
    zero = torch.zeros(2, 3, dtype=torch.float64)  # torch's gradient of a zero norm is 0, not NaN
    _parity(lambda z: (torch.linalg.vector_norm(z, dim=1), torch.linalg.norm(z, 3, dim=1)), zero)


def test_solve_inv_det_slogdet_cholesky_matrix_exp(x64):
    a, b, v = _t(2, 3, 3) + 3 * torch.eye(3, dtype=torch.float64), _t(2, 3, 2, seed=1), _t(2, 3, seed=2)
    _parity(lambda a, b, v: (
        torch.linalg.solve(a, b), torch.linalg.solve(a, v), torch.linalg.solve(a[0], v[0]),
        torch.linalg.solve(a, b.mT, left=False), torch.linalg.inv(a), a.inverse(), torch.det(a), a.det(),
        torch.linalg.det(a[0]), *_vi(torch.linalg.slogdet(a)), *_vi(torch.slogdet(-a)), torch.logdet(a), a.logdet(),
        torch.matrix_exp(a / 3), torch.linalg.matrix_exp(a[1] / 3), (a / 4).matrix_exp()), a, b, v, rtol=1e-11)
    m = _t(2, 3, 3, seed=3)
    _parity(lambda m: (torch.linalg.cholesky(m @ m.mT + torch.eye(3, dtype=m.dtype)),
                       torch.linalg.cholesky(m @ m.mT + 1, upper=True),
                       # only the lower triangle is read, as torch: the upper is garbage here
                       torch.linalg.cholesky(torch.tril(m @ m.mT) + 5 * torch.eye(3, dtype=m.dtype) + torch.triu(m, 1))),
            m, rtol=1e-11)


def _sign_fix(q, r):
    """Q, R with R's diagonal made positive: the unique QR of a full-rank matrix."""
    s = torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))
    return q * s.unsqueeze(-2), r * s.unsqueeze(-1)


def test_qr_svd_eigh_through_sign_free_quantities(x64):
    """LAPACK may flip the sign of a column of Q/U/V (a row of R/Vh) and still be right; the tests compare
    reconstructions, singular values, eigenvalues and factors normalised to one sign, which are unique."""
    a = _t(4, 3)

    def qr_parts(a):
        q, r = torch.linalg.qr(a)
        q2, r2 = torch.linalg.qr(a.detach(), mode="complete")  # torch: no gradient for a tall complete QR
        _, r4 = torch.linalg.qr(a.detach(), mode="r")  # torch has no gradient for mode="r"
        return (*_sign_fix(q, r), q @ r, q2 @ r2, q2.mT @ q2, torch.abs(r4))
    _parity(qr_parts, a, rtol=1e-11)

    def svd_parts(a):
        u, s, vh = torch.linalg.svd(a, full_matrices=False)
        uf, sf, vhf = torch.linalg.svd(a.detach())  # neither torch nor JAX differentiate a tall full SVD
        u3, s3, v3 = torch.svd(a)
        z1, s4, z2 = torch.svd(a, compute_uv=False)
        flip = torch.sign(u[0])  # the first row of U made positive: unique for distinct singular values
        return (s, torch.linalg.svdvals(a), u * flip, vh * flip.unsqueeze(-1), (u * s) @ vh, uf.mT @ uf,
                vhf @ vhf.mT, sf, (u3 * s3) @ v3.mT, z1, s4, z2)
    _parity(svd_parts, a, rtol=1e-11, grad_rtol=1e-9)

    m = _t(3, 3, seed=4)

    def eigh_parts(m):
        sym = m + m.mT
        w, v = torch.linalg.eigh(sym)
        flip = torch.sign(v[0])
        wu, vu = torch.linalg.eigh(torch.triu(m) + torch.triu(m, 1).mT, UPLO="U")
        lower_only = torch.linalg.eigvalsh(torch.tril(sym) + 7 * torch.triu(m, 1))  # the upper triangle unread
        return w, v * flip, (v * w) @ v.mT, wu, (vu * wu) @ vu.mT, lower_only
    _parity(eigh_parts, m, rtol=1e-11, grad_rtol=1e-9)


# ----------------------------------------------------------------------------- FFT and complex numbers
@pytest.mark.parametrize("norm", [None, "ortho", "forward"])
def test_fft(norm, x64):
    x = _t(2, 3, 6)

    def f(x):
        c = torch.fft.fft(x, norm=norm)
        r = torch.fft.rfft(x, norm=norm)
        r2 = torch.fft.rfft2(x, norm=norm)
        real = torch.view_as_real
        return (real(c), real(torch.fft.fft(x, n=4, dim=1, norm=norm)), real(torch.fft.ifft(c, norm=norm)), real(r),
                torch.fft.irfft(r, n=6, norm=norm), torch.fft.irfft(r, norm=norm), real(torch.fft.fft2(x, norm=norm)),
                real(torch.fft.fft2(x, s=(2, 4), norm=norm)), real(r2), torch.fft.irfft2(r2, s=(3, 6), norm=norm),
                real(torch.fft.fftn(x, norm=norm)), real(torch.fft.fftn(x, s=(4,), norm=norm)),
                real(torch.fft.fftn(x, dim=(0, 2), norm=norm)), real(torch.fft.ifftn(c, dim=(0, 1), norm=norm)),
                torch.fft.fftshift(x), torch.fft.ifftshift(x, dim=1), real(torch.fft.ifft2(c, norm=norm)),
                real(torch.fft.rfftn(x, dim=(0, 2), norm=norm)), torch.fft.irfftn(r2, s=(3, 6), norm=norm),
                torch.fft.hfft(c[..., :4], n=6, norm=norm), real(torch.fft.ihfft(x, norm=norm).resolve_conj()))
    _parity(f, x, rtol=1e-12, grad_rtol=1e-11)


def test_complex_polar_views(x64):
    re, im = _t(2, 3), _t(2, 3, seed=1)
    pair = _t(3, 2, seed=2)

    def f(re, im, pair):
        z = torch.complex(re, im)
        p = torch.polar(re.abs(), im)
        w = torch.view_as_complex(pair)
        return (torch.view_as_real(z * p), torch.real(w), torch.imag(w), w.abs(), torch.angle(z), z.angle(),
                torch.view_as_real(torch.conj_physical(z)), torch.view_as_real(z.conj().resolve_conj()))
    _parity(f, re, im, pair)


# ----------------------------------------------------------------------------- losses and functional layers
def test_losses(x64):
    x, y, z = _t(4, 3), _t(4, 3, seed=1), _t(4, 3, seed=2)
    sgn = torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=torch.float64)
    cls = torch.tensor([0, 2, 1, 2])
    ml = torch.tensor([[0, 2, -1], [1, -1, 0], [2, 1, 0], [-1, 0, 0]])
    multi = (torch.rand(4, 3, generator=torch.Generator().manual_seed(3)) > 0.5).double()

    def f(x, y, z, sgn, multi, cls, ml):
        return (TF.huber_loss(x, y, delta=0.7), TF.soft_margin_loss(x, (multi * 2 - 1).detach(), reduction="sum"),
                TF.multilabel_soft_margin_loss(x, multi, reduction="none"), TF.multi_margin_loss(x, cls, p=2, margin=0.5),
                TF.multilabel_margin_loss(x, ml), TF.poisson_nll_loss(x, y.abs(), full=True),
                TF.poisson_nll_loss(x.abs() + 0.1, y.abs(), log_input=False), TF.gaussian_nll_loss(x, y, z.abs()),
                TF.cosine_embedding_loss(x, y, sgn, margin=0.2), TF.margin_ranking_loss(x[:, 0], y[:, 0], sgn, 0.3),
                TF.hinge_embedding_loss(x, torch.sign(y), margin=0.8, reduction="none"),
                TF.triplet_margin_loss(x, y, z, margin=0.5, p=1.5, swap=True),
                TF.triplet_margin_with_distance_loss(x, y, z, swap=True),
                TF.linear_cross_entropy(x, y[:3], cls, linear_bias=z[0], label_smoothing=0.1))
    _parity(f, x, y, z, sgn, multi, cls, ml)


def test_triplet_distance_function_torch_to_implementation(x64):
    """fx cannot trace a function-valued argument, but ported code passes torch's functions: they run as
    their implementations here."""
    a, p, n = (jnp.asarray(to_np(_t(3, 4, seed=s))) for s in range(3))
    got = ops.triplet_margin_with_distance_loss(a, p, n, distance_function=TF.pairwise_distance, margin=2.0)
    ref = TF.triplet_margin_with_distance_loss(*(torch.from_numpy(np.array(v)) for v in (a, p, n)),
                                               distance_function=TF.pairwise_distance, margin=2.0)
    assert rel_err(got, to_np(ref)) <= 1e-12
    with pytest.raises(TypeError, match="distance_function"):
        ops.triplet_margin_with_distance_loss(a, p, n, distance_function=lambda u, v: torch.cdist(u, v))


def test_ctc_loss(x64):
    """From logits: torch's CTC backward is the gradient with respect to the logits of a log_softmax
    (it omits the softmax Jacobian's identity part), so log_probs taken as free inputs would differ."""
    t, n, c = 6, 2, 4
    logits = _t(t, n, c)
    targets = torch.tensor([[1, 2, 2], [3, 1, 0]])
    _parity(lambda z, tg: (TF.ctc_loss(torch.log_softmax(z, -1), tg, [6, 5], [3, 2]),
                           TF.ctc_loss(z.log_softmax(2), tg, torch.tensor([6, 4]), torch.tensor([3, 1]),
                                       reduction="sum")), logits, targets, rtol=1e-11)


def test_bilinear_channel_shuffle_fractional_pool(x64):
    x1, x2, w, b = _t(3, 4), _t(3, 2, seed=1), _t(5, 4, 2, seed=2), _t(5, seed=3)
    img = _t(2, 6, 3, 3, seed=4)
    _parity(lambda x1, x2, w, b, img: (TF.bilinear(x1, x2, w, b), torch.bilinear(x1, x2, w, None),
                                       TF.channel_shuffle(img, 3), torch.channel_shuffle(img, 2)), x1, x2, w, b, img)
    x = _t(2, 3, 7, 7, seed=5)
    s = torch.rand(2, 3, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    v = _t(1, 2, 5, 5, 5, seed=6)
    s3 = torch.rand(1, 2, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    _parity(lambda x, s, v, s3: (TF.fractional_max_pool2d(x, 2, output_size=4, _random_samples=s.detach()),
                                 *_vi(TF.fractional_max_pool2d(x, 3, output_ratio=(0.5, 0.5), return_indices=True,
                                                           _random_samples=s.detach())),
                                 TF.fractional_max_pool3d(v, 2, output_size=3, _random_samples=s3.detach())), x, s, v, s3)


# ----------------------------------------------------------------------------- float32 and refusals
def test_float32():
    x = _t(3, 4, dtype=torch.float32)
    ys = _parity(lambda x: (torch.median(x, 1).values, torch.quantile(x, 0.3, dim=1), torch.logit(torch.sigmoid(x)),
                            torch.linalg.norm(x, dim=1), torch.linalg.det(x[:, :3] + 3 * torch.eye(3)),
                            torch.fft.rfft(x).abs(), torch.cummax(x, 1).values), x, rtol=1e-5, grad_rtol=1e-4)
    assert all(y.dtype == jnp.float32 for y in ys)


def test_data_dependent_shapes_are_named_as_such():
    for name in ("nonzero", "unique", "masked_select"):
        assert "data-dependent shape" in ops.data_dependent_reason(name)
    assert "data-dependent shape" in ops.data_dependent_reason(torch.unique)
    assert ops.data_dependent_reason(torch.exp) is None
    with pytest.raises(UnsupportedOperationError) as e:
        from_torch(Fn(lambda x: torch.unique(x) + x.nonzero().sum() + torch.masked_select(x, x > 0).sum()),
                   torch.randn(3))
    assert len(e.value.problems) == 3
    with pytest.raises(TypeError, match="boolean tensor mask: masked_select's result has a data-dependent shape"):
        from_torch(Fn(lambda x: x[x > 0].sum()), torch.randn(3))
    model, params, state = from_torch(Fn(lambda x: x[x.shape[0] - 2:]), torch.randn(3))  # plain indexing still works
    assert model.apply(params, state, jnp.arange(3.0))[0].tolist() == [1.0, 2.0]


def test_port_writes_the_new_ops(tmp_path, monkeypatch, x64):
    """funcnets port calls the same implementations (``ops.median``, ``ops.rfft``, ...): the written file
    gives torch's value; every implementation has a name in ops (torch.abs had none before)."""
    import importlib.util
    import sys

    from funcnets.convert.port import write_port

    assert all(o.fn in ops._PORT_NAMES for o in ops.OPS.values())
    torch.manual_seed(0)
    lin = tnn.Linear(4, 4).double()

    def f(x):
        y = lin(x)
        u, s, vh = torch.linalg.svd(y, full_matrices=False)
        q = torch.quantile(y, torch.tensor([0.2, 0.7], dtype=y.dtype), dim=1, interpolation="midpoint")
        return (torch.median(y, 1).values.sum() + q.sum() + s.sum() + torch.fft.rfft(y, norm="ortho").abs().sum()
                + torch.cummax(y, 0).values.sum() + torch.linalg.vector_norm(y, 3) + torch.logit(torch.sigmoid(y)).sum()
                + TF.hinge_embedding_loss(y, torch.sign(y)))
    m = Fn(f)
    m.lin = lin
    x = _t(3, 4)
    path, _ = write_port(m.eval(), tmp_path / "ported_ops_net.py")
    spec = importlib.util.spec_from_file_location("ported_ops_net", path)
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "ported_ops_net", mod)
    monkeypatch.chdir(tmp_path)
    spec.loader.exec_module(mod)
    model, params, state = mod.load()
    y, _ = model.apply(params, state, jnp.asarray(to_np(x)))
    assert rel_err(y, to_np(m(x))) <= 1e-12


def test_more_special_functions(x64):
    x = torch.tensor([0.3, 0.9, 1.7, 2.5, 4.0], dtype=torch.float64)
    y = torch.tensor([0.2, 1.1, 0.6, 3.0, 2.0], dtype=torch.float64)
    sp = torch.special
    _parity(lambda x, y: (
        sp.erfinv(x / 5), sp.exp2(x), sp.expm1(x), sp.log1p(x), sp.logsumexp(x, 0), sp.softmax(x, 0),
        sp.log_softmax(x, 0), sp.xlogy(x, y), sp.gammaln(x), sp.digamma(x), sp.psi(y), torch.digamma(x), x.digamma(),
        torch.i0(x), x.i0(), sp.i0(x), sp.i0e(x), sp.i1(x), sp.i1e(x), sp.ndtr(x - 2), sp.ndtri(x / 5),
        sp.log_ndtr(x - 2), sp.entr(x), sp.erfcx(x), sp.xlog1py(x, y), sp.multigammaln(x + 2, 3),
        torch.mvlgamma(y + 2, 2), (x + 2).mvlgamma(2)), x, y, rtol=1e-12, grad_rtol=1e-9)
    # JAX's polygamma (a Hurwitz zeta series; also digamma's derivative) agrees with torch's to ~1e-10 only
    _parity(lambda x, y: (sp.polygamma(1, x), torch.polygamma(2, y)), x, y, rtol=1e-9)
    # torch has no gradient with respect to these functions' first argument
    _parity(lambda x, y: (sp.zeta(x + 1, y), sp.gammainc(x, y), sp.gammaincc(x, y), torch.igamma(x, y),
                          x.igammac(y), sp.round(x * 3)), x, y, rtol=1e-12, grad=False)


def test_more_linalg_and_fftfreq(x64):
    a, b, c = _t(2, 3, 3), _t(2, 3, 2, seed=1), _t(3, 4, seed=2)
    _parity(lambda a, b, c: (
        torch.linalg.matmul(a, b), torch.linalg.diagonal(a), torch.linalg.diagonal(a, offset=1, dim1=0, dim2=2),
        torch.linalg.vecdot(a, b[..., :1]), torch.linalg.multi_dot([a[0], b[0], b[1].T]),
        torch.linalg.multi_dot([c[:, 0], a[0], c[:, 1]]), torch.linalg.matrix_power(a, 3), a.matrix_power(0),
        torch.matrix_power(a + 3 * torch.eye(3, dtype=a.dtype), -2),
        torch.linalg.solve_triangular(torch.triu(a) + 3 * torch.eye(3, dtype=a.dtype), b, upper=True),
        torch.linalg.solve_triangular(a + 3 * torch.eye(3, dtype=a.dtype), b.mT, upper=False, left=False),
        torch.linalg.solve_triangular(a, b, upper=False, unitriangular=True),
        torch.linalg.pinv(c), torch.linalg.pinv(a[0] @ a[0].T, hermitian=True), torch.linalg.pinv(c, rtol=0.3),
        torch.fft.fftfreq(5, 0.5, dtype=a.dtype), torch.fft.rfftfreq(6, dtype=a.dtype)), a, b, c,
        rtol=1e-11, grad_rtol=1e-9)


def test_data_dependent_shapes_are_refused_with_the_reason():
    class M(tnn.Module):
        def forward(self, x):
            return torch.unique(x).sum() + x.nonzero().sum()

    with pytest.raises(UnsupportedOperationError) as e:
        from_torch(M(), torch.randn(3))
    msg = str(e.value)
    assert "function torch.functional.unique: unique's result has a data-dependent shape" in msg
    assert "Tensor method .nonzero(): nonzero's result has a data-dependent shape" in msg
