"""LSTM, 2 layers x 256 hidden, 100 steps, batch 32, input 256: forward + backward
(input and every parameter gradient), funcnets jitted against torch eager in the same
process; medians of interleaved runs, warm-up excluded, ``block_until_ready``
(:func:`funcnets.timing.interleaved`).

    python benchmarks/rnn.py [--repeats 11] [--mode LSTM] [--unroll 1] [--bidirectional] [--torch-threads 1]

Prints both times and the ratio torch_ms / funcnets_ms (> 1: funcnets is faster), and
for a float32 LSTM or GRU with funcnets' oneDNN extension built, the ``lax.scan`` lowering's time
too (traced under ``funcnets.nn._onednn_rnn.use_scan()``), interleaved with the others.

Figures (2-core AVX-512 CPU, torch 2.14.1 with 2 OpenMP threads, jax 0.10.2):

* lax.scan lowering, idle machine: funcnets 194 ms, torch 97 ms (0.50x).
* oneDNN lowering, near-idle machine (load 1.7, this script alone), 2026-12-02, same
  process: LSTM oneDNN 196.2 ms, torch 174.6 ms (0.89x), lax.scan 360.1 ms (0.48x);
  --bidirectional 477.0 / 428.8 ms (0.90x), scan 615.7 (0.70x); --mode GRU 130.9 / 230.9 ms
  (1.76x), scan 220.9 (1.05x).
* oneDNN's LSTM (each layer one forward_training and one backward custom call, the
  batch of 32 split in 2 chunks over XLA's threads), 2026-12-02 on a machine loaded by
  other jobs (load average 14-20 on the 2 cores), same process, ms:
  unidirectional oneDNN 981 (1 chunk) / 1074 (2 chunks), lax.scan 1012, torch 8674;
  bidirectional 2909 / 2856, lax.scan 2868, torch 19909; at load 9.5-12.5 (this
  script, --repeats 5) unidirectional oneDNN 791, lax.scan 980, torch 2003. Under load torch's
  OpenMP team suffers most and no figure says what an idle machine gives. CPU time per
  step, everything on one core (``taskset``, torch 1 thread): oneDNN 299, lax.scan 285,
  torch 305 ms: the same work (torch runs the same oneDNN primitive, "rnn ref"), so the
  gain has to come from the 2 batch chunks running on both cores, as torch's 2 threads do.
  To be measured again on an idle machine.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import torch

from funcnets import nn
from funcnets.nn import _onednn_rnn
from funcnets.nn import rnn as _rnn
from funcnets.timing import interleaved


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--input", type=int, default=256)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--mode", default="LSTM", choices=["LSTM", "GRU", "RNN"])
    ap.add_argument("--bidirectional", action="store_true")
    ap.add_argument("--unroll", type=int, default=None, help="lax.scan unroll (default: the library's)")
    ap.add_argument("--torch-threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = ap.parse_args()
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    if args.unroll is not None:
        _rnn._UNROLL = args.unroll

    kw = dict(num_layers=args.layers, bidirectional=args.bidirectional)
    tlayer = getattr(torch.nn, args.mode)(args.input, args.hidden, **kw)
    layer = getattr(nn, args.mode)(args.input, args.hidden, **kw)
    params = {n: jnp.asarray(p.detach().numpy()) for n, p in tlayer.named_parameters()}
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.steps, args.batch, args.input)).astype(np.float32)
    jx, tx = jnp.asarray(x), torch.from_numpy(x).requires_grad_()

    def loss(p, x):
        y, _ = layer.apply(p, {}, x)[0]
        return jnp.sum(y * y)

    step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    with _onednn_rnn.use_scan():  # the lax.scan lowering, traced (and compiled) here
        scan_step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1))).lower(params, jx).compile()
    onednn = _onednn_rnn.error() is None and args.mode in ("LSTM", "GRU")

    def f_step():
        return step(params, jx)

    def s_step():
        return scan_step(params, jx)

    def t_step():
        tlayer.zero_grad(set_to_none=True)
        tx.grad = None
        y, _ = tlayer(tx)
        l = (y * y).sum()
        l.backward()
        return l

    # the same numbers first: one gradient compared, so the timing compares like with like
    (lv, (gp, gx)) = f_step()
    lt = t_step()
    rel = lambda a, b: float(np.abs(np.asarray(a) - b).max() / np.abs(b).max())  # noqa: E731
    print(f"loss rel err {abs(float(lv) - lt.item()) / abs(lt.item()):.1e}, "
          f"d input rel err {rel(gx, tx.grad.numpy()):.1e}, "
          f"d weight_hh_l0 rel err {rel(gp['weight_hh_l0'], tlayer.weight_hh_l0.grad.numpy()):.1e}")

    fns = {"funcnets": f_step, "torch": t_step}
    if onednn:
        fns["funcnets scan"] = s_step
    ms = interleaved(fns, repeats=args.repeats)
    print(f"{args.mode} {args.layers}x{args.hidden}{' bidirectional' if args.bidirectional else ''}, "
          f"{args.steps} steps, batch {args.batch}, input {args.input}, unroll {_rnn._UNROLL}, "
          f"torch {torch.__version__} threads {torch.get_num_threads()}, jax {jax.__version__}")
    print(f"forward+backward: funcnets{' (oneDNN)' if onednn else ''} {ms['funcnets']:.1f} ms, "
          f"torch eager {ms['torch']:.1f} ms, ratio torch/funcnets {ms['torch'] / ms['funcnets']:.2f}x")
    if onednn:
        print(f"  funcnets lax.scan {ms['funcnets scan']:.1f} ms, ratio torch/scan "
              f"{ms['torch'] / ms['funcnets scan']:.2f}x")


if __name__ == "__main__":
    main()
