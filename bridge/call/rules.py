"""The numbers and lines a call lives by, fixed when it starts.

Built once per call by the adapter from the settings and the persona (`CallRules.for_call`
lives there, where both are known); the core only reads them. Every duration carries its
unit in its name.
"""

from __future__ import annotations

from dataclasses import dataclass

IDLE_GOODBYE = "I haven't heard from you, so I'll end the call now. Goodbye."
# Providers cap a session's length (OpenAI: 60 minutes); a call is moved to a fresh session,
# at a quiet moment, before that.
SESSION_RENEW_S = 55 * 60.0
# An upstream lost mid-call is replaced within this window, or the call falls back.
RECONNECT_WINDOW_S = 2.0
RECONNECT_PAUSE_S = 0.2  # between attempts inside the window
SESSION_CONFIRM_S = 2.0
"""A `session.update` not confirmed by `session.updated` within this was refused (or lost)."""
UPSTREAM_PING_AFTER_S = 1.0
"""An upstream silent this long while a response or an acknowledgement is expected is pinged."""
UPSTREAM_FROZEN_S = 2.5
"""Silent this long, its ping unanswered: frozen, replaced (detected within 3 s at the ticks)."""
HANDOFF_MAX_WAIT_S = 20.0
"""A handoff whose line has not played out after this long is carried out anyway."""
# A peer that sends this many malformed messages is not Twilio; end its call.
MAX_PROTOCOL_ERRORS = 20
# Audio queued towards a caller whose side stopped reading (about 30 s of frames and marks):
# beyond it the call is ended rather than let the process hold it forever.
TWILIO_WRITE_LIMIT_BYTES = 1024 * 1024
# Caller audio beyond this much unsent upstream data is dropped (the newest frames go, so
# nothing waits); control messages are always sent.
UPSTREAM_AUDIO_BACKLOG_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class CallRules:
    """Limits, timings and the lines the bridge itself has the agent say."""

    max_call_s: float = 1800.0
    idle_s: float = 30.0
    goodbye: str = "Thank you for calling. Goodbye."
    """Said when the call reaches `max_call_s`."""
    idle_reprompt: str | None = None
    """Said once after `idle_s` of silence; None goes straight to `idle_goodbye`."""
    idle_goodbye: str = IDLE_GOODBYE
    server_idle: bool = False
    """The server's `idle_timeout_ms` prompts a silent caller (GA): the bridge then does not
    reprompt on its own, it only ends the call after a further idle period."""
    session_renew_s: float = SESSION_RENEW_S
    reconnect_window_s: float = RECONNECT_WINDOW_S
    reconnect_pause_s: float = RECONNECT_PAUSE_S
    handoff_max_wait_s: float = HANDOFF_MAX_WAIT_S
    session_confirm_s: float = SESSION_CONFIRM_S
    upstream_ping_after_s: float = UPSTREAM_PING_AFTER_S
    upstream_frozen_s: float = UPSTREAM_FROZEN_S
    max_protocol_errors: int = MAX_PROTOCOL_ERRORS
    twilio_write_limit_bytes: int = TWILIO_WRITE_LIMIT_BYTES
    upstream_audio_backlog_bytes: int = UPSTREAM_AUDIO_BACKLOG_BYTES
