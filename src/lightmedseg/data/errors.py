"""The one error type of the data stage (a ``ValueError``, so the CLI prints it without a traceback)."""

from __future__ import annotations


class DataError(ValueError):
    """Bad input data: the message names the file, what is wrong and what was expected."""
