"""The model registry (torchvision's ``list_models``/``get_model``) and what builders share.

Each family module registers its builders with :func:`register_model`, as torchvision's
``@register_model()`` does; :func:`get_model` builds any registered name with
torchvision's keyword arguments. Names torchvision has and funcnets does not yet are
listed in ``_TORCHVISION_CLASSIFICATION`` so an unknown name gets a useful answer.

Builders take ``weights=None`` (torch's default initialisation, as torchvision's) or a
local file path (``.pth`` or ``.safetensors``; nothing is ever downloaded). A funcnets
model holds no arrays, so a builder given ``weights`` returns ``(model, params, state)``
where torchvision returns a model that carries its weights.
"""

from __future__ import annotations

import difflib
import math
import os
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp

from funcnets._typing import Array, Params, PRNGKey, State
from funcnets.errors import ShapeError
from funcnets.nn.module import Module
from funcnets.torch_io import flatten, load_file, load_state_dict, unflatten

__all__ = ["list_models", "get_model", "register_model", "head_path", "HEAD_PATHS", "parity_input", "PARITY_INPUTS"]

# torchvision.models.list_models(module=torchvision.models) in torchvision 0.29.1
_TORCHVISION_CLASSIFICATION = (
    "alexnet", "convnext_base", "convnext_large", "convnext_small", "convnext_tiny", "densenet121",
    "densenet161", "densenet169", "densenet201", "efficientnet_b0", "efficientnet_b1", "efficientnet_b2",
    "efficientnet_b3", "efficientnet_b4", "efficientnet_b5", "efficientnet_b6", "efficientnet_b7",
    "efficientnet_v2_l", "efficientnet_v2_m", "efficientnet_v2_s", "googlenet", "inception_v3", "maxvit_t",
    "mnasnet0_5", "mnasnet0_75", "mnasnet1_0", "mnasnet1_3", "mobilenet_v2", "mobilenet_v3_large",
    "mobilenet_v3_small", "regnet_x_16gf", "regnet_x_1_6gf", "regnet_x_32gf", "regnet_x_3_2gf",
    "regnet_x_400mf", "regnet_x_800mf", "regnet_x_8gf", "regnet_y_128gf", "regnet_y_16gf", "regnet_y_1_6gf",
    "regnet_y_32gf", "regnet_y_3_2gf", "regnet_y_400mf", "regnet_y_800mf", "regnet_y_8gf", "resnet101",
    "resnet152", "resnet18", "resnet34", "resnet50", "resnext101_32x8d", "resnext101_64x4d",
    "resnext50_32x4d", "shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5",
    "shufflenet_v2_x2_0", "squeezenet1_0", "squeezenet1_1", "swin_b", "swin_s", "swin_t", "swin_v2_b",
    "swin_v2_s", "swin_v2_t", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19",
    "vgg19_bn", "vit_b_16", "vit_b_32", "vit_h_14", "vit_l_16", "vit_l_32", "wide_resnet101_2",
    "wide_resnet50_2",
)

_BUILDERS: dict[str, Callable[..., Any]] = {}


def register_model(name: str | None = None) -> Callable[[Callable], Callable]:
    """Decorator: ``@register_model()`` registers a builder under its function name."""

    def wrap(fn: Callable) -> Callable:
        key = name or fn.__name__
        if key in _BUILDERS:
            raise ValueError(f"a model named {key!r} is already registered")
        _BUILDERS[key] = fn
        return fn

    return wrap


def list_models() -> list[str]:
    """The torchvision classification model names that funcnets builds, sorted (as
    ``torchvision.models.list_models(module=torchvision.models)`` sorts them)."""
    _load_families()
    return sorted(_BUILDERS)


def get_model(name: str, **kwargs: Any) -> Any:
    """``torchvision.models.get_model(name, **kwargs)``: build a model by name.

    Args:
      name: a name from :func:`list_models`, e.g. ``"vgg16_bn"``.
      **kwargs: the builder's torchvision arguments (``num_classes=``, ``dropout=``,
        ``weights=`` a local file path, ...).
    Returns:
      The model, or ``(model, params, state)`` when ``weights`` is a file path.
    """
    _load_families()
    fn = _BUILDERS.get(name.lower())
    if fn is None:
        close = difflib.get_close_matches(name.lower(), list(_BUILDERS), n=5, cutoff=0.5)
        msg = f"unknown model name {name!r}."
        if close:
            msg += f" Close matches: {', '.join(close)}."
        if name.lower() in _TORCHVISION_CLASSIFICATION:
            msg = f"{name!r} is a torchvision model that funcnets does not implement yet."
            if close:
                msg += f" Close matches that exist: {', '.join(close)}."
        missing = [n for n in _TORCHVISION_CLASSIFICATION if n not in _BUILDERS]
        msg += f" funcnets.models.list_models() lists the {len(_BUILDERS)} that exist"
        msg += f"; not implemented yet: {', '.join(missing)}." if missing else "."
        raise ValueError(msg)
    return fn(**kwargs)


# The classifier head of each family (the model's class name): the submodule a fine-tune
# replaces for another number of classes, the tutorial's ``model.fc = nn.Linear(512, 10)``.
# torchvision's layouts: ``fc``, ``classifier[-1]`` (written with its index), ``heads.head``,
# ``head``; SqueezeNet's head is a 1×1 convolution. GoogLeNet's and Inception's auxiliary
# classifiers (train mode only) keep their own heads (``aux1.fc2``, ``AuxLogits.fc``).
HEAD_PATHS: dict[str, str] = {
    "AlexNet": "classifier.6", "VGG": "classifier.6", "ResNet": "fc", "RegNet": "fc", "ShuffleNetV2": "fc",
    "GoogLeNet": "fc", "Inception3": "fc", "DenseNet": "classifier", "SqueezeNet": "classifier.1",
    "MobileNetV2": "classifier.1", "MobileNetV3": "classifier.3", "MNASNet": "classifier.1",
    "EfficientNet": "classifier.1", "ConvNeXt": "classifier.2", "VisionTransformer": "heads.head",
    "SwinTransformer": "head", "MaxVit": "classifier.5", "LeNet": "fc3",
}


def head_path(model: Module) -> str:
    """The dotted path of ``model``'s classifier head (:data:`HEAD_PATHS`), for
    :func:`funcnets.nn.replace` and ``optim.select(params, include="<path>.*")``.

    Raises:
      ValueError: for a model class the table does not know, naming the candidates (its
        last ``Linear``/``Conv2d``).
    """
    path = HEAD_PATHS.get(type(model).__name__)
    if path is None:
        last = [n for n, m in model.named_modules() if type(m).__name__ in ("Linear", "Conv2d")][-1:]
        raise ValueError(f"no known classifier head for {type(model).__name__}; its last Linear/Conv2d is "
                         f"{last[0] if last else 'none'!r}: pass the path to funcnets.nn.replace yourself.")
    return path


# The input each zoo model's parity check uses (``funcnets parity --model/--zoo``): name
# prefix -> (side, builder kwargs), the first matching prefix wins. Small but at least
# torchvision's ``meta["min_size"]``; the sizes of tests/test_zoo*.py's CASES. ViT is
# built for a small ``image_size`` (its position embedding has one entry per patch), and
# MaxViT for its smallest ``input_size`` (221 is its min_size; 223 keeps every grid the
# same as 224's).
PARITY_INPUTS: tuple[tuple[str, tuple[int, dict]], ...] = (
    ("alexnet", (63, {})), ("vgg", (32, {})), ("squeezenet1_0", (21, {})), ("squeezenet1_1", (17, {})),
    ("densenet", (29, {})), ("googlenet", (15, {})), ("inception_v3", (75, {})),
    ("resne", (32, {})), ("wide_resnet", (32, {})), ("regnet", (32, {})),
    ("mobilenet", (33, {})), ("mnasnet", (33, {})), ("shufflenet", (33, {})),
    ("efficientnet_b", (32, {})), ("efficientnet_v2", (33, {})), ("convnext", (32, {})), ("swin", (36, {})),
    ("vit_h_14", (28, {"image_size": 28})), ("vit", (32, {"image_size": 32})),
    ("maxvit", (223, {"input_size": (223, 223)})),
)


def parity_input(name: str) -> tuple[int, dict]:
    """``(side, kwargs)``: the square input side and builder kwargs of :data:`PARITY_INPUTS`
    for the zoo model ``name`` (a name of :func:`list_models`)."""
    for prefix, value in PARITY_INPUTS:
        if name.startswith(prefix):
            return value[0], dict(value[1])
    raise ValueError(f"no parity input size for {name!r}; add it to funcnets.models._registry.PARITY_INPUTS")


def _load_families() -> None:
    # the family modules register themselves on import; funcnets.models imports them all
    import funcnets.models  # noqa: F401


# ------------------------------------------------------------------ shared by the builders
def load_pretrained(
    model: Module, weights: str | os.PathLike, rename: Callable[[dict], dict] | None = None
) -> tuple[Module, Params, State]:
    """``(model, params, state)`` with the weights of a local torchvision file.

    ``rename`` maps the file's keys first (DenseNet's old ``norm.1`` names). Every key
    must match (torch's ``strict=True``); a mismatch lists the missing, unexpected and
    mis-shaped keys in one error.
    """
    sd = load_file(weights, arch=getattr(model, "arch", None))
    if rename is not None:
        sd = rename(sd)
    loaded = load_state_dict(model, sd, strict=True)
    return model, loaded.params, loaded.state


def reinit(
    model: Module,
    params: Params,
    key: PRNGKey,
    rule: Callable[[str, Module, PRNGKey, dict[str, Array]], Mapping[str, Array] | None],
) -> Params:
    """Re-initialise parameters module by module, as torchvision's ``for m in self.modules()``
    loops do: ``rule(name, module, key, own_params)`` returns the module's new own params
    (or None to keep them)."""
    flat = flatten(params)
    mods = list(model.named_modules())
    for k, (mname, m) in zip(jax.random.split(key, len(mods)), mods):
        pre = f"{mname}." if mname else ""
        own = {n: flat[pre + n] for n in m.param_names() if pre + n in flat}
        if not own:
            continue
        new = rule(mname, m, k, own)
        for n, v in (new or {}).items():
            flat[pre + n] = v
    return unflatten(flat)


def _fans(w: Array) -> tuple[int, int]:
    receptive = math.prod(w.shape[2:]) if w.ndim > 2 else 1
    return w.shape[1] * receptive, w.shape[0] * receptive


def kaiming_normal(key: PRNGKey, w: Array, mode: str = "fan_in") -> Array:
    """``nn.init.kaiming_normal_(w, mode=mode, nonlinearity="relu")``: N(0, 2/fan)."""
    fan_in, fan_out = _fans(w)
    std = math.sqrt(2.0 / (fan_in if mode == "fan_in" else fan_out))
    return std * jax.random.normal(key, w.shape, w.dtype)


def kaiming_uniform(key: PRNGKey, w: Array) -> Array:
    """``nn.init.kaiming_uniform_(w)`` (a=0, fan_in, leaky_relu gain sqrt(2)): U(±sqrt(6/fan_in))."""
    bound = math.sqrt(6.0 / _fans(w)[0])
    return jax.random.uniform(key, w.shape, w.dtype, -bound, bound)


def normal(key: PRNGKey, w: Array, std: float) -> Array:
    """``nn.init.normal_(w, 0, std)``."""
    return std * jax.random.normal(key, w.shape, w.dtype)


def trunc_normal(key: PRNGKey, w: Array, std: float, a: float, b: float) -> Array:
    """``nn.init.trunc_normal_(w, 0, std, a, b)``: N(0, std²) cut to [a, b] (absolute bounds)."""
    return std * jax.random.truncated_normal(key, a / std, b / std, w.shape, w.dtype)


def constant(w: Array, value: float) -> Array:
    return jnp.full(w.shape, value, w.dtype)


def check_input(model: Module, x: Array, min_size: int) -> None:
    """An image batch ``(N, 3, H, W)`` (or ``(3, H, W)``) at least ``min_size`` on each side,
    torchvision's ``meta["min_size"]``; smaller images fail deep inside otherwise."""
    if x.ndim not in (3, 4) or x.shape[-3] != 3:
        raise ShapeError(f"{type(model).__name__} expected images (N, 3, H, W), got {tuple(x.shape)}")
    h, w = x.shape[-2:]
    if h < min_size or w < min_size:
        raise ShapeError(
            f"{type(model).__name__} ({getattr(model, 'arch', '')}) accepts images of at least "
            f"{min_size}×{min_size}, got {h}×{w} (input {tuple(x.shape)}); resize or pad the images."
        )
