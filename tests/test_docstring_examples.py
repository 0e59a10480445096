"""Every ``>>>`` example in funcnets' docstrings runs and prints what it shows (issue 27),
and every layer, container and loss class of ``funcnets.nn`` has one.

The examples are found as :mod:`doctest` finds them (``DocTestFinder``: the docstrings
of a module, its functions, classes and their methods) in every public module of the
package, the modules the API reference renders (``tests/test_docs.py``'s
``REFERENCED_MODULES``) and the modules their public names are defined in; one test per
docstring, named by its dotted name. An example runs in a copy of its module's globals,
as doctest runs it; ``...`` in the output stands for any text (``ELLIPSIS``) and runs of
whitespace compare equal (``NORMALIZE_WHITESPACE``). Nothing else is loosened: a printed
value that changes fails, so print rounded floats (``round(float(v), 4)``).
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import io
import pkgutil
import sys
import warnings
from pathlib import Path

import jax
import pytest

import funcnets
from funcnets import config, nn
from test_docs import REFERENCED_MODULES

OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
ROOT = Path(__file__).resolve().parents[1]


def _public(name: str) -> bool:
    return not any(part.startswith("_") for part in name.split(".")[1:])


def documented_modules() -> list[str]:
    """The modules whose docstrings are searched, sorted."""
    names = {"funcnets", *REFERENCED_MODULES}
    names |= {m.name for m in pkgutil.walk_packages(funcnets.__path__, "funcnets.") if _public(m.name)}
    for module_name in REFERENCED_MODULES:  # where the public names are defined (nn.conv, losses._base, ...)
        module = importlib.import_module(module_name)
        for name in module.__all__:
            defined_in = getattr(getattr(module, name), "__module__", None)
            if isinstance(defined_in, str) and defined_in.split(".")[0] == "funcnets":
                names.add(defined_in)
    return sorted(names)


def collect() -> list[doctest.DocTest]:
    """One ``DocTest`` per docstring with at least one example, in dotted-name order."""
    finder, found = doctest.DocTestFinder(exclude_empty=True), {}
    for module_name in documented_modules():
        for test in finder.find(importlib.import_module(module_name)):
            if test.examples:
                found.setdefault(test.name, test)  # an object is found from its own module only
    return [found[name] for name in sorted(found)]


TESTS = collect()


@pytest.fixture
def float32_and_clean_settings():
    """Examples print float32 results (the default); a test before may have switched
    float64 on for the process, and an example may switch it (``config.float64``)."""
    x64 = jax.config.jax_enable_x64
    torch = sys.modules.get("torch")
    dtype = torch.get_default_dtype() if torch else None
    jax.config.update("jax_enable_x64", False)
    yield
    jax.config.update("jax_enable_x64", x64)
    if torch is not None:
        torch.set_default_dtype(dtype)


@pytest.mark.parametrize("test", TESTS, ids=[t.name for t in TESTS])
def test_docstring_example(test, float32_and_clean_settings):
    runner = doctest.DocTestRunner(optionflags=OPTIONS, verbose=False)
    report = io.StringIO()
    test.globs = dict(test.globs)  # each run starts from the module's globals, untouched
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", config.XLAFlagsIgnoredWarning)
        result = runner.run(test, out=report.write, clear_globs=True)
    assert result.failed == 0, f"the example in {test.name}'s docstring ({test.filename}):\n{report.getvalue()}"


def _example_count(obj: object) -> int:
    """The examples in a class's own docstring (not one inherited from a base class)."""
    return len(doctest.DocTestParser().get_examples(obj.__dict__.get("__doc__") or ""))


def test_every_layer_container_and_loss_has_an_example():
    modules = [
        name for name in nn.__all__
        if inspect.isclass(obj := getattr(nn, name)) and issubclass(obj, nn.Module) and obj is not nn.Module
    ]  # fmt: skip
    assert len(modules) > 120  # layers, containers and the 20 losses: the check sees them all
    missing = [name for name in modules if _example_count(getattr(nn, name)) == 0]
    assert not missing, (
        f"{len(missing)} of funcnets.nn's {len(modules)} Module classes have no >>> example in their "
        f"docstring (an 'Example:' section, see nn.Conv2d): {', '.join(missing)}"
    )


def test_the_reference_renders_the_examples_as_code():
    # mkdocstrings reads the source with griffe, whose Google parser knows "Examples:" only;
    # docs/griffe_example_sections.py (in mkdocs.yml) makes "Example:" that section, not an
    # admonition of Markdown in which ">>> y.tolist()" is a quote and "[0.0, 2.0]" a link
    import griffe  # mkdocstrings-python's reader (the docs extra)

    extension = griffe.load_extensions(f"{ROOT / 'docs' / 'griffe_example_sections.py'}:ExampleSections")
    package = griffe.load("funcnets", search_paths=[str(ROOT / "src")], resolve_aliases=False, extensions=extension)
    classes = [obj for name in nn.__all__ if inspect.isclass(obj := getattr(nn, name)) and _example_count(obj)]
    assert len(classes) > 100
    not_code = []
    for cls in classes:
        docstring = package[f"{cls.__module__}.{cls.__qualname__}".removeprefix("funcnets.")].docstring
        if "examples" not in [section.kind.value for section in docstring.parse("google")]:
            not_code.append(cls.__name__)
    assert not not_code, f"these classes' examples would render as text, not code: {not_code}"


def test_the_runner_fails_on_a_wrong_printed_value_and_finds_every_module():
    def shows(text: str) -> doctest.DocTest:
        return doctest.DocTestParser().get_doctest(text, {}, "t", "t.py", 0)

    good, wrong = shows(">>> round(0.1 + 0.2, 4)\n0.3\n>>> list(range(30))\n[0, 1, ..., 29]\n"), shows(">>> 1 + 1\n3\n")
    runner = doctest.DocTestRunner(optionflags=OPTIONS, verbose=False)
    assert runner.run(good, out=lambda s: None).failed == 0
    assert runner.run(wrong, out=lambda s: None).failed == 1
    modules = documented_modules()
    assert {"funcnets.nn.conv", "funcnets.nn.loss", "funcnets.nn.activation", "funcnets.optim.sgd"} <= set(modules)
    assert "funcnets.nn.conv.Conv2d" in {t.name for t in TESTS}
