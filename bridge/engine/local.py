"""The local Realtime engine: the protocol server with real ears, a voice and a small policy.

`REALTIME_PROVIDER=local` (the default when no provider key is set) points the bridge here.
It speaks the public GA protocol on a loopback WebSocket, so the bridge talks to it exactly
as to OpenAI; inside, per session:

- turn detection: WebRTC's VAD (:mod:`bridge.engine.webrtc_vad`);
- hearing: pocketsphinx, the general model for the transcript and a phrase grammar for
  intents (:mod:`bridge.engine.asr`), in worker processes;
- the "model": :class:`~bridge.engine.policy.DialoguePolicy`;
- the voice: espeak-ng (:mod:`bridge.engine.tts`), streamed as 24 kHz deltas.

Protocol behaviour (events, errors, barge-in cancellation, truncation) is the engine core's,
the same code the test suite's fake upstream runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from bridge.engine.asr import Recognizer, known_words
from bridge.engine.codec import Pcm
from bridge.engine.config import EngineSessionConfig
from bridge.engine.policy import (
    DialoguePolicy,
    declared_tools,
    grammar_name,
    phrase_grammar,
    transfer_targets,
)
from bridge.engine.server import Connection, RealtimeServer, SessionSetup
from bridge.engine.tts import EspeakVoice
from bridge.engine.webrtc_vad import webrtc_vad_factory

LOCAL_MODEL = "voicebridge-local"
"""The model name sessions report when the client does not name one."""


class Ears:
    """One session's hearing: transcribes committed turns and keeps the phrase the grammar
    recognised in each, for the policy to act on."""

    def __init__(self, recognizer: Recognizer, connection: Connection) -> None:
        self._recognizer = recognizer
        self._connection = connection
        self.phrases: dict[str, str | None] = {}

    def _grammar(self) -> str:
        session = self._connection.session
        tools = declared_tools(session.config.tools) if session is not None else {}
        targets = transfer_targets(tools.get("transfer_call"))
        words = known_words()
        return phrase_grammar(targets, vocabulary=words.__contains__)

    async def transcribe(self, audio: Pcm, *, item_id: str) -> str:
        grammar = self._grammar()
        hearing = await self._recognizer.recognise(audio, grammar_name(grammar), grammar)
        self.phrases[item_id] = hearing.phrase
        return hearing.transcript

    def phrase(self, item_id: str) -> str | None:
        return self.phrases.get(item_id)


class LocalEngine:
    """A Realtime server on ``host:port`` (0 = a free port) answering with the local parts.

    Parameters:
        speed: audio pacing as a multiple of real time (the hosted service sends faster than
            real time; 1.0 keeps a response active while it plays, as a slow model would).
        record: keep every message (tests).
        recognizer, voice: replace the hearing or the voice (tests, benchmarks).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        speed: float = 1.0,
        record: bool = False,
        recognizer: Recognizer | None = None,
        voice: Any = None,
    ) -> None:
        self.recognizer = recognizer or Recognizer()
        self.voice = voice or EspeakVoice()
        self.server = RealtimeServer(
            self._setup,
            dialect="auto",
            host=host,
            port=port,
            path="/v1/realtime",
            speed=speed,
            await_transcripts=True,
            record=record,
        )

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:PORT/v1/realtime``."""
        return self.server.url

    async def start(self) -> None:
        await self.server.start()
        self.recognizer.warm_up()

    async def stop(self) -> None:
        await self.server.stop()

    async def __aenter__(self) -> LocalEngine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _setup(self, connection: Connection) -> SessionSetup:
        ears = Ears(self.recognizer, connection)
        model = connection.query_params.get("model") or LOCAL_MODEL
        return SessionSetup(
            responder=DialoguePolicy(ears.phrase),
            transcriber=ears,
            voice=self.voice,
            vad_factory=webrtc_vad_factory,
            # The service transcribes only when asked; the bridge always asks. The default
            # model name is what the service reports for a session that never set one.
            config=EngineSessionConfig(model=model, transcription=None),
        )


@asynccontextmanager
async def local_engine(enabled: bool, **options: Any) -> AsyncIterator[LocalEngine | None]:
    """Run a :class:`LocalEngine` for the duration of the block when ``enabled``.

    The app's lifespan uses this, so `voicebridge serve` and in-process tests both get the
    engine when the provider is local, and nothing otherwise.
    """
    if not enabled:
        yield None
        return
    engine = LocalEngine(**options)
    await engine.start()
    try:
        yield engine
    finally:
        await engine.stop()


__all__ = ["Ears", "LocalEngine", "local_engine"]
