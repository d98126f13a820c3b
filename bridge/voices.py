"""The Realtime API's built-in voices, by protocol dialect: what a `session.update` may name.

The hosted service refuses any other name with an `invalid_value` error and no
`session.updated` (the session keeps its default voice), so the persona check refuses them
first, and the local engine refuses them as the service does. The beta (preview) dialect
predates `marin` and `cedar`.
"""

from __future__ import annotations

from typing import Final

BETA_VOICES: Final = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse")
GA_VOICES: Final = (*BETA_VOICES, "marin", "cedar")


def voices_for(dialect: str) -> tuple[str, ...]:
    """The voice names a session of `dialect` ("ga" or "beta") accepts."""
    return GA_VOICES if dialect == "ga" else BETA_VOICES


def unsupported_voice_message(voice: str, dialect: str) -> str:
    """The service's wording for a voice it does not have."""
    supported = ", ".join(f"'{v}'" for v in voices_for(dialect))
    return f"Invalid value: '{voice}'. Supported values are: {supported}."
