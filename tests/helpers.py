"""Helpers for the parity tests: the tutorial's torch models and error measures."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as TF
from torch import nn


def rel_err(a, b) -> float:
    """max|a - b| / max|b| (the relative error of ``a`` against reference ``b``)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def assert_close(a, b, rtol: float, what: str = "") -> None:
    err = rel_err(a, b)
    assert err <= rtol, f"{what}: relative error {err:.3e} > {rtol:.0e}"


def to_np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


class TorchNet(nn.Module):
    """The tutorial's ``Net``, verbatim."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3)
        self.conv2 = nn.Conv2d(6, 16, 3)
        self.fc1 = nn.Linear(16 * 6 * 6, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = TF.max_pool2d(TF.relu(self.conv1(x)), (2, 2))
        x = TF.max_pool2d(TF.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = TF.relu(self.fc1(x))
        x = TF.relu(self.fc2(x))
        return self.fc3(x)


class MyReLU(torch.autograd.Function):
    """The tutorial's custom autograd Function, verbatim."""

    @staticmethod
    def forward(ctx, input):
        ctx.save_for_backward(input)
        return input.clamp(min=0)

    @staticmethod
    def backward(ctx, grad_output):
        (input,) = ctx.saved_tensors
        grad_input = grad_output.clone()
        grad_input[input < 0] = 0
        return grad_input
