"""funcnets.port: the generated source, imported where torch cannot be, equals the torch module.

The hand-written user models of test_from_torch.py and torchvision's resnet18 are ported to files under tmp_path;
one fresh Python process (``sys.modules["torch"] = None``) imports every file, loads its
weights and compares its eval outputs (and the U-Net's train-mode output) with torch's
saved ones at float32 1e-5. ruff checks the files; the ``funcnets port`` command runs
end to end once on a module defined in a file.
"""

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

import funcnets
from funcnets import cli
from funcnets.convert.port import write_port
from funcnets.errors import FuncnetsError
from test_from_torch import DynamicNet, LSTMClassifier, ShapeNet, TransformerClassifier, UNet

ROOT = Path(__file__).resolve().parents[1]
RUFF = Path(sys.executable).with_name("ruff")


def _models():
    torch.manual_seed(0)
    return {
        "unet": (UNet(), torch.randn(2, 1, 8, 8)),
        "transformer": (TransformerClassifier(), torch.randint(0, 11, (3, 5))),
        "lstm": (LSTMClassifier(), torch.tensor([[3, 5, 0, 0], [1, 2, 7, 12], [0, 4, 4, 9]])),
        "dynamic": (DynamicNet(), torch.randn(5, 4)),
        "shapes": (ShapeNet(), torch.randn(3, 2, 8)),
        # torchvision: BasicBlock with and without a downsample branch -> two classes
        "resnet18": (torchvision.models.resnet18(num_classes=5), torch.randn(1, 3, 32, 32)),
    }


CHECK = textwrap.dedent("""
    import importlib.util, json, sys
    sys.modules["torch"] = None  # the generated code must not need torch
    import jax, numpy as np
    out = {}
    for name, path in json.loads(sys.argv[1]).items():
        spec = importlib.util.spec_from_file_location(name + "_funcnets", path)
        mod = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        model, params, state = mod.load()
        data = np.load(path[:-3] + "_io.npz")
        x = data["x"]
        y, _ = jax.jit(model.apply)(params, state, x)
        err = {"eval": float(np.abs(np.asarray(y) - data["y"]).max() / np.abs(data["y"]).max())}
        if "y_train" in data:
            yt, _ = jax.jit(lambda p, s, x: model.apply(p, s, x, train=True))(params, state, x)
            err["train"] = float(np.abs(np.asarray(yt) - data["y_train"]).max() / np.abs(data["y_train"]).max())
        out[name] = err
    print(json.dumps(out))
""")


def test_ported_files_match_torch_without_torch_and_pass_ruff(tmp_path):
    files = {}
    for name, (m, x) in _models().items():
        src_path, weights = write_port(m.eval(), tmp_path / f"{name}_net.py")
        assert weights.exists() and weights.suffix == ".safetensors"
        text = src_path.read_text()
        assert not re.search(r"^(import|from) torch\b", text, re.M) and "def load(" in text and "class " in text
        with torch.no_grad():
            io = {"x": x.numpy(), "y": m(x).numpy()}
            if name == "unet":
                io["y_train"] = m.train()(x).numpy()
                m.eval()
        np.savez(tmp_path / f"{name}_net_io.npz", **io)
        files[name] = str(src_path)

    unet = Path(files["unet"]).read_text()
    assert "class UNet(Module):" in unet and "Conv2d(1, 4, kernel_size=3, padding=1)" in unet
    assert 's("down1", self.down1, x)' in unet  # one line per operation, torch's child names
    resnet = Path(files["resnet18"]).read_text()
    assert "class BasicBlock(Module):" in resnet and "class BasicBlock_2(Module):" in resnet

    r = subprocess.run([sys.executable, "-c", CHECK, json.dumps(files)], capture_output=True, text=True,
                       cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    errs = json.loads(r.stdout.strip().splitlines()[-1])
    assert set(errs) == set(files)
    for name, e in errs.items():
        for what, v in e.items():
            assert v <= 1e-5, f"{name} {what}: relative error {v:.2e}"

    ruff = subprocess.run([str(RUFF), "check", "--no-cache", *files.values()], capture_output=True, text=True,
                          cwd=tmp_path)
    assert ruff.returncode == 0, ruff.stdout + ruff.stderr


def test_port_refuses_what_it_cannot_write():
    from test_from_torch import Unsupported

    with pytest.raises(funcnets.convert.UnsupportedOperationError) as e:
        funcnets.port(Unsupported())
    assert "bessel_j1" in str(e.value) and "bessel_j0" in str(e.value)


NET = textwrap.dedent('''
    import torch
    from torch import nn


    class Block(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv = nn.Conv2d(c, c, 3, padding=1, bias=False)
            self.bn = nn.BatchNorm2d(c)

        def forward(self, x):
            return torch.relu(self.bn(self.conv(x)) + x)


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 4, 3, stride=2)
            self.blocks = nn.ModuleList([Block(4), Block(4)])
            self.fc = nn.Linear(4, 5)

        def forward(self, x):
            x = self.stem(x)
            for b in self.blocks:
                x = b(x)
            return self.fc(x.mean((2, 3)))
''')


def test_cli_port_end_to_end(tmp_path, monkeypatch, capsys):
    (tmp_path / "mynets.py").write_text(NET)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    sys.modules.pop("mynets", None)
    import mynets

    torch.save(mynets.Net().state_dict(), tmp_path / "net.pth")
    rc = cli.main(["port", "mynets:Net", "--input-shape", "2,3,9,9", "--out", "net_funcnets.py",
                   "--weights", "net.pth"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert (tmp_path / "net_funcnets.py").exists() and (tmp_path / "net_funcnets.safetensors").exists()
    assert "max difference" in out.out
    diff = float(out.out.split("max difference")[1].split()[0].strip(":"))
    assert diff < 1e-5
    text = (tmp_path / "net_funcnets.py").read_text()
    assert "class Block(Module):" in text and "ModuleList([Block(" in text

    bad = cli.main(["port", "mynets:Nope", "--input-shape", "1,3,9,9", "--out", "x.py"])
    assert bad == 1 and "Nope" in capsys.readouterr().err


GATE_NET = textwrap.dedent('''
    import torch
    from torch import nn


    class Gate(nn.Module):  # data-dependent control flow: fx cannot trace it
        def __init__(self, sign):
            super().__init__()
            self.sign = sign

        def forward(self, x):
            if x.sum() > 0:
                return x * self.sign
            return -x


    class GatedNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 4)
            self.gate = Gate(-2.0)
            self.out = nn.Linear(4, 2)

        def forward(self, x):
            return self.out(self.gate(self.lin(x)))
''')

GATE_FUNCNETS = textwrap.dedent('''
    from dataclasses import dataclass

    import jax.numpy as jnp

    from funcnets.nn.module import Module


    @dataclass(frozen=True, repr=False)
    class Gate(Module):
        sign: float = 1.0

        def apply(self, params, state, x, *, train=False, key=None):
            return jnp.where(jnp.sum(x) > 0, x * self.sign, -x), state


    def make_gate(m):
        return Gate(sign=m.sign)
''')


def test_port_leaf_modules_factory_round_trip(tmp_path, monkeypatch, capsys):
    """A data-dependent submodule built by a leaf factory: the CLI's --leaf-module, then the
    generated file imported in a fresh process without torch, for both branches of the gate."""
    (tmp_path / "gatenets.py").write_text(GATE_NET)
    (tmp_path / "gates_funcnets.py").write_text(GATE_FUNCNETS)  # no torch: the generated file imports it
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    for name in ("gatenets", "gates_funcnets"):
        sys.modules.pop(name, None)
    rc = cli.main(["port", "gatenets:GatedNet", "--input-shape", "2,3", "--out", "gated.py",
                   "--leaf-module", "gatenets:Gate=gates_funcnets:make_gate"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    text = (tmp_path / "gated.py").read_text()
    assert "from gates_funcnets import make_gate" in text and "make_gate(SimpleNamespace(sign=-2.0))" in text

    import gatenets

    m = gatenets.GatedNet()
    with torch.no_grad():  # sum(lin(x)) = 0.4 * sum(x): x and -x take the gate's two branches
        m.lin.weight.fill_(0.1)
        m.lin.bias.zero_()
    funcnets.torch_io.save_file(tmp_path / "gated.safetensors", {k: v.numpy() for k, v in m.state_dict().items()})
    torch.manual_seed(0)
    x = torch.randn(2, 3)
    with torch.no_grad():
        ys = {s: m(x * s).numpy() for s in (1, -1)}
    np.savez(tmp_path / "gated_io.npz", x=x.numpy(), **{f"y{s}": y for s, y in ys.items()})
    check = textwrap.dedent('''
        import sys
        sys.modules["torch"] = None
        import numpy as np
        import gated
        model, params, state = gated.load()
        data = np.load("gated_io.npz")
        for s in (1, -1):
            y, _ = model.apply(params, state, data["x"] * s)
            print(s, float(np.abs(np.asarray(y) - data[f"y{s}"]).max()))
    ''')
    r = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    errs = [float(line.split()[1]) for line in r.stdout.strip().splitlines()]
    assert len(errs) == 2 and max(errs) < 1e-5, r.stdout

    with pytest.raises(FuncnetsError, match="lambda, a local function"):
        funcnets.port(m, leaf_modules={gatenets.Gate: lambda mod: __import__("gates_funcnets").make_gate(mod)})
