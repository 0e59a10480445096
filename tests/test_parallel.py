"""Data parallelism: 8 simulated CPU devices and 2 processes on loopback, in subprocesses
(the device count is fixed when JAX starts; see parallel_worker.py)."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcnets import nn, parallel
from funcnets.nn import functional as F
from parallel_worker import check_single_reference

WORKER = Path(__file__).with_name("parallel_worker.py")


def _env(devices: int) -> dict:
    """The test run's environment with ``devices`` simulated CPU devices, keeping the
    run's other XLA_FLAGS (conftest's fast-compile flags: the ResNet-18 check 85 -> 39 s)."""
    return {**os.environ, "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} "
                                       f"--xla_force_host_platform_device_count={devices}".strip()}


# the 8-device checks, run once in one process: each worker start (jax, torch) costs ~4 s of
# CPU and the checks share compilations (LeNet's step, ResNet-18's init). per_device last:
# it turns on x64 for the whole process.
EIGHT = ["lenet", "resnet", "fsdp", "cli", "per_device"]


@pytest.fixture(scope="module")
def eight_devices(tmp_path_factory):
    """{check: its output lines} of ``parallel_worker.py checks ...`` on 8 devices. Under
    pytest-xdist the output is shared through the run's base temporary folder, so the
    process runs once even when these tests land on both workers."""
    import filelock

    root = tmp_path_factory.getbasetemp()
    shared = root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root
    out = shared / "parallel-eight-devices.txt"
    with filelock.FileLock(str(out) + ".lock"):
        if not out.is_file():
            env = _env(8)
            specs = [f"cli:{shared / 'parallel-cli-out'}" if c == "cli" else c for c in EIGHT]
            run = subprocess.run([sys.executable, str(WORKER), "checks", *specs], capture_output=True, text=True,
                                 env=env, timeout=1800)
            out.write_text(run.stdout + "\n=== stderr (tail)\n" + run.stderr[-3000:])
    sections, name = {}, None
    for line in out.read_text().splitlines():
        if line.startswith("=== "):  # "=== CHECK start|ok (...)|FAILED" (parallel_worker.run_checks)
            name = line.split()[1]
        sections.setdefault(name, []).append(line)
    return sections


def _check(sections, name):
    lines = sections.get(name, [])
    assert any(line.startswith(f"=== {name} ok") for line in lines), (
        f"check {name} did not pass:\n" + "\n".join(lines[-60:] + sections.get("stderr", [])))
    return "\n".join(lines)


def test_lenet_8_devices_equal_1(eight_devices):
    assert "lenet float32 8 devices vs 1" in _check(eight_devices, "lenet")


def test_resnet18_syncbn_8_devices_equal_1(eight_devices):
    assert "resnet float64 8 devices vs 1" in _check(eight_devices, "resnet")


def test_cli_devices_all(eight_devices):
    assert "held-out accuracy" in _check(eight_devices, "cli")


def test_fsdp_shards_and_matches_replicated(eight_devices):
    assert "fsdp vs replicated" in _check(eight_devices, "fsdp")


def test_per_device_batchnorm_is_ddp_semantics(eight_devices):
    assert "matches torch DDP" in _check(eight_devices, "per_device")


def test_two_processes_on_loopback_equal_one_process(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [
        subprocess.Popen([sys.executable, str(WORKER), "multihost", str(i), "2", str(port), str(tmp_path / "multi.npz")],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(1))
        for i in range(2)
    ]
    # the one-process reference runs here, on this process's first device, while they train
    check_single_reference(tmp_path / "single.npz")
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(logs)
    multi, single = np.load(tmp_path / "multi.npz"), np.load(tmp_path / "single.npz")
    for k in single:
        np.testing.assert_allclose(multi[k], single[k], rtol=1e-5, atol=1e-7, err_msg=k)


# ----------------------------------------------------------------------------- in-process
def test_grouped_batchnorm_equals_per_chunk_statistics():
    x = jnp.asarray(np.random.default_rng(0).standard_normal((8, 3, 4, 4)))
    w, b = jnp.array([1.0, 2.0, 0.5]), jnp.array([0.0, 0.1, -0.1])
    with F.batch_norm_groups(4):
        y, rm, rv = F.batch_norm(x, jnp.zeros(3), jnp.ones(3), w, b, training=True)
    for g in range(4):
        ref, rm0, rv0 = F.batch_norm(x[2 * g: 2 * g + 2], jnp.zeros(3), jnp.ones(3), w, b, training=True)
        np.testing.assert_allclose(y[2 * g: 2 * g + 2], ref, rtol=1e-5, atol=1e-6)
        if g == 0:  # running statistics follow the first replica (DDP keeps rank 0's buffers)
            np.testing.assert_allclose(rm, rm0, rtol=1e-6)
            np.testing.assert_allclose(rv, rv0, rtol=1e-6)


def test_errors():
    mesh = parallel.data_mesh()
    with pytest.raises(ValueError, match="batch_norm must be 'sync' or 'per-device'"):
        with parallel.batch_norm_mode("global"):
            pass
    if mesh.size > 1:  # only meaningful with several devices
        with pytest.raises(ValueError, match="does not split evenly"):
            parallel.shard_batch(np.zeros((mesh.size + 1, 2)), mesh)
    with pytest.raises(ValueError, match="does not split into 3 equal parts"):
        with F.batch_norm_groups(3):
            nn.BatchNorm2d(2)(*nn.BatchNorm2d(2).init(jax.random.PRNGKey(0)), jnp.ones((4, 2, 2, 2)), train=True)
