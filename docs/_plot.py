"""The tutorial pages' figures: drawn when the site is built, from the numbers the page's
own code computes (never a stored image).

A figure is a ```` ```python exec="true" html="true" ```` block (markdown-exec) at the place
it belongs on the page; it prints the figure as inline SVG::

    import sys
    if "_plot" not in sys.modules: sys.path.insert(0, "docs")   # mkdocs builds from the root
    from _plot import inline, page_namespace, pyplot

    ns = page_namespace(globals(), "tutorial/lenet.md", "torch_losses", "funcnets_losses")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot(ns["funcnets_losses"])
    print(inline(fig))

The numbers come from the page's ```` ```python ```` blocks, which tests/test_docs.py runs
in one namespace, figure blocks included: there the figure block finds the page's
variables in its own globals. markdown-exec runs an ``exec`` block on its own, so at build
time ``page_namespace`` runs the page's blocks first, the way the tests do.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
import tempfile
import warnings
from pathlib import Path

DOCS = Path(__file__).resolve().parent
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+)(?P<info>[^`\n]*)$")


def blocks(path: Path) -> list[dict]:
    """The fenced blocks of a page: ``{"lang", "info", "code", "line", "skip"}`` (``skip``:
    the line before it is ``<!-- skip -->``). tests/test_docs.py runs pages with it too."""
    lines = path.read_text().splitlines()
    out, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence = m["indent"], m["fence"]
        end = i + 1
        while end < len(lines) and lines[end].strip() != fence:
            end += 1
        previous = next((ln.strip() for ln in reversed(lines[:i]) if ln.strip()), "")
        body = [ln[len(indent):] if ln.startswith(indent) else ln.lstrip() for ln in lines[i + 1 : end]]
        info = m["info"].strip()
        out.append({
            "lang": info.split()[0] if info else "", "info": info, "code": "\n".join(body) + "\n",
            "line": i + 1, "skip": previous == "<!-- skip -->",
        })  # fmt: skip
        i = end + 1
    return out


def page_blocks(page: Path) -> list[tuple[int, str]]:
    """``(line, code)`` of the page's ```python blocks as tests/test_docs.py runs them:
    not those after ``<!-- skip -->``, and not the figure blocks (``exec="true"``)."""
    return [(b["line"], b["code"]) for b in blocks(page)
            if b["lang"] == "python" and not b["skip"] and 'exec="true"' not in b["info"]]


def page_namespace(namespace: dict, page: str, *names: str) -> dict:
    """The variables ``names`` as the code of ``page`` (relative to docs/) left them.

    ``namespace`` is the figure block's ``globals()``: returned as it is when it already
    holds ``names`` (tests/test_docs.py ran the page's blocks in it). Otherwise (the site
    build) the page's blocks run here in a fresh namespace, in a temporary directory,
    their printout discarded; the process-wide settings a page may change (jax's float64
    switch, torch's default dtype) are put back afterwards, for the pages built next.
    """
    if all(n in namespace for n in names):
        return namespace
    import jax

    path = DOCS / page
    ns: dict = {"__name__": f"docs_{path.stem}"}
    x64 = jax.config.jax_enable_x64
    torch = sys.modules.get("torch")
    dtype = torch.get_default_dtype() if torch else None
    try:
        with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with contextlib.redirect_stdout(io.StringIO()):
                for line, code in page_blocks(path):
                    exec(compile(code, f"{path}:{line}", "exec"), ns)  # noqa: S102 (the page's own code)
    finally:
        jax.config.update("jax_enable_x64", x64)
        if (torch := sys.modules.get("torch")) is not None:
            torch.set_default_dtype(dtype or torch.float32)  # float32: torch's own default
    missing = [n for n in names if n not in ns]
    if missing:
        raise NameError(f"docs/_plot.py: the code of {page} defines no {missing}; the figure block asks for them")
    return ns


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def inline(fig) -> str:
    """``fig`` as an ``<svg>`` element to print into the page (closes the figure)."""
    import matplotlib
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text stays text: a smaller page
        fig.savefig(buffer, format="svg")
    plt.close(fig)
    svg = buffer.getvalue()
    return svg[svg.index("<svg") :]
