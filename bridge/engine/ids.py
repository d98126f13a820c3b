"""Identifiers in the service's style (``event_…``, ``item_…``, ``resp_…``)."""

from __future__ import annotations

import itertools
import secrets


class IdGenerator:
    """Makes unique ids with the service's prefixes.

    A random stem per session keeps ids unique across sessions (a bridge may log several);
    a counter after it keeps them ordered and short, which makes test failures readable.
    """

    def __init__(self, stem: str | None = None) -> None:
        self._stem = stem if stem is not None else secrets.token_hex(4).upper()
        self._counter = itertools.count(1)

    def new(self, prefix: str) -> str:
        return f"{prefix}_{self._stem}{next(self._counter):06d}"
