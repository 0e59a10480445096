"""Networks from the tutorial: the two-layer net, LeNet and ResNet-18/34."""

from funcnets.models import two_layer
from funcnets.models.lenet import LeNet
from funcnets.models.resnet import (
    BasicBlock, Bottleneck, ResNet, resnet18, resnet34, resnet50, resnet101, resnet152, resnext50_32x4d,
    resnext101_32x8d, resnext101_64x4d, wide_resnet50_2, wide_resnet101_2,
)

# --- torchvision families ---------------------------------------------------------
from funcnets.models._registry import get_model, list_models
from funcnets.models.alexnet import AlexNet, alexnet
from funcnets.models.vgg import VGG, vgg11, vgg11_bn, vgg13, vgg13_bn, vgg16, vgg16_bn, vgg19, vgg19_bn
from funcnets.models.squeezenet import SqueezeNet, squeezenet1_0, squeezenet1_1
from funcnets.models.densenet import DenseNet, densenet121, densenet161, densenet169, densenet201
from funcnets.models.googlenet import GoogLeNet, GoogLeNetOutputs, googlenet
from funcnets.models.regnet import (
    RegNet, regnet_x_1_6gf, regnet_x_3_2gf, regnet_x_8gf, regnet_x_16gf, regnet_x_32gf, regnet_x_400mf,
    regnet_x_800mf, regnet_y_1_6gf, regnet_y_3_2gf, regnet_y_8gf, regnet_y_16gf, regnet_y_32gf, regnet_y_128gf,
    regnet_y_400mf, regnet_y_800mf,
)
from funcnets.models.mobilenetv2 import MobileNetV2, mobilenet_v2
from funcnets.models.mobilenetv3 import MobileNetV3, mobilenet_v3_large, mobilenet_v3_small
from funcnets.models.mnasnet import MNASNet, mnasnet0_5, mnasnet0_75, mnasnet1_0, mnasnet1_3
from funcnets.models.shufflenetv2 import (
    ShuffleNetV2, shufflenet_v2_x0_5, shufflenet_v2_x1_0, shufflenet_v2_x1_5, shufflenet_v2_x2_0,
)
from funcnets.models.vision_transformer import VisionTransformer, vit_b_16, vit_b_32, vit_h_14, vit_l_16, vit_l_32
from funcnets.models.convnext import ConvNeXt, convnext_base, convnext_large, convnext_small, convnext_tiny
from funcnets.models.swin_transformer import (
    SwinTransformer, swin_b, swin_s, swin_t, swin_v2_b, swin_v2_s, swin_v2_t,
)
from funcnets.models.maxvit import MaxVit, maxvit_t
from funcnets.models.efficientnet import (
    EfficientNet, efficientnet_b0, efficientnet_b1, efficientnet_b2, efficientnet_b3, efficientnet_b4,
    efficientnet_b5, efficientnet_b6, efficientnet_b7, efficientnet_v2_l, efficientnet_v2_m, efficientnet_v2_s,
)
from funcnets.models.inception import Inception3, InceptionOutputs, inception_v3

__all__ = [
    "two_layer", "LeNet", "BasicBlock", "Bottleneck", "ResNet", "resnet18", "resnet34", "resnet50", "resnet101",
    "resnet152", "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2",
    # torchvision families
    "list_models", "get_model", "AlexNet", "alexnet",
    "VGG", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
    "SqueezeNet", "squeezenet1_0", "squeezenet1_1",
    "DenseNet", "densenet121", "densenet161", "densenet169", "densenet201",
    "GoogLeNet", "GoogLeNetOutputs", "googlenet",
    "RegNet", "regnet_y_400mf", "regnet_y_800mf", "regnet_y_1_6gf", "regnet_y_3_2gf", "regnet_y_8gf", "regnet_y_16gf",
    "regnet_y_32gf", "regnet_y_128gf", "regnet_x_400mf", "regnet_x_800mf", "regnet_x_1_6gf", "regnet_x_3_2gf",
    "regnet_x_8gf", "regnet_x_16gf", "regnet_x_32gf",
    "MobileNetV2", "mobilenet_v2", "MobileNetV3", "mobilenet_v3_large", "mobilenet_v3_small",
    "MNASNet", "mnasnet0_5", "mnasnet0_75", "mnasnet1_0", "mnasnet1_3",
    "ShuffleNetV2", "shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0",
    "VisionTransformer", "vit_b_16", "vit_b_32", "vit_l_16", "vit_l_32", "vit_h_14",
    "ConvNeXt", "convnext_tiny", "convnext_small", "convnext_base", "convnext_large",
    "SwinTransformer", "swin_t", "swin_s", "swin_b", "swin_v2_t", "swin_v2_s", "swin_v2_b",
    "MaxVit", "maxvit_t",
    "EfficientNet", "efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3", "efficientnet_b4",
    "efficientnet_b5", "efficientnet_b6", "efficientnet_b7", "efficientnet_v2_s", "efficientnet_v2_m",
    "efficientnet_v2_l",
    "Inception3", "InceptionOutputs", "inception_v3",
]
