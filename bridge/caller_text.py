"""Text a caller controls, made safe to use: the webhook's `From`, `To`, `CallSid` and the
stream's `<Parameter>`s.

Whoever posts to the webhook chooses these strings, and they travel far: into the TwiML
(`<Parameter value=…>`), every log line of the call, and the model's instructions (the
caller's number). So each is cut to a length no honest value reaches and loses every
character no honest value has: the C0 and C1 control characters (ESC, NUL, VT, line breaks
and tabs too: a phone number or a SID never needs one), DEL, the characters XML 1.0 forbids
(lone surrogates, U+FFFE, U+FFFF) and the bidirectional overrides that make a logged value
read backwards. Pure functions: nothing here rejects a call, it only cleans.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

NUMBER_MAX_CHARS: Final = 64
"""`From` / `To`: E.164 is at most 16 characters; a SIP address or `client:name` is longer,
but not this long."""

SID_MAX_CHARS: Final = 64
"""`CallSid`: 34 characters (`CA` and 32 hex digits)."""

PARAMETER_MAX_CHARS: Final = 512
"""A `<Parameter>` value other than the numbers: the stream token is the longest (under 450)."""

PARAMETER_NAME_MAX_CHARS: Final = 64
PARAMETERS_MAX_COUNT: Final = 16
"""The webhook sets five; more is not ours."""

_REMOVED = (
    list(range(0x00, 0x20))  # C0, with TAB, LF and CR
    + list(range(0x7F, 0xA0))  # DEL and C1
    + list(range(0xD800, 0xE000))  # surrogates (not XML characters)
    + [0xFFFE, 0xFFFF]  # not XML characters
    + list(range(0x202A, 0x202F))  # bidirectional embeddings and overrides
    + list(range(0x2066, 0x206A))  # bidirectional isolates
    + [0x200E, 0x200F, 0x061C]  # direction marks
)
_TABLE: Final = dict.fromkeys(_REMOVED)


def clean_text(value: object, max_chars: int) -> str:
    """`value` without the removed characters, at most `max_chars` long ("" for None or a
    value that is not a string: a JSON parameter may be anything)."""
    if not isinstance(value, str):
        return ""
    if value.isascii() and value.isprintable():  # the usual case: nothing to remove
        return value[:max_chars]
    # Cut first (at 4x: a flood of removed characters cannot stretch the work), then clean.
    return value[: max_chars * 4].translate(_TABLE)[:max_chars]


def clean_number(value: object) -> str:
    """A caller's or called number (`From`, `To`) as the bridge may show and use it."""
    return clean_text(value, NUMBER_MAX_CHARS)


def clean_sid(value: object) -> str:
    """A `CallSid` (or any Twilio SID) as the bridge may log it and sign it."""
    return clean_text(value, SID_MAX_CHARS)


def clean_parameters(params: Mapping[str, object]) -> dict[str, str]:
    """A stream's `customParameters`: the first `PARAMETERS_MAX_COUNT`, names and values
    cleaned, `From` and `To` to the number cap, the rest to `PARAMETER_MAX_CHARS`."""
    cleaned: dict[str, str] = {}
    for name, value in list(params.items())[:PARAMETERS_MAX_COUNT]:
        key = clean_text(name, PARAMETER_NAME_MAX_CHARS)
        limit = NUMBER_MAX_CHARS if key in ("From", "To") else PARAMETER_MAX_CHARS
        cleaned[key] = clean_text(value, limit)
    return cleaned
