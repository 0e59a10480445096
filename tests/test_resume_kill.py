"""SIGKILL and Ctrl-C at chosen moments of a real `funcnets train` process, then resume:
the run ends at the right step with weights bit-identical to an uninterrupted run.

The moments come from the test-only hook ``FUNCNETS_FAULT`` (funcnets._io.fault_point):
the process kills or interrupts itself exactly there, or pauses there so the test can
signal it from outside. All processes share one compilation cache (LeNet, 3 epochs of
22 steps each).
"""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from funcnets.checkpoint import read_checkpoint
from helpers import default_compile_env

ARGS = ["-m", "funcnets", "train", "--epochs", "3", "--batch-size", "64", "--augment-shift", "1", "--no-progress"]
TIMEOUT = 300  # seconds per process: generous, the CI machine may be busy


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """XLA's default compilation, not conftest's fast-compile flags: the first process
    compiles, the others load from the shared cache, and each runs 3 epochs, which those
    flags make slower (a cached run: 5.5 -> 4.2 s of CPU)."""
    return default_compile_env(FUNCNETS_COMPILATION_CACHE=str(tmp_path_factory.mktemp("jax-cache")),
                               PYTHONUNBUFFERED="1")


def _argv(ck: Path, out: Path, *extra) -> list[str]:
    return [sys.executable, *ARGS, "--checkpoint-dir", str(ck), "--out", str(out), *extra]


def _run(env, ck, out, *extra, fault=None):
    e = {**env, **({"FUNCNETS_FAULT": fault} if fault else {})}
    return subprocess.run(_argv(ck, out, *extra), env=e, cwd=ck.parent, capture_output=True, text=True,
                          timeout=TIMEOUT)


def _start(env, ck, out, *extra, fault=None):
    e = {**env, **({"FUNCNETS_FAULT": fault} if fault else {})}
    return subprocess.Popen(_argv(ck, out, *extra), env=e, cwd=ck.parent, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _wait_for_line(proc, text: str) -> list[str]:
    lines = []
    while True:
        line = proc.stderr.readline()
        assert line, f"the process ended before printing {text!r}: {''.join(lines)}"
        lines.append(line)
        if text in line:
            return lines


def _own_lines(stderr: str) -> list[str]:
    """stderr without the test hook's markers and resume warnings."""
    return [ln for ln in stderr.splitlines() if ln and not ln.startswith("funcnets-fault:") and "warning:" not in ln]


def _steps(ck: Path) -> list[str]:
    return sorted(p.name for p in ck.glob("step_*"))


@pytest.fixture(scope="module")
def reference(env, tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    done = _run(env, root / "ck", root / "out")
    assert done.returncode == 0, done.stderr
    return root


def test_sigkill_and_ctrl_c_at_every_moment_then_resume_is_bit_exact(env, reference, tmp_path):
    ck, out = tmp_path / "ck", tmp_path / "out"

    # 1. SIGKILL inside the first save, its weights written: no checkpoint, only a temporary folder
    r = _run(env, ck, out, fault="save.weights:kill:1")
    assert r.returncode == -signal.SIGKILL
    assert _steps(ck) == [] and not (ck / "latest").exists() and list(ck.glob(".tmp-step-*"))

    # 2. a fresh start (nothing to resume) cleans that up; SIGKILL after the rename, before `latest`
    r = _run(env, ck, out, fault="save.renamed:kill:1")
    assert r.returncode == -signal.SIGKILL
    assert _steps(ck) == ["step_00000022"] and not (ck / "latest").exists() and not list(ck.glob(".tmp-*"))
    assert read_checkpoint(ck / "step_00000022").epoch == 1

    # 3. resume; Ctrl-C (from outside) in the middle of the next save: the save completes, then 130
    proc = _start(env, ck, out, "--resume", fault="save.files:pause:1")
    before = _wait_for_line(proc, "funcnets-fault: save.files")
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=TIMEOUT)
    stderr = "".join(before) + rest
    assert proc.returncode == 130, stderr
    assert "has no `latest` pointer; resuming from step_00000022" in stderr
    (line,) = _own_lines(stderr)
    assert line.endswith(f"interrupted (Ctrl-C); the last checkpoint, {ck / 'step_00000044'}, is intact: "
                         f"continue with --resume")
    assert (ck / "latest").read_text() == "step_00000044" and read_checkpoint(ck / "step_00000044").epoch == 2

    # 4. resume; Ctrl-C while XLA computes epoch 3 (the main thread waits in XLA): 130 at once
    t = time.perf_counter()
    r = _run(env, ck, out, "--resume", fault="epoch.running:sigint:1")
    assert r.returncode == 130, r.stderr
    (line,) = _own_lines(r.stderr)
    assert "interrupted (Ctrl-C); the last checkpoint" in line and "step_00000044" in line
    assert _steps(ck) == ["step_00000022", "step_00000044"] and time.perf_counter() - t < TIMEOUT

    # 5. resume; SIGKILL after the last save's `latest` update, before pruning
    r = _run(env, ck, out, "--resume", fault="save.latest:kill:1")
    assert r.returncode == -signal.SIGKILL
    assert (ck / "latest").read_text() == "step_00000066" and read_checkpoint(ck / "step_00000066").epoch == 3

    # 6. resume of the finished run; SIGKILL (from outside) while it writes its outputs
    proc = _start(env, ck, out, "--resume", fault="outputs:pause:1")
    _wait_for_line(proc, "funcnets-fault: outputs")
    proc.kill()
    proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == -signal.SIGKILL
    assert (out / "lenet.safetensors").exists() and not (out / "history.json").exists()

    # 7. resume: nothing left to train, the outputs are written; all equal the uninterrupted run's
    r = _run(env, ck, out, "--resume")
    assert r.returncode == 0, r.stderr
    assert "the run is complete (epoch 3 of 3): nothing to train" in r.stdout
    assert _steps(ck) == _steps(reference / "ck") == ["step_00000022", "step_00000044", "step_00000066"]
    for a, b in ((out / "lenet.safetensors", reference / "out" / "lenet.safetensors"),
                 (ck / "step_00000066" / "weights.safetensors", reference / "ck" / "step_00000066" / "weights.safetensors"),
                 (ck / "step_00000044" / "weights.safetensors", reference / "ck" / "step_00000044" / "weights.safetensors")):
        wa, wb = load_file(a), load_file(b)
        assert wa.keys() == wb.keys()
        for k in wa:
            np.testing.assert_array_equal(wa[k], wb[k], err_msg=f"{a}: {k}")
    assert (ck / "step_00000066" / "train.msgpack").read_bytes() == (reference / "ck" / "step_00000066" / "train.msgpack").read_bytes()
    history, ref = (json.loads((d / "out" / "history.json").read_text()) for d in (tmp_path, reference))
    assert [h["loss"] for h in history] == [h["loss"] for h in ref] and len(history) == 3


def _importing_jax(pid: int) -> bool:
    """jaxlib's library is mapped: the process is importing JAX, which funcnets.config does
    right after installing the command's start-up SIGINT handler. (SigCgt cannot tell:
    Python's own KeyboardInterrupt handler is there from the first instant.)"""
    return "jaxlib" in Path(f"/proc/{pid}/maps").read_text()


def test_ctrl_c_while_starting_is_one_line_and_130(env, tmp_path):
    proc = subprocess.Popen(_argv(tmp_path / "ck", tmp_path / "out"), env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not _importing_jax(proc.pid):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 130
    assert err.count("\n") == 1 and "interrupted (Ctrl-C)" in err and "Traceback" not in err, err
    assert not (tmp_path / "ck").exists() or not list((tmp_path / "ck").glob("step_*"))
