"""torchvision's image transforms (``torchvision.transforms`` v1), same names, arguments and results.

Each transform takes a PIL image (or a ``uint8`` array ``(H, W)`` / ``(H, W, C)``, turned
into one) and returns a PIL image, except :class:`ToTensor` (PIL -> ``(C, H, W)`` float32
in [0, 1]) and :class:`Normalize` (``(C, H, W)`` float -> float). The pixel work is done by
Pillow exactly as torchvision does it for PIL input (``Image.resize``, ``Image.crop``,
``ImageOps.expand``, ``ImageEnhance``, ``Image.transform``), so a deterministic transform
gives torchvision's bytes, and :class:`Normalize` its float32 values.

Randomness: a random transform is called as ``t(img, rng)`` with a
``numpy.random.Generator``; :func:`funcnets.data.loader` passes one seeded from the run's
seed and the sample's position, so a sample's augmentation depends only on the seed and
where it is in the stream (deterministic, resumable, independent of worker count).
Without ``rng`` a fresh unseeded generator is used, like torchvision's global RNG. The
parameters are drawn from the same distributions as torchvision's (``get_params``), from
numpy's generator instead of torch's, so the draws themselves differ from torch's.

Example::

    from funcnets.data import transforms as T
    train_tf = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(),
                          T.Normalize(T.IMAGENET_MEAN, T.IMAGENET_STD)])
    x = train_tf(pil_image, np.random.default_rng(0))   # (3, 224, 224) float32
"""

from __future__ import annotations

import math
import numbers
import warnings
from enum import Enum
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

__all__ = [
    "InterpolationMode", "IMAGENET_MEAN", "IMAGENET_STD",
    "Compose", "ToTensor", "Normalize", "Resize", "CenterCrop", "RandomCrop", "RandomResizedCrop",
    "RandomHorizontalFlip", "ColorJitter", "RandAugment", "TrivialAugmentWide", "imagenet_eval",
    "to_pil", "to_tensor", "normalize", "resize", "crop", "center_crop", "pad", "resized_crop", "hflip",
    "adjust_brightness", "adjust_contrast", "adjust_saturation", "adjust_hue", "adjust_sharpness",
]  # fmt: skip

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class InterpolationMode(Enum):
    """torchvision's interpolation names (``InterpolationMode.BILINEAR`` or ``"bilinear"``)."""

    NEAREST = "nearest"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"

    def __repr__(self) -> str:  # torchvision prints "InterpolationMode.BILINEAR"
        return f"InterpolationMode.{self.name}"

    __str__ = __repr__


_PIL_MODES = {
    InterpolationMode.NEAREST: Image.NEAREST, InterpolationMode.BILINEAR: Image.BILINEAR,
    InterpolationMode.BICUBIC: Image.BICUBIC, InterpolationMode.BOX: Image.BOX,
    InterpolationMode.HAMMING: Image.HAMMING, InterpolationMode.LANCZOS: Image.LANCZOS,
}  # fmt: skip


def _interp(mode: Any) -> int:
    """torchvision accepts the enum, its value string, or a Pillow integer constant."""
    if isinstance(mode, InterpolationMode):
        return _PIL_MODES[mode]
    if isinstance(mode, str):
        try:
            return _PIL_MODES[InterpolationMode(mode.lower())]
        except ValueError:
            pass
    if isinstance(mode, int) and mode in _PIL_MODES.values():
        return mode
    raise ValueError(
        f"interpolation must be an InterpolationMode ({', '.join(m.name for m in InterpolationMode)}), its name "
        f"as a string, or a Pillow constant; got {mode!r}"
    )


def _mode_enum(mode: Any) -> InterpolationMode:
    code = _interp(mode)
    return next(m for m, c in _PIL_MODES.items() if c == code)


# --------------------------------------------------------------------------- functional


def to_pil(img: Any) -> Image.Image:
    """A PIL image as is; a ``uint8`` array ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or
    ``(H, W, 4)`` as the matching L/RGB/RGBA image."""
    if isinstance(img, Image.Image):
        return img
    a = np.asarray(img)
    if a.dtype != np.uint8 or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 3, 4)):
        raise TypeError(
            f"expected a PIL image or a uint8 array (H, W) or (H, W, C) with C in 1, 3, 4; got "
            f"{type(img).__name__} {getattr(a, 'dtype', '')} {getattr(a, 'shape', '')}. Transforms before ToTensor "
            f"work on images; convert float arrays with (x * 255).round().astype(np.uint8) first."
        )
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    return Image.fromarray(np.ascontiguousarray(a))


def to_tensor(img: Any) -> np.ndarray:
    """torchvision's ``to_tensor``: image ``(H, W, C)`` uint8 -> ``(C, H, W)`` float32 in [0, 1]
    (divided by 255). Mode "1" images become 0/1."""
    if isinstance(img, np.ndarray) and img.dtype != np.uint8:
        raise TypeError(f"to_tensor expects a PIL image or a uint8 (H, W[, C]) array, got {img.dtype} {img.shape}")
    pil = to_pil(img)
    a = np.asarray(pil)
    if pil.mode == "1":
        a = a.astype(np.uint8) * 255
    if a.ndim == 2:
        a = a[:, :, None]
    return np.ascontiguousarray(a.transpose(2, 0, 1)).astype(np.float32) / np.float32(255.0)


def normalize(x: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """``(x - mean[c]) / std[c]`` per channel in float32 like torchvision. ``x: (C, H, W)`` or
    ``(N, C, H, W)`` floating."""
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"Input tensor should be a float tensor. Got {x.dtype}. Put ToTensor() before Normalize.")
    if x.ndim < 3:
        raise ValueError(f"Expected tensor to be a tensor image of size (..., C, H, W). Got tensor.size() = {x.shape}")
    m = np.asarray(mean, x.dtype).reshape(-1, 1, 1)
    s = np.asarray(std, x.dtype).reshape(-1, 1, 1)
    if (s == 0).any():
        raise ValueError(f"std evaluated to zero after conversion to {x.dtype}, leading to division by zero.")
    return (x - m) / s


def _output_size(h: int, w: int, size: Sequence[int], max_size: int | None) -> tuple[int, int]:
    """torchvision's ``_compute_resized_output_size``: one number sets the shorter edge."""
    if len(size) == 2:
        return int(size[0]), int(size[1])
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size[0], int(size[0] * long / short)
    if max_size is not None:
        if max_size <= size[0]:
            raise ValueError(f"max_size = {max_size} must be strictly greater than the requested size for the "
                             f"smaller edge size = {size}")
        if new_long > max_size:
            new_short, new_long = int(max_size * new_short / new_long), max_size
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    return new_h, new_w


def _size_list(size: int | Sequence[int], name: str = "size") -> list[int]:
    if isinstance(size, numbers.Integral):
        return [int(size)]
    if isinstance(size, (list, tuple)) and len(size) in (1, 2) and all(isinstance(s, numbers.Integral) for s in size):
        return [int(s) for s in size]
    raise ValueError(f"{name} must be an int or a 1 or 2 element tuple/list of ints, got {size!r}")


def resize(img: Any, size: int | Sequence[int], interpolation: Any = InterpolationMode.BILINEAR,
           max_size: int | None = None, antialias: bool | None = True) -> Image.Image:
    """torchvision's ``resize`` on a PIL image. ``size`` an int (or ``[s]``) sets the shorter
    edge to ``s`` keeping the aspect ratio (the longer edge truncated); ``(h, w)`` sets both.
    Pillow always antialiases when it shrinks, as torchvision says for PIL input."""
    img = to_pil(img)
    size = _size_list(size)
    if max_size is not None and len(size) != 1:
        raise ValueError("max_size should only be passed if size specifies the length of the smaller edge, "
                         "i.e. size should be an int or a sequence of length 1 in torchscript mode.")
    if antialias is False:
        warnings.warn("Anti-alias option is always applied for PIL Image input. Argument antialias is ignored.")
    h, w = _output_size(img.height, img.width, size, max_size)
    if (h, w) == (img.height, img.width):
        return img
    if h <= 0 or w <= 0:
        raise ValueError(f"resize of a {img.height}x{img.width} image to {size} gives {h}x{w}; pass a larger size")
    return img.resize((w, h), _interp(interpolation))


def crop(img: Any, top: int, left: int, height: int, width: int) -> Image.Image:
    """The box ``[top, top + height) x [left, left + width)``; outside the image is 0 (Pillow)."""
    img = to_pil(img)
    return img.crop((left, top, left + width, top + height))


def _fill_opts(fill: Any, img: Image.Image) -> Any:
    """torchvision's ``_parse_fill`` for Pillow: a number for every band, ints unless mode F."""
    bands = len(img.getbands())
    fill = 0 if fill is None else fill
    if isinstance(fill, (int, float)) and bands > 1:
        fill = (fill,) * bands
    if isinstance(fill, (list, tuple)):
        if len(fill) == 1:
            fill = tuple(fill) * bands
        elif len(fill) != bands:
            raise ValueError(f"The number of elements in 'fill' does not match the number of channels of the image "
                             f"({len(fill)} != {bands})")
        return tuple(fill) if img.mode == "F" else tuple(int(v) for v in fill)
    return fill if img.mode == "F" else int(fill)


def _padding_ltrb(padding: int | Sequence[int]) -> tuple[int, int, int, int]:
    if isinstance(padding, numbers.Integral):
        p = int(padding)
        return p, p, p, p
    padding = tuple(padding)
    if len(padding) == 1:
        return (int(padding[0]),) * 4
    if len(padding) == 2:
        return int(padding[0]), int(padding[1]), int(padding[0]), int(padding[1])
    if len(padding) == 4:
        return tuple(int(p) for p in padding)  # type: ignore[return-value]
    raise ValueError(f"Padding must be an int or a 1, 2, or 4 element tuple, not a {len(padding)} element tuple")


def pad(img: Any, padding: int | Sequence[int], fill: Any = 0, padding_mode: str = "constant") -> Image.Image:
    """torchvision's ``pad``: ``padding`` an int (all sides), ``(left/right, top/bottom)`` or
    ``(left, top, right, bottom)``; ``padding_mode`` constant (``fill``), edge, reflect or
    symmetric (numpy's modes, as torchvision uses for PIL); negative padding crops."""
    img = to_pil(img)
    if padding_mode not in ("constant", "edge", "reflect", "symmetric"):
        raise ValueError("Padding mode should be either constant, edge, reflect or symmetric")
    left, top, right, bottom = _padding_ltrb(padding)
    if padding_mode == "constant":
        # ImageOps.expand, as torchvision calls it (a negative border crops there too)
        border: Any = left if left == top == right == bottom else (left, top, right, bottom)
        return ImageOps.expand(img, border=border, fill=_fill_opts(fill, img))
    p = np.array([left, top, right, bottom])
    cl, ct, cr, cb = (-np.minimum(p, 0)).tolist()
    if cl or ct or cr or cb:
        img = img.crop((cl, ct, img.width - cr, img.height - cb))
    left, top, right, bottom = np.maximum(p, 0).tolist()
    a = np.asarray(img)
    widths = ((top, bottom), (left, right)) + (((0, 0),) if a.ndim == 3 else ())
    out = np.pad(a, widths, mode=padding_mode)
    return Image.fromarray(out, mode=img.mode)


def center_crop(img: Any, output_size: int | Sequence[int]) -> Image.Image:
    """The central ``(h, w)`` box, rounding its corner as torchvision does; an image smaller
    than the crop is first padded with zeros (torchvision pads here, RandomCrop does not)."""
    img = to_pil(img)
    size = _size_list(output_size, "output_size")
    ch, cw = (size[0], size[0]) if len(size) == 1 else size
    h, w = img.height, img.width
    if cw > w or ch > h:
        ltrb = [(cw - w) // 2 if cw > w else 0, (ch - h) // 2 if ch > h else 0,
                (cw - w + 1) // 2 if cw > w else 0, (ch - h + 1) // 2 if ch > h else 0]
        img = pad(img, ltrb, fill=0)
        h, w = img.height, img.width
        if (cw, ch) == (w, h):
            return img
    return crop(img, int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0)), ch, cw)


def resized_crop(img: Any, top: int, left: int, height: int, width: int, size: int | Sequence[int],
                 interpolation: Any = InterpolationMode.BILINEAR, antialias: bool | None = True) -> Image.Image:
    """``crop`` then ``resize`` (torchvision's ``resized_crop``)."""
    return resize(crop(img, top, left, height, width), size, interpolation, antialias=antialias)


def hflip(img: Any) -> Image.Image:
    """Mirror left-right."""
    return to_pil(img).transpose(Image.FLIP_LEFT_RIGHT)


def adjust_brightness(img: Any, brightness_factor: float) -> Image.Image:
    """``ImageEnhance.Brightness``: 0 black, 1 the image, 2 twice as bright."""
    if brightness_factor < 0:
        raise ValueError(f"brightness_factor ({brightness_factor}) is not non-negative.")
    return ImageEnhance.Brightness(to_pil(img)).enhance(brightness_factor)


def adjust_contrast(img: Any, contrast_factor: float) -> Image.Image:
    """``ImageEnhance.Contrast``: blends with the mean grey level."""
    if contrast_factor < 0:
        raise ValueError(f"contrast_factor ({contrast_factor}) is not non-negative.")
    return ImageEnhance.Contrast(to_pil(img)).enhance(contrast_factor)


def adjust_saturation(img: Any, saturation_factor: float) -> Image.Image:
    """``ImageEnhance.Color``: blends with the greyscale image."""
    if saturation_factor < 0:
        raise ValueError(f"saturation_factor ({saturation_factor}) is not non-negative.")
    return ImageEnhance.Color(to_pil(img)).enhance(saturation_factor)


def adjust_sharpness(img: Any, sharpness_factor: float) -> Image.Image:
    """``ImageEnhance.Sharpness``."""
    if sharpness_factor < 0:
        raise ValueError(f"sharpness_factor ({sharpness_factor}) is not non-negative.")
    return ImageEnhance.Sharpness(to_pil(img)).enhance(sharpness_factor)


def adjust_hue(img: Any, hue_factor: float) -> Image.Image:
    """Shift the hue channel (HSV, uint8, wrapping) by ``hue_factor * 255``; ``hue_factor`` in [-0.5, 0.5]."""
    if not -0.5 <= hue_factor <= 0.5:
        raise ValueError(f"hue_factor ({hue_factor}) is not in [-0.5, 0.5].")
    img = to_pil(img)
    if img.mode in {"L", "1", "I", "F"}:
        return img
    h, s, v = img.convert("HSV").split()
    np_h = np.array(h, dtype=np.uint8)
    np_h += np.int32(hue_factor * 255).astype(np.uint8)  # wraps around, as torchvision's does
    return Image.merge("HSV", (Image.fromarray(np_h, "L"), s, v)).convert(img.mode)


def _affine_matrix(center: Sequence[float], angle: float, translate: Sequence[float], scale: float,
                   shear: Sequence[float]) -> list[float]:
    """torchvision's ``_get_inverse_affine_matrix`` (the output->input map Pillow wants)."""
    rot = math.radians(angle)
    sx, sy = math.radians(shear[0]), math.radians(shear[1])
    cx, cy = center
    tx, ty = translate
    a = math.cos(rot - sy) / math.cos(sy)
    b = -math.cos(rot - sy) * math.tan(sx) / math.cos(sy) - math.sin(rot)
    c = math.sin(rot - sy) / math.cos(sy)
    d = -math.sin(rot - sy) * math.tan(sx) / math.cos(sy) + math.cos(rot)
    m = [x / scale for x in (d, -b, 0.0, -c, a, 0.0)]
    m[2] += m[0] * (-cx - tx) + m[1] * (-cy - ty)
    m[5] += m[3] * (-cx - tx) + m[4] * (-cy - ty)
    m[2] += cx
    m[5] += cy
    return m


def _affine(img: Image.Image, angle: float, translate: Sequence[float], shear: Sequence[float],
            interpolation: Any, fill: Any, center: Sequence[float] | None = None) -> Image.Image:
    if center is None:
        center = [img.width * 0.5, img.height * 0.5]
    m = _affine_matrix(center, angle, translate, 1.0, shear)
    return img.transform(img.size, Image.AFFINE, m, _interp(interpolation), fillcolor=_fill_opts(fill, img))


def _apply_op(img: Image.Image, op: str, magnitude: float, interpolation: Any, fill: Any) -> Image.Image:
    """One operation of torchvision's ``autoaugment._apply_op`` on a PIL image."""
    if op == "ShearX":
        return _affine(img, 0.0, [0, 0], [math.degrees(math.atan(magnitude)), 0.0], interpolation, fill, [0, 0])
    if op == "ShearY":
        return _affine(img, 0.0, [0, 0], [0.0, math.degrees(math.atan(magnitude))], interpolation, fill, [0, 0])
    if op == "TranslateX":
        return _affine(img, 0.0, [int(magnitude), 0], [0.0, 0.0], interpolation, fill)
    if op == "TranslateY":
        return _affine(img, 0.0, [0, int(magnitude)], [0.0, 0.0], interpolation, fill)
    if op == "Rotate":
        return img.rotate(magnitude, _interp(interpolation), False, None, fillcolor=_fill_opts(fill, img))
    if op == "Brightness":
        return adjust_brightness(img, 1.0 + magnitude)
    if op == "Color":
        return adjust_saturation(img, 1.0 + magnitude)
    if op == "Contrast":
        return adjust_contrast(img, 1.0 + magnitude)
    if op == "Sharpness":
        return adjust_sharpness(img, 1.0 + magnitude)
    if op == "Posterize":
        return ImageOps.posterize(img, int(magnitude))
    if op == "Solarize":
        return ImageOps.solarize(img, magnitude)
    if op == "AutoContrast":
        return ImageOps.autocontrast(img)
    if op == "Equalize":
        return ImageOps.equalize(img)
    if op == "Identity":
        return img
    raise ValueError(f"The provided operator {op} is not recognized.")


# --------------------------------------------------------------------------- transforms


def _rng(rng: np.random.Generator | None) -> np.random.Generator:
    return rng if rng is not None else np.random.default_rng()


class Transform:
    """Base: ``t(img, rng=None)``; deterministic transforms ignore ``rng``."""

    def __call__(self, img: Any, rng: np.random.Generator | None = None) -> Any:
        raise NotImplementedError


class Compose(Transform):
    """Apply ``transforms`` in order, passing the same generator to each (its draws follow one another)."""

    def __init__(self, transforms: Sequence[Callable]):
        self.transforms = list(transforms)

    def __call__(self, img: Any, rng: np.random.Generator | None = None) -> Any:
        for t in self.transforms:
            img = t(img, rng) if isinstance(t, Transform) else t(img)
        return img

    def __repr__(self) -> str:
        return "Compose(\n" + "".join(f"    {t}\n" for t in self.transforms) + ")"


class ToTensor(Transform):
    """Image ``(H, W, C)`` uint8 -> ``(C, H, W)`` float32 in [0, 1] (see :func:`to_tensor`)."""

    def __call__(self, img: Any, rng: np.random.Generator | None = None) -> np.ndarray:
        return to_tensor(img)

    def __repr__(self) -> str:
        return "ToTensor()"


class Normalize(Transform):
    """``(x - mean) / std`` per channel on ``(C, H, W)`` float arrays."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], inplace: bool = False):
        self.mean, self.std, self.inplace = mean, std, inplace

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        return normalize(x, self.mean, self.std)

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


class Resize(Transform):
    """Resize to ``size`` (an int sets the shorter edge; ``(h, w)`` both); see :func:`resize`."""

    def __init__(self, size: int | Sequence[int], interpolation: Any = InterpolationMode.BILINEAR,
                 max_size: int | None = None, antialias: bool | None = True):
        _size_list(size)
        _interp(interpolation)
        self.size, self.interpolation, self.max_size, self.antialias = size, _mode_enum(interpolation), max_size, antialias

    def __call__(self, img: Any, rng: np.random.Generator | None = None) -> Image.Image:
        return resize(img, self.size, self.interpolation, self.max_size, self.antialias)

    def __repr__(self) -> str:
        return (f"Resize(size={self.size}, interpolation={self.interpolation.value}, max_size={self.max_size}, "
                f"antialias={self.antialias})")


class CenterCrop(Transform):
    """The central ``size`` box (zero-padded first if the image is smaller)."""

    def __init__(self, size: int | Sequence[int]):
        s = _size_list(size)
        self.size = (s[0], s[0]) if len(s) == 1 else tuple(s)

    def __call__(self, img: Any, rng: np.random.Generator | None = None) -> Image.Image:
        return center_crop(img, self.size)

    def __repr__(self) -> str:
        return f"CenterCrop(size={self.size})"


class RandomCrop(Transform):
    """A uniformly placed ``size`` box, after optional ``padding``; ``pad_if_needed`` pads an
    image smaller than the crop (otherwise that is an error, as in torchvision)."""

    def __init__(self, size: int | Sequence[int], padding: int | Sequence[int] | None = None,
                 pad_if_needed: bool = False, fill: Any = 0, padding_mode: str = "constant"):
        s = _size_list(size)
        self.size = (s[0], s[0]) if len(s) == 1 else tuple(s)
        if padding is not None:
            _padding_ltrb(padding)
        if padding_mode not in ("constant", "edge", "reflect", "symmetric"):
            raise ValueError("Padding mode should be either constant, edge, reflect or symmetric")
        self.padding, self.pad_if_needed, self.fill, self.padding_mode = padding, pad_if_needed, fill, padding_mode

    @staticmethod
    def get_params(img: Any, output_size: tuple[int, int], rng: np.random.Generator) -> tuple[int, int, int, int]:
        """``(top, left, h, w)`` of a uniformly placed crop."""
        h, w = img.height, img.width
        th, tw = output_size
        if h < th or w < tw:
            raise ValueError(
                f"Required crop size {(th, tw)} is larger than input image size {(h, w)}. Pass pad_if_needed=True "
                f"(or padding=...) to RandomCrop, or Resize the images to at least the crop size first.")
        if w == tw and h == th:
            return 0, 0, h, w
        return int(rng.integers(0, h - th + 1)), int(rng.integers(0, w - tw + 1)), th, tw

    def __call__(self, img: Any, rng: np.random.Generator | None = None) -> Image.Image:
        img = to_pil(img)
        if self.padding is not None:
            img = pad(img, self.padding, self.fill, self.padding_mode)
        if self.pad_if_needed and img.width < self.size[1]:
            img = pad(img, [self.size[1] - img.width, 0], self.fill, self.padding_mode)
        if self.pad_if_needed and img.height < self.size[0]:
            img = pad(img, [0, self.size[0] - img.height], self.fill, self.padding_mode)
        i, j, h, w = self.get_params(img, self.size, _rng(rng))
        return crop(img, i, j, h, w)

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size}, padding={self.padding})"


class RandomResizedCrop(Transform):
    """A random box of area ``scale`` x the image and aspect ratio in ``ratio`` (log-uniform),
    resized to ``size``; ten tries, then the central box clipped to ``ratio`` (torchvision's rule)."""

    def __init__(self, size: int | Sequence[int], scale: tuple[float, float] = (0.08, 1.0),
                 ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0), interpolation: Any = InterpolationMode.BILINEAR,
                 antialias: bool | None = True):
        s = _size_list(size)
        self.size = (s[0], s[0]) if len(s) == 1 else tuple(s)
        if scale[0] > scale[1] or ratio[0] > ratio[1]:
            warnings.warn("Scale and ratio should be of kind (min, max)")
        self.scale, self.ratio, self.interpolation, self.antialias = tuple(scale), tuple(ratio), _mode_enum(interpolation), antialias

    @staticmethod
    def get_params(img: Any, scale: Sequence[float], ratio: Sequence[float],
                   rng: np.random.Generator) -> tuple[int, int, int, int]:
        """``(top, left, h, w)`` as torchvision's ``RandomResizedCrop.get_params`` draws it."""
        height, width = img.height, img.width
        area = height * width
        log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
        for _ in range(10):
            target_area = area * rng.uniform(scale[0], scale[1])
            aspect_ratio = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
            w = int(round(math.sqrt(target_area * aspect_ratio)))
            h = int(round(math.sqrt(target_area / aspect_ratio)))
            if 0 < w <= width and 0 < h <= height:
                return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
        in_ratio = float(width) / float(height)
        if in_ratio < min(ratio):
            w, h = width, int(round(width / min(ratio)))
        elif in_ratio > max(ratio):
            h, w = height, int(round(height * max(ratio)))
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w

    def __call__(self, img: Any, rng: np.random.Generator | None = None) -> Image.Image:
        img = to_pil(img)
        i, j, h, w = self.get_params(img, self.scale, self.ratio, _rng(rng))
        return resized_crop(img, i, j, h, w, list(self.size), self.interpolation, self.antialias)

    def __repr__(self) -> str:
        return (f"RandomResizedCrop(size={self.size}, scale={self.scale}, ratio={self.ratio}, "
                f"interpolation={self.interpolation.value}, antialias={self.antialias})")


class RandomHorizontalFlip(Transform):
    """Mirror left-right with probability ``p``."""

    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, img: Any, rng: np.random.Generator | None = None) -> Image.Image:
        img = to_pil(img)
        return hflip(img) if _rng(rng).random() < self.p else img

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


def _jitter_range(value: Any, name: str, center: float = 1.0, bound: tuple[float, float] = (0, float("inf")),
                  clip_first_on_zero: bool = True) -> tuple[float, float] | None:
    """torchvision's ``ColorJitter._check_input``."""
    if isinstance(value, numbers.Number):
        if value < 0:
            raise ValueError(f"If {name} is a single number, it must be non negative.")
        v = [center - float(value), center + float(value)]
        if clip_first_on_zero:
            v[0] = max(v[0], 0.0)
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        v = [float(value[0]), float(value[1])]
    else:
        raise TypeError(f"{name} should be a single number or a list/tuple with length 2.")
    if not bound[0] <= v[0] <= v[1] <= bound[1]:
        raise ValueError(f"{name} values should be between {bound}, but got {v}.")
    return None if v[0] == v[1] == center else (v[0], v[1])


class ColorJitter(Transform):
    """Brightness, contrast, saturation and hue factors drawn uniformly from their ranges and
    applied in a random order (torchvision's ``ColorJitter``)."""

    def __init__(self, brightness: Any = 0, contrast: Any = 0, saturation: Any = 0, hue: Any = 0):
        self.brightness = _jitter_range(brightness, "brightness")
        self.contrast = _jitter_range(contrast, "contrast")
        self.saturation = _jitter_range(saturation, "saturation")
        self.hue = _jitter_range(hue, "hue", center=0, bound=(-0.5, 0.5), clip_first_on_zero=False)

    @staticmethod
    def get_params(brightness, contrast, saturation, hue, rng: np.random.Generator):
        """``(order, b, c, s, h)``: a permutation of 0..3 and each factor (None when off)."""
        order = rng.permutation(4)
        b, c, s, h = (None if r is None else float(rng.uniform(r[0], r[1])) for r in (brightness, contrast, saturation, hue))
        return order, b, c, s, h

    def __call__(self, img: Any, rng: np.random.Generator | None = None) -> Image.Image:
        img = to_pil(img)
        order, b, c, s, h = self.get_params(self.brightness, self.contrast, self.saturation, self.hue, _rng(rng))
        for fn in order:
            if fn == 0 and b is not None:
                img = adjust_brightness(img, b)
            elif fn == 1 and c is not None:
                img = adjust_contrast(img, c)
            elif fn == 2 and s is not None:
                img = adjust_saturation(img, s)
            elif fn == 3 and h is not None:
                img = adjust_hue(img, h)
        return img

    def __repr__(self) -> str:
        return (f"ColorJitter(brightness={self.brightness}, contrast={self.contrast}, "
                f"saturation={self.saturation}, hue={self.hue})")


def _linspace(a: float, b: float, n: int) -> np.ndarray:
    """torch.linspace's float32 values: the first half counted up from ``a``, the second
    half down from ``b``, each ``start + step * i`` rounded once (torch's kernel fuses the
    multiply-add; numpy's linspace differs in the last bit, which moves some magnitudes)."""
    a32, b32 = np.float32(a), np.float32(b)
    if n == 1:
        return np.array([a32], np.float32)
    step = np.float64((b32 - a32) / np.float32(n - 1))
    i = np.arange(n)
    return np.where(i < n // 2, np.float64(a32) + step * i, np.float64(b32) - step * (n - 1 - i)).astype(np.float32)


class RandAugment(Transform):
    """``num_ops`` operations drawn uniformly from torchvision's 14, each at bin ``magnitude``
    of ``num_magnitude_bins`` with a random sign where the op is signed."""

    def __init__(self, num_ops: int = 2, magnitude: int = 9, num_magnitude_bins: int = 31,
                 interpolation: Any = InterpolationMode.NEAREST, fill: Any = None):
        self.num_ops, self.magnitude, self.num_magnitude_bins = num_ops, magnitude, num_magnitude_bins
        self.interpolation, self.fill = _mode_enum(interpolation), fill

    @staticmethod
    def _augmentation_space(num_bins: int, image_size: tuple[int, int]) -> dict[str, tuple[np.ndarray, bool]]:
        return {
            "Identity": (np.float32(0.0), False),
            "ShearX": (_linspace(0.0, 0.3, num_bins), True),
            "ShearY": (_linspace(0.0, 0.3, num_bins), True),
            "TranslateX": (_linspace(0.0, 150.0 / 331.0 * image_size[1], num_bins), True),
            "TranslateY": (_linspace(0.0, 150.0 / 331.0 * image_size[0], num_bins), True),
            "Rotate": (_linspace(0.0, 30.0, num_bins), True),
            "Brightness": (_linspace(0.0, 0.9, num_bins), True),
            "Color": (_linspace(0.0, 0.9, num_bins), True),
            "Contrast": (_linspace(0.0, 0.9, num_bins), True),
            "Sharpness": (_linspace(0.0, 0.9, num_bins), True),
            "Posterize": (8 - np.round(np.arange(num_bins) / ((num_bins - 1) / 4)).astype(np.int32), False),
            "Solarize": (_linspace(255.0, 0.0, num_bins), False),
            "AutoContrast": (np.float32(0.0), False),
            "Equalize": (np.float32(0.0), False),
        }

    def __call__(self, img: Any, rng: np.random.Generator | None = None) -> Image.Image:
        img, rng = to_pil(img), _rng(rng)
        ops = self._augmentation_space(self.num_magnitude_bins, (img.height, img.width))
        names = list(ops)
        for _ in range(self.num_ops):
            name = names[int(rng.integers(len(names)))]
            mags, signed = ops[name]
            magnitude = float(mags[self.magnitude]) if np.ndim(mags) > 0 else 0.0
            if signed and rng.integers(2):
                magnitude = -magnitude
            img = _apply_op(img, name, magnitude, self.interpolation, self.fill)
        return img

    def __repr__(self) -> str:
        return (f"RandAugment(num_ops={self.num_ops}, magnitude={self.magnitude}, num_magnitude_bins="
                f"{self.num_magnitude_bins}, interpolation={self.interpolation}, fill={self.fill})")


class TrivialAugmentWide(Transform):
    """One operation drawn uniformly from torchvision's 14 at a uniformly drawn magnitude bin
    (the "wide" ranges), with a random sign where the op is signed."""

    def __init__(self, num_magnitude_bins: int = 31, interpolation: Any = InterpolationMode.NEAREST, fill: Any = None):
        self.num_magnitude_bins, self.interpolation, self.fill = num_magnitude_bins, _mode_enum(interpolation), fill

    @staticmethod
    def _augmentation_space(num_bins: int) -> dict[str, tuple[np.ndarray, bool]]:
        return {
            "Identity": (np.float32(0.0), False),
            "ShearX": (_linspace(0.0, 0.99, num_bins), True),
            "ShearY": (_linspace(0.0, 0.99, num_bins), True),
            "TranslateX": (_linspace(0.0, 32.0, num_bins), True),
            "TranslateY": (_linspace(0.0, 32.0, num_bins), True),
            "Rotate": (_linspace(0.0, 135.0, num_bins), True),
            "Brightness": (_linspace(0.0, 0.99, num_bins), True),
            "Color": (_linspace(0.0, 0.99, num_bins), True),
            "Contrast": (_linspace(0.0, 0.99, num_bins), True),
            "Sharpness": (_linspace(0.0, 0.99, num_bins), True),
            "Posterize": (8 - np.round(np.arange(num_bins) / ((num_bins - 1) / 6)).astype(np.int32), False),
            "Solarize": (_linspace(255.0, 0.0, num_bins), False),
            "AutoContrast": (np.float32(0.0), False),
            "Equalize": (np.float32(0.0), False),
        }

    def __call__(self, img: Any, rng: np.random.Generator | None = None) -> Image.Image:
        img, rng = to_pil(img), _rng(rng)
        ops = self._augmentation_space(self.num_magnitude_bins)
        names = list(ops)
        name = names[int(rng.integers(len(names)))]
        mags, signed = ops[name]
        magnitude = float(mags[int(rng.integers(len(mags)))]) if np.ndim(mags) > 0 else 0.0
        if signed and rng.integers(2):
            magnitude = -magnitude
        return _apply_op(img, name, magnitude, self.interpolation, self.fill)

    def __repr__(self) -> str:
        return (f"TrivialAugmentWide(num_magnitude_bins={self.num_magnitude_bins}, "
                f"interpolation={self.interpolation}, fill={self.fill})")


def imagenet_eval(crop_size: int = 224, resize_size: int = 256,
                  interpolation: Any = InterpolationMode.BILINEAR) -> Compose:
    """The preset of torchvision's ImageNet classification weights (``weights.transforms()``):
    resize the shorter edge to 256 (bilinear, antialiased), center-crop 224, scale to [0, 1],
    normalise with the ImageNet mean and std. Returns ``(3, 224, 224)`` float32."""
    return Compose([Resize(resize_size, interpolation, antialias=True), CenterCrop(crop_size), ToTensor(),
                    Normalize(IMAGENET_MEAN, IMAGENET_STD)])
