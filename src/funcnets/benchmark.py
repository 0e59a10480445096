"""The benchmark suite: funcnets against PyTorch (eager, and torch.compile where it
works) on the tutorial's workloads, in the same process, interleaved, medians,
warm-up excluded (:func:`funcnets.timing.interleaved`).

    funcnets bench --json results.json --plot ratios.png
    python benchmarks/run.py ...      (the same)
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from funcnets import optim, train
from funcnets.models import LeNet, two_layer
from funcnets.timing import interleaved

__all__ = ["Result", "run", "format_table", "write_json", "plot", "resnet_step_fns", "zoo_step_fns", "machine",
           "peak_memory", "resnet_memory", "gemm_peak_gflops", "torch_gflop"]


class Result(NamedTuple):
    name: str
    torch_ms: float
    funcnets_ms: float
    torch_compile_ms: float | None = None
    peak_mb: float | None = None  # funcnets' process peak RSS, MB (:func:`peak_memory`)
    torch_peak_mb: float | None = None  # torch eager's, measured the same way
    compile_s: float | None = None  # the first-step rows: XLA's compile (JAX's monitoring event)
    memory: dict | None = None  # the whole of :func:`resnet_memory` for this row
    gflop: float | None = None  # the work of one call, counted on torch's side (:func:`torch_gflop`)
    peak_fraction: float | None = None  # funcnets' GFLOP/s over the machine's (:func:`gemm_peak_gflops`)

    @property
    def ratio(self) -> float:
        """How many times faster funcnets is than torch eager (torch_ms / funcnets_ms)."""
        return self.torch_ms / self.funcnets_ms


def machine() -> dict[str, Any]:
    import torch

    dev = jax.devices()[0]
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "jax_device": f"{dev.platform} ({dev.device_kind})",
        "jax": jax.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


# ----------------------------------------------------------------------------- the limit
def gemm_peak_gflops(n: int = 1024, repeats: int = 15) -> float:
    """The machine's limit as the suite states it (issue 26): GFLOP/s of XLA's jitted
    ``n x n @ n x n`` float32 matmul, median of ``repeats`` timed calls after warm-up,
    measured in the same run as the workloads (``2 n^3`` FLOP a call)."""
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    mm = jax.jit(lambda a, b: a @ b)
    ms = interleaved({"gemm": lambda: mm(a, a)}, repeats=repeats)["gemm"]
    return 2 * n**3 / (ms * 1e-3) / 1e9


def torch_gflop(fn: Callable[[], Any]) -> float | None:
    """GFLOP of one call of ``fn`` (a torch step: forward, backward, update), counted by
    ``torch.utils.flop_counter.FlopCounterMode`` (matmuls and convolutions, as FLOP counts
    are usually stated; elementwise work is not counted). The same work as funcnets'
    call, since both run the same model; None where torch cannot count it."""
    try:
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            fn()
        return counter.get_total_flops() / 1e9 or None
    except Exception:  # noqa: BLE001  (a count is a nicety: never fail the suite for it)
        return None


# ----------------------------------------------------------------------------- builders
def _threaded(step, ts, batch):
    """A callable that advances the train state, so donated buffers are never reused."""
    box = [ts]

    def call():
        box[0], metrics = step(box[0], batch)
        return metrics

    return call


def _torch_step(torch, model, params, x, y, compile_: bool = False):
    opt = torch.optim.SGD(params, lr=1e-2, momentum=0.9)

    def step():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return torch.compile(step) if compile_ else step


def resnet_step_fns(batch: int, size: int = 64, frozen: bool = False, torch_compile: bool = False) -> dict[str, Callable]:
    """``{"funcnets": ..., "torch": ..., ["torch.compile": ...]}`` one SGD(momentum) train
    step each of ResNet-18 with a 10-class head; ``frozen`` trains only ``fc``."""
    import torch
    import torchvision

    from funcnets.recipes import build_model

    key = jax.random.PRNGKey(0)
    model, params, state = build_model("resnet18")
    rng = np.random.default_rng(0)
    x = rng.random((batch, 3, size, size), np.float32)
    y = (np.arange(batch) % 10).astype(np.int32)
    opt = optim.sgd(1e-2, momentum=0.9)
    trainable = optim.select(params, include="fc") if frozen else None
    step = train.make_train_step(train.supervised_loss(model), opt, trainable=trainable)
    fns = {"funcnets": _threaded(step, train.create_train_state(params, state, opt, key, trainable),
                                 (jnp.asarray(x), jnp.asarray(y)))}
    variants = [("torch", False)] + ([("torch.compile", True)] if torch_compile else [])
    for name, compile_ in variants:
        tm = torchvision.models.resnet18()
        if frozen:
            for p in tm.parameters():
                p.requires_grad = False
        tm.fc = torch.nn.Linear(512, 10)
        fns[name] = _torch_step(torch, tm, [p for p in tm.parameters() if p.requires_grad],
                                torch.from_numpy(x), torch.from_numpy(y).long(), compile_)
    return fns


def zoo_step_fns(name: str, batch: int = 8, size: int = 64, torch_compile: bool = False,
                 **kwargs: Any) -> dict[str, Callable]:
    """One SGD(momentum) train step of the zoo model ``name`` (a name of
    :func:`funcnets.models.list_models`) with a 10-class head, ``(batch, 3, size, size)``
    inputs, train mode (dropout, stochastic depth), in funcnets and in torch on the same
    weights: torchvision's ``get_model(name, num_classes=10, **kwargs)`` initialises them
    (seed 0) and funcnets loads its ``state_dict``. ``kwargs``: builder arguments for both
    (e.g. ``image_size=64`` for ViT)."""
    import torch
    import torchvision

    from funcnets import torch_io
    from funcnets.models import get_model

    torch.manual_seed(0)
    tm = torchvision.models.get_model(name, weights=None, num_classes=10, **kwargs)
    model = get_model(name, num_classes=10, **kwargs)
    loaded = torch_io.load_state_dict(model, tm.state_dict())
    rng = np.random.default_rng(0)
    x = rng.random((batch, 3, size, size), np.float32)
    y = (np.arange(batch) % 10).astype(np.int32)
    opt = optim.sgd(1e-2, momentum=0.9)
    step = train.make_train_step(train.supervised_loss(model), opt)
    ts = train.create_train_state(loaded.params, loaded.state, opt, jax.random.PRNGKey(0))
    fns = {"funcnets": _threaded(step, ts, (jnp.asarray(x), jnp.asarray(y)))}
    state_dict = tm.state_dict()
    for variant, compile_ in [("torch", False)] + ([("torch.compile", True)] if torch_compile else []):
        m = torchvision.models.get_model(name, weights=None, num_classes=10, **kwargs)
        m.load_state_dict(state_dict)
        m.train()
        fns[variant] = _torch_step(torch, m, list(m.parameters()), torch.from_numpy(x), torch.from_numpy(y).long(),
                                   compile_)
    return fns


def lenet_step_fns(batch: int = 64, torch_compile: bool = False) -> dict[str, Callable]:
    import torch

    from funcnets.parity import torch_lenet

    key = jax.random.PRNGKey(0)
    model = LeNet()
    params, state = model.init(key)
    rng = np.random.default_rng(0)
    x, y = rng.random((batch, 1, 32, 32), np.float32), rng.integers(0, 10, batch).astype(np.int32)
    opt = optim.sgd(1e-2, momentum=0.9)
    step = train.make_train_step(train.supervised_loss(model), opt)
    fns = {"funcnets": _threaded(step, train.create_train_state(params, state, opt, key), (jnp.asarray(x), jnp.asarray(y)))}
    for name, compile_ in [("torch", False)] + ([("torch.compile", True)] if torch_compile else []):
        tnet = torch_lenet()
        fns[name] = _torch_step(torch, tnet, list(tnet.parameters()), torch.from_numpy(x), torch.from_numpy(y).long(), compile_)
    return fns


def two_layer_fns(torch_compile: bool = False) -> dict[str, Callable]:
    """500 SGD steps of the tutorial's two-layer net (64×1000→100→10, lr=1e-6)."""
    import torch

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((64, 1000), np.float32), rng.standard_normal((64, 10), np.float32)
    w1, w2 = rng.standard_normal((1000, 100), np.float32), rng.standard_normal((100, 10), np.float32)
    jw = {"w1": jnp.asarray(w1), "w2": jnp.asarray(w2)}
    jx, jy = jnp.asarray(x), jnp.asarray(y)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)

    def torch_step(a, b):
        a.requires_grad_(True)
        b.requires_grad_(True)
        loss = (tx.mm(a).clamp(min=0).mm(b) - ty).pow(2).sum()
        ga, gb = torch.autograd.grad(loss, (a, b))
        return (a - 1e-6 * ga).detach(), (b - 1e-6 * gb).detach()

    def loop(step):
        def run():
            a, b = torch.from_numpy(w1.copy()), torch.from_numpy(w2.copy())
            for _ in range(500):
                a, b = step(a, b)
            return a

        return run

    fns = {"funcnets": lambda: two_layer.train(jw, jx, jy, 1e-6, 500)[1], "torch": loop(torch_step)}
    if torch_compile:
        fns["torch.compile"] = loop(torch.compile(torch_step))
    return fns


_FIRST_STEP = textwrap.dedent("""
    import json, time
    t0 = time.perf_counter()
    {setup}
    extra = {{}}
    t1 = time.perf_counter()
    {step}
    t2 = time.perf_counter()
    print(json.dumps({{"setup_s": t1 - t0, "first_step_s": t2 - t1, **extra}}))
""")

# JAX's own events for the phases of a jit's first call (it records them on every path)
_PHASE_EVENTS = {
    "/jax/core/compile/jaxpr_trace_duration": "trace_s",
    "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower_s",
    "/jax/core/compile/backend_compile_duration": "compile_s",  # a persistent-cache hit: its read
}


def _first_step_seconds(setup: str, step: str, env: dict[str, str]) -> dict[str, float]:
    code = _FIRST_STEP.format(setup=setup.strip(), step=step.strip())
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env}, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


_PHASES = ("trace_s", "lower_s", "compile_s", "load_s", "save_s", "run_s")


def first_step_times(repeats: int = 3, batch: int = 8, size: int = 64) -> dict[str, Any]:
    """Seconds to the end of the first ResNet-18 train step (batch 8, 3×64×64, SGD with
    momentum) in a new process, after imports, model init and the train state (the
    ``setup_s`` figure): funcnets with empty caches (``cold``), with JAX's persistent
    compilation cache warm and the AOT cache off (``warm``: trace, lower, read the
    compiled program), with the AOT cache warm (``aot``: load the serialised step, no
    tracing; what ``funcnets warmup`` prepares), and torch eager.

    Each of ``repeats`` rounds runs the four in fresh processes on fresh cache
    directories; the figures are medians over the rounds (the machine is shared, single
    runs vary). ``phases[mode]`` splits funcnets' figures: ``trace_s``, ``lower_s``,
    ``compile_s`` (JAX's monitoring events; a cache hit's read for ``warm``),
    ``load_s``/``save_s`` (the AOT cache's read, or its serialise-and-write after a
    compile), and ``run_s``: the rest — the first execution, the cache key, dispatch.
    """
    setup = (
        "import jax, jax.numpy as jnp, jax.monitoring\n"
        "from funcnets import aot, config, nn, optim, train\nfrom funcnets.models import resnet18\n"
        "config.enable_compilation_cache()\n"
        f"phases = {{}}; names = {_PHASE_EVENTS!r}\n"
        "jax.monitoring.register_event_duration_secs_listener(\n"
        "    lambda e, s, **kw: phases.__setitem__(names[e], phases.get(names[e], 0.0) + s) if e in names else None)\n"
        "model = resnet18(10); params, state = model.init(jax.random.PRNGKey(0))\n"
        "opt = optim.sgd(1e-2, momentum=0.9)\n"
        "ts = train.create_train_state(params, state, opt, jax.random.PRNGKey(0))\n"
        f"x = jnp.zeros(({batch}, 3, {size}, {size})); y = jnp.zeros(({batch},), jnp.int32); jax.block_until_ready((ts, x))"
    )
    step = (
        "phases.clear()\n"
        "out = train.make_train_step(train.supervised_loss(model), opt)(ts, (x, y)); jax.block_until_ready(out)\n"
        "extra = {**phases, **{k: v for k, v in aot.last_timings.items() if k in ('load_s', 'save_s')}}"
    )
    torch_setup = (
        "import torch, torchvision\nm = torchvision.models.resnet18(num_classes=10)\n"
        "opt = torch.optim.SGD(m.parameters(), lr=1e-2, momentum=0.9)\n"
        f"x = torch.zeros({batch}, 3, {size}, {size}); y = torch.zeros({batch}, dtype=torch.long)"
    )
    torch_step = "opt.zero_grad(); torch.nn.functional.cross_entropy(m(x), y).backward(); opt.step()"
    runs: dict[str, list[dict[str, float]]] = {"cold": [], "warm": [], "aot": [], "torch": []}
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as cache:
            env = {"FUNCNETS_COMPILATION_CACHE": cache, "FUNCNETS_AOT_CACHE": ""}
            runs["cold"].append(_first_step_seconds(setup, step, env))  # fills both caches
            runs["warm"].append(_first_step_seconds(setup, step, {**env, "FUNCNETS_AOT_CACHE": "0"}))
            runs["aot"].append(_first_step_seconds(setup, step, env))
        runs["torch"].append(_first_step_seconds(torch_setup, torch_step, {}))
    for r in runs["cold"] + runs["warm"] + runs["aot"]:
        r["run_s"] = r["first_step_s"] - sum(r.get(k, 0.0) for k in _PHASES[:-1])

    def median(mode: str, k: str) -> float:
        return float(np.median([r.get(k, 0.0) for r in runs[mode]]))

    return {
        "funcnets_cold": median("cold", "first_step_s"),
        "funcnets_warm": median("warm", "first_step_s"),
        "funcnets_aot": median("aot", "first_step_s"),
        "torch": median("torch", "first_step_s"),
        "setup_s": {m: median(m, "setup_s") for m in runs},
        "phases": {m: {k: median(m, k) for k in _PHASES} for m in ("cold", "warm", "aot")},
        "repeats": repeats,
    }


# ----------------------------------------------------------------------------- memory
_MEMORY = textwrap.dedent("""
    import gc, json, os, resource, sys, time

    def _status(field):  # MB, from the kernel's accounting of this process
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
        raise KeyError(field)

    def _reset_peak():  # VmHWM := VmRSS now (Linux >= 4.0); False where not allowed
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False

    wait = lambda out: out
    {imports}
    gc.collect()
    imports_mb = _status("VmRSS")
    {setup}
    gc.collect()
    baseline_mb, setup_peak_mb = _status("VmRSS"), _status("VmHWM")
    resettable = _reset_peak()
    t0 = time.perf_counter()
    wait(step())
    first_s = time.perf_counter() - t0
    first_peak_mb = _status("VmHWM")
    for _ in range({warmup} - 1):
        wait(step())
    gc.collect()
    _reset_peak()
    for _ in range({steps}):
        wait(step())
    step_peak_mb = _status("VmHWM")
    print(json.dumps(dict(
        imports_mb=imports_mb, baseline_mb=baseline_mb, setup_peak_mb=setup_peak_mb, first_peak_mb=first_peak_mb,
        step_peak_mb=step_peak_mb, end_mb=_status("VmRSS"), first_s=first_s, resettable=resettable,
        ru_maxrss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))
""")


def peak_memory(imports: str, setup: str, steps: int = 5, warmup: int = 2,
                env: dict[str, str] | None = None) -> dict[str, float]:
    """Resident memory (RSS, MB) of a train step, in a fresh Python process (Linux).

    ``imports`` (Python source) imports the libraries; ``setup`` builds the model, the
    batch and the optimizer and defines ``step()``, one train step, and optionally
    ``wait(out)`` (e.g. ``jax.block_until_ready``) applied to what ``step()`` returns.
    The process runs ``warmup`` steps (the first one compiles, for JAX) then ``steps``
    more, and reports (all MB, from ``/proc/self/status``; the peak is the kernel's
    high-water mark ``VmHWM``, reset to the current RSS between phases through
    ``/proc/self/clear_refs``):

    * ``imports_mb``: RSS after ``imports``; ``baseline_mb``: RSS after ``setup`` (weights,
      batch, and whatever state the setup creates: funcnets' ``create_train_state``
      makes the momentum buffers here, torch's SGD at its first step);
    * ``first_peak_mb``: the peak during the first step (for funcnets: trace, XLA's
      compile and the first run), ``step_peak_mb``: the peak during the ``steps`` steps
      after warm-up (run time alone);
    * ``peak_mb``: the process's peak over setup, first step and steps — what ``top`` or
      an out-of-memory killer sees; ``step_mb = step_peak_mb - baseline_mb``: what a step
      needs beyond the weights, batch and setup state; ``train_mb = peak_mb - imports_mb``:
      everything training adds to the imported libraries (the same content on both
      sides: weights, batch, optimizer state, compile, activations, gradients);
    * ``first_s``: the first step's seconds; ``ru_maxrss_mb``: ``getrusage``'s peak,
      for reference only — a child process's ``ru_maxrss`` starts at its parent's peak
      (Linux carries the parent's high-water mark across ``fork``/``vfork`` + ``exec``),
      so a benchmark process that has grown to gigabytes would report gigabytes for
      every child.
    """
    code = _MEMORY.format(imports=imports.strip(), setup=setup.strip(), steps=steps, warmup=warmup)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, **(env or {})})
    if out.returncode != 0:
        raise RuntimeError(f"peak_memory: the measuring process failed:\n{out.stderr[-3000:]}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    r["peak_mb"] = max(r["setup_peak_mb"], r["first_peak_mb"], r["step_peak_mb"])
    r["step_mb"] = r["step_peak_mb"] - r["baseline_mb"]
    r["train_mb"] = r["peak_mb"] - r["imports_mb"]
    return r


def resnet_memory(batch: int, size: int = 64, steps: int = 5, aot_cache: str | None = None,
                  env: dict[str, str] | None = None) -> dict[str, dict[str, float]]:
    """:func:`peak_memory` of the suite's ResNet-18 train step (:func:`resnet_step_fns`:
    SGD momentum 0.9, cross-entropy, 10-class head, ``(batch, 3, size, size)`` float32)
    for ``"funcnets"`` and ``"torch"`` eager, each in its own fresh process that imports
    only its own library. funcnets' first step compiles (the AOT cache off) unless
    ``aot_cache`` names an AOT cache directory: then a first process fills it and a
    second one, loading the step without compiling, is measured. ``env``: extra
    environment for both processes (e.g. glibc's ``MALLOC_MMAP_THRESHOLD_``)."""
    data = (f"rng = np.random.default_rng(0); x = rng.random(({batch}, 3, {size}, {size}), np.float32)\n"
            f"y = (np.arange({batch}) % 10)")
    funcnets_setup = (
        f"{data}\nx, y = jnp.asarray(x), jnp.asarray(y, jnp.int32)\n"
        "model, params, state = recipes.build_model('resnet18')\nopt = optim.sgd(1e-2, momentum=0.9)\n"
        "box = [train.create_train_state(params, state, opt, jax.random.PRNGKey(0))]\n"
        "del params, state  # create_train_state copied them (the step donates its state)\n"
        "fn = train.make_train_step(train.supervised_loss(model), opt)\n"
        "def step():\n    box[0], metrics = fn(box[0], (x, y))\n    return metrics\n"
        "wait = jax.block_until_ready\njax.block_until_ready(box)"
    )
    torch_setup = (
        f"{data}\nx, y = torch.from_numpy(x), torch.from_numpy(y).long()\n"
        "m = torchvision.models.resnet18(); m.fc = torch.nn.Linear(512, 10)\n"
        "opt = torch.optim.SGD(m.parameters(), lr=1e-2, momentum=0.9)\n"
        "def step():\n    opt.zero_grad()\n    loss = torch.nn.functional.cross_entropy(m(x), y)\n"
        "    loss.backward()\n    opt.step()\n    return loss"
    )
    funcnets_env = {**(env or {}), "FUNCNETS_AOT_CACHE": aot_cache or "0", "FUNCNETS_COMPILATION_CACHE": "0"}
    imports = "import jax, jax.numpy as jnp, numpy as np\nfrom funcnets import optim, recipes, train"
    if aot_cache:
        peak_memory(imports, funcnets_setup, steps=1, warmup=1, env=funcnets_env)  # compiles and saves
    return {
        "funcnets": peak_memory(imports, funcnets_setup, steps=steps, env=funcnets_env),
        "torch": peak_memory("import numpy as np, torch, torchvision", torch_setup, steps=steps, env=env),
    }


# ----------------------------------------------------------------------------- suite
WORKLOADS: dict[str, tuple[Callable[..., dict[str, Callable]], dict]] = {
    # name: (builder, builder kwargs)
    "two-layer net, 500 SGD steps (64x1000->100->10)": (two_layer_fns, {}),
    "LeNet train step, batch 64, SGD": (lenet_step_fns, {"batch": 64}),
    "ResNet-18 train step, batch 8, 3x64x64": (resnet_step_fns, {"batch": 8}),
    "ResNet-18 train step, batch 32, 3x64x64": (resnet_step_fns, {"batch": 32}),
    "ResNet-18 frozen-trunk step, batch 8": (resnet_step_fns, {"batch": 8, "frozen": True}),
    # the zoo (issue 24): batch 8 at 3x64x64 fits a 2-core machine; ViT-B/16 is built for
    # image_size 64 (16 patches + the class token); the same for both libraries
    "ResNet-50 train step, batch 8, 3x64x64": (zoo_step_fns, {"name": "resnet50"}),
    "MobileNetV2 train step, batch 8, 3x64x64": (zoo_step_fns, {"name": "mobilenet_v2"}),
    "EfficientNet-B0 train step, batch 8, 3x64x64": (zoo_step_fns, {"name": "efficientnet_b0"}),
    "ConvNeXt-T train step, batch 8, 3x64x64": (zoo_step_fns, {"name": "convnext_tiny"}),
    "ViT-B/16 train step, batch 8, 3x64x64 (image_size 64)": (zoo_step_fns, {"name": "vit_b_16", "image_size": 64}),
}


# workloads whose peak memory the suite measures too (issue 26): the ResNet-18 batch
MEMORY = {"ResNet-18 train step, batch 8, 3x64x64": 8, "ResNet-18 train step, batch 32, 3x64x64": 32}


def run(only: list[str] | None = None, torch_compile: bool = True, repeats: int = 15,
        first_step: bool = True, memory: bool = True, log: Callable[[str], None] = print) -> list[Result]:
    """The suite's rows; ``memory``: also :func:`resnet_memory` for the :data:`MEMORY`
    workloads (two fresh processes each, after the timings). Each timed row also gets
    ``gflop`` (one call's work) and ``peak_fraction``: funcnets' GFLOP/s against
    :func:`gemm_peak_gflops`, measured first in the same run."""
    results = []
    peak = gemm_peak_gflops()
    log(f"machine limit: XLA's 1024^3 float32 matmul at {peak:.0f} GFLOP/s")
    for name, (builder, kwargs) in WORKLOADS.items():
        if only and not any(o.lower() in name.lower() for o in only):
            continue
        log(f"running: {name}")
        fns = builder(**kwargs)
        gflop = torch_gflop(fns["torch"])  # also one more warm-up call of torch's
        ms = interleaved(fns, repeats=repeats)
        compiled = None
        if torch_compile:
            try:  # torch.compile needs a working C++ toolchain; report n/a where it fails
                cfns = builder(**kwargs, torch_compile=True)
                compiled = interleaved({"torch.compile": cfns["torch.compile"]}, repeats=repeats)["torch.compile"]
            except Exception as e:  # noqa: BLE001
                log(f"  torch.compile unavailable: {type(e).__name__}: {str(e).splitlines()[0][:120]}")
        mem = None
        if memory and name in MEMORY:
            log(f"  peak memory, separate processes (batch {MEMORY[name]})")
            del fns  # the measurement runs in other processes; free this one's copies first
            mem = resnet_memory(MEMORY[name])
        results.append(Result(name, ms["torch"], ms["funcnets"], compiled,
                              peak_mb=mem and mem["funcnets"]["peak_mb"], torch_peak_mb=mem and mem["torch"]["peak_mb"],
                              memory=mem, gflop=gflop,
                              peak_fraction=gflop and gflop / (ms["funcnets"] * 1e-3) / peak))
    if first_step and (not only or any("first" in o.lower() for o in only)):
        log("running: ResNet-18 first step in a new process")
        t = first_step_times()
        for label, mode in (("new process (compile), cold cache", "cold"),
                            ("new process, warm compilation cache", "warm"),
                            ("new process, AOT cache warm (funcnets warmup)", "aot")):
            results.append(Result(f"ResNet-18 first step, {label}", t["torch"] * 1e3, t[f"funcnets_{mode}"] * 1e3,
                                  compile_s=t["phases"][mode]["compile_s"]))
        for mode, phases in t["phases"].items():
            log(f"  first step, {mode}: " + ", ".join(f"{k[:-2]} {v:.2f} s" for k, v in phases.items()))
    return results


def _memory_cell(r: Result) -> str:
    if r.peak_mb is None or r.torch_peak_mb is None:
        return f"{'':>17}"
    return f"{r.torch_peak_mb:7.0f} / {r.peak_mb:<5.0f} MB"


def format_table(results: list[Result]) -> str:
    w = max(len(r.name) for r in results) if results else 10
    lines = [f"{'workload':<{w}}  {'torch eager':>12}  {'torch.compile':>13}  {'funcnets':>10}  {'speed-up':>8}"
             f"  {'of limit':>8}  {'peak RSS torch/fn':>17}", "-" * (w + 82)]
    for r in results:
        tc = f"{r.torch_compile_ms:10.1f} ms" if r.torch_compile_ms else f"{'n/a':>13}"
        limit = f"{r.peak_fraction:7.0%}" if r.peak_fraction else f"{'':>7}"
        lines.append(f"{r.name:<{w}}  {r.torch_ms:9.1f} ms  {tc}  {r.funcnets_ms:7.1f} ms  {r.ratio:7.2f}×"
                     f"  {limit:>8}  {_memory_cell(r)}")
    lines.append("speed-up = torch eager / funcnets (medians of interleaved runs, warm-up excluded)")
    if any(r.peak_fraction for r in results):
        lines.append("of limit = funcnets' GFLOP/s (matmul and convolution FLOPs, counted by torch's "
                     "FlopCounterMode) over XLA's 1024^3 float32 matmul in the same run")
    if any(r.peak_mb is not None for r in results):
        lines.append("peak RSS = the peak resident memory of a fresh process per library, imports included "
                     "(funcnets.benchmark.peak_memory)")
        for r in results:
            if r.memory:
                f, t = r.memory["funcnets"], r.memory["torch"]
                lines.append(f"  {r.name}: imports {t['imports_mb']:.0f} / {f['imports_mb']:.0f} MB, training adds "
                             f"{t['train_mb']:.0f} / {f['train_mb']:.0f} MB (first step's peak {t['first_peak_mb']:.0f}"
                             f" / {f['first_peak_mb']:.0f}, steady steps' {t['step_peak_mb']:.0f} / "
                             f"{f['step_peak_mb']:.0f}; a step over its setup {t['step_mb']:.0f} / {f['step_mb']:.0f})")
    return "\n".join(lines)


def write_json(results: list[Result], path: str | os.PathLike) -> None:
    rows = []
    for r in results:
        row = {"name": r.name, "torch_ms": r.torch_ms, "funcnets_ms": r.funcnets_ms, "ratio": r.ratio,
               "torch_compile_ms": r.torch_compile_ms}
        # the newer fields only where they apply
        row.update({k: v for k, v in (("peak_mb", r.peak_mb), ("torch_peak_mb", r.torch_peak_mb),
                                      ("compile_s", r.compile_s), ("memory", r.memory), ("gflop", r.gflop),
                                      ("peak_fraction", r.peak_fraction)) if v is not None})
        rows.append(row)
    Path(path).write_text(json.dumps({"machine": machine(), "results": rows}, indent=1))


def plot(results: list[Result], path: str | os.PathLike) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 0.5 * len(results) + 1.5))
    names = [r.name for r in results][::-1]
    ratios = [r.ratio for r in results][::-1]
    ax.barh(names, ratios, color=["tab:green" if v >= 1 else "tab:red" for v in ratios])
    ax.axvline(1.0, color="black", lw=1)
    for i, v in enumerate(ratios):
        ax.text(v, i, f" {v:.2f}×", va="center")
    ax.set_xlabel("speed-up over PyTorch eager (higher is better)")
    ax.set_title(f"funcnets vs PyTorch — {machine()['jax_device']}, {os.cpu_count()} cores")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
