"""Parity checks against the installed PyTorch: the same weights and inputs through
both, differences reported per model, output and gradient.

Imports torch lazily (``funcnets parity`` and the demo's report); the test suite holds
the same comparisons to stated tolerances. The tutorial's torch models live here once.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from funcnets import losses, optim, torch_io, train
from funcnets.autograd import backward, my_relu, relu
from funcnets.errors import FuncnetsError
from funcnets.models import LeNet, resnet18, two_layer

__all__ = ["Row", "run", "format_table", "torch_lenet", "torch_my_relu"]


class Row(NamedTuple):
    model: str
    quantity: str
    dtype: str
    max_abs: float
    max_rel: float
    tol: float

    @property
    def ok(self) -> bool:
        return self.max_rel <= self.tol


def _torch():
    try:
        import torch
        import torchvision  # noqa: F401
    except ImportError:
        raise FuncnetsError(
            "parity checks need PyTorch and torchvision: pip install 'funcnets[test]' "
            "(torch==2.14.1, torchvision==0.29.1)"
        ) from None
    return torch


def torch_lenet():
    """The tutorial's ``Net``, verbatim, as a torch module."""
    torch = _torch()
    F = torch.nn.functional

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(1, 6, 3)
            self.conv2 = torch.nn.Conv2d(6, 16, 3)
            self.fc1 = torch.nn.Linear(16 * 6 * 6, 120)
            self.fc2 = torch.nn.Linear(120, 84)
            self.fc3 = torch.nn.Linear(84, 10)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.conv1(x)), (2, 2))
            x = F.max_pool2d(F.relu(self.conv2(x)), 2)
            x = torch.flatten(x, 1)
            x = F.relu(self.fc1(x))
            x = F.relu(self.fc2(x))
            return self.fc3(x)

    return Net()


def torch_my_relu():
    """The tutorial's ``MyReLU(torch.autograd.Function)``, verbatim."""
    torch = _torch()

    class MyReLU(torch.autograd.Function):
        @staticmethod
        def forward(ctx, input):
            ctx.save_for_backward(input)
            return input.clamp(min=0)

        @staticmethod
        def backward(ctx, grad_output):
            (input,) = ctx.saved_tensors
            grad_input = grad_output.clone()
            grad_input[input < 0] = 0
            return grad_input

    return MyReLU


def _diff(model, quantity, dtype, ours, theirs, tol) -> Row:
    a, b = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    abs_err = float(np.max(np.abs(a - b))) if a.size else 0.0
    return Row(model, quantity, dtype, abs_err, abs_err / max(float(np.max(np.abs(b))), 1e-30), tol)


def _worst(model, quantity, dtype, pairs, tol) -> Row:
    rows = [_diff(model, quantity, dtype, a, b, tol) for a, b in pairs]
    return max(rows, key=lambda r: r.max_rel)


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy()


def run(quick: bool = False) -> list[Row]:
    """All checks; ``quick`` skips the slow float64 ResNet-18 gradients."""
    torch = _torch()
    import torchvision

    torch.manual_seed(0)
    rows: list[Row] = []
    with jax.enable_x64(True):
        # autograd: Q = 3a^3 - b^2 with an external gradient
        a, b, v = np.random.default_rng(0).normal(size=(3, 4))
        ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
        (3 * ta**3 - tb**2).backward(gradient=torch.tensor(v))
        ga, gb = backward(lambda a, b: 3 * a**3 - b**2, jnp.asarray(a), jnp.asarray(b), gradient=jnp.asarray(v))
        rows.append(_worst("autograd Q", "a.grad, b.grad", "f64", [(ga, _np(ta.grad)), (gb, _np(tb.grad))], 1e-12))
        # ReLUs, including exact zeros
        x = np.array([-1.0, 0.0, -0.0, 2.0])
        tx = torch.tensor(x, requires_grad=True)
        torch_my_relu().apply(tx).sum().backward()
        tx2 = torch.tensor(x, requires_grad=True)
        torch.relu(tx2).sum().backward()
        rows.append(_diff("MyReLU", "grad at -1, 0, -0, 2", "f64", jax.grad(lambda x: my_relu(x).sum())(jnp.asarray(x)), _np(tx.grad), 0.0))
        rows.append(_diff("relu", "grad at -1, 0, -0, 2", "f64", jax.grad(lambda x: relu(x).sum())(jnp.asarray(x)), _np(tx2.grad), 0.0))
        # two-layer net: 200 steps of the tutorial's loop
        rng = np.random.default_rng(0)
        x, y = rng.standard_normal((64, 1000)), rng.standard_normal((64, 10))
        w1, w2 = rng.standard_normal((1000, 100)), rng.standard_normal((100, 10))
        tw1, tw2 = torch.tensor(w1, requires_grad=True), torch.tensor(w2, requires_grad=True)
        tl = []
        for _ in range(200):
            loss = (torch.tensor(x).mm(tw1).clamp(min=0).mm(tw2) - torch.tensor(y)).pow(2).sum()
            tl.append(loss.item())
            loss.backward()
            with torch.no_grad():
                tw1 -= 1e-6 * tw1.grad
                tw2 -= 1e-6 * tw2.grad
                tw1.grad.zero_()
                tw2.grad.zero_()
        _, ours = two_layer.train({"w1": jnp.asarray(w1), "w2": jnp.asarray(w2)}, jnp.asarray(x), jnp.asarray(y), 1e-6, 200)
        rows.append(_diff("two-layer net", "loss at steps 100, 200", "f64", np.asarray(ours)[[99, 199]], np.array(tl)[[99, 199]], 1e-9))

    rows += _lenet_rows(torch)
    rows += _resnet_rows(torch, torchvision, quick)
    return rows


def _lenet_rows(torch) -> list[Row]:
    rows = []
    tnet = torch_lenet()
    model = LeNet()
    params = torch_io.load_state_dict(model, tnet.state_dict()).params
    x, target = torch.randn(8, 1, 32, 32), torch.randint(0, 10, (8,))
    out = tnet(x)
    torch.nn.functional.cross_entropy(out, target, label_smoothing=0.1).backward()

    def loss(p):
        logits = model(p, {}, jnp.asarray(_np(x)))[0]
        return losses.cross_entropy(logits, jnp.asarray(_np(target)), label_smoothing=0.1), logits

    grads, logits = jax.grad(loss, has_aux=True)(params)
    rows.append(_diff("LeNet", "logits", "f32", logits, _np(out), 1e-5))
    ours = dict(model.named_parameters(grads))
    rows.append(_worst("LeNet", "grads of all 10 params (CE)", "f32", [(ours[n], _np(p.grad)) for n, p in tnet.named_parameters()], 1e-4))
    for name, ours_opt, theirs_opt in (
        ("SGD(momentum=0.9, nesterov)", optim.sgd(0.02, momentum=0.9, nesterov=True), lambda p: torch.optim.SGD(p, lr=0.02, momentum=0.9, nesterov=True)),
        ("Adam", optim.adam(1e-3), lambda p: torch.optim.Adam(p, lr=1e-3)),
        ("AdamW(amsgrad)", optim.adamw(1e-3, amsgrad=True), lambda p: torch.optim.AdamW(p, lr=1e-3, amsgrad=True)),
    ):
        tnet = torch_lenet()
        params = torch_io.load_state_dict(model, tnet.state_dict()).params
        topt = theirs_opt(tnet.parameters())
        ts = train.create_train_state(params, {}, ours_opt, jax.random.PRNGKey(0))
        step = train.make_train_step(train.supervised_loss(model), ours_opt)
        for _ in range(10):
            xb, yb = torch.randn(8, 1, 32, 32), torch.randint(0, 10, (8,))
            topt.zero_grad()
            torch.nn.functional.cross_entropy(tnet(xb), yb).backward()
            topt.step()
            ts, _ = step(ts, (jnp.asarray(_np(xb)), jnp.asarray(_np(yb), jnp.int32)))
        ours = dict(model.named_parameters(ts.params))
        rows.append(_worst("LeNet", f"params after 10 {name} steps", "f32", [(ours[n], _np(p)) for n, p in tnet.named_parameters()], 1e-4))
    return rows


def _resnet_rows(torch, torchvision, quick: bool) -> list[Row]:
    rows = []
    dtypes = [("f32", torch.float32, 1e-4)] + ([] if quick else [("f64", torch.float64, 1e-9)])
    for label, dtype, tol in dtypes:
        with jax.enable_x64(dtype == torch.float64):
            tm = torchvision.models.resnet18(weights=None).to(dtype)
            model = resnet18()
            loaded = torch_io.load_state_dict(model, tm.state_dict())
            x = torch.rand(2, 3, 64, 64, dtype=dtype)
            xj = jnp.asarray(_np(x))
            rows.append(_diff("ResNet-18", "eval logits", label, model(loaded.params, loaded.state, xj)[0], _np(tm.eval()(x)), tol))
            labels = torch.rand(2, 1000, dtype=dtype)
            tm.train()
            out = tm(x)
            (out - labels).sum().backward()

            def loss(p):
                pred, new_state = model(p, loaded.state, xj, train=True)
                return jnp.sum(pred - jnp.asarray(_np(labels))), (pred, new_state)

            grads, (pred, new_state) = jax.grad(loss, has_aux=True)(loaded.params)
            rows.append(_diff("ResNet-18", "train logits", label, pred, _np(out), tol))
            buffers = dict(model.named_buffers(new_state))
            rows.append(_worst("ResNet-18", "running stats after 1 step", label,
                               [(buffers[n], _np(b)) for n, b in tm.named_buffers() if "running" in n], tol))
            if dtype == torch.float64:  # float32 gradients of this loss are ill-conditioned (see DESIGN.md)
                ours = dict(model.named_parameters(grads))
                rows.append(_worst("ResNet-18", "grads of all 62 params, (pred-labels).sum()", label,
                                   [(ours[n], _np(p.grad)) for n, p in tm.named_parameters()], 1e-8))
    return rows


def format_table(rows: list[Row]) -> str:
    header = f"{'model':<14} {'quantity':<50} {'dtype':<5} {'max abs diff':>12} {'max rel diff':>12} {'tolerance':>9}  ok"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r.model:<14} {r.quantity:<50} {r.dtype:<5} {r.max_abs:>12.2e} {r.max_rel:>12.2e} {r.tol:>9.0e}  {'yes' if r.ok else 'NO'}"
        )
    return "\n".join(lines)
