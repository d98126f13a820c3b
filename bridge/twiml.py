"""The TwiML the bridge answers Twilio with: pure functions from decisions to documents.

- the webhook's `<Connect action=…><Stream url=… statusCallback=…>` with the per-call
  `<Parameter>`s, and nothing after `</Connect>`: with an action, Twilio runs the TwiML the
  action returns when the stream ends (`bridge.after_stream`);
- the action's answer: `<Hangup/>`, the transfer's `<Dial>`, or the persona's fallback;
- the busy answer when the bridge is at capacity or draining.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

from twilio.twiml.voice_response import Connect, Stream, VoiceResponse

from bridge.after_stream import AfterStream, Fallback, Hangup, Transfer
from bridge.persona import FallbackPlan

UNAVAILABLE_SAY = (
    "Sorry, our assistant is not available right now. Please call again later. Goodbye."
)
BUSY_SAY = (
    "Sorry, all of our lines are busy right now. Please call again in a few minutes. Goodbye."
)
STREAM_ENDED_PATH = "/stream-ended"
STREAM_STATUS_PATH = "/stream-status"
DIAL_ENDED_PATH = "/dial-ended"
DIAL_TIMEOUT_S = 20
"""How long a transferred call rings before it counts as not answered (Twilio's default 30)."""


def busy_twiml() -> VoiceResponse:
    response = VoiceResponse()
    response.say(BUSY_SAY)
    response.hangup()
    return response


def connect_twiml(
    stream_url: str, parameters: dict[str, str], *, action_url: str, status_url: str
) -> VoiceResponse:
    """`<Connect action><Stream statusCallback>` with the per-call `<Parameter>`s."""
    response = VoiceResponse()
    connect = Connect(action=action_url, method="POST")
    stream = Stream(url=stream_url, status_callback=status_url, status_callback_method="POST")
    for name, value in parameters.items():
        stream.parameter(name=name, value=value)
    connect.append(stream)
    response.append(connect)
    return response


def fallback_twiml(fallback: FallbackPlan | None) -> VoiceResponse:
    """The persona's apology, then a transfer to a human or a hang-up."""
    response = VoiceResponse()
    response.say(fallback.say if fallback else UNAVAILABLE_SAY)
    if fallback and fallback.transfer_number:
        response.dial(fallback.transfer_number)
    else:
        response.hangup()
    return response


def transfer_twiml(transfer: Transfer, *, caller_id: str | None, action_url: str) -> VoiceResponse:
    """`<Dial>` to the transfer's number: ringing `DIAL_TIMEOUT_S` at most, showing the number
    the caller called (a Twilio number of the account, so Twilio accepts it as caller ID),
    and asking `action_url` when the dial ends, so an unanswered transfer comes back to the
    agent instead of ending the call."""
    response = VoiceResponse()
    response.dial(
        transfer.number,
        timeout=DIAL_TIMEOUT_S,
        caller_id=caller_id or None,
        action=f"{action_url}?{urlencode({'target': transfer.target})}",
        method="POST",
    )
    return response


def hangup_twiml() -> VoiceResponse:
    response = VoiceResponse()
    response.hangup()
    return response


def after_stream_twiml(
    outcome: AfterStream | None,
    fallback: FallbackPlan | None,
    transfer: Callable[[Transfer], VoiceResponse],
) -> VoiceResponse:
    """The answer to the `<Connect>` action: what the call does once its stream has ended.
    `None` (a call the deployment does not know) gets the fallback, as a failed agent does;
    `transfer` writes the transfer's `<Dial>`."""
    if isinstance(outcome, Hangup):
        return hangup_twiml()
    if isinstance(outcome, Transfer):
        return transfer(outcome)
    assert outcome is None or isinstance(outcome, Fallback)
    return fallback_twiml(fallback)
