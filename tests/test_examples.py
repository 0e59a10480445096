"""Every example runs as a user would run it, and prints what the tutorial prints."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(name, *args, timeout=600):
    env = {**os.environ, "FUNCNETS_COMPILATION_CACHE": "0"}
    out = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True,
                         timeout=timeout, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_autograd_basics():
    out = _run("autograd_basics.py")
    assert "a.grad = [36. 81.]" in out and "b.grad = [-12.  -8.]" in out
    assert "9*a**2 == a.grad: True" in out and "SubBackward0" in out


def test_two_layer_progression():
    out = _run("two_layer_net.py")
    lines = [line for line in out.splitlines() if line[:1].isdigit()]
    assert len(lines) == 5  # numpy, jax manual, jax.grad, custom ReLU, lax.scan
    assert all("499:" in line for line in lines)


def test_two_layer_blog_prints_device():
    out = _run("two_layer_blog.py")
    assert out.startswith("device: cpu") and "iteration  10000" in out


def test_lenet_walkthrough():
    out = _run("lenet.py")
    assert "(conv1): Conv2d(1, 6, kernel_size=(3, 3), stride=(1, 1))" in out
    assert "conv1.bias.grad after backward" in out and "loss after one SGD step" in out


@pytest.mark.slow
def test_finetune_resnet18_head():
    # the smallest run the example takes (3x32x32 digits, one epoch): the same code path
    out = _run("finetune_resnet18.py", "--epochs", "1", "--image-size", "32", "--no-timing")
    assert "held-out accuracy" in out and "note: no --weights given" in out
