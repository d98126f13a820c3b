"""Answering-machine detection on a call the bridge placed: who answered decides the opening.

Twilio connects an outbound call's stream at once and reports `AnsweredBy` later
(`AsyncAmd`, with `DetectMessageEnd`: after a machine's beep). Until then the agent stays
quiet: its session does not answer speech by itself, so neither a callee's "hello?" nor a
machine's message gets a reply. A person (or `unknown`) then hears the greeting, with the
persona's own turn detection back; a machine hears the voicemail after its beep, then the call
hangs up; a fax line is hung up at once. Pure: the core holds a `Detection` and asks
`answer_for`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["DETECTION_WAIT_S", "Answer", "Detection", "answer_for"]

DETECTION_WAIT_S = 35.0
"""Twilio gives up detecting after 30 s (`MachineDetectionTimeout`) and reports `unknown`;
if even that never arrives, the agent greets after this long rather than stay silent."""

Answer = Literal["greet", "voicemail", "hangup", "wait"]


@dataclass(slots=True)
class Detection:
    """One outbound call's wait for `AnsweredBy`: `voicemail` is the message for a machine
    (None: hang up without one); `decided` once a result (or the deadline) settled it."""

    voicemail: str | None
    deadline: float
    decided: bool = False


def answer_for(answered_by: str, has_voicemail: bool) -> Answer:
    """What the call does for Twilio's `AnsweredBy` value."""
    if answered_by in ("human", "unknown"):
        return "greet"
    if answered_by.startswith("machine_end_"):
        return "voicemail" if has_voicemail else "hangup"
    if answered_by == "fax":
        return "hangup"
    if answered_by == "machine_start":
        return "wait"  # not sent with DetectMessageEnd; the beep's result would follow
    return "greet"  # a value Twilio may add later: a person hears silence otherwise
