"""Fine-tune ResNet-18's head with a frozen trunk, as in the tutorial's autograd section:
freeze every parameter, replace ``fc`` with ``Linear(512, 10)``, optimise only ``fc``.

Trains on scikit-learn's real handwritten digits (upsampled to 3×64×64), reports
held-out accuracy, and times the frozen-trunk step against the full step, side by side
with PyTorch when it is installed.

    python examples/finetune_resnet18.py [--weights resnet18.pth] [--epochs 4] [--image-size 64]

Without ``--weights`` the trunk keeps torchvision's random initialisation (no download
happens anywhere); a local torchvision ``.pth``/``.safetensors`` file gives real
pretrained features.
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

from funcnets import optim, recipes, train
from funcnets.config import enable_compilation_cache
from funcnets.data import load_digits
from funcnets.benchmark import resnet_step_fns
from funcnets.timing import interleaved

MEAN = np.array([0.485, 0.456, 0.406], np.float32)[None, :, None, None]  # ImageNet statistics
STD = np.array([0.229, 0.224, 0.225], np.float32)[None, :, None, None]


def finetune(weights: str | None = None, epochs: int = 4, batch_size: int = 32, seed: int = 0, lr: float = 1e-2,
             image_size: int = 64):
    """Train only the new head on 3×image_size×image_size digits; returns (model,
    train_state, held-out accuracy)."""
    key = jax.random.PRNGKey(seed)
    if not weights:
        print("note: no --weights given, so the trunk is torchvision-style random init "
              "(pass a local resnet18 .pth/.safetensors for pretrained features)")
    model, params, state = recipes.build_model("resnet18", weights, seed)  # model.fc = nn.Linear(512, 10)
    data = load_digits(size=image_size, channels=3, seed=seed)
    x_train, x_test = (data.x_train - MEAN) / STD, (data.x_test - MEAN) / STD
    trainable = optim.select(params, include="fc")  # requires_grad=False for everything else
    opt = optim.sgd(lr, momentum=0.9)
    ts = train.create_train_state(params, state, opt, key, trainable)
    epoch = train.make_train_epoch(train.supervised_loss(model), opt, trainable=trainable)
    for e in range(epochs):
        ts, metrics = epoch(ts, train.batches(x_train, data.y_train, batch_size, jax.random.fold_in(key, 100 + e)))
        acc = train.evaluate(model, ts.params, ts.model_state, x_test, data.y_test)
        print(f"epoch {e + 1}: train loss {float(metrics['loss'].mean()):.4f}  held-out accuracy {acc:.1%}")
    return model, ts, acc


def time_freezing(batch: int = 8, size: int = 64, repeats: int = 10) -> dict[str, float]:
    """Median ms of a full and a frozen-trunk SGD step, funcnets and torch, interleaved."""
    fns = {}
    for kind, frozen in (("full", False), ("frozen", True)):
        for lib, fn in resnet_step_fns(batch, size, frozen).items():
            fns[f"{lib} {kind}"] = fn
    ms = interleaved(fns, repeats=repeats)
    print(f"\nResNet-18 train step, batch {batch}, 3×{size}×{size} (median of {repeats}, interleaved):")
    for lib in ("funcnets", "torch"):
        full, frozen = ms[f"{lib} full"], ms[f"{lib} frozen"]
        print(f"  {lib:<8} full {full:7.1f} ms   frozen trunk {frozen:6.1f} ms   freezing gains {full / frozen:.1f}×")
    print(f"  funcnets vs torch: full step {ms['torch full'] / ms['funcnets full']:.2f}×, "
          f"frozen step {ms['torch frozen'] / ms['funcnets frozen']:.2f}× faster")
    return ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", help="local torchvision resnet18 .pth or .safetensors")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=64, choices=range(32, 225), metavar="32..224",
                        help="side of the upsampled digits (default 64; ResNet-18 needs at least 32)")
    parser.add_argument("--no-timing", action="store_true", help="skip the freezing speed comparison (needs torch)")
    args = parser.parse_args()
    enable_compilation_cache()
    finetune(args.weights, args.epochs, args.batch_size, image_size=args.image_size)
    if not args.no_timing:
        time_freezing()


if __name__ == "__main__":
    main()
