"""Griffe extension: take a function's docstring from the running object when the source
assigns it after the definition (``max_pool2d.__doc__ = _DOC.format(...)``), which
static analysis cannot see. Everything else stays static."""

from __future__ import annotations

from typing import Any

import griffe


class RuntimeDocstrings(griffe.Extension):
    def on_module_members(self, *, node: Any, mod: griffe.Module, agent: Any, **kwargs: Any) -> None:
        for member in mod.members.values():
            if member.is_alias or not member.is_function or member.docstring is not None:
                continue
            try:
                doc = griffe.dynamic_import(member.path).__doc__
            except Exception:  # noqa: BLE001 (an import that fails here simply keeps the static view)
                continue
            if doc and doc.strip():
                member.docstring = griffe.Docstring(doc, parent=member)
