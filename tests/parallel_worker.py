"""Checks that need several (simulated) devices or processes; run by test_parallel.py in
a subprocess, because the device count is fixed when JAX starts.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/parallel_worker.py CHECK
Exits non-zero (with the failing assertion) when a check fails.
"""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

from funcnets import nn, optim, parallel, train
from funcnets.models import LeNet, resnet18
from funcnets.torch_io import flatten


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


_INITS = {}


def _init(model, seed=0):
    """``model.init`` once per model and seed, in float32 (callers cast): ResNet-18's init
    compiles its ops anew for each dtype, ~10 s of CPU each time."""
    key = (repr(model), seed)
    if key not in _INITS:
        with jax.enable_x64(False):
            _INITS[key] = jax.device_get(model.init(jax.random.PRNGKey(seed)))
    return _INITS[key]


def _run(model, steps, shape, mesh, dtype, batch_norm="sync", fsdp=False, batch=16, seed=0, lr=0.05):
    params, state = _init(model, seed)
    params = jax.tree_util.tree_map(lambda a: a.astype(dtype), params)
    state = jax.tree_util.tree_map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, state)
    opt = optim.sgd(lr, momentum=0.9)
    ts = train.create_train_state(params, state, opt, jax.random.PRNGKey(1))
    step = train.make_train_step(train.supervised_loss(model), opt, batch_norm=batch_norm)
    if mesh is not None:
        ts = parallel.distribute(ts, mesh, fsdp=fsdp)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        b = (rng.standard_normal((batch,) + shape).astype(dtype), rng.integers(0, 10, batch).astype(np.int32))
        b = parallel.shard_batch(b, mesh) if mesh is not None else tuple(jnp.asarray(v) for v in b)
        ts, _ = step(ts, b)
    return ts


def _compare(a, b, tol, what):
    fa, fb = {**flatten(a.params), **flatten(a.model_state)}, {**flatten(b.params), **flatten(b.model_state)}
    worst = max((rel(fa[k], fb[k]), k) for k in fb)
    print(f"{what}: worst relative difference {worst[0]:.2e} ({worst[1]})")
    assert worst[0] <= tol, f"{what}: {worst[1]} differs by {worst[0]:.2e} > {tol:.0e}"


def check_many_equals_one(name):
    """Training on 8 devices equals 1 device on the same global batch: 20 steps of LeNet,
    2 of ResNet-18 on 16x16 images (its float64 steps dominate the test suite's time: at
    32x32 each took 4-8 s; 16x16 still leaves every stage a non-trivial batch of
    statistics: layer1 4x4, layer2 2x2, layer3 and layer4 1x1 over the 16 images). Both
    dtypes start from the same float32 init (``_init``).

    LeNet: 1e-6 relative in float32, 1e-12 in float64. ResNet-18 (SyncBatchNorm): 1e-12
    in float64. Its float32 *trajectory* is ill-conditioned (BatchNorm cancels most of
    the gradient; torch's own float32 and float64 gradients differ by up to 9e-2), so in
    float32 the train-mode forward pass is held to 1e-5 (20 BatchNorm layers of float32
    reductions in another order: measured 3.0e-6 at 16x16, the size of funcnets-vs-torch float32
    differences) and the trained result must be no farther
    from the float64 trajectory than the 1-device float32 result is.
    """
    assert jax.device_count() == 8, jax.devices()
    model, shape = (LeNet(), (1, 32, 32)) if name == "lenet" else (resnet18(10), (3, 16, 16))
    batch = 16
    mesh = parallel.data_mesh()
    first = jax.devices()[0]
    lr = float(os.environ.get("LR", 0.05 if name == "lenet" else 0.002))
    steps = 20 if name == "lenet" else 2
    with jax.enable_x64(True):
        with jax.default_device(first):
            ref64 = _run(model, steps, shape, None, np.float64, lr=lr, batch=batch)
        _compare(_run(model, steps, shape, mesh, np.float64, lr=lr, batch=batch), ref64, 1e-12, f"{name} float64 8 devices vs 1")
        ref64 = jax.device_get(ref64)
    with jax.default_device(first):
        single = _run(model, steps, shape, None, np.float32, lr=lr, batch=batch)
    many = _run(model, steps, shape, mesh, np.float32, lr=lr, batch=batch)
    spec = many.params["fc3" if name == "lenet" else "fc"]["weight"].sharding
    assert len(spec.device_set) == 8, spec
    if name == "lenet":
        _compare(many, single, 1e-6, "lenet float32 8 devices vs 1")
        return
    x = np.random.default_rng(5).standard_normal((batch,) + shape).astype(np.float32)
    params, state = _init(model)
    forward = jax.jit(lambda p, s, x: model(p, s, x, train=True)[0])
    y1, y8 = forward(params, state, jnp.asarray(x)), forward(params, state, parallel.shard_batch(x, mesh))
    # oneDNN's custom calls would be replicated on every device: several devices keep XLA's
    assert "funcnets_conv" not in forward.lower(params, state, parallel.shard_batch(x, mesh)).as_text()
    print(f"resnet float32 forward 8 devices vs 1: {rel(y8, y1):.2e}")
    assert rel(y8, y1) <= 1e-5, rel(y8, y1)
    flat = lambda t: {**flatten(t.params), **flatten(t.model_state)}  # noqa: E731
    r64, f1, f8 = flat(ref64), flat(single), flat(many)
    d1 = max(rel(f1[k], r64[k]) for k in r64 if "num_batches" not in k)
    d8 = max(rel(f8[k], r64[k]) for k in r64 if "num_batches" not in k)
    print(f"resnet float32 after {steps} steps, distance to float64: 1 device {d1:.2e}, 8 devices {d8:.2e}")
    assert d8 <= 2 * d1 + 1e-6, (d8, d1)


def check_fsdp():
    mesh = parallel.data_mesh()
    rep = _run(LeNet(), 5, (1, 32, 32), mesh, np.float32)
    sh = _run(LeNet(), 5, (1, 32, 32), mesh, np.float32, fsdp=True)
    w = sh.params["fc1"]["weight"]  # (120, 576): 576 = 8 * 72, split along it
    assert w.sharding.shard_shape(w.shape) == (120, 72), w.sharding
    _compare(sh, rep, 1e-6, "fsdp vs replicated")


def check_per_device_matches_torch_ddp():
    """per-device BatchNorm == DDP's per-replica BatchNorm (rank 0's running stats)."""
    import torch

    from funcnets import torch_io

    jax.config.update("jax_enable_x64", True)
    torch.manual_seed(0)
    tmodel = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                                 torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 10)).double()
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(144, 10))
    loaded = torch_io.load_state_dict(model, tmodel.state_dict())
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((16, 1, 6, 6)), rng.integers(0, 10, 16)
    # DDP: 8 replicas start from the same weights and rank 0's buffers, each sees its 2 samples,
    # the loss is each replica's mean, gradients are averaged across replicas
    replicas = [torch.nn.Sequential(*[m for m in __import__("copy").deepcopy(tmodel)]) for _ in range(8)]
    grads = None
    for r, rep in enumerate(replicas):
        rep.train()
        loss = torch.nn.functional.cross_entropy(rep(torch.tensor(x[2 * r: 2 * r + 2])), torch.tensor(y[2 * r: 2 * r + 2]))
        g = torch.autograd.grad(loss, list(rep.parameters()))
        grads = g if grads is None else [a + b for a, b in zip(grads, g)]
    with torch.no_grad():
        for p, g in zip(tmodel.parameters(), grads):
            p -= 0.1 * g / 8
    opt = optim.sgd(0.1)
    ts = parallel.distribute(train.create_train_state(loaded.params, loaded.state, opt, jax.random.PRNGKey(0)),
                             parallel.data_mesh())
    step = train.make_train_step(train.supervised_loss(model), opt, batch_norm="per-device")
    ts, _ = step(ts, parallel.shard_batch((jnp.asarray(x), jnp.asarray(y, jnp.int32)), parallel.data_mesh()))
    ours = dict(model.named_parameters(ts.params))
    for n, p in tmodel.named_parameters():
        assert rel(ours[n], p.detach().numpy()) < 1e-10, (n, rel(ours[n], p.detach().numpy()))
    buffers = dict(model.named_buffers(ts.model_state))
    for n, b in replicas[0].named_buffers():  # rank 0's running statistics
        if "running" in n:
            assert rel(buffers[n], b.numpy()) < 1e-10, (n, rel(buffers[n], b.numpy()))
    # and it really differs from the synchronised mode
    sync = train.make_train_step(train.supervised_loss(model), opt, batch_norm="sync")
    ts2 = parallel.distribute(train.create_train_state(loaded.params, loaded.state, opt, jax.random.PRNGKey(0)),
                              parallel.data_mesh())
    ts2, _ = sync(ts2, parallel.shard_batch((jnp.asarray(x), jnp.asarray(y, jnp.int32)), parallel.data_mesh()))
    assert rel(ts2.params["4"]["weight"], ours["4.weight"]) > 1e-6
    print("per-device BatchNorm matches torch DDP replicas")


def check_multihost(process_id, num_processes, port, out):
    """One of several processes on loopback: train LeNet 5 steps SPMD, process 0 saves params."""
    parallel.initialize(f"127.0.0.1:{port}", num_processes, process_id)
    assert jax.process_count() == num_processes and jax.device_count() == num_processes * jax.local_device_count()
    mesh = parallel.data_mesh()
    model = LeNet()
    params, state = model.init(jax.random.PRNGKey(0))
    opt = optim.sgd(0.05, momentum=0.9)
    ts = parallel.distribute(train.create_train_state(params, state, opt, jax.random.PRNGKey(1)), mesh)
    step = train.make_train_step(train.supervised_loss(model), opt)
    rng = np.random.default_rng(0)
    per = 16 // num_processes
    for _ in range(5):
        x, y = rng.standard_normal((16, 1, 32, 32)).astype(np.float32), rng.integers(0, 10, 16).astype(np.int32)
        local = (x[process_id * per:(process_id + 1) * per], y[process_id * per:(process_id + 1) * per])
        ts, _ = step(ts, parallel.shard_batch(local, mesh))
    from jax.experimental import multihost_utils

    full = multihost_utils.process_allgather(ts.params, tiled=True)
    if process_id == 0:
        np.savez(out, **{k: np.asarray(v) for k, v in flatten(full).items()})
    jax.distributed.shutdown()


def check_single_reference(out):
    """The same 5 LeNet steps in one process on one device."""
    model = LeNet()
    params, state = model.init(jax.random.PRNGKey(0))
    opt = optim.sgd(0.05, momentum=0.9)
    ts = train.create_train_state(params, state, opt, jax.random.PRNGKey(1))
    step = train.make_train_step(train.supervised_loss(model), opt)
    rng = np.random.default_rng(0)
    for _ in range(5):
        x, y = rng.standard_normal((16, 1, 32, 32)).astype(np.float32), rng.integers(0, 10, 16).astype(np.int32)
        ts, _ = step(ts, (jnp.asarray(x), jnp.asarray(y)))
    np.savez(out, **{k: np.asarray(v) for k, v in flatten(ts.params).items()})


def check_cli_devices_all(out):
    """`funcnets train --devices all` trains data-parallel over the 8 devices."""
    from funcnets.cli import main

    assert main(["train", "--devices", "all", "--epochs", "2", "--batch-size", "64", "--out", out, "--no-progress"]) == 0
    import json

    history = json.loads(open(os.path.join(out, "history.json")).read())
    assert history[-1]["test_accuracy"] > 0.5, history


def run_checks(specs):
    """Several checks in one process (one start-up of jax and torch, shared compilations):
    each spec is CHECK or CHECK:ARG; each prints ``=== CHECK[:ARG] ok`` or ``=== CHECK[:ARG]
    FAILED`` with its traceback, and the others still run. per_device turns on x64 for the
    whole process, so it must come last."""
    import time
    import traceback

    checks = {"lenet": lambda: check_many_equals_one("lenet"), "resnet": lambda: check_many_equals_one("resnet"),
              "fsdp": check_fsdp, "per_device": check_per_device_matches_torch_ddp, "cli": check_cli_devices_all}
    failed = False
    for spec in specs:
        name, _, arg = spec.partition(":")
        print(f"=== {name} start", flush=True)
        t, cpu = time.perf_counter(), time.process_time()
        try:
            checks[name](*([arg] if arg else []))
            print(f"=== {name} ok ({time.perf_counter() - t:.1f} s, {time.process_time() - cpu:.1f} s CPU)", flush=True)
        except BaseException:  # noqa: BLE001  reported, and the next check still runs
            failed = True
            print(f"=== {name} FAILED\n{traceback.format_exc()}", flush=True)
    return failed


if __name__ == "__main__":
    check, *args = sys.argv[1:]
    if check == "checks":
        sys.stdout.flush()
        os._exit(1 if run_checks(args) else 0)
    elif check == "many_equals_one":
        check_many_equals_one(*args)
    elif check == "fsdp":
        check_fsdp()
    elif check == "per_device":
        check_per_device_matches_torch_ddp()
    elif check == "multihost":
        check_multihost(int(args[0]), int(args[1]), int(args[2]), args[3])
    elif check == "cli":
        check_cli_devices_all(args[0])
    elif check == "single":
        check_single_reference(args[0])
    else:
        raise SystemExit(f"unknown check {check!r}")
    os._exit(0)  # skip interpreter teardown of the distributed client
