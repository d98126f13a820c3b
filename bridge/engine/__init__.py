"""A Realtime protocol server: the local engine's core and the test suite's fake upstream.

It speaks the public OpenAI Realtime protocol (GA, and the older beta dialect Azure preview
deployments use) over a real WebSocket, so a client cannot tell it from the hosted service.
Speech detection, recognition, the reply policy and synthesis are plug-ins.

- :class:`RealtimeSession` — the sans-I/O state machine of one session.
- :class:`RealtimeServer` — the asyncio/websockets adapter, one session per connection.
- Plug-ins: :class:`Vad` (:class:`EnergyVad`), :class:`Transcriber`, :class:`Responder`
  (returns :class:`Speech` / :class:`ToolCall` outputs), :class:`Voice` (:class:`ToneVoice`).
"""

from bridge.engine.config import EngineSessionConfig, EngineTurnDetection, Transcription
from bridge.engine.errors import ProtocolError
from bridge.engine.items import (
    ContentPart,
    Conversation,
    FunctionCallItem,
    FunctionCallOutputItem,
    Item,
    MessageItem,
)
from bridge.engine.responder import Output, Responder, ResponseRequest, Speech, ToolCall
from bridge.engine.response import ResponseRecord
from bridge.engine.server import Connection, RealtimeServer, Record, SessionSetup, dialect_of
from bridge.engine.session import ErrorRecord, RealtimeSession, RespondJob, TranscribeJob
from bridge.engine.transcriber import SilentTranscriber, Transcriber
from bridge.engine.vad import EnergyVad, Vad, VoiceStarted, VoiceStopped
from bridge.engine.voice import ToneVoice, Voice, tone

__all__ = [
    "Connection",
    "ContentPart",
    "Conversation",
    "EnergyVad",
    "EngineSessionConfig",
    "EngineTurnDetection",
    "ErrorRecord",
    "FunctionCallItem",
    "FunctionCallOutputItem",
    "Item",
    "MessageItem",
    "Output",
    "ProtocolError",
    "RealtimeServer",
    "RealtimeSession",
    "Record",
    "RespondJob",
    "Responder",
    "ResponseRecord",
    "ResponseRequest",
    "SessionSetup",
    "SilentTranscriber",
    "Speech",
    "ToneVoice",
    "ToolCall",
    "TranscribeJob",
    "Transcriber",
    "Transcription",
    "Vad",
    "Voice",
    "VoiceStarted",
    "VoiceStopped",
    "dialect_of",
    "tone",
]
