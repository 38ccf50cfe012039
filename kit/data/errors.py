"""Errors of the data pipeline that a user can act on."""
from __future__ import annotations


class DataError(ValueError):
    """The shard data cannot be used as configured.

    The message names the problem (path, sample key, shapes) and the fix (a command to run or a gin
    binding to change), so a run stops before step 1 with something actionable.
    """
