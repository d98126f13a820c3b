"""Twilio's side of a phone call, emulated: for tests and for `voicebridge call`.

`place_call` rings the bridge's voice webhook and returns the `StreamTarget` from its TwiML;
`TwilioMediaStream` then plays the caller on that Media Stream, with a loudspeaker model
(`PlaybackBuffer`) that records exactly what the caller heard and when.
"""

from bridge.sim.errors import CallRejected, SimError, StreamClosed, StreamRejected
from bridge.sim.media_stream import (
    CloseInfo,
    InboundFrame,
    Received,
    TwilioMediaStream,
    Utterance,
)
from bridge.sim.playback import ClearRecord, MarkEcho, PlaybackBuffer, PlayedChunk
from bridge.sim.webhook import (
    Continuation,
    StreamTarget,
    Verb,
    continue_after_stream,
    dial_ends,
    place_call,
)

__all__ = [
    "CallRejected",
    "ClearRecord",
    "CloseInfo",
    "Continuation",
    "InboundFrame",
    "MarkEcho",
    "PlaybackBuffer",
    "PlayedChunk",
    "Received",
    "SimError",
    "StreamClosed",
    "StreamRejected",
    "StreamTarget",
    "TwilioMediaStream",
    "Utterance",
    "Verb",
    "continue_after_stream",
    "dial_ends",
    "place_call",
]
