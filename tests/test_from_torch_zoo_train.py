"""from_torch over torchvision in float64, one model per family of ``test_from_torch_zoo.ZOO``:
eval logits within 1e-9 (relative to the largest logit), and one train-mode step: the logits,
the gradient of the cross-entropy loss w.r.t. every parameter (1e-8 relative per tensor) and
every BatchNorm buffer after the forward (1e-9 per tensor, ``num_batches_tracked`` exactly).

Randomness: torch and funcnets draw different random numbers, so every ``nn.Dropout`` and
torchvision ``StochasticDepth`` gets ``p = 0`` before the conversion (``from_torch`` reads
``p`` then; both frameworks then take their identity path in train mode, which is what is
compared). GoogLeNet's auxiliary heads call ``F.dropout(x, 0.7, training=self.training)``
with ``p`` written in the code: its loss is on the main logits only, so the heads' BatchNorm
buffers are compared but their outputs are not, and their parameters' gradients are 0 on
both sides (torch leaves ``.grad`` None).

Builds: the family's own torchvision code, built as small as its constructor allows, or
with layers whose widths the constructor fixes swapped for narrower ones (AlexNet's and
VGG's classifiers) or with repeated blocks dropped where the channels allow it (GoogLeNet,
Inception v3, MNASNet): each family costs one XLA compile of its eval forward, train forward
and backward together, and the compile is what the time goes to. It is compiled (as the whole suite, tests/conftest.py) at XLA's
backend optimisation level 0 without XLA:CPU's new fusion emitters (GoogLeNet: 34 s -> 6 s
of compile, CPU time), which costs run time these batch-2 inputs hardly have.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as TF
import torchvision

import funcnets
from funcnets import torch_io
from funcnets.convert import from_torch
from funcnets.nn import conv_lowering
from helpers import assert_close, to_np
from test_from_torch_zoo import ZOO, _randomise_buffers

tv = torchvision.models

def _narrow_classifier(m, at, in_features, width=16):
    """Swap the Linear layers of ``m.classifier`` (indices ``at``) for ``width``-wide ones:
    AlexNet's and VGG's constructors fix them at 4096 (37M and 103M parameters)."""
    first, *rest = at
    m.classifier[first] = tnn.Linear(in_features, width)
    for i in rest[:-1]:
        m.classifier[i] = tnn.Linear(width, width)
    m.classifier[rest[-1]] = tnn.Linear(width, m.classifier[rest[-1]].out_features)
    return m


def _alexnet():
    return _narrow_classifier(tv.alexnet(num_classes=10), (1, 4, 6), 256 * 6 * 6)


def _vgg():
    m = tv.VGG(tv.vgg.make_layers([8, "M", 16, "M"], batch_norm=True), num_classes=10)
    return _narrow_classifier(m, (0, 3, 6), 16 * 7 * 7)  # 16 channels where VGG's features end at 512


def _without(m, names):
    """``m`` with the named blocks replaced by ``nn.Identity`` (each keeps its channels)."""
    for n in names:
        setattr(m, n, tnn.Identity())
    return m


def _googlenet():  # of 9 Inception blocks, 4b, 4c and 5a (each 512->512 or 832->832) dropped
    return _without(tv.googlenet(num_classes=10, aux_logits=True, init_weights=False),
                    ["inception4b", "inception4c", "inception5a"])


def _inception_v3():
    """Of 11 Inception blocks, Mixed_5d, 6c, 6d, 6e, 7c (channels kept) dropped; the aux head's 5x5
    conv made 1x1: after its hard-coded 5x5/3 pooling it needs a 17x17 map (a 299-pixel input)."""
    m = _without(tv.inception_v3(num_classes=10, aux_logits=True, init_weights=False),
                 ["Mixed_5d", "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7c"])
    m.AuxLogits.conv1 = tv.inception.BasicConv2d(128, 768, kernel_size=1)
    return m


def _mnasnet():  # each stack keeps its first (stride, channel-changing) block; the first stack one residual
    m = tv.mnasnet0_5(num_classes=10)
    for i, stack in enumerate(m.layers):
        if isinstance(stack, tnn.Sequential):
            m.layers[i] = stack[:2] if i == 8 else stack[:1]
    return m


def _mobilenet_v3():
    c = functools.partial(tv.mobilenetv3.InvertedResidualConfig, dilation=1, width_mult=1.0)
    setting = [c(8, 3, 8, 8, True, "RE", 2),  # no expansion conv, squeeze-excitation
               c(8, 3, 24, 16, False, "HS", 2),
               c(16, 5, 48, 16, True, "HS", 1)]  # residual
    return tv.MobileNetV3(setting, last_channel=32, num_classes=10)


def _efficientnet():  # v1's MBConv and v2's FusedMBConv (expand 1 and 4), v2's BatchNorm eps
    e = tv.efficientnet
    setting = [e.FusedMBConvConfig(1, 3, 1, 8, 8, 1), e.FusedMBConvConfig(4, 3, 2, 8, 16, 1),
               e.MBConvConfig(4, 3, 2, 16, 24, 2)]
    return tv.EfficientNet(setting, dropout=0.2, num_classes=10, last_channel=32,
                           norm_layer=functools.partial(tnn.BatchNorm2d, eps=1e-3))


def _regnet():  # RegNetY's squeeze-excitation on top of ZOO's RegNetX build
    return tv.RegNet(tv.regnet.BlockParams.from_init_params(depth=3, w_0=8, w_a=8.0, w_m=2.0, group_width=4,
                                                            se_ratio=0.25), stem_width=8, num_classes=10)


def _convnext():  # layer_scale 0.5: torchvision's 1e-6 would hide the blocks behind the residual
    c = tv.convnext.CNBlockConfig
    return tv.ConvNeXt([c(8, 16, 2), c(16, None, 1)], stochastic_depth_prob=0.1, layer_scale=0.5,
                       num_classes=10)


# name (ZOO's family representative) -> (builder, input side, conv lowering). The input is the
# smallest at which float64 rounding stays far below the tolerance: where a stage's map is 1x1
# over a batch of 2, train-mode BatchNorm sees two values per channel and its gradient is
# mostly cancellation (torch against itself in channels_last: 9e-9 for ResNet at 16 pixels,
# 5e-8 for MNASNet at 32; at the sizes here at most 4e-10). The lowering does not change what
# is computed (tests/test_conv.py holds each to torch): it is the fastest to compile and run
# here, float64 at -O0, where XLA's own convolution runs as unoptimised loops (Inception v3
# at 107 pixels: 30 s) and a GEMM calls Eigen; "xla" compiles depthwise and grouped
# convolutions as one op where funcnets' CPU lowering unrolls each kernel tap (ConvNeXt 11 s
# -> 0.5 s).
TRAIN_ZOO = {
    "alexnet": (_alexnet, 63, "gemm"),
    "vgg11_bn": (_vgg, 16, "xla"),
    "squeezenet1_1": (ZOO["squeezenet1_1"][0], 17, "xla"),
    "densenet121": (ZOO["densenet121"][0], 16, "xla"),
    "googlenet": (_googlenet, 15, "xla"),
    "resnet50": (ZOO["resnet50"][0], 32, "gemm"),
    "mobilenet_v3_small": (_mobilenet_v3, 16, "xla"),
    "mnasnet0_5": (_mnasnet, 64, "auto"),
    "shufflenet_v2_x0_5": (lambda: tv.ShuffleNetV2([2, 1, 1], [8, 16, 32, 64, 64], num_classes=10), 16, "xla"),
    "efficientnet_b0": (_efficientnet, 16, "xla"),
    "regnet_x_400mf": (_regnet, 16, "xla"),
    "convnext_tiny": (_convnext, 32, "xla"),
    "vit_b_32": (ZOO["vit_b_32"][0], 32, "xla"),
    "swin_t": (ZOO["swin_t"][0], 32, "auto"),
    "maxvit_t": (ZOO["maxvit_t"][0], 32, "xla"),
    "inception_v3": (_inception_v3, 107, "gemm"),
}


def test_every_family_of_the_float32_zoo_is_here():
    assert list(TRAIN_ZOO) == list(ZOO)


def _deterministic(m):
    """p = 0 for every dropout and stochastic depth: torch's and funcnets' draws differ."""
    for mod in m.modules():
        if isinstance(mod, (tnn.Dropout, torchvision.ops.StochasticDepth)):
            mod.p = 0.0
    return m


def _logits_and_loss(out, labels, loss_fn):
    """The main logits and the training loss of a model's train-mode output: Inception v3's
    (logits, aux) is trained on logits + 0.4 aux (torchvision's recipe); GoogLeNet's aux
    heads drop out with a hard-coded p = 0.7, so its loss is on the main logits only."""
    if isinstance(out, tuple):
        logits = out[0]
        return logits, loss_fn(logits, labels) + (0.4 * loss_fn(out[1], labels) if len(out) == 2 else 0.0)
    return out, loss_fn(out, labels)


def _rel(a, r, floor):
    return float(np.abs(np.asarray(a) - r).max() / max(np.abs(r).max(), floor))


@pytest.mark.parametrize("name", list(TRAIN_ZOO))
def test_torchvision_family_float64_eval_and_train_step(name, x64):
    build, size, lowering = TRAIN_ZOO[name]
    torch.manual_seed(0)
    m = _deterministic(build()).double()
    _randomise_buffers(m)
    x = torch.randn(2, 3, size, size, dtype=torch.float64)
    labels = torch.tensor([1, 7])
    model, params, state = from_torch(m)  # copies the weights and buffers before torch's step updates them

    def step(p, s, x, y):
        logits_eval, _ = model.apply(p, s, x)

        def loss(p):
            out, new = model.apply(p, s, x, train=True, key=jax.random.PRNGKey(0))  # key: GoogLeNet's aux dropout
            logits, value = _logits_and_loss(out, y, funcnets.losses.cross_entropy)
            return value, (logits, new)

        (_, (logits, new_state)), grads = jax.value_and_grad(loss, has_aux=True)(p)
        return logits_eval, logits, new_state, grads

    with conv_lowering(lowering):
        logits_eval, logits, new_state, grads = jax.jit(step)(
            params, state, jnp.asarray(x.numpy()), jnp.asarray(labels.numpy()))

    with torch.no_grad():
        ref_eval = to_np(m.eval()(x))
    assert np.abs(ref_eval).max() > 1e-6, "degenerate logits: the comparison would prove nothing"
    assert_close(logits_eval, ref_eval, 1e-9, f"{name} float64 eval logits")

    m.train()
    m.zero_grad()
    ref_logits, ref_loss = _logits_and_loss(m(x), labels, TF.cross_entropy)
    ref_loss.backward()
    assert_close(logits, to_np(ref_logits), 1e-9, f"{name} train-mode logits")

    flat = dict(model.named_parameters(grads))
    assert set(flat) == {n for n, _ in m.named_parameters()}
    # a conv bias right before a train-mode BatchNorm (VGG's) has an exactly-zero gradient
    # that both sides give as rounding noise: per tensor, relative to at least 1e-6 of the largest
    largest = max(float(p.grad.abs().max()) for p in m.parameters() if p.grad is not None)
    no_grad = []
    for n, p in m.named_parameters():
        if p.grad is None:  # not on the loss's path in torch (GoogLeNet's aux heads): 0 here
            no_grad.append(n)
            np.testing.assert_array_equal(flat[n], 0.0, err_msg=f"{name}: {n} is off the loss's path in torch")
            continue
        err = _rel(flat[n], to_np(p.grad), 1e-6 * largest)
        assert err <= 1e-8, f"{name}: gradient of {n}: relative error {err:.2e}"
    assert all(".aux" in n or n.startswith("aux") for n in no_grad), no_grad

    sd = torch_io.state_dict(model, params, new_state)  # AlexNet, SqueezeNet, ConvNeXt, ViT, Swin: none
    for n, b in m.named_buffers():
        if n.endswith("num_batches_tracked"):
            assert int(sd[n]) == int(b) == 1, n
        else:
            assert_close(sd[n], to_np(b), 1e-9, f"{name}: {n} after one train-mode forward")
