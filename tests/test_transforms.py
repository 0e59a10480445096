"""funcnets.data.transforms against torchvision.transforms on the same PIL images.

Deterministic transforms: equal within one intensity level (uint8) and 1e-6 after
normalisation. Random transforms: the same image for the same drawn parameters
(torchvision's functional form), torchvision's parameter ranges/distributions, and the
same output for the same seed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms as tvT
import torchvision.transforms.functional as tvF
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from funcnets.data import transforms as T

MODES = ["nearest", "bilinear", "bicubic", "box", "hamming", "lanczos"]
TV_MODES = {m: getattr(tvT.InterpolationMode, m.upper()) for m in MODES}


def _image(seed: int, h: int, w: int, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    # smooth plus noise, so resampling filters see both edges and gradients
    yy, xx = np.mgrid[0:h, 0:w]
    base = (np.sin(yy / 3.0 + seed)[..., None] * 60 + xx[..., None] * 7 + rng.integers(0, 80, (h, w, 3)))
    a = np.clip(base, 0, 255).astype(np.uint8)
    img = Image.fromarray(a, "RGB")
    return img.convert(mode) if mode != "RGB" else img


def _u8(img) -> np.ndarray:
    return np.asarray(img).astype(np.int16)


def _same_image(ours, theirs, what: str) -> None:
    a, b = _u8(ours), _u8(theirs)
    assert a.shape == b.shape, f"{what}: shape {a.shape} vs torchvision {b.shape}"
    diff = int(np.abs(a - b).max()) if a.size else 0
    assert diff <= 1, f"{what}: max difference {diff} intensity levels"


sizes = st.integers(3, 24)


@settings(max_examples=20, deadline=None)
@given(h=sizes, w=sizes, size=st.one_of(st.integers(2, 30), st.tuples(st.integers(2, 30), st.integers(2, 30))),
       mode=st.sampled_from(MODES), gray=st.booleans(), seed=st.integers(0, 99))
def test_resize_matches_torchvision(h, w, size, mode, gray, seed):
    img = _image(seed, h, w, "L" if gray else "RGB")
    tv_size = list(size) if isinstance(size, tuple) else size
    ours = T.Resize(size, interpolation=mode)(img)
    _same_image(ours, tvT.Resize(tv_size, interpolation=TV_MODES[mode], antialias=True)(img), f"Resize({size}, {mode})")


@settings(max_examples=20, deadline=None)
@given(h=sizes, w=sizes, size=st.one_of(st.integers(1, 30), st.tuples(st.integers(1, 30), st.integers(1, 30))),
       seed=st.integers(0, 99))
def test_center_crop_matches_torchvision_including_padding(h, w, size, seed):
    img = _image(seed, h, w)
    tv_size = list(size) if isinstance(size, tuple) else size
    _same_image(T.CenterCrop(size)(img), tvT.CenterCrop(tv_size)(img), f"CenterCrop({size}) of {h}x{w}")


@settings(max_examples=20, deadline=None)
@given(h=sizes, w=sizes, padding=st.one_of(st.integers(0, 4), st.tuples(st.integers(-1, 4), st.integers(-1, 4)),
                                          st.tuples(*[st.integers(-1, 4)] * 4)),
       padding_mode=st.sampled_from(["constant", "edge", "reflect", "symmetric"]), fill=st.integers(0, 255),
       seed=st.integers(0, 99))
def test_pad_matches_torchvision(h, w, padding, padding_mode, fill, seed):
    img = _image(seed, h, w)
    if padding_mode in ("reflect",) and max(np.atleast_1d(padding)) >= min(h, w):
        padding = 1
    tv_pad = list(padding) if isinstance(padding, tuple) else padding
    _same_image(T.pad(img, padding, fill, padding_mode), tvF.pad(img, tv_pad, fill, padding_mode),
                f"pad({padding}, {padding_mode})")


@settings(max_examples=20, deadline=None)
@given(h=st.integers(4, 24), w=st.integers(4, 24), data=st.data(), size=st.integers(2, 16),
       mode=st.sampled_from(MODES), seed=st.integers(0, 99))
def test_resized_crop_and_crop_match_torchvision(h, w, data, size, mode, seed):
    img = _image(seed, h, w)
    top, left = data.draw(st.integers(0, h - 1)), data.draw(st.integers(0, w - 1))
    ch, cw = data.draw(st.integers(1, h - top)), data.draw(st.integers(1, w - left))
    _same_image(T.crop(img, top, left, ch, cw), tvF.crop(img, top, left, ch, cw), "crop")
    _same_image(T.resized_crop(img, top, left, ch, cw, [size, size], mode),
                tvF.resized_crop(img, top, left, ch, cw, [size, size], TV_MODES[mode], antialias=True), "resized_crop")
    _same_image(T.hflip(img), tvF.hflip(img), "hflip")


@settings(max_examples=20, deadline=None)
@given(factor=st.floats(0.0, 2.0), hue=st.floats(-0.5, 0.5), seed=st.integers(0, 99), h=st.integers(3, 12))
def test_color_adjustments_match_torchvision(factor, hue, seed, h):
    img = _image(seed, h, h + 2)
    for ours, theirs in [(T.adjust_brightness, tvF.adjust_brightness), (T.adjust_contrast, tvF.adjust_contrast),
                         (T.adjust_saturation, tvF.adjust_saturation), (T.adjust_sharpness, tvF.adjust_sharpness)]:
        _same_image(ours(img, factor), theirs(img, factor), f"{ours.__name__}({factor})")
    _same_image(T.adjust_hue(img, hue), tvF.adjust_hue(img, hue), f"adjust_hue({hue})")


@settings(max_examples=20, deadline=None)
@given(h=st.integers(3, 20), w=st.integers(3, 20), gray=st.booleans(), seed=st.integers(0, 99),
       mean=st.tuples(*[st.floats(-1, 1)] * 3), std=st.tuples(*[st.floats(0.05, 2)] * 3))
def test_to_tensor_and_normalize_match_torchvision(h, w, gray, seed, mean, std):
    img = _image(seed, h, w, "L" if gray else "RGB")
    x = T.to_tensor(img)
    ref = tvF.to_tensor(img)
    assert x.dtype == np.float32 and x.shape == tuple(ref.shape)
    np.testing.assert_array_equal(x, ref.numpy())
    c = x.shape[0]
    y = T.Normalize(mean[:c], std[:c])(x)
    ref_n = tvT.Normalize(mean[:c], std[:c])(ref).numpy()
    assert np.abs(y - ref_n).max() <= 1e-6


@settings(max_examples=10, deadline=None)
@given(h=st.integers(100, 320), w=st.integers(100, 320), seed=st.integers(0, 99))
def test_imagenet_eval_matches_weights_transforms(h, w, seed):
    from torchvision.models import ResNet18_Weights

    img = _image(seed, h, w)
    ours = T.imagenet_eval()(img)
    ref = ResNet18_Weights.IMAGENET1K_V1.transforms()(img).numpy()
    assert ours.shape == ref.shape == (3, 224, 224)
    assert np.abs(ours - ref).max() <= 1e-6


def test_uint8_arrays_are_accepted_and_float_arrays_refused():
    img = _image(0, 9, 11)
    a = np.asarray(img)
    _same_image(T.Resize(5)(a), tvT.Resize(5)(img), "Resize on a uint8 HWC array")
    np.testing.assert_array_equal(T.to_tensor(a), tvF.to_tensor(img).numpy())
    with pytest.raises(TypeError, match="uint8"):
        T.Resize(5)(a.astype(np.float32))
    with pytest.raises(TypeError, match="ToTensor"):
        T.normalize(a.transpose(2, 0, 1), T.IMAGENET_MEAN, T.IMAGENET_STD)
    with pytest.raises(ValueError, match="interpolation"):
        T.Resize(5, interpolation="linear")


def test_small_images_center_crop_pads_random_crop_refuses_without_pad_if_needed():
    img = _image(1, 5, 6)
    assert T.CenterCrop(8)(img).size == (8, 8)
    with pytest.raises(ValueError, match=r"Required crop size \(8, 8\) is larger than input image size \(5, 6\).*pad_if_needed"):
        T.RandomCrop(8)(img, np.random.default_rng(0))
    out = T.RandomCrop(8, pad_if_needed=True, fill=7)(img, np.random.default_rng(0))
    assert out.size == (8, 8)


# --------------------------------------------------------------------------- random transforms


@settings(max_examples=20, deadline=None)
@given(h=st.integers(4, 20), w=st.integers(4, 20), size=st.integers(2, 8), seed=st.integers(0, 2**31),
       padding=st.one_of(st.none(), st.integers(0, 3)), padding_mode=st.sampled_from(["constant", "edge", "reflect"]))
def test_random_crop_is_a_torchvision_crop_of_the_padded_image(h, w, size, seed, padding, padding_mode):
    img = _image(seed % 100, h, w)
    t = T.RandomCrop(size, padding=padding, pad_if_needed=True, padding_mode=padding_mode, fill=3)
    out = t(img, np.random.default_rng(seed))
    assert out.size == (size, size)
    assert _u8(t(img, np.random.default_rng(seed))).tolist() == _u8(out).tolist()  # same seed, same crop
    padded = img if padding is None else tvF.pad(img, padding, 3, padding_mode)
    if padded.width < size:
        padded = tvF.pad(padded, [size - padded.width, 0], 3, padding_mode)
    if padded.height < size:
        padded = tvF.pad(padded, [0, size - padded.height], 3, padding_mode)
    # the output must be one of torchvision's crops of the padded image
    hits = [(i, j) for i in range(padded.height - size + 1) for j in range(padded.width - size + 1)
            if np.array_equal(np.asarray(tvF.crop(padded, i, j, size, size)), np.asarray(out))]
    assert hits, "RandomCrop output is none of the crops torchvision could produce"


def test_random_crop_positions_are_uniform():
    img = _image(0, 10, 10)
    rng = np.random.default_rng(0)
    tops = [T.RandomCrop.get_params(img, (6, 6), rng)[0] for _ in range(5000)]
    counts = np.bincount(tops, minlength=5)
    assert counts.size == 5 and np.all(np.abs(counts / 5000 - 0.2) < 0.03), counts


def test_random_resized_crop_parameters_follow_torchvision_distribution():
    img = _image(0, 60, 80)
    rng = np.random.default_rng(1)
    torch.manual_seed(1)
    ours = np.array([T.RandomResizedCrop.get_params(img, (0.08, 1.0), (3 / 4, 4 / 3), rng) for _ in range(3000)])
    theirs = np.array([tvT.RandomResizedCrop.get_params(img, [0.08, 1.0], [3 / 4, 4 / 3]) for _ in range(3000)])
    for name, k in [("area", None), ("top", 0), ("left", 1)]:
        a = ours[:, 2] * ours[:, 3] if k is None else ours[:, k]
        b = theirs[:, 2] * theirs[:, 3] if k is None else theirs[:, k]
        assert abs(a.mean() - b.mean()) < 0.05 * b.mean() + 0.5, (name, a.mean(), b.mean())
        assert abs(a.std() - b.std()) < 0.08 * b.std() + 0.5, (name, a.std(), b.std())
    areas = ours[:, 2] * ours[:, 3] / (60 * 80)
    assert areas.min() >= 0.07 and areas.max() <= 1.0
    ratios = ours[:, 3] / ours[:, 2]
    assert ratios.min() > 0.7 and ratios.max() < 1.4


@settings(max_examples=15, deadline=None)
@given(h=st.integers(6, 30), w=st.integers(6, 30), size=st.integers(2, 12), seed=st.integers(0, 2**31),
       mode=st.sampled_from(MODES))
def test_random_resized_crop_output_is_torchvision_resized_crop_of_its_params(h, w, size, seed, mode):
    img = _image(seed % 100, h, w)
    t = T.RandomResizedCrop(size, interpolation=mode)
    out = t(img, np.random.default_rng(seed))
    i, j, ch, cw = T.RandomResizedCrop.get_params(img, t.scale, t.ratio, np.random.default_rng(seed))
    _same_image(out, tvF.resized_crop(img, i, j, ch, cw, [size, size], TV_MODES[mode], antialias=True),
                "RandomResizedCrop")


def test_horizontal_flip_probability_and_determinism():
    img = _image(0, 5, 7)
    flips = [np.array_equal(np.asarray(T.RandomHorizontalFlip(0.3)(img, np.random.default_rng(s))),
                            np.asarray(tvF.hflip(img))) for s in range(2000)]
    assert abs(np.mean(flips) - 0.3) < 0.04
    assert T.RandomHorizontalFlip(1.0)(img, np.random.default_rng(0)).tobytes() == tvF.hflip(img).tobytes()


def test_color_jitter_ranges_order_and_result():
    t = T.ColorJitter(brightness=0.4, contrast=(0.5, 1.5), saturation=0.2, hue=0.1)
    ref = tvT.ColorJitter(brightness=0.4, contrast=(0.5, 1.5), saturation=0.2, hue=0.1)
    assert (t.brightness, t.contrast, t.saturation, t.hue) == (ref.brightness, ref.contrast, ref.saturation, ref.hue)
    assert T.ColorJitter(brightness=0).brightness is None
    with pytest.raises(ValueError, match="hue values should be between"):
        T.ColorJitter(hue=0.6)
    rng = np.random.default_rng(0)
    draws = [T.ColorJitter.get_params(t.brightness, t.contrast, t.saturation, t.hue, rng) for _ in range(2000)]
    b = np.array([d[1] for d in draws])
    hh = np.array([d[4] for d in draws])
    assert 0.6 <= b.min() and b.max() <= 1.4 and abs(b.mean() - 1.0) < 0.02
    assert -0.1 <= hh.min() and hh.max() <= 0.1
    assert all(sorted(d[0]) == [0, 1, 2, 3] for d in draws[:50])
    # the result is torchvision's functional ops applied in the drawn order with the drawn factors
    img = _image(3, 9, 9)
    order, bf, cf, sf, hf = T.ColorJitter.get_params(t.brightness, t.contrast, t.saturation, t.hue,
                                                     np.random.default_rng(5))
    expected = img
    for fn in order:
        expected = [lambda x: tvF.adjust_brightness(x, bf), lambda x: tvF.adjust_contrast(x, cf),
                    lambda x: tvF.adjust_saturation(x, sf), lambda x: tvF.adjust_hue(x, hf)][fn](expected)
    _same_image(t(img, np.random.default_rng(5)), expected, "ColorJitter")


@pytest.mark.parametrize("cls", ["RandAugment", "TrivialAugmentWide"])
def test_auto_augment_ops_match_torchvision_apply_op(cls):
    from torchvision.transforms import autoaugment as tvaa

    img = _image(4, 14, 17)
    ours_t, tv_t = getattr(T, cls)(), getattr(tvaa, cls)()
    ours_space = (ours_t._augmentation_space(31, (14, 17)) if cls == "RandAugment"
                  else ours_t._augmentation_space(31))
    tv_space = (tv_t._augmentation_space(31, (14, 17)) if cls == "RandAugment" else tv_t._augmentation_space(31))
    assert list(ours_space) == list(tv_space)
    for name, (mags, signed) in ours_space.items():
        tv_mags, tv_signed = tv_space[name]
        assert signed == tv_signed
        np.testing.assert_array_equal(np.asarray(mags), tv_mags.numpy(), err_msg=name)
        for m in ([0.0] if np.ndim(mags) == 0 else [float(mags[9]), -float(mags[9]) if signed else float(mags[30])]):
            _same_image(T._apply_op(img, name, m, T.InterpolationMode.NEAREST, None),
                        tvaa._apply_op(img, name, m, tvT.InterpolationMode.NEAREST, None), f"{cls} {name}({m})")


def test_auto_augment_determinism_and_op_frequencies():
    img = _image(2, 12, 12)
    ra, ta = T.RandAugment(), T.TrivialAugmentWide()
    for t in (ra, ta):
        a = np.asarray(t(img, np.random.default_rng(11)))
        assert np.array_equal(a, np.asarray(t(img, np.random.default_rng(11))))
        assert a.shape == (12, 12, 3) and a.dtype == np.uint8
    changed = np.mean([not np.array_equal(np.asarray(ta(img, np.random.default_rng(s))), np.asarray(img))
                       for s in range(300)])
    assert 0.6 < changed < 1.0  # Identity (1/14) and no-op magnitudes leave some images unchanged


def test_compose_passes_one_generator_and_reprs():
    t = T.Compose([T.RandomResizedCrop(6), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(T.IMAGENET_MEAN, T.IMAGENET_STD)])
    img = _image(0, 20, 16)
    a, b = t(img, np.random.default_rng(3)), t(img, np.random.default_rng(3))
    assert a.shape == (3, 6, 6) and a.dtype == np.float32 and np.array_equal(a, b)
    assert not np.array_equal(a, t(img, np.random.default_rng(4)))
    assert repr(T.Resize(256)) == repr(tvT.Resize(256))
    assert repr(T.CenterCrop(224)) == repr(tvT.CenterCrop(224))
    assert repr(T.RandomHorizontalFlip()) == repr(tvT.RandomHorizontalFlip())
