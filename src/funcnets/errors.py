"""Error types whose messages say what was expected, what was given, and the fix."""

from __future__ import annotations

__all__ = ["ShapeError", "FuncnetsError"]


class FuncnetsError(Exception):
    """Base class for funcnets' own errors (bad files, bad options)."""


class ShapeError(ValueError):
    """An input of the wrong shape or dtype reached a layer.

    ``path`` is filled in as the error travels up through containers, so the message
    names the layer by its torch name (``fc1: Linear(576, 120) expected ...``).
    """

    def __init__(self, message: str, path: tuple[str, ...] = ()):
        super().__init__(message)
        self.message = message
        self.path = path

    def at(self, name: str) -> "ShapeError":
        return ShapeError(self.message, (name, *self.path))

    def __str__(self) -> str:
        return f"{'.'.join(self.path)}: {self.message}" if self.path else self.message
