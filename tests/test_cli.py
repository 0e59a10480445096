"""The funcnets command: training to the accuracy target, resume, parity, bench, errors."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from funcnets.cli import main
from funcnets.nn import onednn_error


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_train_lenet_on_digits_short_run(tmp_path, capsys):
    """A shorter run than the default 30 epochs still clears 95%; the default reaches ≥97%."""
    code, out, err = _run(capsys, "train", "--epochs", "12", "--out", str(tmp_path), "--no-progress")
    assert code == 0, err
    history = json.loads((tmp_path / "history.json").read_text())
    assert history[-1]["test_accuracy"] >= 0.95, history[-1]
    assert "held-out accuracy" in out and "81,194" in out
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import safetensors.torch

    from helpers import TorchNet

    TorchNet().load_state_dict(safetensors.torch.load_file(tmp_path / "lenet.safetensors"), strict=True)


def test_resume_continues_exactly(tmp_path, capsys):
    common = ["train", "--epochs", "4", "--no-progress", "--augment-shift", "1"]
    assert _run(capsys, *common, "--out", str(tmp_path / "a"), "--checkpoint-dir", str(tmp_path / "ck"))[0] == 0
    full = json.loads((tmp_path / "a" / "history.json").read_text())
    # simulate a crash after epoch 2: keep only that checkpoint and point latest at it
    ck = tmp_path / "ck"
    steps = sorted(p for p in ck.glob("step_*"))
    for p in steps[-2:]:
        shutil.rmtree(p)
    (ck / "latest").write_text(steps[-3].name)
    code, out, err = _run(capsys, *common, "--out", str(tmp_path / "b"), "--checkpoint-dir", str(ck), "--resume")
    assert code == 0, err
    resumed = json.loads((tmp_path / "b" / "history.json").read_text())
    assert [h["loss"] for h in resumed] == [h["loss"] for h in full]
    from safetensors.numpy import load_file

    a, b = load_file(tmp_path / "a" / "lenet.safetensors"), load_file(tmp_path / "b" / "lenet.safetensors")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.parametrize(
    "argv,message",
    [
        (["train", "--model", "vgg"], "unknown model 'vgg'; choose one of lenet, resnet18, resnet34"),
        (["train", "--optimizer", "rmsprop"], "unknown optimizer 'rmsprop'"),
        (["train", "--optimizer", "adam", "--momentum", "0.9"], "adam takes betas, not momentum"),
        (["train", "--schedule", "step"], "unknown schedule 'step'"),
        (["train", "--batch-size", "5000"], "batch size must be in [1, 1438]"),
        (["train", "--data", "/nonexistent/mnist"], "--data must be 'digits' or a directory"),
        (["train", "--weights", "/nonexistent/lenet.pth"], "no weights file at /nonexistent/lenet.pth"),
        (["train", "--resume"], "--resume needs --checkpoint-dir"),
        (["train", "--devices", "gpu7"], "--devices must be '1' or 'all'"),
        (["train", "--trainable", "head.*"], "no parameter matches include=['head.*']"),
    ],
)
def test_bad_input_gives_one_clear_paragraph(tmp_path, capsys, argv, message):
    code, out, err = _run(capsys, *argv, "--out", str(tmp_path), "--epochs", "1", "--no-progress")
    assert code == 1
    assert message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 3


def test_unwritable_output_and_corrupt_checkpoint(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    code, _, err = _run(capsys, "train", "--out", str(blocker / "sub"), "--epochs", "1")
    assert code == 1 and "cannot write to" in err and "writable directory" in err
    ck = tmp_path / "ck"
    assert _run(capsys, "train", "--epochs", "1", "--no-progress", "--out", str(tmp_path / "o"), "--checkpoint-dir", str(ck))[0] == 0
    step = next(ck.glob("step_*"))
    before = (step / "weights.safetensors").read_bytes()
    (step / "train.msgpack").write_bytes(b"garbage")
    code, _, err = _run(capsys, "train", "--epochs", "2", "--no-progress", "--out", str(tmp_path / "o"),
                        "--checkpoint-dir", str(ck), "--resume")
    assert code == 1 and "corrupt" in err
    assert (step / "weights.safetensors").read_bytes() == before  # nothing previously saved is lost
    code, _, err = _run(capsys, "train", "--epochs", "2", "--no-progress", "--out", str(tmp_path / "o"),
                        "--checkpoint-dir", str(tmp_path / "empty"), "--resume")
    assert code == 1 and "found no checkpoint" in err


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--lr", "-1"])
    assert info.value.code == 2
    assert "must be greater than 0" in capsys.readouterr().err


def test_parity_command(tmp_path, capsys):
    code, out, _ = _run(capsys, "parity", "--quick", "--json", str(tmp_path / "p.json"))
    assert code == 0, out
    rows = json.loads((tmp_path / "p.json").read_text())
    assert all(r["ok"] for r in rows) and any(r["model"] == "ResNet-18" for r in rows)
    assert "checks within tolerance" in out


def test_bench_command_writes_json(tmp_path, capsys):
    code, out, _ = _run(capsys, "bench", "--only", "two-layer", "--repeats", "2", "--no-compile",
                        "--json", str(tmp_path / "b.json"), "--plot", str(tmp_path / "b.png"))
    assert code == 0
    data = json.loads((tmp_path / "b.json").read_text())
    (row,) = data["results"]
    assert set(row) >= {"name", "torch_ms", "funcnets_ms", "ratio"}
    assert row["ratio"] == pytest.approx(row["torch_ms"] / row["funcnets_ms"])
    assert (tmp_path / "b.png").stat().st_size > 1000 and "speed-up" in out


def test_conv_layers_benchmark_runs():
    """benchmarks/conv_layers.py times all 11 distinct convolutions of ResNet-18 and sums a step."""
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "conv_layers.py"
    out = subprocess.run([sys.executable, str(script), "--batch", "2", "--reps", "1", "--repeats", "1"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    lowering = {line[:21].strip(): line[25:33].strip() for line in out.stdout.splitlines()
                if line[25:33].strip() in ("oneDNN", "XLA", "GEMM")}
    assert len(lowering) == 11 and "sum over one step" in out.stdout
    large = "XLA" if onednn_error() else "oneDNN"
    assert lowering["layer1 3x3"] == large and lowering["layer4 3x3"] == "GEMM"  # the per-shape choice


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "funcnets", "--help"], capture_output=True, text=True, check=True)
    assert "demo" in out.stdout and "parity" in out.stdout and "bench" in out.stdout


def test_compilation_cache_is_written_and_can_be_turned_off(tmp_path):
    code = (
        "import jax, jax.numpy as jnp; from funcnets.config import enable_compilation_cache as e; "
        "print(e()); jax.jit(lambda x: jnp.sin(x) * 2)(jnp.ones(3)).block_until_ready()"
    )
    env = {**__import__("os").environ, "FUNCNETS_COMPILATION_CACHE": str(tmp_path / "cache")}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    assert any((tmp_path / "cache").iterdir())
    env["FUNCNETS_COMPILATION_CACHE"] = "0"
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
    assert out.stdout.strip().splitlines()[0] == "None"


@pytest.mark.slow
def test_demo_main_job(tmp_path, capsys):
    """The README's main job (its parity section is covered by test_parity_command)."""
    code, out, _ = _run(capsys, "demo", "--out", str(tmp_path), "--no-parity")
    assert code == 0
    assert "a.grad = [36. 81.]" in out and "step 499: loss" in out
    lenet = float(out.split("held-out accuracy: ")[1].split("%")[0])
    assert lenet >= 97.0, out
    assert (tmp_path / "lenet_curves.png").is_file() and (tmp_path / "lenet.safetensors").is_file()
