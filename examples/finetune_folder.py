"""Fine-tune a torchvision model on a folder of your own images, with the ``funcnets`` command,
and take the result back to PyTorch — offline, on real images.

The data: scikit-learn's bundled digit scans written as tinted RGB PNGs in torchvision's
ImageFolder layout (``photos/<digit>/<n>.png``, :func:`funcnets.data.make_digits_folder`).
The starting weights: torchvision's ResNet-18 with its 1000-class head, saved locally as
a ``.pth`` (random ``weights=None`` weights here, as nothing can be downloaded; with
network access pass ``ResNet18_Weights.DEFAULT``'s file instead).

Steps (each one the command a user types):

1. ``funcnets train --model resnet18 --weights resnet18.pth --data photos/ --trainable 'fc.*' ...``
   (the head replaced for the 10 classes, only ``fc`` trained, best epoch kept);
2. ``funcnets evaluate`` on a separate folder: accuracy, top-5, per-class P/R/F1, confusion.png;
3. ``funcnets predict`` on a few files, as JSON;
4. ``funcnets export --out model.pth``, then torchvision's ``resnet18(num_classes=10)``
   loads it with ``strict=True`` and predicts the same classes and probabilities.

Run: ``python examples/finetune_folder.py [--epochs 3] [--size 64] [--per-class 20]``.
"""

import argparse
import contextlib
import io
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
import torchvision

from funcnets.cli import main as funcnets
from funcnets.data import make_digits_folder
from funcnets.data.folder import default_loader
from funcnets.folder_train import eval_transform


def run(*argv) -> str:
    """``funcnets ARGV`` in this process; returns what it printed (and shows it)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = funcnets([str(a) for a in argv])
    print(buf.getvalue(), end="")
    if code != 0:
        raise SystemExit(f"funcnets {argv[0]} failed with exit status {code}")
    return buf.getvalue()


def example(work: Path, epochs: int, size: int, per_class: int) -> None:
    photos = make_digits_folder(work / "photos", per_class=per_class, size=size, seed=0)
    # held out: the next scans of each digit (ones photos/ does not hold), tinted afresh
    held_out = make_digits_folder(work / "held_out", per_class=per_class + max(per_class // 2, 1), size=size, seed=1)
    for f in held_out.glob("*/*.png"):
        if int(f.stem) < per_class:
            f.unlink()
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), work / "resnet18.pth")

    print("\n$ funcnets train --model resnet18 --weights resnet18.pth --data photos --trainable 'fc.*' ...")
    run("train", "--model", "resnet18", "--weights", work / "resnet18.pth", "--data", photos,
        "--val-fraction", "0.2", "--trainable", "fc.*", "--image-size", size, "--epochs", epochs,
        "--batch-size", 16, "--optimizer", "adamw", "--lr", 0.01, "--workers", 0,
        "--checkpoint-dir", work / "ckpt", "--out", work / "run", "--no-progress")
    best = work / "run" / "best.safetensors"

    print("\n$ funcnets evaluate --model resnet18 --weights run/best.safetensors --data held_out")
    run("evaluate", "--model", "resnet18", "--weights", best, "--data", held_out, "--image-size", size,
        "--out", work / "eval", "--no-progress")

    images = [sorted((held_out / str(d)).iterdir())[0] for d in (0, 3, 7)]
    print("\n$ funcnets predict --model resnet18 --weights run/best.safetensors --json IMAGES")
    ours = json.loads(run("predict", "--model", "resnet18", "--weights", best, "--image-size", size,
                          "--topk", 3, "--json", *images))

    print("\n$ funcnets export --model resnet18 --weights run/best.safetensors --out model.pth")
    run("export", "--model", "resnet18", "--weights", best, "--out", work / "model.pth")

    # the export in PyTorch, strictly, on the same preprocessed pixels
    model = torchvision.models.resnet18(num_classes=10)
    model.load_state_dict(torch.load(work / "model.pth", weights_only=True), strict=True)
    model.eval()
    x = torch.from_numpy(np.stack([eval_transform(size)(default_loader(p)) for p in images]))
    with torch.no_grad():
        probs = torch.softmax(model(x), dim=1).numpy()
    classes = json.loads((work / "run" / "classes.json").read_text())
    print("\nPyTorch (torchvision.models.resnet18 + the exported model.pth):")
    for path, p, row in zip(images, probs, ours):
        top = int(p.argmax())
        same = classes[top] == row["top"][0]["class"] and abs(p[top] - row["top"][0]["probability"]) < 1e-4
        print(f"  {path.parent.name}/{path.name}: {classes[top]} {p[top]:.2%}  (funcnets: "
              f"{row['top'][0]['class']} {row['top'][0]['probability']:.2%}) {'same' if same else 'DIFFERENT'}")
        if not same:
            raise SystemExit("PyTorch and funcnets disagree on the exported model")
    print("PyTorch and funcnets agree on every image.")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--size", type=int, default=64, help="image side (default 64)")
    parser.add_argument("--per-class", type=int, default=20, help="images per digit (default 20)")
    parser.add_argument("--dir", help="work here instead of a temporary folder (kept)")
    a = parser.parse_args()
    if a.dir:
        example(Path(a.dir), a.epochs, a.size, a.per_class)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            example(Path(tmp), a.epochs, a.size, a.per_class)
