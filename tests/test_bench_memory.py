"""The benchmark suite's memory measurement (funcnets.benchmark.peak_memory): a fresh
process per measurement, peaks from the kernel's resettable high-water mark. Tiny
workloads: the figures' sizes, not their speed, are checked."""

from __future__ import annotations

import json

import numpy as np
import pytest

from funcnets import benchmark

FIELDS = ("imports_mb", "baseline_mb", "setup_peak_mb", "first_peak_mb", "step_peak_mb", "peak_mb", "step_mb",
          "train_mb", "first_s", "ru_maxrss_mb")

TINY_FUNCNETS = (
    "import jax, jax.numpy as jnp\nfrom funcnets import nn, optim, train",
    "model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))\n"
    "params, state = model.init(jax.random.PRNGKey(0))\nopt = optim.sgd(0.1, momentum=0.9)\n"
    "box = [train.create_train_state(params, state, opt, jax.random.PRNGKey(1))]\n"
    "fn = train.make_train_step(train.supervised_loss(model), opt)\n"
    "batch = (jnp.ones((4, 8)), jnp.arange(4, dtype=jnp.int32) % 3)\n"
    "def step():\n    box[0], metrics = fn(box[0], batch)\n    return metrics\n"
    "wait = jax.block_until_ready",
)
@pytest.fixture(scope="module")
def tiny():
    """A tiny funcnets train step, measured once for the module (torch's side runs the
    same code on another setup string; a second library import would double the time)."""
    return benchmark.peak_memory(*TINY_FUNCNETS, steps=2, env={"FUNCNETS_AOT_CACHE": "0"})


def test_tiny_train_step_fields(tiny):
    r = tiny
    for k in FIELDS:
        assert isinstance(r[k], float) and r[k] > 0, (k, r[k])
    assert r["resettable"] is True  # Linux lets a process reset its own peak
    # a peak is never below the RSS it started from, nor the whole below its parts
    assert r["imports_mb"] <= r["baseline_mb"] + 1 <= r["setup_peak_mb"] + 1
    assert r["first_peak_mb"] >= r["baseline_mb"] - 1 and r["step_peak_mb"] >= r["baseline_mb"] - 1
    assert r["peak_mb"] == max(r["setup_peak_mb"], r["first_peak_mb"], r["step_peak_mb"])
    assert r["step_mb"] == pytest.approx(r["step_peak_mb"] - r["baseline_mb"])
    assert r["train_mb"] == pytest.approx(r["peak_mb"] - r["imports_mb"])


def test_suite_rows_carry_the_figures(tiny, tmp_path):
    f, t = tiny, {**tiny, "peak_mb": tiny["peak_mb"] + 100.0, "step_mb": tiny["step_mb"] + 1.0}
    row = benchmark.Result("tiny step", 1.0, 0.5, peak_mb=f["peak_mb"], torch_peak_mb=t["peak_mb"],
                           memory={"funcnets": f, "torch": t})
    plain = benchmark.Result("LeNet", 4.0, 2.0)
    table = benchmark.format_table([row, plain])
    assert f"{f['peak_mb']:.0f}" in table and f"{t['peak_mb']:.0f}" in table and "peak RSS" in table
    benchmark.write_json([row, plain], tmp_path / "r.json")
    rows = json.loads((tmp_path / "r.json").read_text())["results"]
    assert {"name", "torch_ms", "funcnets_ms", "ratio", "peak_mb", "torch_peak_mb", "memory"} <= set(rows[0])
    assert rows[0]["peak_mb"] == f["peak_mb"] and rows[0]["torch_peak_mb"] == t["peak_mb"]
    assert rows[0]["memory"]["torch"]["step_mb"] == t["step_mb"]
    assert "peak_mb" not in rows[1] and rows[1]["ratio"] == 2.0  # only where measured


def test_a_step_that_holds_64_mb_measures_64_mb_and_not_the_parents_peak():
    # the parent (this process) peaks at 256 MB more than the child will ever hold: a
    # getrusage-based figure would inherit it through fork/exec; VmHWM does not
    hold = np.ones(32 * 2**20)  # 256 MB, touched
    setup = ("kept = []\ndef step():\n    kept[:] = [np.ones(8 * 2**20)]  # 64 MB, touched\n    return kept[0]")
    r = benchmark.peak_memory("import numpy as np", setup, steps=3)
    del hold
    assert 56 <= r["step_mb"] <= 140, r  # the array, plus a transient second one while replaced
    assert r["peak_mb"] < 256, r
    assert r["imports_mb"] < r["baseline_mb"] + 1 < r["step_peak_mb"]


def test_a_failing_setup_names_the_error():
    with pytest.raises(RuntimeError, match="(?s)peak_memory.*NameError"):
        benchmark.peak_memory("import numpy as np", "def step():\n    return undefined_name")
