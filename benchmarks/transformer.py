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
Idle machine, same day, before the change below: layer 169.3 ms vs torch 103.2 ms, 0.61x.
Near-idle (load 1.7, this script alone), after the change below, defaults of this script
(ff 1024, dropout 0): TransformerEncoderLayer 261.7 ms vs torch 219.4 ms (0.84x),
MultiheadAttention 122.3 vs 103.8 ms (0.85x). With torch's own defaults (ff 2048, dropout
0.1) the dropout masks (threefry) are not yet measured idle.

MultiheadAttention alone (self-attention, batch_first, ``need_weights=False``) is timed in
the same round-robin. Where the layer's time went (jax.profiler, one core, before): dots
~72%, transposes/copies ~17% (the ``(N, L, E) -> (L, N, E)`` swap for ``batch_first``,
the head split/merge, each head gradient transposed three times: for the input GEMM, the
weight GEMM and the bias sum), softmax/LayerNorm/ReLU passes the rest. XLA's GEMMs are not
the gap: one core, 4096x256 @ 256x1024 30 ms (~72 GFLOP/s) vs torch 31-43 ms; the
weight-gradient form (aᵀb) 38 vs 36-38 ms; the attention's batched dots 6-8 vs 6-15 ms.
The change (``nn/attention.py``): heads as an ``(..., H, head_dim)`` view of either layout
and the attention as einsums (no batch_first swap, no explicit head transposes), and the
safe softmax's derivative in closed form on its output (a ``custom_jvp``, so forward mode
still works). Same process, old code against new, one core each (``taskset -c 0``, torch
1 thread, CPU-time medians of 9; the 2-core wall figures are not usable while other jobs
load the machine, load average 15-19, 2026-12-02):
MultiheadAttention 228.6 -> 178.6 ms, torch 167.0 (0.73x -> 0.94x); the layer 516.3 ->
478.9 ms, torch 450.0 (0.87x -> 0.94x). This script at 2 threads under load 9-12
(torch's OpenMP suffers most from the load): layer 1187.7 vs torch 1872.4 ms (1.58x), MHA
508.0 vs 1021.9 ms (2.01x); under load 6: layer 703.0 vs 1247.9 ms (1.78x), MHA 301.4 vs
548.6 ms (1.82x). Not yet re-measured on an idle machine.
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


def mha_fns(batch: int, tokens: int, d_model: int, nhead: int, dropout: float) -> dict:
    """MultiheadAttention alone (self-attention, batch_first, need_weights=False as the
    encoder layer calls it), forward + backward for the input and every parameter."""
    rng = np.random.default_rng(0)
    tm = torch.nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
    tm.train()
    mha = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
    params = unflatten({n: jnp.asarray(p.detach().numpy()) for n, p in tm.named_parameters()})
    x = rng.standard_normal((batch, tokens, d_model)).astype(np.float32)
    g = rng.standard_normal((batch, tokens, d_model)).astype(np.float32)
    jx, jg = jnp.asarray(x), jnp.asarray(g)
    tx, tg = torch.from_numpy(x).requires_grad_(), torch.from_numpy(g)
    tparams = [tx, *tm.parameters()]

    @jax.jit
    def step(params, x, g, key):
        def f(params, x):
            out, _ = mha.forward(params, x, x, x, need_weights=False, train=True, dropout_key=key)
            return jnp.vdot(out, g)
        return jax.grad(f, argnums=(0, 1))(params, x)

    keys = iter(jax.random.split(jax.random.key(1), 10_000))

    def t_step():
        y, _ = tm(tx, tx, tx, need_weights=False)
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
    layer = fns(args.batch, args.tokens, args.d_model, args.nhead, args.ff, args.dropout)
    mha = mha_fns(args.batch, args.tokens, args.d_model, args.nhead, args.dropout)
    # one interleaved round-robin over all four, so both comparisons see the same machine
    ms = interleaved({"layer funcnets": layer["funcnets"], "layer torch": layer["torch"],
                      "mha funcnets": mha["funcnets"], "mha torch": mha["torch"]}, repeats=args.repeats)
    print(f"d_model={args.d_model}, nhead={args.nhead}, dim_feedforward={args.ff}, dropout={args.dropout}, "
          f"batch {args.batch} x {args.tokens} tokens, float32, forward+backward, median of {args.repeats}, "
          f"{torch.get_num_threads()} torch threads")
    for what, name in (("layer", "TransformerEncoderLayer"), ("mha", "MultiheadAttention")):
        f, t = ms[f"{what} funcnets"], ms[f"{what} torch"]
        print(f"{name:24s} funcnets {f:8.2f} ms   torch eager {t:8.2f} ms   ratio {t / f:.2f}x")


if __name__ == "__main__":
    main()
