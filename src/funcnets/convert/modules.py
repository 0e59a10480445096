"""The table of ``torch.nn`` classes that :func:`funcnets.from_torch` turns into funcnets layers.

A torch layer becomes the funcnets layer of the same name, built from the torch module's
constructor attributes: funcnets' layers take torch's constructor arguments under torch's
names, and torch keeps most of them as attributes (``Conv2d.stride``, ``BatchNorm2d.eps``).
The exceptions, where torch keeps a tensor or another spelling, are in :data:`SPECIAL`
(``bias`` is a Parameter or None in torch, a bool here; ``PairwiseDistance.p`` is kept as
``norm``; a transformer layer's sizes live in its children).

The funcnets layer's parameters and buffers then have the torch module's ``state_dict``
names, so the weights are copied over unchanged.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

from funcnets import nn as fnn

__all__ = ["LEAVES", "SPECIAL", "leaf_classes", "convert_module"]

# traced through (their forward is plain Python over children), not converted as a whole
_CONTAINERS = {"Sequential", "ModuleList", "ModuleDict", "Module", "ParameterList", "ParameterDict"}


def leaf_classes() -> dict[type, type]:
    """``{torch.nn class: funcnets.nn class}`` for every layer funcnets has (imports torch)."""
    return dict(_leaf_table())


@functools.cache
def _leaf_table() -> dict[type, type]:
    # built once: convert_module asks for it per submodule (1,000 times for EfficientNet-B7)
    import torch.nn as tnn

    out = {}
    for name in fnn.__all__:
        cls = getattr(fnn, name)
        if isinstance(cls, type) and issubclass(cls, fnn.Module) and name not in _CONTAINERS:
            tcls = getattr(tnn, name, None)
            if isinstance(tcls, type):
                out[tcls] = cls
    return out


LEAVES = leaf_classes  # the name ``port`` reads


def _bias(m: Any, default: bool) -> bool:
    """torch keeps ``bias`` as a Parameter or None; an affine-less norm has neither."""
    b = getattr(m, "bias", None)
    if isinstance(b, bool):
        return b
    if not getattr(m, "affine", True) or not getattr(m, "elementwise_affine", True):
        return default
    return b is not None


def _activation(layer: Any) -> Any:
    code = getattr(layer, "activation_relu_or_gelu", 0)
    if code == 1:
        return "relu"
    if code == 2:
        return "gelu"
    act = layer.activation
    import torch.nn as tnn

    if isinstance(act, tnn.Module):
        return convert_module(act)
    raise ValueError(f"activation {act!r} is neither relu nor gelu nor a torch.nn layer funcnets has")


def _transformer_layer(m: Any) -> dict:
    return dict(
        d_model=m.self_attn.embed_dim, nhead=m.self_attn.num_heads, dim_feedforward=m.linear1.out_features,
        dropout=m.dropout.p, activation=_activation(m), layer_norm_eps=m.norm1.eps,
        batch_first=m.self_attn.batch_first, norm_first=m.norm_first, bias=m.linear1.bias is not None,
    )


def _stack(layer_arg: str) -> Callable[[Any], dict]:
    def kwargs(m: Any) -> dict:
        out = {layer_arg: convert_module(m.layers[0]), "num_layers": len(m.layers)}
        out["norm"] = None if m.norm is None else convert_module(m.norm)
        for extra in ("enable_nested_tensor", "mask_check"):
            if hasattr(m, extra):
                out[extra] = getattr(m, extra)
        return out

    return kwargs


def _transformer(m: Any) -> dict:
    """nn.Transformer is a leaf: its forward checks shapes and detects causal masks with
    Python control flow on tensor values (torch.equal), which fx cannot trace."""
    import torch.nn as tnn

    layer = m.encoder.layers[0]
    out = dict(d_model=m.d_model, nhead=m.nhead, num_encoder_layers=len(m.encoder.layers),
               num_decoder_layers=len(m.decoder.layers), dim_feedforward=layer.linear1.out_features,
               dropout=layer.dropout.p, activation=_activation(layer), layer_norm_eps=layer.norm1.eps,
               batch_first=m.batch_first, norm_first=layer.norm_first, bias=layer.linear1.bias is not None)
    # a custom encoder/decoder (torch's custom_encoder=) is converted as the layer it is
    if type(m.encoder) is not tnn.TransformerEncoder or type(m.decoder) is not tnn.TransformerDecoder:
        out.update(custom_encoder=convert_module(m.encoder), custom_decoder=convert_module(m.decoder))
    return out


def _fractional(m: Any) -> dict:
    """torch keeps fixed samples (its ``_random_samples`` argument) as a buffer, None by default."""
    s = m._random_samples
    return dict(kernel_size=m.kernel_size, output_size=m.output_size, output_ratio=m.output_ratio,
                return_indices=m.return_indices, _random_samples=None if s is None else s.detach().cpu().numpy())


# constructor arguments that are not plain attributes of the torch module
SPECIAL: dict[str, Callable[[Any], dict]] = {
    "MultiheadAttention": lambda m: dict(
        embed_dim=m.embed_dim, num_heads=m.num_heads, dropout=m.dropout, bias=m.in_proj_bias is not None,
        add_bias_kv=m.bias_k is not None, add_zero_attn=m.add_zero_attn, kdim=m.kdim, vdim=m.vdim,
        batch_first=m.batch_first,
    ),
    "PairwiseDistance": lambda m: dict(p=m.norm, eps=m.eps, keepdim=m.keepdim),
    "TransformerEncoderLayer": _transformer_layer,
    "TransformerDecoderLayer": _transformer_layer,
    "TransformerEncoder": _stack("encoder_layer"),
    "TransformerDecoder": _stack("decoder_layer"),
    "Transformer": _transformer,
    "FractionalMaxPool2d": _fractional,
    "FractionalMaxPool3d": _fractional,
    # options (torch's chunking strategy) is dropped: it changes how torch computes, not the loss
    "LinearCrossEntropyLoss": lambda m: dict(
        in_features=m.linear.in_features, num_classes=m.num_classes, out_features=tuple(m.out_features),
        bias=m.linear.bias is not None, reduction=m.reduction, ignore_index=m.ignore_index,
        label_smoothing=m.label_smoothing, weight=None if m.weight is None else m.weight.detach().cpu().numpy(),
    ),
    # torch keeps cutoffs with n_classes appended
    "AdaptiveLogSoftmaxWithLoss": lambda m: dict(
        in_features=m.in_features, n_classes=m.n_classes, cutoffs=tuple(m.cutoffs[:-1]), div_value=m.div_value,
        head_bias=m.head_bias,
    ),
}


@functools.cache
def _parameters(cls: type) -> tuple[tuple[str, inspect.Parameter], ...]:
    return tuple(inspect.signature(cls).parameters.items())


def convert_module(m: Any) -> fnn.Module:
    """The funcnets layer equal to torch layer ``m`` (same hyperparameters, same names).

    Raises:
      TypeError: ``m``'s class has no funcnets counterpart.
      ValueError: a constructor argument funcnets does not support.
    """
    table = _leaf_table()
    cls = next((table[c] for c in type(m).__mro__ if c in table), None)
    if cls is None:
        raise TypeError(f"funcnets has no layer for torch.nn.{type(m).__name__}")
    wraps = reparametrizations(m) or ()
    special = SPECIAL.get(type(m).__name__) or SPECIAL.get(cls.__name__)
    if special is not None:
        return _wrap(cls(**special(m)), wraps)
    kwargs = {}
    for name, p in _parameters(cls):
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or name.startswith("_"):
            continue
        default = None if p.default is p.empty else p.default
        if name == "bias":
            kwargs[name] = _bias(m, default if default is not None else True)
        elif hasattr(m, name):
            value = getattr(m, name)
            kwargs[name] = tuple(value) if isinstance(value, list) else value
        elif p.default is p.empty:
            raise ValueError(f"torch.nn.{type(m).__name__} has no attribute {name!r} to build {cls.__name__} from")
    return _wrap(cls(**kwargs), wraps)


def reparametrizations(m: Any) -> list[tuple[str, dict]] | None:
    """``m``'s weight_norm or spectral_norm as ``[(kind, arguments)]`` (``[]`` for a plain layer),
    or None if something else runs around ``m``'s forward: another parametrization, two of
    them (on one tensor or on two), other forward hooks."""
    from torch.nn.utils import parametrizations as tp
    from torch.nn.utils import parametrize
    from torch.nn.utils.spectral_norm import SpectralNorm
    from torch.nn.utils.weight_norm import WeightNorm

    out = []
    if parametrize.is_parametrized(m):
        for name, plist in m.parametrizations.items():
            if len(plist) != 1:
                return None
            fn = plist[0]
            if isinstance(fn, tp._WeightNorm):
                out.append(("weight_norm", dict(name=name, dim=None if fn.dim == -1 else fn.dim)))
            elif isinstance(fn, tp._SpectralNorm):
                out.append(("spectral_norm", dict(name=name, n_power_iterations=getattr(fn, "n_power_iterations", 1),
                                                  eps=fn.eps, dim=fn.dim)))
            else:
                return None
    for hook in [*m._forward_pre_hooks.values(), *m._forward_hooks.values()]:
        if isinstance(hook, WeightNorm) and hook in m._forward_pre_hooks.values():
            out.append(("weight_norm", dict(name=hook.name, dim=None if hook.dim == -1 else hook.dim, legacy=True)))
        elif isinstance(hook, SpectralNorm) and hook in m._forward_pre_hooks.values():
            out.append(("spectral_norm", dict(name=hook.name, n_power_iterations=hook.n_power_iterations,
                                              eps=hook.eps, dim=hook.dim, legacy=True)))
        else:
            return None
    return out if len(out) <= 1 else None


def _wrap(layer: fnn.Module, wraps) -> fnn.Module:
    from funcnets.nn import parametrizations as fp

    for kind, kwargs in wraps:
        layer = getattr(fp, kind)(layer, **kwargs)
    return layer
