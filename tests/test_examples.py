"""Every example runs as a user would run it, and prints what the tutorial prints."""

import runpy
import sys
from pathlib import Path

import jax
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def run(capsys, monkeypatch):
    """``run(name, *args)``: what ``python examples/NAME ARGS`` prints. The script's
    ``__main__`` block runs with that argv in this process (a subprocess per example would
    add little but the imports of jax and torch), with float32 and no compilation cache,
    as in a fresh process; a ``SystemExit`` other than 0 fails the test."""
    torch = sys.modules.get("torch")
    dtype = torch.get_default_dtype() if torch else None
    x64 = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", False)
    monkeypatch.setenv("FUNCNETS_COMPILATION_CACHE", "0")

    def run(name, *args):
        script = EXAMPLES / name
        monkeypatch.setattr(sys, "argv", [str(script), *args])
        capsys.readouterr()
        try:
            runpy.run_path(str(script), run_name="__main__")
        except SystemExit as e:
            if e.code not in (None, 0):
                pytest.fail(f"examples/{name} exited with {e.code!r}:\n{capsys.readouterr().out[-3000:]}")
        return capsys.readouterr().out

    yield run
    jax.config.update("jax_enable_x64", x64)
    if torch is not None:
        torch.set_default_dtype(dtype)


def test_autograd_basics(run):
    out = run("autograd_basics.py")
    assert "a.grad = [36. 81.]" in out and "b.grad = [-12.  -8.]" in out
    assert "9*a**2 == a.grad: True" in out and "SubBackward0" in out


def test_two_layer_progression(run):
    out = run("two_layer_net.py")
    lines = [line for line in out.splitlines() if line[:1].isdigit()]
    assert len(lines) == 5  # numpy, jax manual, jax.grad, custom ReLU, lax.scan
    assert all("499:" in line for line in lines)


def test_two_layer_blog_prints_device(run):
    out = run("two_layer_blog.py")
    assert out.startswith("device: cpu") and "iteration  10000" in out


def test_lenet_walkthrough(run):
    out = run("lenet.py")
    assert "(conv1): Conv2d(1, 6, kernel_size=(3, 3), stride=(1, 1))" in out
    assert "conv1.bias.grad after backward" in out and "loss after one SGD step" in out


@pytest.mark.slow
def test_finetune_resnet18_head(run):
    # the smallest run the example takes (3x32x32 digits, one epoch): the same code path
    out = run("finetune_resnet18.py", "--epochs", "1", "--image-size", "32", "--no-timing")
    assert "held-out accuracy" in out and "note: no --weights given" in out
