"""Learning-rate schedules end to end: momentum cycling in funcnets' optimizers
(torch's OneCycleLR/CyclicLR with ``cycle_momentum=True``) and ``funcnets train
--lr-schedule`` against torch's schedulers."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from funcnets import optim
from funcnets.optim import lr_scheduler as L
from helpers import assert_close

# --- momentum cycling ------------------------------------------------------------------
# A tiny model (3 -> 4 tanh -> 2) in float64, the same weights and batches in both.
_RNG = np.random.default_rng(0)
_W1, _B1 = _RNG.standard_normal((4, 3)), _RNG.standard_normal(4)
_W2, _B2 = _RNG.standard_normal((2, 4)), _RNG.standard_normal(2)
_STEPS = 60
_XS, _YS = _RNG.standard_normal((_STEPS, 5, 3)), _RNG.standard_normal((_STEPS, 5, 2))


def _loss(p, x, y):
    h = jnp.tanh(x @ p["w1"].T + p["b1"])
    return jnp.mean((h @ p["w2"].T + p["b2"] - y) ** 2)


def _torch_run(make_opt, make_sched):
    ps = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (_W1, _B1, _W2, _B2)]
    opt = make_opt(ps)
    sched = make_sched(opt)
    lrs, moms = [], []
    for x, y in zip(_XS, _YS):
        g = opt.param_groups[0]
        lrs.append(g["lr"])
        moms.append(g["momentum"] if "momentum" in g else g["betas"][0])
        x, y = torch.tensor(x), torch.tensor(y)
        h = torch.tanh(x @ ps[0].T + ps[1])
        loss = ((h @ ps[2].T + ps[3] - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return [p.detach().numpy() for p in ps], np.array(lrs), np.array(moms)


def _ours_run(opt):
    params = {k: jnp.asarray(v) for k, v in zip(("w1", "b1", "w2", "b2"), (_W1, _B1, _W2, _B2))}

    def step(carry, batch):
        p, s = carry
        g = jax.grad(_loss)(p, *batch)
        u, s = opt.update(g, s, p)
        return (optax.apply_updates(p, u), s), None

    (params, _), _ = jax.lax.scan(jax.jit(step), (params, opt.init(params)), (jnp.asarray(_XS), jnp.asarray(_YS)))
    return [params[k] for k in ("w1", "b1", "w2", "b2")]


ONECYCLE = dict(max_lr=0.05, total_steps=_STEPS, pct_start=0.25, base_momentum=0.8, max_momentum=0.95)
CYCLIC = dict(base_lr=0.005, max_lr=0.05, step_size_up=7, mode="triangular2", base_momentum=0.7, max_momentum=0.9)

MOMENTUM_CASES = {
    "onecycle_sgd": (
        lambda s: optim.sgd(lr=s, momentum=s.momentum),
        lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
        "onecycle",
    ),
    "onecycle_sgd_nesterov_wd": (
        lambda s: optim.sgd(lr=s, momentum=s.momentum, nesterov=True, weight_decay=1e-2),
        lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2),
        "onecycle",
    ),
    "onecycle_sgd_dampening": (
        lambda s: optim.sgd(lr=s, momentum=s.momentum, dampening=0.3),
        lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, dampening=0.3),
        "onecycle",
    ),
    "onecycle_adam": (
        lambda s: optim.adam(lr=s, betas=(s.momentum, 0.99)),
        lambda ps: torch.optim.Adam(ps, lr=0.1, betas=(0.9, 0.99)),
        "onecycle",
    ),
    "onecycle_adamw_amsgrad": (
        lambda s: optim.adamw(lr=s, betas=(s.momentum, 0.999), amsgrad=True, weight_decay=0.05),
        lambda ps: torch.optim.AdamW(ps, lr=0.1, amsgrad=True, weight_decay=0.05),
        "onecycle",
    ),
    # the exported building block composed by hand, as the adam docstring shows
    "scale_by_torch_adam_chain": (
        lambda s: optax.chain(optim.scale_by_torch_adam(b1=s.momentum, b2=0.99), optax.scale_by_learning_rate(s)),
        lambda ps: torch.optim.Adam(ps, lr=0.1, betas=(0.9, 0.99)),
        "onecycle",
    ),
    "cyclic_sgd": (
        lambda s: optim.sgd(lr=s, momentum=s.momentum),
        lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
        "cyclic",
    ),
    # optax.inject_hyperparams passes every numeric hyperparameter as an array (a tracer
    # under jit): the momentum schedule is evaluated by optax, not by sgd
    "inject_hyperparams_sgd": (
        lambda s: optax.inject_hyperparams(optim.sgd)(lr=s, momentum=s.momentum),
        lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
        "onecycle",
    ),
}


@pytest.mark.parametrize("case", list(MOMENTUM_CASES))
def test_momentum_cycling_matches_torch(x64, case):
    ours, theirs, kind = MOMENTUM_CASES[case]
    if kind == "onecycle":
        sched = L.OneCycleLR(**ONECYCLE)
        make_sched = lambda o: torch.optim.lr_scheduler.OneCycleLR(o, **ONECYCLE)  # noqa: E731
    else:
        sched = L.CyclicLR(**CYCLIC)
        make_sched = lambda o: torch.optim.lr_scheduler.CyclicLR(o, **CYCLIC)  # noqa: E731
    ref, lrs, moms = _torch_run(theirs, make_sched)
    assert np.ptp(moms) > 0.05, "the reference run must actually cycle the momentum"
    steps = jnp.arange(_STEPS)
    assert_close(jax.vmap(sched.momentum)(steps), moms, 1e-12, "momentum schedule")
    assert_close(jax.vmap(sched)(steps), lrs, 1e-12, "lr schedule")
    got = _ours_run(ours(sched))
    for name, a, b in zip(("w1", "b1", "w2", "b2"), got, ref):
        assert_close(a, b, 1e-9, f"{case} {name} after {_STEPS} steps")


def test_scheduled_momentum_float32_keeps_dtypes():
    """A float64 schedule (x64 on) must not promote a float32 momentum buffer or moment."""
    sched = L.OneCycleLR(**ONECYCLE)
    params = {"w": jnp.ones((3,), jnp.float32)}
    with jax.enable_x64(True):
        for opt in (optim.sgd(lr=sched, momentum=sched.momentum), optim.adam(lr=sched, betas=(sched.momentum, 0.999))):
            state = opt.init(params)
            u, state2 = jax.jit(opt.update)({"w": jnp.ones((3,), jnp.float32)}, state, params)
            assert u["w"].dtype == jnp.float32
            for a, b in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(state2)):
                assert a.dtype == b.dtype


def test_scheduled_momentum_checks():
    sched = L.OneCycleLR(**ONECYCLE)
    with pytest.raises(ValueError, match="Nesterov momentum requires"):
        optim.sgd(lr=0.1, momentum=sched.momentum, dampening=0.5, nesterov=True)
    with pytest.raises(ValueError, match="Invalid momentum value"):
        optim.sgd(lr=0.1, momentum=jnp.asarray(-0.5))
    with pytest.raises(ValueError, match="Invalid beta parameter at index 1"):
        optim.adam(betas=(sched.momentum, 1.5))


# --- funcnets train --lr-schedule ------------------------------------------------------
import json  # noqa: E402
import os  # noqa: E402

from funcnets import recipes  # noqa: E402
from funcnets.cli import main  # noqa: E402

# 1438 digits / 479 = 3 steps per epoch, 3 epochs: a run is mostly compilation
FAST = ["train", "--batch-size", "479", "--epochs", "3", "--augment-shift", "0", "--no-progress", "--lr", "0.05"]
STEPS = 3


@pytest.fixture(scope="module", autouse=True)
def compilation_cache(tmp_path_factory):
    """The persistent compilation cache for this module's runs, as in test_cli.py."""
    from jax._src import compilation_cache as cc

    old_env, old_dir = os.environ.get("FUNCNETS_COMPILATION_CACHE"), jax.config.jax_compilation_cache_dir
    os.environ["FUNCNETS_COMPILATION_CACHE"] = str(tmp_path_factory.mktemp("jax-cache"))
    cc.reset_cache()
    yield
    os.environ["FUNCNETS_COMPILATION_CACHE"] = old_env if old_env is not None else "0"
    jax.config.update("jax_compilation_cache_dir", old_dir)
    cc.reset_cache()


def _train(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def _history(out_dir):
    return json.loads((out_dir / "history.json").read_text())


def _torch_lrs(make_sched, epochs, steps, per_step, optimizer=torch.optim.SGD, lr=0.05):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = optimizer([p], lr=lr)
    sched = make_sched(opt)
    out = []
    for _ in range(epochs):
        for _ in range(steps):
            out.append(sched.get_last_lr()[0])
            opt.step()
            if per_step:
                sched.step()
        if not per_step:
            sched.step()
    return np.array(out)


def _same_in_float32(cli, ref):
    """The command trains in float32: its rate is torch's value rounded once to float32."""
    np.testing.assert_array_equal(np.asarray(cli, np.float32), np.asarray(ref, np.float32))


EPOCH_SCHEDULES = {
    "step": (["--step-size", "2", "--gamma", "0.3"], lambda o: torch.optim.lr_scheduler.StepLR(o, 2, 0.3)),
    "multistep": (["--milestones", "2", "1", "--gamma", "0.5"],
                  lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [1, 2], 0.5)),
    "exponential": (["--gamma", "0.7"], lambda o: torch.optim.lr_scheduler.ExponentialLR(o, 0.7)),
}


@pytest.mark.parametrize("schedule", list(EPOCH_SCHEDULES))
def test_per_epoch_schedules_match_torch(tmp_path, capsys, schedule):
    options, make = EPOCH_SCHEDULES[schedule]
    _train(capsys, *FAST, "--optimizer", "sgd", "--lr-schedule", schedule, *options, "--out", tmp_path)
    history = _history(tmp_path)
    ref = _torch_lrs(make, 3, STEPS, per_step=False)[::STEPS]
    _same_in_float32([h["lr"] for h in history], ref)
    assert "lr_steps" not in history[0] and len(set(ref)) > 1
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


ONECYCLE_CLI = dict(max_lr=0.01, pct_start=0.4, base_momentum=0.8, max_momentum=0.9, div_factor=10.0,
                   final_div_factor=100.0, anneal_strategy="linear")


def test_onecycle_per_step_matches_torch_and_refuses_extension(tmp_path, capsys):
    ck = tmp_path / "ck"
    options = [a for k, v in ONECYCLE_CLI.items() for a in (f"--{k.replace('_', '-')}", v)]
    _train(capsys, *FAST, "--optimizer", "adam", "--lr-schedule", "onecycle", *options,
           "--out", tmp_path / "o", "--checkpoint-dir", ck)
    history = _history(tmp_path / "o")
    make = lambda o: torch.optim.lr_scheduler.OneCycleLR(o, total_steps=9, **ONECYCLE_CLI)  # noqa: E731
    ref = _torch_lrs(make, 3, STEPS, per_step=True, optimizer=torch.optim.Adam)
    _same_in_float32([r for h in history for r in h["lr_steps"]], ref)
    assert [h["lr"] for h in history] == [h["lr_steps"][0] for h in history]
    settings = json.loads((ck / "step_00000009" / "run.json").read_text())["settings"]
    assert settings["schedule"] == "onecycle"
    assert settings["schedule_options"] == ONECYCLE_CLI
    # the saved options give Adam torch's betas[0] at every step (the cycled momentum)
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=0.05)
    sched, ref_betas = make(opt), []
    for _ in range(3 * STEPS):
        ref_betas.append(opt.param_groups[0]["betas"][0])
        opt.step()
        sched.step()
    lr = recipes.learning_rate(0.05, "onecycle", [3], STEPS, settings["schedule_options"])
    _same_in_float32(jax.vmap(lr.momentum)(jnp.arange(3 * STEPS)), ref_betas)
    assert max(ref_betas) == 0.9 and 0.8 <= min(ref_betas) < 0.81  # not torch's default range
    code = main([*FAST, "--epochs", "4", "--out", str(tmp_path / "o2"), "--checkpoint-dir", str(ck), "--resume"])
    err = capsys.readouterr().err
    assert code == 1 and "cannot be extended" in err and "--weights" in err
    code = main([*FAST, "--out", str(tmp_path / "o2"), "--checkpoint-dir", str(ck), "--resume", "--max-lr", "0.02",
                 "--base-momentum", "0.85"])
    err = capsys.readouterr().err
    assert code == 1 and "--max-lr: saved 0.01, given 0.02" in err and "--base-momentum: saved 0.8, given 0.85" in err


def test_onecycle_resume_of_a_run_saved_before_the_momentum_options():
    """A run saved with only max_lr/pct_start ran with torch's default momentum range."""
    from types import SimpleNamespace

    from funcnets.cli import RUN_DEFAULTS, _merge_for_resume

    saved = {**RUN_DEFAULTS, "epochs": [3], "schedule": "onecycle", "schedule_options": {"max_lr": 0.01, "pct_start": 0.3}}
    info = SimpleNamespace(settings=saved, path="ck/step_00000009")
    given = dict.fromkeys(RUN_DEFAULTS)
    _merge_for_resume(info, given, {"base_momentum": 0.85, "max_momentum": 0.95})  # the defaults: the same run
    with pytest.raises(Exception, match="--max-momentum: saved 0.95, given 0.9"):
        _merge_for_resume(info, given, {"max_momentum": 0.9})


def test_plateau_matches_torch_and_resume_restores_its_state(tmp_path, capsys):
    # a tiny rate: the held-out accuracy stays put, so patience 0 reduces every epoch after the first
    run = [*FAST, "--epochs", "4", "--optimizer", "sgd", "--lr", "1e-6", "--lr-schedule", "plateau",
           "--patience", "0", "--factor", "0.5", "--plateau-metric", "accuracy"]
    ck = tmp_path / "ck"
    _train(capsys, *run, "--out", tmp_path / "full", "--checkpoint-dir", ck)
    full = _history(tmp_path / "full")
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1e-6)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.5, patience=0)
    ref = []
    for h in full:
        ref.append(opt.param_groups[0]["lr"])
        sched.step(h["test_accuracy"])
    _same_in_float32([h["lr"] for h in full], ref)
    assert len(set(ref)) > 1, "the reference must reduce the rate"
    saved = json.loads((ck / "step_00000006" / "run.json").read_text())["plateau"]
    assert saved["last_epoch"] == 2 and saved["lr"] == ref[2]
    # resumed from epoch 2: the same rates, metrics and weights as the uninterrupted run
    _train(capsys, *run, "--out", tmp_path / "resumed", "--checkpoint-dir", ck, "--resume", "6")
    resumed = _history(tmp_path / "resumed")
    assert [(h["lr"], h["loss"], h["test_loss"]) for h in resumed] == [(h["lr"], h["loss"], h["test_loss"]) for h in full]
    from safetensors.numpy import load_file

    a, b = load_file(tmp_path / "full" / "lenet.safetensors"), load_file(tmp_path / "resumed" / "lenet.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_schedule_options_are_checked(tmp_path, capsys):
    for argv, message in [
        (["--lr-schedule", "cosine", "--gamma", "0.5"], "--gamma applies to --lr-schedule step or multistep or exponential"),
        (["--lr-schedule", "step"], "needs --step-size"),
        (["--lr-schedule", "exponential"], "needs --gamma"),
        (["--lr-schedule", "warmup"], "unknown schedule 'warmup'"),
        (["--lr-schedule", "cosine", "--base-momentum", "0.8"], "--base-momentum applies to --lr-schedule onecycle"),
    ]:
        code = main([*FAST, "--out", str(tmp_path), *argv])
        assert code == 1 and message in capsys.readouterr().err, argv
    for argv, message in [  # refused by argparse, before anything runs
        (["--max-momentum", "1.0"], "--max-momentum: expected a finite number in [0, 1), got 1.0"),
        (["--div-factor", "0"], "--div-factor: expected a finite number in (0, "),
        (["--anneal-strategy", "cosine"], "invalid choice: 'cosine'"),
    ]:
        with pytest.raises(SystemExit):
            main([*FAST, "--out", str(tmp_path), "--lr-schedule", "onecycle", *argv])
        assert message in capsys.readouterr().err, argv


def test_per_epoch_extension_keeps_the_trained_epochs_rates():
    short = recipes.learning_rate(0.1, "step", [3], 5, {"step_size": 2, "gamma": 0.5})
    longer = recipes.learning_rate(0.1, "step", [3, 6], 5, {"step_size": 2, "gamma": 0.5})
    np.testing.assert_array_equal(short.at(np.arange(15)), longer.at(np.arange(15)))
    ref = _torch_lrs(lambda o: torch.optim.lr_scheduler.StepLR(o, 2, 0.5), 6, 5, per_step=False, lr=0.1)
    _same_in_float32(longer.at(np.arange(30)), ref)
