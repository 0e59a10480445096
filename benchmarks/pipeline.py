"""Images per second of funcnets.data's input pipeline alone (no model), at 224x224.

The workload of ImageNet-style fine-tuning: JPEG files of ~500x375 (cut from
scikit-learn's two bundled photographs, so nothing is downloaded), decoded with Pillow,
RandomResizedCrop(224) + RandomHorizontalFlip + ToTensor + Normalize, batched to
``(B, 3, 224, 224)`` float32 by :func:`funcnets.data.loader` with 1 and 2 worker
processes (and 0: in the main process). Worker start-up and the first batches are
excluded (warm-up); each setting is timed ``--repeats`` times round-robin and the median
is printed, with torchvision's DataLoader on the same files and the same transforms as
a reference when torch is installed.

    .venv/bin/python benchmarks/pipeline.py [--images 256] [--batch-size 32] [--repeats 3]

Measured 2026-12-02, 320 JPEGs, batch 32, median of 3 (min-max), on the project's 2-core
machine while ~8 other engineers loaded it (load average ~11, so every figure is a
fraction of what an idle machine gives, and more processes do not mean more cores):

    funcnets workers=0      157.0 (156.0-159.2)   torchvision DataLoader workers=0  162.8
    funcnets workers=1      121.2 (120.3-126.2)   torchvision DataLoader workers=1  141.7
    funcnets workers=2      107.2 (101.2-113.7)   torchvision DataLoader workers=2  147.9

Single runs of the 2-worker setting ranged 70-190 images/s over the same half hour.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def make_jpegs(root: Path, n: int, seed: int = 0) -> Path:
    """``n`` JPEGs of 500x375 / 375x500, random crops of sklearn's sample photos, in 10 classes."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = [Image.fromarray(a) for a in load_sample_images().images]  # 2 x (427, 640, 3)
    rng = np.random.default_rng(seed)
    for k in range(n):
        p = photos[k % 2]
        w, h = (500, 375) if rng.random() < 0.7 else (375, 500)
        scale = rng.uniform(0.6, 1.0)
        ch = int(p.height * scale)
        cw = int(ch * w / h)
        if cw > p.width:
            cw, ch = p.width, int(p.width * h / w)
        x, y = int(rng.integers(0, p.width - cw + 1)), int(rng.integers(0, p.height - ch + 1))
        img = p.crop((x, y, x + cw, y + ch)).resize((w, h), Image.BILINEAR)
        (root / f"c{k % 10}").mkdir(parents=True, exist_ok=True)
        img.save(root / f"c{k % 10}" / f"{k}.jpg", quality=90)
    return root


def time_funcnets(root: Path, workers: int, batch_size: int, warmup: int = 2) -> float:
    from funcnets import data
    from funcnets.data import transforms as T

    tf = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize(T.IMAGENET_MEAN, T.IMAGENET_STD)])
    ld = data.loader(data.ImageFolder(root), tf, batch_size=batch_size, seed=0, num_workers=workers,
                     drop_remainder=True, num_epochs=2, prefetch=2)
    it = iter(ld)
    for _ in range(warmup):
        next(it)
    n, t0 = 0, time.perf_counter()
    for x, _ in it:
        n += len(x)
    dt = time.perf_counter() - t0
    if hasattr(it, "close"):
        it.close()
    return n / dt


def time_torchvision(root: Path, workers: int, batch_size: int, warmup: int = 2) -> float:
    import torch
    import torchvision.transforms as tvT
    from torchvision.datasets import ImageFolder

    torch.set_num_threads(1)
    tf = tvT.Compose([tvT.RandomResizedCrop(224), tvT.RandomHorizontalFlip(), tvT.ToTensor(),
                      tvT.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    ds = ImageFolder(str(root), tf)
    dl = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=True,
                                     persistent_workers=workers > 0, prefetch_factor=2 if workers else None)
    n, t0, seen = 0, None, 0
    for _ in range(2):  # two epochs, like the funcnets run
        for x, _ in dl:
            seen += 1
            if seen == warmup:
                t0 = time.perf_counter()
            elif seen > warmup:
                n += len(x)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--no-torch", action="store_true", help="skip the torchvision DataLoader reference")
    ap.add_argument("--json", type=str, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = make_jpegs(Path(tmp), args.images)
        contenders = [(f"funcnets workers={w}", time_funcnets, w) for w in args.workers]
        if not args.no_torch:
            try:
                import torch  # noqa: F401

                contenders += [(f"torchvision DataLoader workers={w}", time_torchvision, w) for w in args.workers]
            except ImportError:
                pass
        rates: dict[str, list[float]] = {name: [] for name, _, _ in contenders}
        for _ in range(args.repeats):  # round-robin, so a load spike hits every contender alike
            for name, fn, w in contenders:
                rates[name].append(fn(root, w, args.batch_size))
    print(f"{os.cpu_count()} CPUs, {args.images} JPEGs ~500x375, batch {args.batch_size}, "
          f"RandomResizedCrop(224) + flip + normalize; images/s, median of {args.repeats} (min-max):")
    result = {}
    for name, r in rates.items():
        result[name] = {"median": statistics.median(r), "all": r}
        print(f"  {name:40s} {statistics.median(r):8.1f}   ({min(r):.1f}-{max(r):.1f})")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
