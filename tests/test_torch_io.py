"""Weights moving both ways between torch and funcnets, and the files they live in."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.torch
import torch

from funcnets import FuncnetsError, losses, torch_io
from funcnets.models import LeNet
from helpers import TorchNet, assert_close, to_np


def _lenet_pair(dtype=torch.float32):
    torch.manual_seed(0)
    tnet = TorchNet().to(dtype)
    model = LeNet()
    loaded = torch_io.load_state_dict(model, tnet.state_dict())
    return tnet, model, loaded.params


@pytest.mark.parametrize("dtype,tol,gtol", [(torch.float32, 1e-5, 1e-4), (torch.float64, 1e-12, 1e-10)])
def test_lenet_outputs_and_all_gradients_match_torch(dtype, tol, gtol):
    with jax.enable_x64(dtype == torch.float64):
        tnet, model, params = _lenet_pair(dtype)
        x = torch.randn(4, 1, 32, 32, dtype=dtype)
        target = torch.randn(4, 10, dtype=dtype)
        out = tnet(x)
        torch.nn.functional.mse_loss(out, target).backward()
        y, _ = model(params, {}, jnp.asarray(to_np(x)))
        assert y.dtype == jnp.dtype(str(dtype).split(".")[1])
        assert_close(y, to_np(out), tol, "logits")

        def loss(p):
            return losses.mse_loss(model(p, {}, jnp.asarray(to_np(x)))[0], jnp.asarray(to_np(target)))

        grads = dict(model.named_parameters(jax.grad(loss)(params)))
        assert len(grads) == 10
        for name, p in tnet.named_parameters():
            assert_close(grads[name], to_np(p.grad), gtol, name)


def test_round_trip_is_exact():
    tnet, model, params = _lenet_pair()
    sd = torch_io.state_dict(model, params)
    assert list(sd) == list(tnet.state_dict())
    fresh = TorchNet()
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
    back = torch_io.load_state_dict(model, fresh.state_dict()).params
    for (n, a), (_, b) in zip(model.named_parameters(params), model.named_parameters(back)):
        np.testing.assert_array_equal(a, b, err_msg=n)


@pytest.mark.parametrize("convert", ["load_state_dict", "load_state_dict_as_float32", "from_torch"])
def test_loaded_weights_do_not_follow_torch_in_place_updates(convert):
    """On CPU, jnp.asarray may keep an aligned NumPy buffer instead of copying it
    (jax-ml/jax#37830): weights taken from torch as views changed when torch's optimizer
    updated its parameters in place (a float64 SGD parity run drifted 40% from torch)."""
    from funcnets import from_torch, nn

    lin = torch.nn.Linear(256, 64)  # torch's CPU allocator aligns to 64 bytes, where jax aliases
    before = {k: v.detach().clone().numpy() for k, v in lin.state_dict().items()}
    if convert.startswith("load_state_dict"):
        dtype = jnp.float32 if convert.endswith("float32") else None
        params = torch_io.load_state_dict(nn.Linear(256, 64), lin.state_dict(), dtype=dtype).params
    else:
        _, params, _ = from_torch(lin)
    opt = torch.optim.SGD(lin.parameters(), lr=1.0)
    lin(torch.ones(2, 256)).sum().backward()
    opt.step()  # in place, as every torch optimizer
    assert np.abs(lin.weight.detach().numpy() - before["weight"]).max() > 0.5
    for k in ("weight", "bias"):
        np.testing.assert_array_equal(np.asarray(params[k]), before[k])


def test_strict_errors_list_every_problem():
    model = LeNet()
    sd = dict(TorchNet().state_dict())
    sd.pop("fc3.bias")
    sd["fc2.weight"] = torch.zeros(3, 3)
    sd["extra.weight"] = torch.zeros(1)
    with pytest.raises(FuncnetsError) as info:
        torch_io.load_state_dict(model, sd)
    msg = str(info.value)
    assert "missing key: fc3.bias" in msg and "unexpected key: extra.weight" in msg
    assert "fc2.weight: expected shape (84, 120), the state_dict has (3, 3)" in msg and "(3)" in msg
    sd["fc2.weight"] = torch.zeros(84, 120)
    loaded = torch_io.load_state_dict(model, sd, strict=False)
    assert loaded.missing_keys == ["fc3.bias"] and loaded.unexpected_keys == ["extra.weight"]
    assert loaded.params["fc3"]["bias"].shape == (10,)


def test_safetensors_both_ways(tmp_path):
    tnet, model, params = _lenet_pair()
    path = torch_io.save_weights(tmp_path / "lenet.safetensors", model, params)
    fresh = TorchNet()
    fresh.load_state_dict(safetensors.torch.load_file(path), strict=True)
    for name, p in fresh.named_parameters():
        np.testing.assert_array_equal(to_np(p), to_np(dict(tnet.named_parameters())[name]))
    safetensors.torch.save_file(tnet.state_dict(), str(tmp_path / "from_torch.safetensors"))
    loaded = torch_io.load_weights(tmp_path / "from_torch.safetensors", model)
    np.testing.assert_array_equal(loaded.params["fc1"]["weight"], params["fc1"]["weight"])


def test_pth_is_read_with_weights_only(tmp_path):
    tnet, model, params = _lenet_pair()
    torch.save({"state_dict": {"module." + k: v for k, v in tnet.state_dict().items()}}, tmp_path / "w.pth")
    loaded = torch_io.load_weights(tmp_path / "w.pth", model)
    np.testing.assert_array_equal(loaded.params["conv1"]["weight"], params["conv1"]["weight"])

    class Evil:
        def __reduce__(self):
            return (print, ("unpickled!",))

    torch.save({"x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(FuncnetsError, match="could not read weights"):
        torch_io.load_file(tmp_path / "evil.pth")
    torch_io.save_weights(tmp_path / "out.pth", model, params)
    fresh = TorchNet()
    fresh.load_state_dict(torch.load(tmp_path / "out.pth", weights_only=True), strict=True)


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="funcnets never downloads"):
        torch_io.load_file(tmp_path / "missing.pth")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(FuncnetsError, match="corrupt"):
        torch_io.load_file(tmp_path / "junk.safetensors")
    (tmp_path / "w.npz").write_bytes(b"")
    with pytest.raises(FuncnetsError, match="expected .safetensors or .pth"):
        torch_io.load_file(tmp_path / "w.npz")


def test_save_is_atomic(tmp_path, monkeypatch):
    tnet, model, params = _lenet_pair()
    path = torch_io.save_weights(tmp_path / "w.safetensors", model, params)
    before = path.read_bytes()
    import os

    def crash(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        torch_io.save_weights(path, model, jax.tree_util.tree_map(jnp.zeros_like, params))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]  # no temp file left
