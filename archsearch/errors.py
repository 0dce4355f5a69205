"""Exceptions shared by every layer. Only the CLI turns them into exit codes."""

from __future__ import annotations


class ArchsearchError(Exception):
    """Bad input from the user (malformed file, unknown name, impossible budget).

    The CLI prints the message on one line and exits with code 2.
    """


class GraphError(ArchsearchError):
    """A model whose channel structure cannot be derived (untraceable, unsupported op)."""


class SeparationError(ArchsearchError):
    """A pruner's scores did not separate and the run asked for them to (exit 2)."""


class DivergenceError(Exception):
    """Training produced a non-finite loss."""
