"""The tutorial's "PyTorch with examples" progression for y = relu(x @ w1) @ w2.

N=64, D_in=1000, H=100, D_out=10, lr=1e-6, 500 steps, sum-of-squares loss. The same
random start is trained five ways and the loss printed every 100 steps:

1. NumPy with a hand-written backward pass;
2. JAX with the hand-written backward pass, each step jit-compiled;
3. jax.grad (autograd), each step jit-compiled;
4. the custom ReLU (the tutorial's MyReLU autograd.Function as a jax.custom_vjp);
5. all 500 autograd steps as one compiled program (lax.scan).

    python examples/two_layer_net.py
"""

import time

import jax
import jax.numpy as jnp
import numpy as np

from funcnets.autograd import my_relu
from funcnets.config import enable_compilation_cache
from funcnets.models import two_layer

N, D_IN, H, D_OUT, LR, STEPS = 64, 1000, 100, 10, 1e-6, 500


def report(name: str, losses, seconds: float) -> None:
    shown = ", ".join(f"{t}: {float(losses[t]):.4g}" for t in range(99, STEPS, 100))
    print(f"{name:<28} {shown}   ({seconds * 1e3:.0f} ms)")


def loop(step, w):
    losses = []
    for _ in range(STEPS):
        w, loss = step(w)
        losses.append(loss)
    return w, np.array([float(v) for v in losses])


def main() -> None:
    enable_compilation_cache()
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((N, D_IN)).astype(np.float32), rng.standard_normal((N, D_OUT)).astype(np.float32)
    w0 = {"w1": rng.standard_normal((D_IN, H)).astype(np.float32), "w2": rng.standard_normal((H, D_OUT)).astype(np.float32)}
    xj, yj = jnp.asarray(x), jnp.asarray(y)
    print("step t: loss  (the tutorial prints t, loss when t % 100 == 99)")

    def numpy_step(w):
        g, loss = two_layer.manual_grads(w, x, y, xp=np)
        return {k: w[k] - LR * g[k] for k in w}, loss

    t = time.perf_counter()
    _, losses = loop(numpy_step, w0)
    report("1 numpy, manual backward", losses, time.perf_counter() - t)

    variants = {
        "2 jax, manual backward": lambda w: two_layer.manual_grads(w, xj, yj),
        "3 jax.grad": lambda w: two_layer.grads(w, xj, yj),
        "4 custom ReLU (custom_vjp)": lambda w: two_layer.grads(w, xj, yj, relu=my_relu),
    }
    for name, grad_fn in variants.items():
        step = jax.jit(lambda w, grad_fn=grad_fn: (lambda g, l: (two_layer.sgd_step(w, g, LR), l))(*grad_fn(w)))
        t = time.perf_counter()
        _, losses = loop(step, jax.tree_util.tree_map(jnp.asarray, w0))
        report(name, losses, time.perf_counter() - t)

    t = time.perf_counter()
    _, losses = two_layer.train(jax.tree_util.tree_map(jnp.asarray, w0), xj, yj, LR, STEPS)
    losses.block_until_ready()
    report("5 one program (lax.scan)", np.asarray(losses), time.perf_counter() - t)


if __name__ == "__main__":
    main()
