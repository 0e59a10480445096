"""Parity checks against the installed PyTorch: the same weights and inputs through
both, differences reported per model, output and gradient.

Imports torch lazily (``funcnets parity`` and the demo's report); the test suite holds
the same comparisons to stated tolerances. The tutorial's torch models live here once.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from funcnets import losses, optim, torch_io, train
from funcnets.autograd import backward, my_relu, relu
from funcnets.config import one_off_compile_options
from funcnets.errors import FuncnetsError
from funcnets.models import LeNet, resnet18, two_layer
from funcnets.nn.module import Captured, Module, capture

__all__ = ["Row", "run", "format_table", "torch_lenet", "torch_my_relu", "locate", "LocateReport", "LocateRow"]


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
    return np.array(t.detach().cpu().numpy(), copy=True)  # never a view (see torch_io._to_numpy)


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

    def loss(p, x, target):
        logits = model(p, {}, x)[0]
        return losses.cross_entropy(logits, target, label_smoothing=0.1), logits

    # one compiled program: op by op, the backward pass compiles each primitive (~4x slower)
    grads, logits = jax.jit(jax.grad(loss, has_aux=True), compiler_options=one_off_compile_options())(params, jnp.asarray(_np(x)), jnp.asarray(_np(target)))
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
            # jitted: compiling the whole forward (and backward) is ~2.5x cheaper than op by op
            forward = jax.jit(lambda p, s, x, train: model(p, s, x, train=train), static_argnames="train",
                              compiler_options=one_off_compile_options())
            rows.append(_diff("ResNet-18", "eval logits", label, forward(loaded.params, loaded.state, xj, False)[0],
                              _np(tm.eval()(x)), tol))
            labels = torch.rand(2, 1000, dtype=dtype)
            tm.train()
            out = tm(x)
            # float32 gradients of this loss are ill-conditioned (see DESIGN.md): only float64's are
            # compared, so only then is the backward pass run (on both sides)
            grads_checked = dtype == torch.float64
            if grads_checked:
                (out - labels).sum().backward()

                def loss(p, s, x, labels):
                    pred, new_state = model(p, s, x, train=True)
                    return jnp.sum(pred - labels), (pred, new_state)

                grads, (pred, new_state) = jax.jit(jax.grad(loss, has_aux=True), compiler_options=one_off_compile_options())(
                    loaded.params, loaded.state, xj, jnp.asarray(_np(labels)))
            else:
                pred, new_state = forward(loaded.params, loaded.state, xj, True)
            rows.append(_diff("ResNet-18", "train logits", label, pred, _np(out), tol))
            buffers = dict(model.named_buffers(new_state))
            rows.append(_worst("ResNet-18", "running stats after 1 step", label,
                               [(buffers[n], _np(b)) for n, b in tm.named_buffers() if "running" in n], tol))
            if grads_checked:
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


# ----------------------------------------------------------------------------- locate
class LocateRow(NamedTuple):
    """One call of one torch submodule, compared with the funcnets call of the same name.

    Differences are ``max|ours - torch|`` (``*_abs``) and that over ``max|torch|``
    (``*_rel``), over every tensor the call received (``input``) or returned (``output``);
    ``inf`` where shapes differ, ``nan`` where funcnets made no call of that name.
    ``grads`` holds ``(parameter name, abs, rel)`` for the module's own parameters (on the
    first call of a module used several times). ``verdict``: ``"DIVERGES"`` (output beyond
    tolerance, input within, and no submodule of it diverging: the cause), ``"contains it"``
    (a module around the cause), ``"passes on"`` (its input already differed), ``"ok"``,
    ``"grad differs"`` (outputs agree, a parameter gradient does not), ``"not called in
    funcnets"`` (the port computes it inline, e.g. ``F.relu`` for an ``nn.ReLU``).
    """

    name: str
    call: int
    kind: str
    input_abs: float
    input_rel: float
    output_abs: float
    output_rel: float
    grads: tuple[tuple[str, float, float], ...]
    tol: float
    atol: float
    grad_atol: float = 0.0  # rtol/100 of the largest parameter gradient: see locate
    verdict: str = ""  # "DIVERGES", "contains it", "passes on", "ok", "grad differs", "not called in funcnets"

    @property
    def captured(self) -> bool:
        return self.output_abs == self.output_abs  # not nan

    def _ok(self, abs_err: float, rel: float) -> bool:
        return rel <= self.tol or abs_err <= self.atol

    @property
    def input_ok(self) -> bool:
        return not self.captured or self._ok(self.input_abs, self.input_rel)

    @property
    def output_ok(self) -> bool:
        return not self.captured or self._ok(self.output_abs, self.output_rel)

    @property
    def grads_ok(self) -> bool:
        return all(self._ok(a, r) or a <= self.grad_atol for _, a, r in self.grads)

    def _judged(self, rows: list["LocateRow"]) -> "LocateRow":
        """This row with its verdict, given all rows (a container of the cause is not the cause)."""
        if not self.captured:
            verdict = "not called in funcnets"
        elif not self.output_ok:
            starts = lambda r: r.name.startswith(self.name + ".") if self.name else r.name != ""  # noqa: E731
            inner = any(starts(r) and r.captured and not r.output_ok and r.input_ok for r in rows)
            verdict = "passes on" if not self.input_ok else "contains it" if inner else "DIVERGES"
        else:
            verdict = "ok" if self.grads_ok else "grad differs"
        return self._replace(verdict=verdict)


@dataclasses.dataclass(frozen=True)
class LocateReport:
    """What :func:`locate` found. ``print(report)`` shows the table.

    Attributes:
      rows: one :class:`LocateRow` per submodule call, in the order the calls began
        (``""`` is the whole model).
      first_divergence: the dotted name of the first submodule (in the order calls
        finished, so the innermost one) whose output is beyond tolerance while its input
        is within it, i.e. where the difference starts rather than where it is passed on;
        ``None`` when every output agrees.
      unmatched: funcnets calls with no torch submodule of that name.
      error: the exception text if the funcnets forward failed (rows stop there).
    """

    rows: tuple[LocateRow, ...]
    first_divergence: str | None
    dtype: str
    train: bool
    rtol: float
    atol: float
    unmatched: tuple[str, ...] = ()
    error: str | None = None

    def row(self, name: str, call: int = 0) -> LocateRow:
        """The row of submodule ``name`` (its ``call``-th call)."""
        for r in self.rows:
            if r.name == name and r.call == call:
                return r
        raise KeyError(f"no submodule call {name!r} #{call} in the report")

    def __str__(self) -> str:
        label = lambda r: (r.name or "(model)") + (f" #{r.call + 1}" if r.call else "")  # noqa: E731
        w = max([len(label(r)) for r in self.rows] + [6])
        k = max([len(r.kind) for r in self.rows] + [4])
        f = lambda v: "—" if v != v else "shape≠" if v == float("inf") else f"{v:.2e}"  # noqa: E731
        header = (f"{'module':<{w}}  {'type':<{k}}  {'input abs':>9} {'input rel':>9}  {'output abs':>10} "
                  f"{'output rel':>10}  {'worst param grad (rel)':<34} verdict")
        lines = [f"locate: {self.dtype}, {'train' if self.train else 'eval'} mode, tolerance rel {self.rtol:g}"
                 f"{f' / abs {self.atol:g}' if self.atol else ''}", header, "-" * len(header)]
        for r in self.rows:
            g = max(r.grads, key=lambda t: t[2], default=None)
            gtxt = "" if g is None else f"{g[0].rsplit('.', 1)[-1]} {f(g[2])}"
            mark = "  <-- first divergence" if r.name == self.first_divergence and r.call == 0 else ""
            lines.append(f"{label(r):<{w}}  {r.kind:<{k}}  {f(r.input_abs):>9} {f(r.input_rel):>9}  "
                         f"{f(r.output_abs):>10} {f(r.output_rel):>10}  {gtxt:<34} {r.verdict}{mark}")
        lines.append("-" * len(header))
        if self.error:
            lines.append(f"the funcnets forward failed: {self.error}")
        if self.first_divergence is None:
            bad = [r for r in self.rows if not r.grads_ok]
            lines.append("no divergence: every submodule's output is within tolerance" + (
                f"; but parameter gradients differ, first (in forward order) in {bad[0].name}" if bad else ""))
        else:
            r = self.row(self.first_divergence)
            lines.append(f"first divergence: {r.name or '(the model itself)'} ({r.kind}): its output differs by "
                         f"{r.output_rel:.2e} (relative) while its input agrees to {r.input_rel:.2e}; "
                         "the rows marked 'passes on' only receive that difference, those marked 'contains it' "
                         "are the modules around it")
        if self.unmatched:
            lines.append(f"funcnets calls with no torch submodule of that name: {', '.join(self.unmatched)}")
        return "\n".join(lines)


def _leaves(tree: Any) -> list:
    """Array-like leaves of nested tuples/lists/dicts (dicts by sorted key, as jax orders them)."""
    if isinstance(tree, dict):
        return [leaf for k in sorted(tree) for leaf in _leaves(tree[k])]
    if isinstance(tree, (tuple, list)):
        return [leaf for v in tree for leaf in _leaves(v)]
    return [tree] if hasattr(tree, "shape") and hasattr(tree, "dtype") else []


def _to_np(a: Any) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu()
        if not a.dtype.is_floating_point and not a.dtype.is_complex:
            return a.numpy()
        return a.double().numpy()
    return np.asarray(a)


def _compare(ours: Any, theirs: Any) -> tuple[float, float]:
    """``(max abs, max abs / max|theirs|)`` over all leaves; ``inf`` when the structures differ."""
    a, b = [_to_np(v) for v in _leaves(ours)], [_to_np(v) for v in _leaves(theirs)]
    if len(a) != len(b) or any(x.shape != y.shape for x, y in zip(a, b)):
        return float("inf"), float("inf")
    abs_err = scale = 0.0
    for x, y in zip(a, b):
        if x.size:
            abs_err = max(abs_err, float(np.max(np.abs(x.astype(np.float64) - y.astype(np.float64)))))
            scale = max(scale, float(np.max(np.abs(y.astype(np.float64)))))
    return abs_err, abs_err / max(scale, 1e-300) if abs_err else 0.0


def _torch_calls(torch, module, inputs, weights_seed: int):
    """Run ``module`` with hooks on every submodule; returns its calls, output and parameter grads."""
    calls: list[tuple[str, int, Any, Any, str]] = []  # (name, start, input, output, class), in finish order
    stack: list[tuple[str, int, Any]] = []
    started = [0]
    clone = lambda v: [t.detach().clone() for t in _leaves(v) if isinstance(t, torch.Tensor)]  # noqa: E731

    def pre(name):
        def hook(mod, args, kwargs):
            # inputs cloned before the call: an inplace ReLU overwrites what it received
            stack.append((name, started[0], clone((args, kwargs))))
            started[0] += 1
        return hook

    def post(name):
        def hook(mod, args, kwargs, output):
            _, start, inp = stack.pop()
            calls.append((name, start, inp, clone(output), type(mod).__name__))
        return hook

    handles = []
    for name, m in module.named_modules():
        handles.append(m.register_forward_pre_hook(pre(name), with_kwargs=True))
        handles.append(m.register_forward_hook(post(name), with_kwargs=True))
    try:
        out = module(*inputs)
    finally:
        for h in handles:
            h.remove()
    outs = [t for t in _leaves(out) if isinstance(t, torch.Tensor)]
    rng = np.random.default_rng(weights_seed)
    weights = [rng.standard_normal(t.shape) if t.is_floating_point() else None for t in outs]
    loss = sum((t * torch.as_tensor(w, dtype=t.dtype)).sum() for t, w in zip(outs, weights) if w is not None)
    if isinstance(loss, torch.Tensor) and loss.requires_grad:
        loss.backward()
    grads = {n: p.grad for n, p in module.named_parameters() if p.grad is not None}
    return calls, weights, grads


def _signature(*trees: Any) -> tuple:
    leaves, treedef = jax.tree_util.tree_flatten(trees)
    return str(treedef), tuple((tuple(a.shape), str(a.dtype)) for a in leaves)


@functools.lru_cache(maxsize=8)
def _locate_fn(model: Module, train: bool):
    """One compiled forward+backward per model that also returns every captured call.

    (Op by op, a ResNet-18's backward alone takes longer than compiling the whole.) The
    call names are known while tracing only, so they are kept per input signature.
    """
    names: dict[tuple, list[tuple[str, int]]] = {}

    def forward(params, state, x, key, out_weights):
        with capture() as calls:
            y, _ = model(params, state, x, train=train, key=key)
        names[_signature(params, state, x, key)] = [(c.name, c.start) for c in calls]
        outs = _leaves(y)
        loss = sum((jnp.sum(o * jnp.asarray(w, o.dtype)) for o, w in zip(outs, out_weights) if w is not None),
                   jnp.zeros(()))
        return loss, (y, [(c.input, c.output) for c in calls])

    return jax.jit(jax.grad(forward, has_aux=True), compiler_options=one_off_compile_options()), names


def locate(
    torch_module: Any,
    model: Module,
    params: dict,
    state: dict,
    *inputs: Any,
    train: bool = False,
    rtol: float | None = None,
    atol: float = 0.0,
    key: Any = None,
    seed: int = 0,
) -> LocateReport:
    """Where does a port diverge from its torch module? Compare every submodule's call.

    Runs ``torch_module`` with forward hooks on every submodule and ``model`` under
    :func:`funcnets.nn.module.capture` (which sees every child run through a ``Scope``,
    hand ports and ``from_torch`` models alike), matches the calls by dotted name (and
    by call number, for a module used several times), then runs the backward pass of the
    same fixed random linear functional ``sum(output * R)`` on both sides and compares
    each module's own parameter gradients. Neither the torch module nor its mode and
    buffers are changed (a copy runs).

    Args:
      torch_module: the reference ``torch.nn.Module``.
      model, params, state: the funcnets port and its weights (the torch module's,
        e.g. from ``torch_io.load_state_dict`` or ``from_torch``).
      *inputs: the forward's inputs as torch tensors (float64 ones, or a float64
        ``torch_module``, run funcnets in float64).
      train: torch's ``model.train()`` (BatchNorm batch statistics). Dropout draws
        different masks in the two libraries, so compare models with dropout in eval.
      rtol: relative tolerance, ``max|a - b| / max|b|`` (default 1e-4 in float32,
        1e-9 in float64); a difference within ``atol`` passes too, and a parameter
        gradient's within ``rtol / 100`` of the largest parameter gradient (gradients that
        are zero in exact arithmetic, as a conv bias's before a train-mode BatchNorm, are
        rounding noise on both sides).
      key: the funcnets PRNG key (default ``PRNGKey(0)`` in train mode).
      seed: seeds ``R``.

    Returns:
      A :class:`LocateReport`: ``report.first_divergence`` is the dotted name of the
      first submodule whose output is beyond tolerance while its input is within it
      (the cause, not a layer that only passes an upstream difference on);
      ``print(report)`` shows the table.

    Example::

        report = locate(torchvision.models.resnet18(), model, params, state, torch.rand(2, 3, 32, 32))
        print(report)
        report.first_divergence   # e.g. "layer2.0.bn1"
    """
    torch = _torch()
    # a float64 model of integer inputs (token ids) runs in float64 too
    float64 = any(isinstance(t, torch.Tensor) and t.dtype == torch.float64
                  for t in (*inputs, *torch_module.parameters(), *torch_module.buffers()))
    tol = rtol if rtol is not None else (1e-9 if float64 else 1e-4)
    reference = copy.deepcopy(torch_module).train(train)
    t_calls, out_weights, t_grads = _torch_calls(torch, reference, inputs, seed)

    with jax.enable_x64(float64):
        xs = [jnp.asarray(_np(t)) if isinstance(t, torch.Tensor) else t for t in inputs]
        x = xs[0] if len(xs) == 1 else tuple(xs)
        if key is None and train:
            key = jax.random.PRNGKey(0)
        error = None
        run, names = _locate_fn(model, train)
        records: list[Captured] = []
        ours_grads: dict[str, Any] = {}
        try:
            grads, (y, io) = run(params, state, x, key, out_weights)
            records = [Captured(n, i, o, start) for (n, start), (i, o) in zip(names[_signature(params, state, x, key)], io)]
            records.append(Captured("", x, y, -1))
            ours_grads = dict(model.named_parameters(grads))
        except Exception as e:  # noqa: BLE001 -- reported with the rows reached before it, run op by op
            error = f"{type(e).__name__}: {e}"
            with capture() as records:
                try:
                    model(params, state, x, train=train, key=key)
                except Exception:  # noqa: BLE001 -- the same error again
                    pass
            records = list(records)

        # match calls by (name, n-th call of that name), each side in the order calls began
        ours: dict[tuple[str, int], Captured] = {}
        for c in sorted(records, key=lambda c: c.start):
            n = sum(1 for k in ours if k[0] == c.name)
            ours[(c.name, n)] = c
        # A gradient that is zero in exact arithmetic (a conv bias before a train-mode BatchNorm)
        # is rounding noise on both sides: measure it against the largest parameter gradient.
        grad_atol = tol / 100 * max((float(g.abs().max()) for g in t_grads.values() if g.numel()), default=0.0)
        finish = {}
        rows = []
        seen: dict[str, int] = {}
        for order, (name, start, t_in, t_out, kind) in sorted(enumerate(t_calls), key=lambda e: e[1][1]):
            n = seen[name] = seen.get(name, -1) + 1
            c = ours.get((name, n))
            nan = float("nan")
            in_abs, in_rel = _compare(c.input, t_in) if c is not None else (nan, nan)
            out_abs, out_rel = _compare(c.output, t_out) if c is not None else (nan, nan)
            grads = ()
            if n == 0 and (c is not None or error is None):
                sub = reference.get_submodule(name)
                grads = tuple(
                    (full, *(_compare(ours_grads[full], t_grads[full]) if full in ours_grads else (nan, nan)))
                    for full in (f"{name}.{p}" if name else p for p, _ in sub.named_parameters(recurse=False))
                    if full in t_grads
                )
            finish[(name, n)] = order
            rows.append(LocateRow(name, n, kind, in_abs, in_rel, out_abs, out_rel, grads, tol, atol, grad_atol))

    rows = [r._judged(rows) for r in rows]
    causes = [r for r in rows if r.verdict == "DIVERGES"]
    first = min(causes, key=lambda r: finish[(r.name, r.call)]).name if causes else None
    if first is None:
        passed = [r for r in rows if r.captured and not r.output_ok]
        first = min(passed, key=lambda r: finish[(r.name, r.call)]).name if passed else None
    torch_names = {name for name, *_ in t_calls}
    unmatched = tuple(dict.fromkeys(c.name for c in records if c.name not in torch_names))
    return LocateReport(tuple(rows), first, "f64" if float64 else "f32", train, tol, atol, unmatched, error)
