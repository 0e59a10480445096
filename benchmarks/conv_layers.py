"""Every convolution of ResNet-18 (3×64×64 input), funcnets against torch eager, one
layer at a time: forward, and forward + backward (input and weight gradients; the
stem has no input gradient, as in a train step). Shows where a train step wins or
loses time to torch, which a whole-step profile cannot (XLA's convolutions run
asynchronously there).

    python benchmarks/conv_layers.py [--batch 8] [--reps 4] [--repeats 11]

funcnets runs channels-last with its per-shape lowering (as ResNet-18 does on CPU),
torch NCHW (as torchvision does). Each timed call runs ``--reps`` independent
convolutions, so per-call dispatch is spread out; medians of interleaved runs,
warm-up excluded (:func:`funcnets.timing.interleaved`). The last lines sum each
column over the 20 convolutions of one step.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import torch

from funcnets.nn import functional as F
from funcnets.nn._conv import use_gemm
from funcnets.nn._onednn import error as onednn_error
from funcnets.timing import interleaved

# name, C_in, C_out, kernel, stride, padding, input H=W, occurrences per step
LAYERS = [
    ("conv1 7x7 s2", 3, 64, 7, 2, 3, 64, 1),
    ("layer1 3x3", 64, 64, 3, 1, 1, 16, 4),
    ("layer2.0 3x3 s2", 64, 128, 3, 2, 1, 16, 1),
    ("layer2.0 downsample", 64, 128, 1, 2, 0, 16, 1),
    ("layer2 3x3", 128, 128, 3, 1, 1, 8, 3),
    ("layer3.0 3x3 s2", 128, 256, 3, 2, 1, 8, 1),
    ("layer3.0 downsample", 128, 256, 1, 2, 0, 8, 1),
    ("layer3 3x3", 256, 256, 3, 1, 1, 4, 3),
    ("layer4.0 3x3 s2", 256, 512, 3, 2, 1, 4, 1),
    ("layer4.0 downsample", 256, 512, 1, 2, 0, 4, 1),
    ("layer4 3x3", 512, 512, 3, 1, 1, 2, 3),
]


def layer_fns(c_in, c_out, k, stride, pad, hw, batch, reps, input_grad):
    """Four zero-argument callables: funcnets/torch forward and forward+backward."""
    rng = np.random.default_rng(0)
    out_hw = (hw + 2 * pad - k) // stride + 1
    x = rng.standard_normal((reps, batch, c_in, hw, hw), np.float32)
    w = rng.standard_normal((reps, c_out, c_in, k, k), np.float32) * 0.05
    g = rng.standard_normal((reps, batch, c_out, out_hw, out_hw), np.float32)

    def conv(x, w):
        with F.channels_last():
            return F.conv2d(x, w, stride=stride, padding=pad)

    def conv_vjp(x, w, g):
        y, vjp = jax.vjp(conv, x, w)
        dx, dw = vjp(g)
        return y, (dx, dw) if input_grad else dw  # y is returned so XLA keeps the forward

    jx, jw, jg = jnp.asarray(x.transpose(0, 1, 3, 4, 2)), jnp.asarray(w), jnp.asarray(g.transpose(0, 1, 3, 4, 2))
    j_fwd = jax.jit(lambda x, w: [conv(x[r], w[r]) for r in range(reps)])
    j_both = jax.jit(lambda x, w, g: [conv_vjp(x[r], w[r], g[r]) for r in range(reps)])

    tx = [torch.from_numpy(x[r]).requires_grad_(input_grad) for r in range(reps)]
    tw = [torch.from_numpy(w[r]).requires_grad_() for r in range(reps)]
    tg = [torch.from_numpy(g[r]) for r in range(reps)]

    def t_fwd():
        with torch.no_grad():
            return [torch.nn.functional.conv2d(tx[r], tw[r], stride=stride, padding=pad) for r in range(reps)]

    def t_both():
        out = []
        for r in range(reps):
            y = torch.nn.functional.conv2d(tx[r], tw[r], stride=stride, padding=pad)
            out.append(torch.autograd.grad(y, (tx[r], tw[r]) if input_grad else (tw[r],), tg[r]))
        return out

    return {
        "funcnets fwd": lambda: j_fwd(jx, jw),
        "torch fwd": t_fwd,
        "funcnets fwd+bwd": lambda: j_both(jx, jw, jg),
        "torch fwd+bwd": t_both,
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--reps", type=int, default=4, help="independent convolutions per timed call")
    ap.add_argument("--repeats", type=int, default=11)
    args = ap.parse_args(argv)
    print(f"ResNet-18 convolutions, batch {args.batch}, 3x64x64 input; ms per convolution "
          f"(median of {args.repeats}); ratio = torch / funcnets")
    print(f"{'layer':21s} {'x':>2s} {'lowering':8s} {'fwd':>7s} {'torch':>7s} {'ratio':>6s}   "
          f"{'fwd+bwd':>7s} {'torch':>7s} {'ratio':>6s}")
    keys = ["funcnets fwd", "torch fwd", "funcnets fwd+bwd", "torch fwd+bwd"]

    def columns(ms):  # funcnets, torch, ratio for the forward, then for forward + backward
        f, t, fb, tb = (ms[k] for k in keys)
        return f"{f:7.3f} {t:7.3f} {t / f:5.2f}x   {fb:7.3f} {tb:7.3f} {tb / fb:5.2f}x"

    sums = dict.fromkeys(keys, 0.0)
    for name, c_in, c_out, k, s, p, hw, count in LAYERS:
        # the stem's input is the image, which needs no gradient
        fns = layer_fns(c_in, c_out, k, s, p, hw, args.batch, args.reps, input_grad=not name.startswith("conv1"))
        ms = {key: v / args.reps for key, v in interleaved(fns, repeats=args.repeats).items()}
        for key in keys:
            sums[key] += count * ms[key]
        gemm = use_gemm((args.batch, hw, hw, c_in), (c_out, c_in, k, k), (s, s), (p, p), (1, 1), 1, "NHWC")
        lowering = "GEMM" if gemm else "XLA" if onednn_error() else "oneDNN"
        print(f"{name:21s} {count:2d} {lowering:8s} {columns(ms)}")
    print(f"{'sum over one step':33s} {columns(sums)}")


if __name__ == "__main__":
    main()
