"""The torchvision zoo on the command line: ``funcnets train --model NAME`` for any name of
``funcnets.models.list_models()`` (head replaced, ``--trainable`` on it), torchvision's
weights files in, ``funcnets parity --model NAME`` and ``--zoo --only``, unknown names."""

import warnings

import jax
import numpy as np
import pytest
import torch
import torchvision
from safetensors.numpy import load_file

from funcnets import nn, recipes
from funcnets.cli import main
from funcnets.models import get_model, list_models
from funcnets.models._registry import HEAD_PATHS, head_path, parity_input
from funcnets.torch_io import flatten
from test_data import _write_idx


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def squeezenet_run(tmp_path_factory):
    """One epoch of SqueezeNet 1.1, only its new 1×1-conv head trainable, on a small MNIST
    folder (64 + 16 images: the command's path for the digits, two steps of 32 rather than
    the bundled digits' eleven of 128 over 1438 images)."""
    mnist, out = tmp_path_factory.mktemp("mnist"), tmp_path_factory.mktemp("sq")
    rng = np.random.default_rng(0)
    for split, n in (("train", 64), ("t10k", 16)):
        _write_idx(mnist / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)).astype(np.uint8))
        _write_idx(mnist / f"{split}-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8))
    code = main(["train", "--model", "squeezenet1_1", "--data", str(mnist), "--epochs", "1", "--batch-size", "32",
                 "--lr", "0.01", "--trainable", "classifier.1.*", "--no-progress", "--out", str(out)])
    assert code == 0
    return out


def test_every_family_has_a_head_and_a_training_input():
    names = list_models()
    for name in names:
        model = get_model(name)
        head = dict(model.named_modules())[head_path(model)]
        assert isinstance(head, (nn.Linear, nn.Conv2d)), name
        assert (head.out_features if isinstance(head, nn.Linear) else head.out_channels) == 1000, name
        side, kwargs = parity_input(name)
        assert side >= getattr(model, "min_size", 1) or "image_size" in kwargs, name
    assert {type(get_model(n)).__name__ for n in names} <= set(HEAD_PATHS)
    assert recipes.input_shape("lenet") == (32, 1)
    assert recipes.input_shape("resnet18") == (64, 3)  # as before the zoo
    assert recipes.input_shape("inception_v3") == (75, 3)  # its minimum
    assert recipes.input_shape("vit_b_16") == (224, 3) == recipes.input_shape("maxvit_t")  # built for one size


def test_train_zoo_model_with_trainable_head(squeezenet_run, capsys):
    written = load_file(squeezenet_run / "squeezenet1_1.safetensors")
    _, init_params, _ = recipes.build_model("squeezenet1_1", seed=0)  # the run's starting point
    init = flatten(init_params)
    assert set(written) == set(init) and written["classifier.1.weight"].shape == (10, 512, 1, 1)
    for k, v in init.items():  # the body frozen, the head trained
        if k.startswith("classifier.1."):
            assert not np.array_equal(written[k], np.asarray(v)), k
        else:
            np.testing.assert_array_equal(written[k], np.asarray(v), err_msg=k)
    tm = torchvision.models.squeezenet1_1(num_classes=10)
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in written.items()}, strict=True)
    # the file the command wrote goes back in whole (its head has the data's 10 classes)
    _, params, _ = recipes.build_model("squeezenet1_1", squeezenet_run / "squeezenet1_1.safetensors", seed=3)
    for k, v in flatten(params).items():
        np.testing.assert_array_equal(np.asarray(v), written[k], err_msg=k)


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "googlenet"])
def test_torchvision_weights_file_gets_a_new_head(name, tmp_path):
    """torchvision's 1000-class file: everything but the head from the file (GoogLeNet's
    auxiliary heads dropped, its input transform on as torchvision's builder sets it)."""
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        sd = torchvision.models.get_model(name, weights=None, **({"init_weights": False} if name == "googlenet"
                                                                 else {})).state_dict()
    torch.save(sd, tmp_path / "tv.pth")
    model, params, state = recipes.build_model(name, tmp_path / "tv.pth", seed=0)
    path = head_path(model)
    flat = {**flatten(params), **flatten(state)}
    assert flat[f"{path}.weight"].shape[0] == 10
    expected = {k: v for k, v in sd.items() if not k.startswith((f"{path}.", "aux1.", "aux2."))}
    assert set(flat) - {f"{path}.weight", f"{path}.bias"} == set(expected)
    for k, v in expected.items():
        np.testing.assert_array_equal(np.asarray(flat[k]), v.numpy(), err_msg=k)
    if name == "googlenet":
        assert model.transform_input and not model.aux_logits
    # the loaded trees go through the new-head model: traced (shapes and dtypes), not compiled
    y, _ = jax.eval_shape(lambda p, s, x: model(p, s, x), params, state, np.zeros((2, 3, 64, 64), np.float32))
    assert y.shape == (2, 10) and y.dtype == np.float32


def test_parity_model_and_zoo(tmp_path, capsys):
    code, out, _ = _run(capsys, "parity", "--model", "squeezenet1_1")
    assert code == 0, out
    assert "squeezenet1_1  2×3×17×17" in out and "1 of 1 models within 0.0001" in out
    md = tmp_path / "zoo.md"
    code, out, _ = _run(capsys, "parity", "--zoo", "--only", "squeezenet1_0,resnet18", "--markdown", md)
    assert code == 0, out
    rows = [line for line in md.read_text().splitlines() if line.startswith("| ") and "model" not in line]
    assert [r.split(" | ")[0][2:] for r in rows] == ["squeezenet1_0", "resnet18"]
    for r in rows:
        cells = r.strip("| ").split(" | ")
        assert cells[-1] == "yes" and float(cells[3]) <= 1e-4 and cells[1] in ("2×3×21×21", "2×3×32×32")
    assert "2 of 2 models within 0.0001" in md.read_text()


@pytest.mark.parametrize(
    "argv,message",
    [
        (["train", "--model", "vgg17"], "unknown model 'vgg17'; choose one of lenet, resnet18, resnet34 or any "
                                        "other name of funcnets.models.list_models() (80 torchvision models). "
                                        "Close matches: vgg1"),
        (["parity", "--model", "mobilenet_v4"], "unknown model name 'mobilenet_v4'. Close matches: mobilenet_v2"),
        (["parity", "--zoo", "--only", "resnet18,resnet19"], "unknown model name 'resnet19'. Close matches: resnet18"),
        (["parity", "--only", "resnet18"], "--only chooses models of --zoo"),
        (["parity", "--zoo", "--model", "resnet18"], "not both"),
    ],
)
def test_unknown_names_list_close_matches(argv, message, capsys):
    code, _, err = _run(capsys, *argv)
    assert code == 1 and message in err, err
