"""Griffe extension: read a docstring's ``Example:`` section as Google style's
``Examples:`` section, so its ``>>>`` lines render as highlighted console code.

The house docstrings head their runnable examples ``Example:`` (one example per layer,
run by tests/test_docstring_examples.py). Griffe's Google parser knows only the plural
as the examples section; the singular becomes an admonition whose text is Markdown,
where ``>>> y.tolist()`` is a quote and ``[0.0, 2.0]`` a broken link.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_HEADING = re.compile(r"^(?P<indent>[ \t]*)Example:[ \t]*$", re.M)


def _objects(obj: griffe.Object) -> Any:
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _objects(member)


class ExampleSections(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        # the whole tree is loaded here, with the docstrings other extensions set
        # (docs/griffe_runtime_docstrings.py); parsing happens later, at rendering
        for obj in _objects(pkg):
            doc = obj.docstring
            if doc is not None and ">>>" in doc.value:
                doc.value = _HEADING.sub(r"\g<indent>Examples:", doc.value)
                doc.__dict__.pop("parsed", None)  # a cached parse of the old text, if any
