"""Twilio-shaped identifiers: a two-letter prefix and 32 lowercase hex digits."""

from __future__ import annotations

import uuid


def new_sid(prefix: str) -> str:
    """A fresh SID such as ``CA…`` (call), ``MZ…`` (stream) or ``AC…`` (account)."""
    if len(prefix) != 2 or not prefix.isalpha() or not prefix.isupper():
        raise ValueError(f"a SID prefix is two capital letters, got {prefix!r}")
    return prefix + uuid.uuid4().hex


DEFAULT_ACCOUNT_SID = "AC" + "0" * 32
"""A fixed, obviously fake account for simulated calls that do not name one."""
