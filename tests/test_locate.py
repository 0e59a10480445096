"""funcnets.parity.locate: per-submodule comparison with torch names the layer that is wrong.

funcnets' own ResNet-18 (a hand port) against torchvision's, on its weights, with one
deliberately wrong layer each time; a from_torch model; the CLI. One 16x16 input: every
stage still runs (layer3/4 at 1x1). The correct and the transposed-weight runs share one
compiled forward+backward (same model), as does the CLI's --model run.
"""

import sys

import jax
import numpy as np
import pytest
import torch
import torchvision

from funcnets import cli, torch_io
from funcnets.convert import from_torch
from funcnets.models import resnet18
from funcnets.nn import BatchNorm2d, Conv2d, replace
from funcnets.nn.module import capture
from funcnets.parity import LocateReport, locate


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    tm = torchvision.models.resnet18(weights=None)
    with torch.no_grad():  # non-trivial running statistics, so BatchNorm's eps weighs in
        for m in tm.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    model = resnet18()
    loaded = torch_io.load_state_dict(model, tm.state_dict())
    return tm, model, loaded.params, loaded.state, torch.rand(2, 3, 16, 16)


def _diverging(report: LocateReport) -> list[str]:
    return [r.name for r in report.rows if r.verdict == "DIVERGES"]


def test_correct_port_reports_no_divergence(resnet):
    tm, model, params, state, x = resnet
    before = {k: v.clone() for k, v in tm.state_dict().items()}
    report = locate(tm, model, params, state, x)
    assert report.first_divergence is None and report.error is None, str(report)
    names = [r.name for r in report.rows]
    assert names[:4] == ["", "conv1", "bn1", "relu"] and names[-1] == "fc"  # the order calls began
    assert len(names) == len(list(tm.named_modules())) + 8  # each BasicBlock's relu runs twice
    matched = [r for r in report.rows if r.captured]
    # funcnets' ResNet applies ReLU functionally: only those 17 calls have no funcnets counterpart
    assert {r.kind for r in report.rows if not r.captured} == {"ReLU"} and len(matched) == len(names) - 17
    assert all(r.output_rel < 1e-5 and r.input_rel < 1e-5 for r in matched)
    grads = [g for r in report.rows for g in r.grads]
    assert len(grads) == len(list(tm.parameters())) and max(g[2] for g in grads) < 1e-4
    assert report.row("layer1.0.conv1").grads[0][0] == "layer1.0.conv1.weight"
    text = str(report)
    assert "no divergence" in text and "layer4.1.bn2" in text and "BatchNorm2d" in text
    assert all(torch.equal(before[k], v) for k, v in tm.state_dict().items())  # the module is left alone
    assert tm.training  # and its mode too


def test_batchnorm_eps(resnet):
    tm, model, params, state, x = resnet
    wrong, _, _ = replace(model, params, state, "layer2.0.bn1", BatchNorm2d(128, eps=1e-2), jax.random.PRNGKey(0))
    report = locate(tm, wrong, params, state, x)
    assert report.first_divergence == "layer2.0.bn1", str(report)
    row = report.row("layer2.0.bn1")
    assert row.output_rel > 1e-3 and row.input_rel < 1e-5
    # downstream layers receive the difference: marked as passing it on, never as the cause
    assert _diverging(report) == ["layer2.0.bn1"]
    for name in ("layer2.0.conv2", "layer2.0.bn2", "layer2.1", "layer2.1.conv1", "layer3", "fc"):
        assert report.row(name).verdict == "passes on"
    for name in ("layer2.0", "layer2", ""):  # the modules around it differ too, with good inputs
        assert report.row(name).verdict == "contains it"
    assert report.row("layer2.0.downsample.0").output_ok  # the other branch is untouched (its gradient is not)
    assert "<-- first divergence" in str(report)


def test_conv_padding(resnet):
    tm, model, params, state, x = resnet
    # padding 2 instead of 3: every activation after the stem is one pixel smaller
    stem = Conv2d(3, 64, kernel_size=7, stride=2, padding=2, bias=False)
    wrong, _, _ = replace(model, params, state, "conv1", stem, jax.random.PRNGKey(0))
    report = locate(tm, wrong, params, state, x)
    assert report.first_divergence == "conv1", str(report)
    assert report.row("conv1").output_abs == float("inf") and report.row("conv1").input_rel == 0
    assert report.row("bn1").verdict == "passes on" and report.row("maxpool").verdict == "passes on"
    assert _diverging(report) == ["conv1"]
    assert "shape≠" in str(report)


def test_transposed_weight(resnet):
    tm, model, params, state, x = resnet
    wrong = jax.tree_util.tree_map(lambda a: a, params)
    w = wrong["layer3"]["1"]["conv1"]["weight"]  # (256, 256, 3, 3): in and out swapped keep the shape
    wrong["layer3"]["1"]["conv1"]["weight"] = w.transpose(1, 0, 2, 3)
    report = locate(tm, model, wrong, state, x)
    assert report.first_divergence == "layer3.1.conv1", str(report)
    assert report.row("layer3.1.bn1").verdict == "passes on" and report.row("layer3.1").verdict == "contains it"
    assert _diverging(report) == ["layer3.1.conv1"]
    assert not report.row("layer3.1.conv1").grads_ok  # its weight's gradient differs too
    assert report.row("layer3.1.conv2").output_ok is False and report.row("conv1").output_ok


class _Block(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(c, c, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(c)
        self.conv2 = torch.nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return x + self.conv2(torch.relu(self.bn(self.conv1(x))))


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 4, 3)
        self.block = _Block(4)
        self.head = torch.nn.Linear(4 * 4 * 4, 5)

    def forward(self, x):
        y = self.block(torch.relu(self.stem(x)))
        return self.head(torch.flatten(self.block(y) * 0.5, 1))  # the block runs twice


def test_from_torch_model(x64):
    torch.manual_seed(0)
    tm = _Tiny().double()
    x = torch.rand(3, 3, 6, 6, dtype=torch.float64)
    model, params, state = from_torch(tm, x)
    with capture() as calls:
        model(params, state, jax.numpy.asarray(x.numpy()))
    # the converted graph reports each layer call under its torch name (the block's twice)
    names = [c.name for c in sorted(calls, key=lambda c: c.start)]
    assert names[0] == "stem" and names.count("block.conv2") == 2 and names[-1] == "head", names
    for train in (False, True):
        report = locate(tm, model, params, state, x, train=train)
        assert report.first_divergence is None, str(report)
        assert report.rtol == 1e-9 and report.dtype == "f64"
        assert report.row("block.conv2", 1).captured and report.row("block.bn", 1).output_rel < 1e-12
        assert not report.row("block").captured  # traced through: no call of its own
        assert all(r.grads_ok for r in report.rows) and sum(len(r.grads) for r in report.rows) == 10
    wrong = jax.tree_util.tree_map(lambda a: a, params)
    wrong["block"]["conv2"]["bias"] = wrong["block"]["conv2"]["bias"] * 1.001
    report = locate(tm, model, wrong, state, x, train=True)
    assert report.first_divergence == "block.conv2", str(report)
    assert report.row("block.conv2").input_rel < 1e-12 and report.row("block.conv1", 1).verdict == "passes on"
    assert report.row("head").verdict == "passes on"


_NET = '''
import torch


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.fc = torch.nn.Linear(4 * 3 * 3, 2)

    def forward(self, x):
        return self.fc(torch.flatten(torch.relu(self.conv(x)), 1))
'''


def test_cli(resnet, tmp_path, monkeypatch, capsys):
    tm = resnet[0]
    torch.save(tm.state_dict(), tmp_path / "resnet18.pth")
    (tmp_path / "locnets.py").write_text(_NET)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    rc = cli.main(["parity", "--locate", "torchvision.models:resnet18", "--weights", "resnet18.pth",
                   "--input-shape", "2,3,16,16", "--model", "resnet18"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "get_model('resnet18')" in out and "no divergence" in out and "layer4.1.bn2" in out
    # from_torch (the default), with a weights file whose conv differs from the seeded init
    net = __import__("locnets").Net()
    sd = net.state_dict()
    sd["conv.weight"] = torch.from_numpy(np.random.default_rng(0).standard_normal((4, 3, 3, 3))).float()
    torch.save(sd, tmp_path / "net.pth")
    assert cli.main(["parity", "--locate", "locnets:Net", "--weights", "net.pth", "--input-shape", "2,3,5,5"]) == 0
    out = capsys.readouterr().out
    assert "from_torch" in out and "no divergence" in out
    assert cli.main(["parity", "--locate", "locnets:Net"]) == 1
    assert "--locate needs --input-shape" in capsys.readouterr().err
    sys.modules.pop("locnets", None)
