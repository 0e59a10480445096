"""``funcnets demo``: the tutorial's story end to end on real bundled data, in about a
minute on a 2-core CPU. Each section prints what the tutorial prints."""

from __future__ import annotations

import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from funcnets import data, optim, recipes, torch_io
from funcnets.autograd import backward, graph
from funcnets.models import LeNet, two_layer


def _section(title: str) -> None:
    print(f"\n=== {title} " + "=" * max(0, 70 - len(title)))


def run(out: Path, parity: bool = True) -> int:
    t0 = time.perf_counter()
    out = recipes.check_writable(out)

    _section("1. autograd: Q = 3a³ − b², Q.backward(gradient=[1, 1])")
    a, b = jnp.array([2.0, 3.0]), jnp.array([6.0, 4.0])
    q = lambda a, b: 3 * a**3 - b**2  # noqa: E731
    ga, gb = backward(q, a, b, gradient=jnp.ones(2))
    print(f"a.grad = {ga}  (9a² = {9 * a**2})\nb.grad = {gb}  (-2b = {-2 * b})")
    print(graph(q, a, b))

    _section("2. two-layer network: relu(x @ w1) @ w2, 500 SGD steps as one program")
    kd, kw = jax.random.split(jax.random.PRNGKey(0))
    x, y = two_layer.data(kd)
    t = time.perf_counter()
    _, losses = two_layer.train(two_layer.init(kw), x, y, 1e-6, 500)
    losses = np.asarray(losses)
    for i in range(99, 500, 100):
        print(f"step {i}: loss {losses[i]:.6g}")
    print(f"({(time.perf_counter() - t) * 1e3:.0f} ms, compilation included)")

    _section("3. LeNet on 1,797 real handwritten digits (scikit-learn), 32×32")
    split = data.load_digits(size=32)
    model = LeNet()
    print(model)
    params, state = model.init(jax.random.PRNGKey(0))
    epochs, bs = 30, 32
    opt = recipes.make_optimizer("adamw", 2e-3, weight_decay=1e-4, schedule="cosine",
                                 total_steps=epochs * (len(split.x_train) // bs))
    t = time.perf_counter()
    ts, history = recipes.fit(model, params, state, split, opt, epochs=epochs, batch_size=bs,
                              augment_shift=2, desc="LeNet")
    print(f"held-out accuracy: {history[-1]['test_accuracy']:.2%} on {len(split.x_test)} images "
          f"({time.perf_counter() - t:.1f} s, compilation included)")
    recipes.plot_history(history, out / "lenet_curves.png", title="LeNet on digits")
    torch_io.save_weights(out / "lenet.safetensors", model, ts.params)
    print(f"wrote {out / 'lenet_curves.png'} and {out / 'lenet.safetensors'} (PyTorch loads it)")

    _section("4. ResNet-18: freeze the trunk, replace fc with Linear(512, 10), train the head")
    print("note: torchvision-style random trunk (funcnets never downloads; "
          "`funcnets train --model resnet18 --weights resnet18.pth` uses real weights)")
    rn, params, state = recipes.build_model("resnet18", seed=1)
    trainable = optim.select(params, include="fc")
    split64 = data.load_digits(size=64, channels=3)
    t = time.perf_counter()
    _, history = recipes.fit(rn, params, state, split64, optim.sgd(1e-2, momentum=0.9), epochs=2, batch_size=32,
                             trainable=trainable, desc="ResNet-18 head")
    print(f"held-out accuracy with a frozen random trunk: {history[-1]['test_accuracy']:.2%} "
          f"({time.perf_counter() - t:.1f} s; only {len(trainable)} of {len(rn.parameters(params))} parameters trained)")

    if parity:
        _section("5. parity with the installed PyTorch (same weights, same inputs)")
        try:
            from funcnets import parity as parity_mod

            rows = parity_mod.run(quick=True)
            print(parity_mod.format_table(rows))
        except Exception as e:  # noqa: BLE001  parity is a report here, never a reason to fail the demo
            print(f"skipped: {e}")
    print(f"\ndemo finished in {time.perf_counter() - t0:.0f} s")
    return 0
