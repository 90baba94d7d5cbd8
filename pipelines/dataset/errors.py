"""The dataset layer's one exception, worded as one line that names the file."""

from __future__ import annotations


class DatasetError(Exception):
    """A problem with a dataset on disk, worded as one line that names the file."""


def one_line(e: BaseException) -> str:
    """An exception's message on one line (its type's name when it has none)."""
    return " ".join(str(e).split()) or type(e).__name__
