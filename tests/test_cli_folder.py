"""``funcnets train --data photos/`` on an ImageFolder of real images (the digits as RGB PNGs),
then ``evaluate``, ``predict``, ``export`` and torchvision loading the export strictly with
the same predictions; exact ``--resume``; bad input; the example end to end."""

import json
import runpy
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from safetensors.numpy import load_file

from funcnets import checkpoint
from funcnets.cli import main
from funcnets.data import make_digits_folder
from funcnets.data.folder import default_loader
from funcnets.folder_train import eval_transform, is_folder_data

SIZE = 32
ROOT = Path(__file__).resolve().parent.parent


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _train(capsys, photos, out, ck, *extra, epochs=2):
    return _run(capsys, "train", "--model", "resnet18", "--data", photos, "--image-size", SIZE, "--epochs", epochs,
                "--batch-size", 8, "--workers", 0, "--trainable", "fc.*", "--lr", 0.01, "--seed", 3,
                "--checkpoint-dir", ck, "--out", out, "--no-progress", *extra)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_digits_folder(tmp_path_factory.mktemp("data") / "photos", per_class=4, size=SIZE, seed=0)


@pytest.fixture(scope="module")
def trained(photos, tmp_path_factory):
    """Two epochs from torchvision's 1000-class resnet18 file (random weights), fc alone
    trained, at a constant rate: also the uninterrupted run test_resume_is_exact compares with."""
    work = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), work / "resnet18.pth")
    capsys = _Capture()
    code, out, err = _train(capsys, photos, work / "run", work / "ck", "--weights", work / "resnet18.pth",
                            "--lr-schedule", "constant")
    assert code == 0, err
    return work, out


class _Capture:  # module-scoped fixtures cannot use capsys; main's output goes to the real streams
    def readouterr(self):
        return "", ""


def test_is_folder_data(tmp_path, photos):
    assert is_folder_data(str(photos)) and not is_folder_data("digits") and not is_folder_data(None)
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "train-images-idx3-ubyte").write_bytes(b"")
    assert not is_folder_data(str(tmp_path / "mnist"))
    (tmp_path / "list.csv").write_text("a.png,0\n")
    assert is_folder_data(str(tmp_path / "list.csv"))


def test_train_evaluate_predict_export_torchvision(trained, photos, capsys, tmp_path):
    work, _ = trained
    run = work / "run"
    for f in ("best.safetensors", "resnet18.safetensors", "classes.json", "curves.png", "history.json"):
        assert (run / f).stat().st_size > 0, f
    assert json.loads((run / "classes.json").read_text()) == [str(d) for d in range(10)]
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2] and all("val_accuracy" in h for h in history)
    # only fc was trained: the body is the torchvision file's
    start = torch.load(work / "resnet18.pth", weights_only=True)
    last = load_file(run / "resnet18.safetensors")
    np.testing.assert_array_equal(last["layer1.0.conv1.weight"], start["layer1.0.conv1.weight"].numpy())
    assert last["fc.weight"].shape == (10, 512)
    # best = the epoch with the best validation accuracy
    best_epoch = max(history, key=lambda h: h["val_accuracy"])["epoch"]
    saved = checkpoint.find_checkpoint(work / "ck", None)
    assert saved.epoch == 2 and saved.run["best_val_accuracy"] == max(h["val_accuracy"] for h in history)
    if best_epoch == 2:
        np.testing.assert_array_equal(load_file(run / "best.safetensors")["fc.weight"], last["fc.weight"])
    else:
        assert not np.array_equal(load_file(run / "best.safetensors")["fc.weight"], last["fc.weight"])

    code, out, err = _run(capsys, "evaluate", "--model", "resnet18", "--weights", run / "best.safetensors",
                          "--data", photos, "--image-size", SIZE, "--out", tmp_path / "ev", "--no-progress")
    assert code == 0, err
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    cm = np.array(metrics["confusion"])
    assert cm.shape == (10, 10) and cm.sum() == 40 and (tmp_path / "ev" / "confusion.png").stat().st_size > 0
    assert metrics["accuracy"] == pytest.approx(np.trace(cm) / 40)
    assert metrics["top5_accuracy"] >= metrics["accuracy"]
    for i, c in enumerate(metrics["classes"]):
        p = cm[i, i] / cm[:, i].sum() if cm[:, i].sum() else 0.0
        assert metrics["per_class"][c]["precision"] == pytest.approx(p)
        assert metrics["per_class"][c]["recall"] == pytest.approx(cm[i, i] / 4)
    assert "precision  recall" in out and "accuracy" in out

    images = [photos / "3" / "0.png", photos / "8" / "1.png"]
    code, out, err = _run(capsys, "predict", "--model", "resnet18", "--weights", run / "best.safetensors",
                          "--image-size", SIZE, "--topk", 3, "--json", *images)
    assert code == 0, err
    rows = json.loads(out)
    assert [len(r["top"]) for r in rows] == [3, 3]
    code, table, err = _run(capsys, "predict", "--model", "resnet18", "--weights", run / "best.safetensors",
                            "--image-size", SIZE, "--topk", 2, images[0])
    assert code == 0 and f"1. {rows[0]['top'][0]['class']}" in table

    for suffix in ("pth", "safetensors"):
        code, out, err = _run(capsys, "export", "--model", "resnet18", "--weights", run / "best.safetensors",
                              "--out", tmp_path / f"model.{suffix}")
        assert code == 0, err
        assert "torchvision.models.resnet18(num_classes=10)" in out and "strict=True" in out
        sd = (torch.load(tmp_path / "model.pth", weights_only=True) if suffix == "pth"
              else {k: torch.from_numpy(v) for k, v in load_file(tmp_path / "model.safetensors").items()})
        tv = torchvision.models.resnet18(num_classes=10)
        tv.load_state_dict(sd, strict=True)
        tv.eval()
        x = torch.from_numpy(np.stack([eval_transform(SIZE)(default_loader(p)) for p in images]))
        with torch.no_grad():
            probs = torch.softmax(tv(x), 1).numpy()
        for p, r in zip(probs, rows):
            order = np.argsort(-p)[:3]
            assert [int(i) for i in order] == [t["index"] for t in r["top"]]
            np.testing.assert_allclose(p[order], [t["probability"] for t in r["top"]], rtol=1e-4, atol=1e-6)


def test_resume_is_exact(trained, photos, capsys, tmp_path):
    """One epoch, then --resume to two == the two uninterrupted epochs of ``trained`` (same
    weights, bit for bit; a constant rate, as a cosine schedule of 1 epoch extended to 2 is
    another schedule)."""
    work, _ = trained
    code, _, err = _train(capsys, photos, tmp_path / "b", tmp_path / "ckb", "--weights", work / "resnet18.pth",
                          "--lr-schedule", "constant", epochs=1)
    assert code == 0, err
    code, out, err = _run(capsys, "train", "--checkpoint-dir", tmp_path / "ckb", "--resume", "--epochs", 2,
                          "--out", tmp_path / "b", "--no-progress")
    assert code == 0, err
    assert "resuming from" in out and "epoch 2/2" in out and "epoch 1/2" not in out
    a, b = load_file(work / "run" / "resnet18.safetensors"), load_file(tmp_path / "b" / "resnet18.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    ha = json.loads((work / "run" / "history.json").read_text())
    hb = json.loads((tmp_path / "b" / "history.json").read_text())
    assert len(ha) == 2 and [h["loss"] for h in ha] == [h["loss"] for h in hb]
    # a setting that differs from the checkpoint's is refused, naming it
    code, _, err = _run(capsys, "train", "--checkpoint-dir", tmp_path / "ckb", "--resume", "--image-size", 48,
                        "--out", tmp_path / "b", "--no-progress")
    assert code == 1 and "--image-size: saved 32, given 48" in err


def test_bad_input(photos, capsys, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = _run(capsys, "train", "--model", "resnet18", "--data", empty, "--image-size", SIZE,
                        "--out", tmp_path / "o", "--no-progress")
    assert code == 1 and "Couldn't find any class folder" in err and str(empty) in err
    one_empty = tmp_path / "one_empty"
    shutil.copytree(photos, one_empty)
    for f in (one_empty / "4").iterdir():
        f.unlink()
    code, _, err = _run(capsys, "train", "--model", "resnet18", "--data", one_empty, "--image-size", SIZE,
                        "--out", tmp_path / "o", "--no-progress")
    assert code == 1 and "class folder(s) with no image" in err and str(one_empty / "4") in err

    # a truncated image stops the run naming the file; the finished epoch's checkpoint is kept
    data = tmp_path / "data"
    shutil.copytree(photos, data)
    code, _, err = _train(capsys, data, tmp_path / "run", tmp_path / "ck", epochs=1)
    assert code == 0, err
    bad = data / "5" / "2.png"
    bad.write_bytes(bad.read_bytes()[:60])
    code, _, err = _run(capsys, "train", "--checkpoint-dir", tmp_path / "ck", "--resume", "--epochs", 2,
                        "--out", tmp_path / "run", "--no-progress")
    assert code == 1 and str(bad) in err and "truncated" in err
    info = checkpoint.find_checkpoint(tmp_path / "ck")
    assert info.epoch == 1 and (tmp_path / "run" / "best.safetensors").exists()
    bad.unlink()  # the fix: the run continues from epoch 1, saying the images changed
    code, out, err = _run(capsys, "train", "--checkpoint-dir", tmp_path / "ck", "--resume", "--epochs", 2,
                          "--out", tmp_path / "run", "--no-progress")
    assert code == 0 and "images in --data changed" in err and "epoch 2/2" in out and "epoch 1/2" not in out

    # predict: a missing image, weights of another model
    code, _, err = _run(capsys, "predict", "--model", "resnet18", "--weights", tmp_path / "run" / "best.safetensors",
                        tmp_path / "nope.png")
    assert code == 1 and "nope.png does not exist" in err
    code, _, err = _run(capsys, "evaluate", "--model", "resnet18", "--weights", tmp_path / "run" / "best.safetensors",
                        "--data", one_empty.parent / "empty", "--no-progress")
    assert code == 1 and "class folder" in err
    code, _, err = _run(capsys, "export", "--model", "resnet18", "--weights", tmp_path / "run" / "best.safetensors",
                        "--out", tmp_path / "m.onnx")
    assert code == 1 and ".pth, .pt or .safetensors" in err


def test_example_runs(tmp_path, capsys, monkeypatch):
    # the script as `python examples/finetune_folder.py ...` runs it (its __main__ block, its
    # argv), in this process: a subprocess would only add the imports of jax and torch
    script = ROOT / "examples" / "finetune_folder.py"
    monkeypatch.setattr(sys, "argv", [str(script), "--epochs", "1", "--size", str(SIZE), "--per-class", "4",
                                      "--dir", str(tmp_path)])
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as e:  # how the script reports a failed step or a disagreement
        pytest.fail(f"examples/finetune_folder.py exited: {e}\n{capsys.readouterr().out[-3000:]}")
    out = capsys.readouterr().out
    assert "PyTorch and funcnets agree on every image." in out
    assert (tmp_path / "eval" / "confusion.png").exists() and (tmp_path / "model.pth").exists()
