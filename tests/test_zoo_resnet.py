"""torchvision's ResNet family (resnet50..152, ResNeXt, Wide ResNet) against funcnets'
(``funcnets.models.resnet``); resnet18/34 are covered by tests/test_zoo.py and
tests/test_resnet.py. The checks are tests/zoo_harness.py's: strict load, float32 eval
logits, export back; structure and weights both ways for the large variants; float64
eval/train/gradients/buffers for a small Bottleneck ResNet with groups, widths and a
dilated stage.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision

from funcnets import nn, optim, torch_io
from funcnets.errors import ShapeError
from funcnets.models import get_model
from funcnets.models.resnet import BasicBlock, Bottleneck, ResNet, resnet18
from helpers import assert_close, to_np
from zoo_harness import (
    check_float32_parity_and_export, check_float64, check_structure_and_weights_both_ways, init_leaves, std_ok,
)

_tvr = torchvision.models.resnet

# name: (input side, batch, kwargs). torchvision's min_size is 1×1 (every stride rounds
# up); 32 keeps layer3 at 2×2, so the 3×3 convolutions see more than their centre.
CASES = {
    "resnet50": (32, 2, {}),
    "resnext50_32x4d": (32, 1, {}),
}
# deeper or wider versions of the two above: the same classes in another configuration
STRUCTURE_ONLY = (
    "resnet101", "resnet152", "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2",
)
# a small Bottleneck ResNet: one block per stage, 2 groups of width 8 (inner widths 16..128),
# layer4 dilated instead of strided. name: (input side, batch, torchvision model, funcnets model)
_SMALL = dict(num_classes=10, groups=2, width_per_group=8, replace_stride_with_dilation=[False, False, True])
F64 = {
    "resnet_bottleneck_small": (
        20, 2, lambda: _tvr.ResNet(_tvr.Bottleneck, [1, 1, 1, 1], **_SMALL),
        lambda: ResNet(Bottleneck, [1, 1, 1, 1], **_SMALL),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_float32_parity_and_export(name):
    size, batch, kwargs = CASES[name]
    check_float32_parity_and_export(name, size, batch, kwargs)


# wide_resnet101_2 (127M parameters): names, shapes and order only, as its weights round
# trip would take the time of a compile; its siblings run the same code with weights
_SHAPES_ONLY = ("wide_resnet101_2",)


@pytest.mark.parametrize("name", STRUCTURE_ONLY)
def test_structure_and_weights_both_ways(name):
    if name not in _SHAPES_ONLY:
        check_structure_and_weights_both_ways(name)
        return
    with torch.device("meta"):
        meta = torchvision.models.get_model(name, weights=None, num_classes=10)
    template = torch_io._template(get_model(name, num_classes=10))
    assert list(template) == list(meta.state_dict())
    assert {k: s for k, (_, s) in template.items()} == {k: tuple(v.shape) for k, v in meta.state_dict().items()}


@pytest.mark.parametrize("name", list(F64))
def test_float64_train_eval_gradients_buffers(name, x64):
    size, batch, torch_factory, our_factory = F64[name]
    check_float64(name, size, batch, torch_factory, our_factory)


def test_group_norm_layer_float64(x64):
    """``norm_layer=partial(GroupNorm, 4)`` (torchvision's hook for other norms): same logits
    and input gradient as torchvision in float64; the trunk stays NCHW (GroupNorm is not
    one of the channels-last layers)."""
    torch.manual_seed(0)
    tm = _tvr.ResNet(_tvr.Bottleneck, [1, 1, 1, 1], num_classes=10, groups=2, width_per_group=8,
                     norm_layer=partial(torch.nn.GroupNorm, 4)).double()
    with torch.no_grad():
        for n, p in tm.named_parameters():  # affine parameters away from 1 and 0
            if ".bn" in n or n.startswith("bn1") or "downsample.1" in n:
                p.uniform_(0.5, 1.5)
    model = ResNet(Bottleneck, (1, 1, 1, 1), num_classes=10, groups=2, width_per_group=8,
                   norm_layer=partial(nn.GroupNorm, 4))
    params, state, *_ = torch_io.load_state_dict(model, tm.state_dict())
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64, requires_grad=True)
    y = tm(x)
    w = torch.randn(y.shape, dtype=torch.float64)
    (y * w).sum().backward()
    assert not model._trunk_channels_last(jnp.zeros((2, 3, 12, 12)))
    f = lambda x: jnp.sum(model(params, state, x)[0] * jnp.asarray(to_np(w)))  # noqa: E731
    out, gx = jax.jit(jax.value_and_grad(f))(jnp.asarray(to_np(x.detach())))
    assert_close(out, (y * w).sum().item(), 1e-10, "GroupNorm ResNet functional")
    assert_close(gx, to_np(x.grad), 1e-9, "GroupNorm ResNet input gradient")


# ------------------------------------------------------------------ initialisation
def test_init_is_torchvisions_with_zero_init_residual():
    model = get_model("resnext50_32x4d", num_classes=10, zero_init_residual=True)
    f = init_leaves(model, "layer3.0.conv2.weight", "layer2.0.downsample.0.weight", "layer1.0.bn1.weight",
                    "layer1.0.bn1.bias", "layer1.0.bn3.weight", "layer4.2.bn3.weight", "fc.weight", "fc.bias")
    # grouped conv (512, 16, 3, 3): kaiming_normal_(fan_out) = N(0, 2 / (512·9))
    assert f["layer3.0.conv2.weight"].shape == (512, 16, 3, 3)
    std_ok(f["layer3.0.conv2.weight"], np.sqrt(2 / (512 * 9)), "grouped conv2")
    std_ok(f["layer2.0.downsample.0.weight"], np.sqrt(2 / 512), "downsample conv")
    np.testing.assert_array_equal(f["layer1.0.bn1.weight"], 1.0)
    np.testing.assert_array_equal(f["layer1.0.bn1.bias"], 0.0)
    np.testing.assert_array_equal(f["layer1.0.bn3.weight"], 0.0)  # zero_init_residual
    np.testing.assert_array_equal(f["layer4.2.bn3.weight"], 0.0)
    bound = 1 / np.sqrt(2048)  # fc: torch's default U(±1/sqrt(fan_in))
    for k in ("fc.weight", "fc.bias"):
        assert bound * 0.9 < np.abs(f[k]).max() <= bound, k


# ------------------------------------------------------------------ arguments, errors, fine-tuning
def test_builder_arguments_and_errors():
    m = resnet18(10)  # the pre-registry positional num_classes still works
    assert (m.block, m.layers, m.num_classes, m.arch) == (BasicBlock, (2, 2, 2, 2), 10, "resnet18")
    assert ResNet((2, 2, 2, 2), 10, "resnet18", fc=m.fc) == m  # and so does ResNet(layers, num_classes, arch)
    m = get_model("wide_resnet50_2", num_classes=10)
    assert (m.block, m.layers, m.width_per_group, m.layer1[0].conv1.out_channels) == (Bottleneck, (3, 4, 6, 3), 128, 128)
    assert get_model("resnext101_64x4d", groups=64).layer4[0].conv2.groups == 64  # the fixed value may be repeated
    with pytest.raises(ValueError, match="The parameter 'groups' expected value 32 but got 4 instead"):
        get_model("resnext50_32x4d", groups=4)
    with pytest.raises(ValueError, match="BasicBlock only supports groups=1 and base_width=64"):
        ResNet(BasicBlock, (1, 1, 1, 1), groups=2)
    with pytest.raises(NotImplementedError, match="Dilation > 1 not supported in BasicBlock"):
        ResNet(BasicBlock, (1, 1, 1, 2), replace_stride_with_dilation=(False, False, True))
    with pytest.raises(ValueError, match="replace_stride_with_dilation should be None or a 3-element tuple"):
        ResNet(Bottleneck, (1, 1, 1, 1), replace_stride_with_dilation=[True])
    with pytest.raises(ShapeError, match=r"accepts images of at least 1×1, got 0×0"):
        m({}, {}, jnp.zeros((1, 3, 0, 0)))


def test_finetune_head_selects_only_head():
    """The tutorial's ``model.fc = nn.Linear(2048, 3)``: the new model runs, ``optim.select``
    picks only the head, and the weights load into torchvision's model with the same head
    (same logits). Weights come from torchvision's model: no init to compile."""
    torch.manual_seed(0)
    tm = _tvr.ResNet(_tvr.Bottleneck, [1, 1, 1, 1], **_SMALL).eval()
    model = ResNet(Bottleneck, [1, 1, 1, 1], **_SMALL)
    params, state, *_ = torch_io.load_state_dict(model, tm.state_dict())
    model, params, state = nn.replace(model, params, state, "fc", nn.Linear(2048, 3), jax.random.PRNGKey(1))
    assert optim.select(params, "fc") == {"fc.weight", "fc.bias"}
    x = torch.randn(2, 3, 16, 16)
    y, _ = jax.jit(lambda p, s, x: model(p, s, x))(params, state, jnp.asarray(to_np(x)))
    assert y.shape == (2, 3)
    tm.fc = torch.nn.Linear(2048, 3)
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in torch_io.state_dict(model, params, state).items()},
                       strict=True)
    with torch.no_grad():
        assert_close(y, to_np(tm(x)), 1e-4, "fine-tuned logits")
