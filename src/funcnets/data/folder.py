"""Image files on disk: torchvision's ``ImageFolder`` layout, a CSV/JSON list of ``path,label``,
and a seeded train/validation split.

A source is a sequence: ``len(source)`` and ``source[i] -> (PIL RGB image, class index)``,
with ``classes``, ``class_to_idx`` and ``samples`` (``[(path, index), ...]``) as torchvision
has them. Decoding happens in ``__getitem__`` so :func:`funcnets.data.loader` runs it in
its worker processes.

Colour: every image is converted to RGB on read, as torchvision's default loader does
(``Image.open(f).convert("RGB")``): greyscale is repeated to three channels, RGBA and
palette images lose their alpha channel (it is dropped, not composited).

Bad files: an unreadable or truncated image stops the run with a :class:`FuncnetsError`
naming the file (a silent skip would change what the model trains on without anyone
deciding it). To train anyway, list the bad files first with :func:`verify_images` and
leave them out with ``source.exclude(paths)``; the caller reports the count.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from PIL import Image

from funcnets.errors import FuncnetsError

__all__ = ["IMG_EXTENSIONS", "default_loader", "ImageFolder", "ImageList", "Subset", "train_val_split",
           "verify_images"]

# torchvision.datasets.folder.IMG_EXTENSIONS, matched case-insensitively as there
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def default_loader(path: str | os.PathLike) -> Image.Image:
    """Decode ``path`` fully and convert it to RGB (torchvision's ``pil_loader``).

    Raises:
        FuncnetsError: naming the file, when it is missing, unreadable, not an image or truncated.
    """
    try:
        with open(path, "rb") as f:
            img = Image.open(f)
            return img.convert("RGB")  # convert() loads every pixel, so truncation shows here
    except FileNotFoundError:
        raise FuncnetsError(f"image file {path} does not exist. Restore it or remove its entry.") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise FuncnetsError(
            f"cannot decode image {path} ({type(e).__name__}: {e}): the file is unreadable, truncated or not an "
            f"image. Replace or delete it (funcnets.data.verify_images lists every such file; "
            f"source.exclude(paths) leaves them out)."
        ) from None


class _FileSource:
    """What the file-backed sources share: ``samples``, ``targets``, decoding, ``exclude``."""

    samples: list[tuple[str, int]]
    classes: list[str]
    class_to_idx: dict[str, int]
    transform: Callable | None
    loader: Callable[[str], Any]

    @property
    def targets(self) -> list[int]:
        return [t for _, t in self.samples]

    @property
    def imgs(self) -> list[tuple[str, int]]:  # torchvision's alias
        return self.samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        path, target = self.samples[index]
        img = self.loader(path)
        if self.transform is not None:
            img = self.transform(img)
        return img, target

    def exclude(self, paths: Iterable[str | os.PathLike]) -> "_FileSource":
        """A copy without the samples whose file is in ``paths`` (classes unchanged)."""
        drop = {os.fspath(p) for p in paths}
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.samples = [s for s in self.samples if s[0] not in drop]
        return new


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS)


class ImageFolder(_FileSource):
    """torchvision's ``ImageFolder``: ``root/<class>/**/<image>``.

    Classes are the sub-folder names in sorted order (``class_to_idx`` maps each to its
    index); images are files with an extension in :data:`IMG_EXTENSIONS` (any case),
    found recursively (following links) in sorted order, so ``samples`` is the same list
    torchvision builds.

    Args:
        root: the folder holding one sub-folder per class.
        transform: applied to each decoded image in ``__getitem__`` (without a generator;
            :func:`funcnets.data.loader` takes the transform separately and seeds it).
        loader: decodes a path (default: :func:`default_loader`, RGB).
        is_valid_file: a predicate on paths replacing the extension check.
        allow_empty: keep class folders that hold no image (torchvision's flag); otherwise
            they are an error naming them.
    """

    def __init__(self, root: str | os.PathLike, transform: Callable | None = None,
                 target_transform: Callable | None = None, loader: Callable[[str], Any] = default_loader,
                 is_valid_file: Callable[[str], bool] | None = None, allow_empty: bool = False):
        self.root = os.fspath(root)
        self.transform, self.target_transform, self.loader = transform, target_transform, loader
        root_p = Path(self.root)
        if not root_p.is_dir():
            raise FileNotFoundError(f"no folder at {self.root}: ImageFolder wants a folder with one sub-folder of "
                                    f"images per class (root/cat/1.jpg, root/dog/2.png, ...).")
        self.classes = sorted(e.name for e in os.scandir(root_p) if e.is_dir())
        if not self.classes:
            loose = [n for n in sorted(os.listdir(root_p)) if _is_image(n)]
            hint = (f" It holds {len(loose)} image file(s) directly (e.g. {loose[0]}): move them into one "
                    f"sub-folder per class.") if loose else ""
            raise FuncnetsError(f"Couldn't find any class folder in {self.root}.{hint} ImageFolder wants "
                                f"root/<class name>/<image files>.")
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        valid = is_valid_file or _is_image
        self.samples = []
        empty = []
        for c in self.classes:
            found = []
            for dirpath, _, files in sorted(os.walk(root_p / c, followlinks=True)):
                found += [(os.path.join(dirpath, f), self.class_to_idx[c]) for f in sorted(files) if valid(os.path.join(dirpath, f))]
            if not found:
                empty.append(c)
            self.samples += found
        if empty and not allow_empty:
            names = ", ".join(os.path.join(self.root, c) for c in empty)
            raise FuncnetsError(
                f"class folder(s) with no image: {names}. Supported extensions are: {', '.join(IMG_EXTENSIONS)} "
                f"(any case). Put images there, delete the folder, or pass allow_empty=True to keep the class.")
        if not self.samples:
            raise FuncnetsError(f"no images in {self.root}: supported extensions are {', '.join(IMG_EXTENSIONS)}.")

    def __getitem__(self, index: int) -> tuple[Any, int]:
        img, target = super().__getitem__(index)
        return img, (self.target_transform(target) if self.target_transform is not None else target)

    def __repr__(self) -> str:
        return f"ImageFolder(root={self.root!r}, {len(self.samples)} images, {len(self.classes)} classes)"


class ImageList(_FileSource):
    """Images named in a CSV or JSON file with their labels.

    CSV: one ``path,label`` row per image (an optional header row ``path,label``).
    JSON: a list of ``{"path": ..., "label": ...}`` objects or ``[path, label]`` pairs, or
    an object ``{path: label}``. Labels are class indices (ints) or class names (then
    ``classes`` is their sorted set, as :class:`ImageFolder` would number folders of those
    names). Relative paths are relative to ``root`` (default: the list file's folder).
    Every named file must exist; a missing one is an error naming the list, the row and
    the path.
    """

    def __init__(self, file: str | os.PathLike, root: str | os.PathLike | None = None,
                 transform: Callable | None = None, loader: Callable[[str], Any] = default_loader):
        self.file = os.fspath(file)
        self.root = os.fspath(root) if root is not None else os.path.dirname(os.path.abspath(self.file))
        self.transform, self.loader = transform, loader
        rows = self._read_rows()
        if not rows:
            raise FuncnetsError(f"{self.file} lists no images; expected rows of path,label.")
        labels = [lab for _, lab, _ in rows]
        if all(isinstance(v, int) or (isinstance(v, str) and v.strip().lstrip("-").isdigit()) for v in labels):
            ints = [int(v) for v in labels]
            if min(ints) < 0:
                where = rows[ints.index(min(ints))][2]
                raise FuncnetsError(f"{self.file} {where}: label {min(ints)} is negative; class indices start at 0.")
            self.classes = [str(i) for i in range(max(ints) + 1)]
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
            targets = ints
        else:
            self.classes = sorted({str(v) for v in labels})
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
            targets = [self.class_to_idx[str(v)] for v in labels]
        self.samples = []
        for (path, _, where), t in zip(rows, targets):
            full = path if os.path.isabs(path) else os.path.join(self.root, path)
            if not os.path.isfile(full):
                raise FuncnetsError(f"{self.file} {where} names {path}, but there is no file at {full}. Fix the "
                                    f"path (relative paths are taken from {self.root}) or remove the row.")
            self.samples.append((full, t))

    def _read_rows(self) -> list[tuple[str, Any, str]]:
        if not os.path.isfile(self.file):
            raise FileNotFoundError(f"no label file at {self.file}")
        text = Path(self.file).read_text(encoding="utf-8-sig")
        if self.file.lower().endswith(".json"):
            try:
                doc = json.loads(text)
            except json.JSONDecodeError as e:
                raise FuncnetsError(f"{self.file} is not valid JSON ({e}).") from None
            items = list(doc.items()) if isinstance(doc, dict) else doc
            rows = []
            for k, item in enumerate(items):
                if isinstance(item, dict) and "path" in item and "label" in item:
                    rows.append((str(item["path"]), item["label"], f"entry {k}"))
                elif isinstance(item, (list, tuple)) and len(item) == 2:
                    rows.append((str(item[0]), item[1], f"entry {k}"))
                else:
                    raise FuncnetsError(f"{self.file} entry {k} is {item!r}; expected {{\"path\": ..., \"label\": ...}} "
                                        f"or [path, label].")
            return rows
        rows = []
        for n, rec in enumerate(csv.reader(text.splitlines()), start=1):
            if not rec or all(not c.strip() for c in rec):
                continue
            if len(rec) != 2:
                raise FuncnetsError(f"{self.file} line {n} has {len(rec)} fields ({rec!r}); expected path,label.")
            if n == 1 and [c.strip().lower() for c in rec] == ["path", "label"]:
                continue
            rows.append((rec[0].strip(), rec[1].strip(), f"line {n}"))
        return rows

    def __repr__(self) -> str:
        return f"ImageList(file={self.file!r}, {len(self.samples)} images, {len(self.classes)} classes)"


class Subset:
    """``dataset`` restricted to ``indices`` (torch.utils.data.Subset); keeps ``classes``."""

    def __init__(self, dataset: Any, indices: Sequence[int]):
        self.dataset, self.indices = dataset, [int(i) for i in indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Any:
        return self.dataset[self.indices[index]]

    @property
    def classes(self) -> list[str]:
        return self.dataset.classes

    @property
    def class_to_idx(self) -> dict[str, int]:
        return self.dataset.class_to_idx

    @property
    def targets(self) -> list[int]:
        t = self.dataset.targets
        return [int(t[i]) for i in self.indices]

    @property
    def samples(self) -> list[tuple[str, int]]:
        return [self.dataset.samples[i] for i in self.indices]


def train_val_split(dataset: Any, val_fraction: float = 0.1, seed: int = 0,
                    stratify: bool = True) -> tuple[Subset, Subset]:
    """Split into ``(train, val)`` :class:`Subset` s with ``round(val_fraction * n)``
    validation samples (per class when ``stratify``, so every class is in both when it
    can be). Depends only on ``seed`` and the dataset's order; indices come out sorted."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    n = len(dataset)
    rng = np.random.default_rng(seed)
    val = np.zeros(n, bool)
    targets = np.asarray(dataset.targets) if stratify and hasattr(dataset, "targets") else np.zeros(n, int)
    for c in np.unique(targets):
        idx = rng.permutation(np.flatnonzero(targets == c))
        val[idx[: int(round(len(idx) * val_fraction))]] = True
    if val.all() or not val.any():
        raise ValueError(f"val_fraction={val_fraction} of {n} samples leaves one side empty; pass a fraction that "
                         f"gives at least one sample to each.")
    return Subset(dataset, np.flatnonzero(~val)), Subset(dataset, np.flatnonzero(val))


def verify_images(dataset: Any, loader: Callable[[str], Any] = default_loader) -> list[tuple[str, str]]:
    """Decode every file of ``dataset.samples``; returns ``[(path, message), ...]`` for the
    ones that fail (empty when all decode)."""
    bad = []
    for path, _ in dataset.samples:
        try:
            loader(path)
        except FuncnetsError as e:
            bad.append((path, str(e)))
    return bad
