"""One TransformerEncoderLayer, funcnets (jitted) against torch eager: forward + backward
(gradients for the input and every parameter) in train mode.

    python benchmarks/transformer.py [--batch 32] [--tokens 128] [--d-model 256] [--nhead 8]
                                     [--ff 1024] [--dropout 0.0] [--repeats 11]

Defaults: d_model 256, nhead 8, dim_feedforward 1024 (torch's default is 2048: pass
``--ff 2048``), batch 32 x 128 tokens, batch_first, post-norm, ReLU, float32, dropout 0
(torch and funcnets then run the same arithmetic; ``--dropout 0.1`` times the dropout
masks too, drawn by each library's own generator). Both run the same weights; medians of
interleaved runs, warm-up excluded (:func:`funcnets.timing.interleaved`); ratio = torch /
funcnets (above 1: funcnets is faster).

Measured 2026-12-02 on the shared 2-core machine (load average ~10 from other jobs, so
absolute times are inflated; the ratios come from interleaved runs):
ff 1024, dropout 0: funcnets 1125 ms, torch 1548 ms, 1.38x; ff 2048, dropout 0: 1696 ms vs
2074 ms, 1.22x; ff 2048, dropout 0.1 (torch's defaults): 2516 ms vs 2565 ms, 1.02x: drawing
~12M Bernoulli masks with JAX's default threefry key costs ~800 ms a step here.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import torch

from funcnets import nn
from funcnets.timing import interleaved
from funcnets.torch_io import unflatten


def fns(batch: int, tokens: int, d_model: int, nhead: int, ff: int, dropout: float) -> dict:
    rng = np.random.default_rng(0)
    tl = torch.nn.TransformerEncoderLayer(d_model, nhead, ff, dropout=dropout, batch_first=True)
    tl.train()
    layer = nn.TransformerEncoderLayer(d_model, nhead, ff, dropout=dropout, batch_first=True)
    params = unflatten({n: jnp.asarray(p.detach().numpy()) for n, p in tl.named_parameters()})
    x = rng.standard_normal((batch, tokens, d_model)).astype(np.float32)
    g = rng.standard_normal((batch, tokens, d_model)).astype(np.float32)
    jx, jg = jnp.asarray(x), jnp.asarray(g)
    tx, tg = torch.from_numpy(x).requires_grad_(), torch.from_numpy(g)
    tparams = [tx, *tl.parameters()]

    @jax.jit
    def step(params, x, g, key):
        def f(params, x):
            return jnp.vdot(layer.forward(params, x, train=True, key=key), g)
        return jax.grad(f, argnums=(0, 1))(params, x)

    keys = iter(jax.random.split(jax.random.key(0), 10_000))

    def t_step():
        y = tl(tx)
        return torch.autograd.grad(y, tparams, tg)

    return {"funcnets": lambda: step(params, jx, jg, next(keys)), "torch": t_step}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--nhead", type=int, default=8)
    ap.add_argument("--ff", type=int, default=1024)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--repeats", type=int, default=11)
    args = ap.parse_args(argv)
    ms = interleaved(fns(args.batch, args.tokens, args.d_model, args.nhead, args.ff, args.dropout), repeats=args.repeats)
    print(f"TransformerEncoderLayer(d_model={args.d_model}, nhead={args.nhead}, dim_feedforward={args.ff}, "
          f"dropout={args.dropout}), batch {args.batch} x {args.tokens} tokens, float32, forward+backward, "
          f"median of {args.repeats}, {torch.get_num_threads()} torch threads")
    print(f"funcnets {ms['funcnets']:8.2f} ms   torch eager {ms['torch']:8.2f} ms   "
          f"ratio {ms['torch'] / ms['funcnets']:.2f}x")


if __name__ == "__main__":
    main()
