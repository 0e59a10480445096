"""The documentation cannot rot: every ```python block of README.md and docs/**/*.md runs,
its printed output is checked where the page shows it, and every public name is in the
API reference with a docstring. Also the fixes for what a new user tripped on (float64,
the custom ReLU in two_layer.train, shape-only summaries, the XLA_FLAGS warning).

Conventions of the pages (docs/index.md states them for writers):
  * the ```python blocks of one page run in order in one namespace (so a page reads
    top to bottom); PyTorch's tabs run too, against the installed torch;
  * a ```text title="Output" block right after a python block is what it prints, checked
    line by line (trailing spaces ignored; a line ``...`` stands for any lines);
  * ``<!-- skip -->`` on the line before a block: not run (it needs files or a network).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import re
import sys
import typing
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnets
from funcnets import config
from funcnets.autograd import my_relu
from funcnets.models import LeNet, two_layer

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
sys.path.insert(0, str(ROOT / "docs"))
import hooks  # noqa: E402  (docs/hooks.py: what the API reference renders)
from _plot import blocks  # noqa: E402  (the pages' fenced blocks, as the figure blocks read them)

REFERENCED_MODULES = [
    "funcnets", "funcnets.config", "funcnets.autograd", "funcnets.nn", "funcnets.nn.functional",
    "funcnets.nn.init", "funcnets.losses", "funcnets.optim", "funcnets.optim.lr_scheduler",
    "funcnets.optim.swa_utils", "funcnets.models", "funcnets.data", "funcnets.train",
    "funcnets.checkpoint", "funcnets.torch_io", "funcnets.parallel", "funcnets.errors",
]  # fmt: skip


# --------------------------------------------------------------------------- blocks
def runnable(path: Path) -> list[tuple[dict, dict | None]]:
    """``(python block, its expected-output block or None)`` for the blocks to run."""
    bs = blocks(path)
    pairs = []
    for k, b in enumerate(bs):
        if b["lang"] != "python" or b["skip"]:
            continue
        nxt = bs[k + 1] if k + 1 < len(bs) else None
        shown = nxt if nxt and nxt["lang"] == "text" and 'title="Output"' in nxt["info"] else None
        pairs.append((b, shown))
    return pairs


def matches(expected: str, got: str) -> bool:
    """Line by line, trailing spaces ignored; a line ``...`` matches any lines."""
    exp = [ln.rstrip() for ln in expected.strip("\n").splitlines()]
    pattern = "".join(r"(?:.*\n)*?" if ln == "..." else re.escape(ln) + r"\n" for ln in exp)
    text = "\n".join(ln.rstrip() for ln in got.strip("\n").splitlines()) + "\n"
    return re.fullmatch(pattern, text) is not None


@pytest.fixture
def clean_global_settings():
    """A page may turn float64 on for the process (as the pages tell users to); undo it."""
    x64 = jax.config.jax_enable_x64
    torch = sys.modules.get("torch")
    dtype = torch.get_default_dtype() if torch else None
    yield
    jax.config.update("jax_enable_x64", x64)
    if torch is not None:
        torch.set_default_dtype(dtype)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_page_code_runs_and_prints_what_the_page_shows(page, clean_global_settings, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # blocks that write files write them here
    namespace: dict = {"__name__": f"docs_{page.stem}"}
    for block, shown in runnable(page):
        where = f"{page.relative_to(ROOT)}:{block['line']}"
        out = io.StringIO()
        with contextlib.redirect_stdout(out), warnings.catch_warnings():
            warnings.simplefilter("ignore", config.XLAFlagsIgnoredWarning)
            try:
                exec(compile(block["code"], where, "exec"), namespace)  # noqa: S102 (the point)
            except Exception as e:
                raise AssertionError(f"the block at {where} raised {type(e).__name__}: {e}") from e
        if shown is not None:
            assert matches(shown["code"], out.getvalue()), (
                f"the block at {where} printed\n{out.getvalue()}\nbut the page shows\n{shown['code']}"
            )


def test_the_runner_checks_outputs_and_skips_only_marked_blocks(tmp_path):
    page = tmp_path / "p.md"
    page.write_text(
        "```python\nprint(1)\n```\n\n```text title=\"Output\"\n1\n```\n\n<!-- skip -->\n```python\nopen('x')\n```\n"
        "=== \"tab\"\n\n    ```python\n    print(2)\n    ```\n"
    )
    pairs = runnable(page)
    assert [(b["code"], s and s["code"]) for b, s in pairs] == [("print(1)\n", "1\n"), ("print(2)\n", None)]
    assert matches("a\n...\nd\n", "a\nb\nc\nd\n") and not matches("a\nd\n", "a\nb\nd\n")
    assert not matches("1\n", "2\n")


def test_every_page_with_code_shows_some_output():
    # a tutorial page that prints nothing checked would let its numbers rot
    for page in (ROOT / "docs" / "tutorial").glob("*.md"):
        assert any(shown for _, shown in runnable(page)), page


# --------------------------------------------------------------------------- API reference
@pytest.mark.parametrize("module_name", REFERENCED_MODULES)
def test_every_public_name_is_in_the_reference_with_a_docstring(module_name):
    module = importlib.import_module(module_name)
    page = ROOT / "docs" / "api" / hooks.page_of(module_name)
    assert f"<!-- api {module_name} -->" in page.read_text(), f"{page} must list {module_name}'s public names"
    entries = hooks.public_entries(module_name)
    assert [n for n, _ in entries] == list(module.__all__)
    undocumented = [n for n in module.__all__ if not hooks.has_docstring(getattr(module, n))]
    assert not undocumented, f"{module_name}: public names without a docstring: {undocumented}"
    for name, path in entries:  # every path must name that very object (or the module it links to)
        if path is None:  # a submodule: its own page, or rendered in place by the hook
            assert type(getattr(module, name)) is type(sys), (module_name, name)
            continue
        owner, _, attr = path.rpartition(".")
        target = importlib.import_module(owner) if owner in sys.modules else None
        if target is None:  # a class attribute path such as pkg.mod.Class.method
            mod_name, _, cls = owner.rpartition(".")
            target = getattr(importlib.import_module(mod_name), cls)
        assert getattr(target, attr) is getattr(module, name), (module_name, name, path)


def test_mkdocstrings_finds_every_public_name_statically():
    # what the reference renders is what griffe reads from the source (plus docstrings
    # assigned after a definition, docs/griffe_runtime_docstrings.py): every path the hook
    # writes must resolve there, and functions and classes carry a docstring
    import griffe  # mkdocstrings-python's reader (the docs extra)
    extension = griffe.load_extensions(f"{ROOT / 'docs' / 'griffe_runtime_docstrings.py'}:RuntimeDocstrings")
    package = griffe.load("funcnets", search_paths=[str(ROOT / "src")], resolve_aliases=True,
                          resolve_external=False, extensions=extension)
    missing, bare = [], []
    for module_name in REFERENCED_MODULES:
        for name, path in hooks.public_entries(module_name):
            path = path or f"{module_name}.{name}"
            try:
                obj = package[path.removeprefix("funcnets.")] if path != "funcnets" else package
            except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
                missing.append(path)
                continue
            if obj.kind.value in ("function", "class") and not obj.docstring:
                bare.append(path)
    assert not missing, f"mkdocstrings cannot find {missing}"
    assert not bare, f"no docstring in the source for {bare}"


def test_every_referenced_module_has_a_page_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text()
    for m in REFERENCED_MODULES:
        assert f"api/{hooks.page_of(m)}" in nav, m
    for sub in ("nn", "losses", "optim", "models", "optim.lr_scheduler", "optim.swa_utils"):
        assert f"funcnets.{sub}" in REFERENCED_MODULES


def _torch_object(path: str):
    parts = path.split(".")
    obj = importlib.import_module(parts[0])
    for part in parts[1:]:
        obj = getattr(obj, part, None) or importlib.import_module(f"{obj.__name__}.{part}")
    return obj


def test_the_torch_translation_table_names_real_torch_objects():
    import torch  # noqa: F401
    import torchvision  # noqa: F401

    rows = hooks.torch_rows()
    assert len(rows) > 300  # nn, functional, losses, optim, schedulers, torchvision models, ...
    wrong = []
    for torch_path, funcnets_path, _ in rows:
        try:
            _torch_object(torch_path)
        except (ImportError, AttributeError):
            wrong.append(f"{funcnets_path} -> {torch_path}")
    assert not wrong, f"no such torch name (fix docs/hooks.py TORCH_RENAMED or FUNCNETS_ONLY): {wrong}"
    assert hooks.FUNCNETS_ONLY.isdisjoint(hooks.TORCH_RENAMED)
    for name in hooks.FUNCNETS_ONLY:  # stale entries would hide nothing but mislead
        module, _, attr = name.rpartition(".")
        assert attr in importlib.import_module(module).__all__, name
    page = (ROOT / "docs" / "coming-from-pytorch.md").read_text()
    assert "<!-- torch-names -->" in page and "| `torch.nn.Conv2d` | [`funcnets.nn.Conv2d`]" in hooks.torch_table()


def test_a_missing_docstring_is_caught():
    def documented():
        """Yes."""

    def bare():
        pass

    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Bare:
        n: int = 1

    assert hooks.has_docstring(documented) and not hooks.has_docstring(bare)
    assert not hooks.has_docstring(Bare) and hooks.has_docstring(funcnets.nn.Linear)

    class Pair(typing.NamedTuple):
        a: int

    assert not hooks.has_docstring(Pair)


# --------------------------------------------------------------------------- what a new user tripped on
def test_float64_switch_and_context():
    before = jax.config.jax_enable_x64
    try:
        config.enable_float64(False)
        assert jnp.ones(2, jnp.float64).dtype == jnp.float32 and not config.float64_enabled()
        with config.float64():
            assert config.float64_enabled() and jnp.ones(2, jnp.float64).dtype == jnp.float64
            assert jnp.asarray(np.ones(2)).dtype == jnp.float64
        assert not config.float64_enabled()
        config.enable_float64()
        assert config.float64_enabled() and jnp.asarray(np.ones(2)).dtype == jnp.float64
        with config.float64(False):
            assert not config.float64_enabled()
    finally:
        jax.config.update("jax_enable_x64", before)


def test_a_silent_float64_downcast_warns():
    w = two_layer.init(jax.random.PRNGKey(0), 4, 3, 2)
    x, y = np.ones((5, 4)), np.zeros((5, 2))  # NumPy float64, as torch users write them
    with config.float64(False), pytest.warns(config.Float64DowncastWarning, match="float64 is off"):
        _, losses = two_layer.train(w, x, y, 1e-3, steps=2)
    assert losses.dtype == jnp.float32
    with config.float64(False), pytest.warns(config.Float64DowncastWarning, match="two_layer.grads"):
        two_layer.grads(w, x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", config.Float64DowncastWarning)
        with config.float64(False):  # float32 inputs: nothing to say
            two_layer.train(w, x.astype(np.float32), y.astype(np.float32), 1e-3, steps=2)
        with config.float64():  # float64 on: computed in float64, nothing to say
            _, losses = two_layer.train(jax.tree_util.tree_map(np.asarray, w), x, y, 1e-3, steps=2)
            assert losses.dtype == jnp.float64


def test_two_layer_train_takes_the_custom_relu_without_recompiling():
    w = two_layer.init(jax.random.PRNGKey(0), 6, 5, 2)
    x, y = two_layer.data(jax.random.PRNGKey(1), 4, 6, 2)
    x = x.at[0, :].set(0.0)  # inputs where relu's and my_relu's gradients at 0 differ
    two_layer.train(w, x, y, 1e-3, steps=3, relu=my_relu)
    compiled = two_layer._train._cache_size()
    w_a, losses_a = two_layer.train(w, x, y, 1e-3, steps=3, relu=my_relu)
    w_b, losses_b = two_layer.train(w, x * 1.0, y, 2e-3, steps=3, relu=my_relu)  # new values, same program
    assert two_layer._train._cache_size() == compiled
    # the same as the hand-written loop with my_relu's gradient
    ref, ref_losses = w, []
    for _ in range(3):
        g, value = two_layer.grads(ref, x, y, relu=my_relu)
        ref, ref_losses = two_layer.sgd_step(ref, g, 1e-3), [*ref_losses, value]
    np.testing.assert_allclose(losses_a, ref_losses, rtol=1e-6)
    np.testing.assert_allclose(w_a["w1"], ref["w1"], rtol=1e-5, atol=1e-6)


def test_two_layer_losses_are_indexed_as_the_tutorial_prints_them():
    # torch's loop: for t in range(steps): loss = ...; print(t, loss.item()); backward; step
    w = two_layer.init(jax.random.PRNGKey(2), 5, 4, 3)
    x, y = two_layer.data(jax.random.PRNGKey(3), 6, 5, 3)
    _, losses = two_layer.train(w, x, y, 1e-3, steps=4)
    printed = []
    for _ in range(4):
        g, value = two_layer.grads(w, x, y)
        printed.append(value)  # what print(t, loss.item()) shows at step t
        w = two_layer.sgd_step(w, g, 1e-3)
    np.testing.assert_allclose(losses, printed, rtol=1e-6)


def test_shape_only_listing_and_summary_need_no_parameters():
    net = LeNet()
    params, state = net.init(jax.random.PRNGKey(0))
    shapes = [(n, tuple(a.shape), a.dtype) for n, a in net.named_parameters()]
    assert shapes == [(n, tuple(a.shape), a.dtype) for n, a in net.named_parameters(params)]
    assert net.summary() == net.summary(params, state)
    assert "81,194 trainable parameters" in net.summary()
    bn = funcnets.nn.BatchNorm2d(3)
    assert [n for n, _ in bn.named_buffers()] == ["running_mean", "running_var", "num_batches_tracked"]
    assert [a.shape for a in bn.parameters()] == [(3,), (3,)]
    assert isinstance(net.parameters()[0], jax.ShapeDtypeStruct)  # shapes only: nothing allocated


def test_late_import_warns_that_the_xla_flags_do_nothing(monkeypatch):
    jnp.zeros(1).block_until_ready()  # JAX's backends have started in this process
    monkeypatch.setenv("XLA_FLAGS", "")
    monkeypatch.delenv("FUNCNETS_XLA_FLAGS", raising=False)
    monkeypatch.setattr(config, "_TUNED_JAXLIB", tuple(int(p) for p in __import__("jaxlib").__version__.split(".")[:2]))
    with pytest.warns(config.XLAFlagsIgnoredWarning, match="FUNCNETS_XLA_FLAGS=0"):
        assert config.tune_xla_cpu() is False
    assert "xla_cpu" not in __import__("os").environ["XLA_FLAGS"]
    monkeypatch.setenv("FUNCNETS_XLA_FLAGS", "0")  # the opt-out also silences it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert config.tune_xla_cpu() is False
