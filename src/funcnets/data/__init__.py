"""Data for funcnets: bundled real data, image files on disk, torchvision's transforms, and a
resumable, parallel batch pipeline on grain.

- :mod:`funcnets.data.digits`: scikit-learn's digits and local MNIST IDX files as arrays
  (:func:`load_digits`, :func:`load_mnist`, :func:`read_idx`), and
  :func:`make_digits_folder`, which writes the digits as an ImageFolder tree of PNGs.
- :mod:`funcnets.data.folder`: :class:`ImageFolder` (torchvision's layout and class
  numbering), :class:`ImageList` (a CSV/JSON list of ``path,label``),
  :func:`train_val_split`, :func:`verify_images`.
- :mod:`funcnets.data.cifar`: :class:`CIFAR10`, :class:`CIFAR100` from the python-format
  files, parsed without unpickling arbitrary objects.
- :mod:`funcnets.data.transforms`: torchvision.transforms' names, arguments and results.
- :mod:`funcnets.data.pipeline`: :func:`loader`, batches ``(N, C, H, W)`` float32 + labels.

Example::

    from funcnets import data
    from funcnets.data import transforms as T

    train, val = data.train_val_split(data.ImageFolder("photos/"), val_fraction=0.2, seed=0)
    tf = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize(T.IMAGENET_MEAN, T.IMAGENET_STD)])
    for x, y in data.loader(train, tf, batch_size=32, seed=0, num_workers=2):
        ...  # x: (32, 3, 224, 224) float32, y: (32,) int32
"""

from funcnets.data import transforms
from funcnets.data.cifar import CIFAR10, CIFAR100, read_cifar_pickle
from funcnets.data.digits import (
    Split, fingerprint, load_digits, load_mnist, make_digits_folder, random_shift, read_idx, resize_images,
)
from funcnets.data.folder import (
    IMG_EXTENSIONS, ImageFolder, ImageList, Subset, default_loader, train_val_split, verify_images,
)
from funcnets.data.pipeline import Loader, loader

__all__ = [
    # arrays in memory (digits.py)
    "Split", "load_digits", "read_idx", "load_mnist", "resize_images", "random_shift", "fingerprint",
    "make_digits_folder",
    # image files (folder.py, cifar.py)
    "IMG_EXTENSIONS", "default_loader", "ImageFolder", "ImageList", "Subset", "train_val_split", "verify_images",
    "CIFAR10", "CIFAR100", "read_cifar_pickle",
    # transforms and batches
    "transforms", "Loader", "loader",
]  # fmt: skip
