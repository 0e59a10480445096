"""ResNet-18 train step in float32, bfloat16 and float16 (float32 master weights), and
torch eager's float32 and bfloat16-autocast steps for comparison, in the same process.

    python benchmarks/mixed_precision.py [--batch 32] [--size 64] [--repeats 7]

Medians of interleaved runs, warm-up excluded (:func:`funcnets.timing.interleaved`);
SGD(momentum 0.9), cross-entropy, a 10-class head, channels-last trunk on CPU as
``funcnets.models.resnet18`` runs it. ``precision`` as in ``train.make_train_step``.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torchvision

from funcnets import optim, train
from funcnets.benchmark import _threaded
from funcnets.recipes import build_model
from funcnets.timing import interleaved


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()

    model, params, state = build_model("resnet18")
    rng = np.random.default_rng(0)
    x = rng.random((args.batch, 3, args.size, args.size), np.float32)
    y = (np.arange(args.batch) % 10).astype(np.int32)
    opt = optim.sgd(1e-2, momentum=0.9)
    fns = {}
    for precision in ("fp32", "bf16", "fp16"):
        o = optim.GradScaler().wrap(opt) if precision == "fp16" else opt  # fp16 needs loss scaling
        step = train.make_train_step(train.supervised_loss(model), o,
                                     precision=None if precision == "fp32" else precision)
        ts = train.create_train_state(params, state, o, jax.random.PRNGKey(0))
        fns[f"funcnets {precision}"] = _threaded(step, ts, (jnp.asarray(x), jnp.asarray(y)))

    tm = torchvision.models.resnet18(num_classes=10)
    topt = torch.optim.SGD(tm.parameters(), lr=1e-2, momentum=0.9)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y).long()

    def torch_step(autocast: bool):
        def f():
            topt.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                loss = torch.nn.functional.cross_entropy(tm(tx), ty)
            loss.backward()
            topt.step()
            return loss
        return f

    fns["torch fp32"], fns["torch bf16 autocast"] = torch_step(False), torch_step(True)
    ms = interleaved(fns, repeats=args.repeats)
    print(f"ResNet-18 train step, batch {args.batch}, {args.size}x{args.size}, ms (median of {args.repeats})")
    for name, t in ms.items():
        print(f"  {name:<22} {t:8.1f} ms   {ms['funcnets fp32'] / t:5.2f}x of funcnets fp32's speed")


if __name__ == "__main__":
    main()
