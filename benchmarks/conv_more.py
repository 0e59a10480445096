"""The convolutions XLA:CPU is slow at, funcnets against torch eager: a depthwise 3×3
convolution (MobileNet-like), ConvTranspose2d ×2 upsampling (U-Net's kernel 2 and
DCGAN's kernel 4), Conv1d and Conv3d; forward + backward (input, weight and bias
gradients), jitted.

    python benchmarks/conv_more.py [--batch 32] [--repeats 9] [--no-xla]

Columns: funcnets' CPU lowerings under a plain ``jax.vjp`` (shifted multiply-adds with a
one-pass weight gradient for the depthwise convolution, oneDNN's deconvolution or one GEMM
for the transposed ones, oneDNN's own 1-D and 3-D convolutions on NCW/NCDHW data, see
``funcnets/nn/_conv.py``; ``funcnets.train``'s step takes the same kernels), and XLA's own
convolution
(``conv_lowering("xla")``; skipped with ``--no-xla``, it takes seconds a call), against
torch's ``F.conv2d``/``F.conv_transpose2d`` in NCHW. Medians of interleaved runs, warm-up
excluded (:func:`funcnets.timing.interleaved`); ratio = torch ms / funcnets ms. The
transposed convolutions are also timed channels-last on both sides (torch's
``channels_last`` memory format, funcnets' ``F.channels_last()``), where neither
transposes around oneDNN.
"""

from __future__ import annotations

import argparse
import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import torch

from funcnets.nn import conv_lowering
from funcnets.nn import functional as F
from funcnets.timing import interleaved

# column: conv_lowering
MODES = {"jax.vjp": "auto", "xla": "xla"}

# name, transposed, C_in, C_out, kernel, stride, padding, groups, spatial size, channels-last, batch
# (batch None: --batch)
CASES = [
    ("depthwise 3x3, 32 ch, 56x56", False, 32, 32, 3, 1, 1, 32, (56, 56), False, None),
    ("ConvTranspose2d k2 s2, 64->32, 32->64", True, 64, 32, 2, 2, 0, 1, (32, 32), False, None),
    ("  the same, both channels-last", True, 64, 32, 2, 2, 0, 1, (32, 32), True, None),
    ("ConvTranspose2d k4 s2 p1, 64->32, 32->64", True, 64, 32, 4, 2, 1, 1, (32, 32), False, None),
    ("  the same, both channels-last", True, 64, 32, 4, 2, 1, 1, (32, 32), True, None),
    ("Conv1d k3, 64->64, L 256", False, 64, 64, 3, 1, 1, 1, (256,), False, None),
    ("Conv3d k3, 16->32, 16^3, batch 8", False, 16, 32, 3, 1, 1, 1, (16, 16, 16), False, 8),
]
TORCH_CONV = {(1, False): torch.nn.functional.conv1d, (2, False): torch.nn.functional.conv2d,
              (3, False): torch.nn.functional.conv3d, (2, True): torch.nn.functional.conv_transpose2d}
OUR_CONV = {(1, False): F.conv1d, (2, False): F.conv2d, (3, False): F.conv3d, (2, True): F.conv_transpose2d}


def case_fns(transposed, c_in, c_out, k, stride, pad, groups, size, channels_last, batch, columns):
    """Zero-argument callables: torch's forward + backward, and funcnets' per column.
    Channels-last: torch's tensors in ``torch.channels_last`` memory format, funcnets'
    ``(N, H, W, C)`` inside ``F.channels_last()``."""
    rng = np.random.default_rng(0)
    n = len(size)
    w_shape = (c_in, c_out // groups) if transposed else (c_out, c_in // groups)
    w_shape += (k,) * n
    x = rng.standard_normal((batch, c_in, *size), np.float32)
    w = (rng.standard_normal(w_shape) / np.sqrt(np.prod(w_shape[1:]))).astype(np.float32)
    b = rng.standard_normal(c_out).astype(np.float32)
    t_conv, f_conv = TORCH_CONV[n, transposed], OUR_CONV[n, transposed]
    kwargs = dict(stride=stride, padding=pad, groups=groups)
    with torch.no_grad():
        g = torch.randn(t_conv(torch.from_numpy(x), torch.from_numpy(w), None, **kwargs).shape).numpy()

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    tx, tg = (torch.from_numpy(a).contiguous(memory_format=fmt) for a in (x, g))
    tx, tw, tb = tx.requires_grad_(), torch.from_numpy(w).requires_grad_(), torch.from_numpy(b).requires_grad_()

    def t_step():
        y = t_conv(tx, tw, tb, **kwargs)
        return torch.autograd.grad(y, (tx, tw, tb), tg)

    fns = {"torch": t_step}
    if channels_last:
        x, g = x.transpose(0, 2, 3, 1), g.transpose(0, 2, 3, 1)
    jx, jw, jb, jg = map(jnp.asarray, (x, w, b, g))
    layout = F.channels_last if channels_last else contextlib.nullcontext
    for column in columns:
        def step(x, w, b, g, lowering=MODES[column]):
            with conv_lowering(lowering), layout():
                y, vjp = jax.vjp(lambda x, w, b: f_conv(x, w, b, **kwargs), x, w, b)
            return y, vjp(g)  # y is returned so that XLA keeps the forward pass

        jitted = jax.jit(step)
        fns[column] = lambda jitted=jitted: jitted(jx, jw, jb, jg)
    return fns


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--no-xla", action="store_true", help="skip XLA's own convolution (slow)")
    args = ap.parse_args(argv)
    columns = [c for c in MODES if c != "xla" or not args.no_xla]
    print(f"forward + backward, batch {args.batch}, float32, ms (median of {args.repeats}); "
          f"ratio = torch / funcnets")
    print(f"{'case':42s} {'torch':>8s} " + " ".join(f"{c:>10s} {'ratio':>6s}" for c in columns))
    for name, transposed, c_in, c_out, k, s, p, groups, size, channels_last, batch in CASES:
        fns = case_fns(transposed, c_in, c_out, k, s, p, groups, size, channels_last, batch or args.batch, columns)
        ms = interleaved(fns, repeats=args.repeats)
        cols = " ".join(f"{ms[c]:10.2f} {ms['torch'] / ms[c]:5.2f}x" for c in columns)
        print(f"{name:42s} {ms['torch']:8.2f} {cols}", flush=True)


if __name__ == "__main__":
    main()
