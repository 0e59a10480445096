"""from_torch over torchvision: one model per family that funcnets.models has, eval logits
equal torch's (float32, 1e-4 relative to the largest logit), batch 1 at a small input.

The families' own torchvision code is what is exercised: fx-wrapped helpers
(``stochastic_depth``, swin's ``shifted_window_attention``), namedtuple outputs
(GoogLeNet, Inception), ``torch._assert`` (ViT), LayerNorm subclasses with their own
forward (ConvNeXt's LayerNorm2d). Where the named model takes long to compile on a CPU,
the family's class is built smaller (DenseNet, ResNet with Bottleneck blocks, RegNet,
ViT, Swin with 2x2 shifted windows on an 8x8 map, MaxViT at 32 pixels, which
``maxvit_t`` cannot take); the test id keeps the name of the family's representative.

Then every classification model torchvision has (``list_models(module=torchvision.models)``,
80 names) at its real size, built on the meta device: ``check_convertible`` traces it and
finds every function, method and layer of its train and eval graphs convertible.
"""

from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision

from funcnets.convert import UnsupportedOperationError, check_convertible, from_torch

tv = torchvision.models

# name -> (builder, input size)
ZOO = {
    "alexnet": (lambda: tv.alexnet(num_classes=10), 63),
    "vgg11_bn": (lambda: tv.vgg11_bn(num_classes=10), 32),
    "squeezenet1_1": (lambda: tv.squeezenet1_1(num_classes=10), 32),
    "densenet121": (lambda: tv.DenseNet(growth_rate=8, block_config=(2, 2), num_init_features=8, bn_size=2,
                                        num_classes=10), 32),
    "googlenet": (lambda: tv.googlenet(num_classes=10, aux_logits=True, init_weights=False), 32),
    "resnet50": (lambda: tv.ResNet(tv.resnet.Bottleneck, [1, 1, 1, 1], num_classes=10), 32),
    "mobilenet_v3_small": (lambda: tv.mobilenet_v3_small(num_classes=10), 32),
    "mnasnet0_5": (lambda: tv.mnasnet0_5(num_classes=10), 32),
    "shufflenet_v2_x0_5": (lambda: tv.shufflenet_v2_x0_5(num_classes=10), 32),
    "efficientnet_b0": (lambda: tv.efficientnet_b0(num_classes=10), 32),
    "regnet_x_400mf": (lambda: tv.RegNet(tv.regnet.BlockParams.from_init_params(
        depth=3, w_0=8, w_a=8.0, w_m=2.0, group_width=4), stem_width=8, num_classes=10), 32),
    "convnext_tiny": (lambda: tv.convnext_tiny(num_classes=10), 32),
    "vit_b_32": (lambda: tv.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16,
                                              mlp_dim=32, num_classes=10), 32),
    "swin_t": (lambda: tv.SwinTransformer(patch_size=[4, 4], embed_dim=8, depths=[2, 2], num_heads=[1, 2],
                                          window_size=[2, 2], num_classes=10), 32),  # 8x8 map: shifted windows
    "maxvit_t": (lambda: tv.maxvit.MaxVit(input_size=(32, 32), stem_channels=8, partition_size=2,
                                          block_channels=[8, 16], block_layers=[1, 2], head_dim=4,
                                          stochastic_depth_prob=0.2, num_classes=10), 32),
    "inception_v3": (lambda: tv.inception_v3(num_classes=10, aux_logits=True, init_weights=False), 75),
}


@torch.no_grad()
def _randomise_buffers(m):
    """Running statistics away from (0, 1), so that eval-mode BatchNorm is exercised; heads
    torchvision initialises to zero (ViT) get small random weights, so logits are not all 0."""
    g = torch.Generator().manual_seed(1)
    for p in m.parameters():
        if p.dim() > 1 and not p.any():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    for name, b in m.named_buffers():
        if name.endswith("running_mean"):
            b.copy_(torch.randn(b.shape, generator=g) * 0.1)
        elif name.endswith("running_var"):
            b.copy_(torch.rand(b.shape, generator=g) + 0.5)


@pytest.mark.parametrize("name", list(ZOO))
def test_torchvision_family_eval_logits(name):
    build, size = ZOO[name]
    torch.manual_seed(0)
    m = build().eval()
    _randomise_buffers(m)
    x = torch.randn(1, 3, size, size)
    model, params, state = from_torch(m)
    with torch.no_grad():
        ref = m(x).numpy()
    y, _ = jax.jit(model.apply)(params, state, jnp.asarray(x.numpy()))
    err = float(np.abs(np.asarray(y) - ref).max() / np.abs(ref).max())
    assert np.abs(ref).max() > 1e-6, "degenerate logits: the comparison would prove nothing"
    assert err <= 1e-4, f"{name}: relative error {err:.2e}"


_block_params = tv.regnet.BlockParams.from_init_params


def _block_params_on_cpu(*args, **kwargs):
    with torch.device("cpu"):
        return _block_params(*args, **kwargs)


def _on_meta(name):
    """torchvision's model ``name`` (weights=None) with its tensors on the meta device: no
    memory, no initialisation (vit_h_14's 632M parameters in a tenth of a second). RegNet's
    builders compute the block widths with torch ops and ``.tolist()``, which meta tensors
    cannot give: that computation runs on the CPU."""
    with torch.device("meta"), mock.patch.object(tv.regnet.BlockParams, "from_init_params", _block_params_on_cpu):
        return tv.get_model(name, weights=None)


ALL_NAMES = tv.list_models(module=tv)


def test_the_zoo_is_torchvisions_classification_list():
    assert len(ALL_NAMES) == 80 and set(ZOO) <= set(ALL_NAMES)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_every_torchvision_classification_model_converts(name):
    m = _on_meta(name)
    assert next(m.parameters()).is_meta
    check_convertible(m)  # raises UnsupportedOperationError listing what would not convert


def test_check_convertible_refuses_what_from_torch_refuses():
    """The same error as from_torch's, with source lines, on a meta-device module."""
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = tv.resnet18()

        def forward(self, x):
            return torch.special.bessel_j1(self.body(x))

    with torch.device("meta"):
        net = Net()
    with pytest.raises(UnsupportedOperationError) as e:
        check_convertible(net)
    assert len(e.value.problems) == 1 and "bessel_j1" in str(e.value)
    assert "test_from_torch_zoo.py" in str(e.value) and "torch.special.bessel_j1(self.body(x))" in str(e.value)
    with pytest.raises(UnsupportedOperationError) as e2:
        from_torch(Net())
    assert e2.value.problems == e.value.problems
