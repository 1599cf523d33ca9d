"""Errors in how a run was asked for; ``python -m experiments`` reports them without a traceback."""

from __future__ import annotations

__all__ = ["SetupError"]


class SetupError(ValueError):
    """A run that cannot start as asked; the message says why and the command to run instead."""
