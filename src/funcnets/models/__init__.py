"""Networks from the tutorial: the two-layer net, LeNet and ResNet-18/34."""

from funcnets.models import two_layer
from funcnets.models.lenet import LeNet
from funcnets.models.resnet import BasicBlock, ResNet, resnet18, resnet34

__all__ = ["two_layer", "LeNet", "BasicBlock", "ResNet", "resnet18", "resnet34"]
