"""The blog-style two-layer net: batch 32, 1000 → 100 → 2, lr=1e-6, 10,000 iterations,
on the best available device (GPU if present), like
``device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')``.

    python examples/two_layer_blog.py
"""

import time

import jax

from funcnets.config import default_device, enable_compilation_cache
from funcnets.models import two_layer

BATCH, D_IN, H, D_OUT, LR, ITERS = 32, 1000, 100, 2, 1e-6, 10_000


def main() -> None:
    enable_compilation_cache()
    device = default_device()
    print(f"device: {device.platform} ({device.device_kind})")
    kd, kw = jax.random.split(jax.random.PRNGKey(0))
    x, y = jax.device_put(two_layer.data(kd, BATCH, D_IN, D_OUT), device)
    w = jax.device_put(two_layer.init(kw, D_IN, H, D_OUT), device)
    t = time.perf_counter()
    w, losses = two_layer.train(w, x, y, LR, ITERS)
    losses.block_until_ready()
    for i in range(999, ITERS, 1000):
        print(f"iteration {i + 1:>6}: loss {float(losses[i]):.6g}")
    print(f"{ITERS} iterations in {time.perf_counter() - t:.2f} s (compilation included)")


if __name__ == "__main__":
    main()
