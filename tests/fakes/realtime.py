"""A scripted Realtime upstream for the bridge's tests, built on the real engine.

The protocol behaviour (events, ids, errors, VAD, cancellation, truncation) is the engine's,
so the bridge is tested against the same server the product ships; only the "model" is a
script. Every connection is recorded, and ``violations`` lists what the hosted service
would have rejected::

    async with FakeRealtimeServer("ga", script=[[Say("Hello!", 800)]]) as fake:
        ...  # point the bridge at fake.url
        call = await fake.wait_for_session()
        await call.wait_for_event("response.done")
        assert call.violations == []
"""

from __future__ import annotations

import asyncio
import json
import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import zip_longest
from typing import Any

from bridge.engine.config import EngineSessionConfig
from bridge.engine.errors import ProtocolError
from bridge.engine.responder import Failure, Output, ResponseRequest, Speech, ToolCall
from bridge.engine.server import Connection, RealtimeServer, Record, SessionSetup
from bridge.engine.session import ErrorRecord, RealtimeSession
from bridge.engine.voice import tone
from tests.conformance import DialectName, Problem, check_client_event


@dataclass(frozen=True)
class Say:
    """Speak ``text`` as ``ms`` milliseconds of a tone (exactly ``ms * 24`` PCM16 samples,
    ``ms * 8`` μ-law bytes); the transcript is ``text``."""

    text: str
    ms: int = 1000


@dataclass(frozen=True)
class FunctionCall:
    """Call a tool; ``arguments`` may be a dict (sent as JSON) or JSON text."""

    name: str
    arguments: Mapping[str, Any] | str = field(default_factory=dict)
    call_id: str | None = None
    ms: int = 0
    """How long the model takes to write the arguments; a barge-in meanwhile cancels the
    response and the call arrives `incomplete`, cut short, as the hosted service sends it."""


@dataclass(frozen=True)
class Fail:
    """The response fails, as the service fails one: `response.done` status `failed` with
    `status_details.error` (e.g. `insufficient_quota`, `rate_limit_exceeded`)."""

    code: str
    message: str
    type: str = "invalid_request_error"


Step = Say | FunctionCall | Fail
ScriptedResponse = Sequence[Step] | Callable[[ResponseRequest], Sequence[Step]]
"""One response: its outputs, or a function of the request that returns them."""


class ScriptedResponder:
    """Answers each response with the next scripted one; an exhausted script answers with
    no output (an empty ``response.done``), which a test can see in ``requests``."""

    def __init__(
        self,
        script: Iterable[ScriptedResponse],
        *,
        tone_hz: float = 440.0,
        tone_dbfs: float = -12.0,
        delay_s: float = 0.0,
    ) -> None:
        self.script: deque[ScriptedResponse] = deque(script)
        self.requests: list[ResponseRequest] = []
        self.tone_hz, self.tone_dbfs, self.delay_s = tone_hz, tone_dbfs, delay_s

    async def respond(self, request: ResponseRequest) -> list[Output]:
        self.requests.append(request)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)  # the model "thinking" before its first output
        if not self.script:
            return []
        entry = self.script.popleft()
        steps = entry(request) if callable(entry) else entry
        return [self._output(step) for step in steps]

    def _output(self, step: Step) -> Output:
        if isinstance(step, Say):
            return Speech(step.text, tone(step.ms, hz=self.tone_hz, dbfs=self.tone_dbfs))
        if isinstance(step, Fail):
            return Failure(step.type, step.code, step.message)
        arguments = (
            step.arguments if isinstance(step.arguments, str) else json.dumps(step.arguments)
        )
        return ToolCall(step.name, arguments, step.call_id, step.ms)


class ScriptedTranscriber:
    """Hears the scripted caller texts, one per committed turn, in order ("" when out)."""

    def __init__(self, texts: Iterable[str], *, delay_s: float = 0.0) -> None:
        self.texts: deque[str] = deque(texts)
        self.delay_s = delay_s

    async def transcribe(self, audio: Any, *, item_id: str) -> str:
        text = self.texts.popleft() if self.texts else ""
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return text


class FakeSession:
    """One connection to the fake: its handshake, traffic, session state and violations."""

    def __init__(
        self,
        connection: Connection,
        responder: ScriptedResponder,
        transcriber: ScriptedTranscriber,
        dialect: DialectName,
        cancel_grace_s: float,
    ) -> None:
        self.connection = connection
        self.responder = responder
        self.transcriber = transcriber
        self.dialect = dialect
        self.cancel_grace_s = cancel_grace_s
        self.conformance: list[str] = []
        """Schema problems of received client events, in order of arrival."""

    # --- the handshake ---------------------------------------------------------------------

    @property
    def path(self) -> str:
        return self.connection.path

    @property
    def query(self) -> dict[str, str]:
        """The query parameters, e.g. ``{"model": "gpt-realtime"}``."""
        return self.connection.query_params

    @property
    def query_string(self) -> str:
        return self.connection.query

    @property
    def headers(self) -> Any:
        """The handshake headers (case-insensitive ``websockets`` Headers)."""
        return self.connection.headers

    # --- traffic ---------------------------------------------------------------------------

    @property
    def received(self) -> list[Record]:
        """Client messages with their receive times (``time.monotonic()``)."""
        return self.connection.received

    @property
    def sent(self) -> list[Record]:
        """Server events with their send times."""
        return self.connection.sent

    def client_events(self, type: str | None = None) -> list[dict[str, Any]]:
        return self.connection.client_events(type)

    def server_events(self, type: str | None = None) -> list[dict[str, Any]]:
        return self.connection.server_events(type)

    async def wait_for_event(
        self,
        type: str,
        timeout: float = 5.0,
        *,
        where: Callable[[dict[str, Any]], bool] | None = None,
        nth: int = 1,
    ) -> dict[str, Any]:
        """The ``nth`` client or server event of ``type``, waiting up to ``timeout`` s."""
        return await self.connection.wait_for_event(type, timeout, where=where, nth=nth)

    async def wait_closed(self, timeout: float = 5.0) -> None:
        await self.connection.wait_closed(timeout)

    @property
    def closed(self) -> bool:
        return self.connection.closed

    # --- state -----------------------------------------------------------------------------

    @property
    def session(self) -> RealtimeSession:
        assert self.connection.session is not None
        return self.connection.session

    @property
    def config(self) -> EngineSessionConfig:
        """The effective session configuration (after every ``session.update``)."""
        return self.session.config

    @property
    def conversation(self) -> list[Any]:
        """The conversation's items, in order."""
        return list(self.session.conversation.items)

    @property
    def requests(self) -> list[ResponseRequest]:
        """What the "model" was asked, one per response."""
        return self.responder.requests

    def push_response(self, response: ScriptedResponse) -> None:
        """Append a response to this session's remaining script."""
        self.responder.script.append(response)

    # --- verdicts --------------------------------------------------------------------------

    @property
    def violations(self) -> list[str]:
        """Everything the hosted service would have refused, readable; tests assert ``[]``.

        Schema problems of received events, then every other ``error`` the server answered
        (truncating past the audio, cancelling with no response, creating a response while
        one is active, committing an empty buffer, unparseable messages…), except the
        cancel that crossed a ``response.done`` in flight (see :attr:`excused`).
        """
        return self.conformance + [_describe(e) for e in self._misuse(excused=False)]

    @property
    def excused(self) -> list[str]:
        """``response_cancel_not_active`` errors within ``cancel_grace_s`` of a
        ``response.done``: the client could not have known, and must merely tolerate them."""
        return [_describe(e) for e in self._misuse(excused=True)]

    def _misuse(self, *, excused: bool) -> list[ErrorRecord]:
        # Each error record was answered by exactly one error event, in the same order.
        error_times = [r.time for r in self.sent if r.type == "error"]
        done_times = [r.time for r in self.sent if r.type == "response.done"]
        out = []
        for error, at in zip_longest(self.session.errors, error_times):
            if error is None or error.from_validator:
                continue
            crossed = (
                error.code == "response_cancel_not_active"
                and at is not None
                and any(0 <= at - t <= self.cancel_grace_s for t in done_times)
            )
            if crossed == excused:
                out.append(error)
        return out

    def _validate(self, event: Mapping[str, Any]) -> list[ProtocolError]:
        problems = check_client_event(event, self.dialect)
        self.conformance.extend(str(p) for p in problems)
        return [ProtocolError(p.code, _service_message(p), p.path or None) for p in problems]


def _service_message(problem: Problem) -> str:
    """The error message the service sends for the same mistake, where it is known."""
    if problem.code == "unknown_parameter":
        return f"Unknown parameter: '{problem.path}'."
    if problem.code == "missing_required_parameter" and problem.path:
        return f"Missing required parameter: '{problem.path}'."
    return problem.message


def _describe(error: ErrorRecord) -> str:
    return f"{error.client_event_type or '<unparsed>'}: {error.code}: {error.message}"


class FakeRealtimeServer:
    """The bridge's fake Realtime upstream (an async context manager).

    Parameters:
        dialect: ``"ga"`` or ``"beta"``, whatever URL the bridge uses.
        script: the responses, in order; each a list of :class:`Say` / :class:`FunctionCall`
            (or a function of the request returning one). The greeting is simply the first
            response the bridge asks for. Each connection plays the script from the start.
        transcripts: what the caller "said", one text per committed turn, in order.
        speed: audio pacing as a multiple of real time; ``math.inf`` (default) sends at once.
        chunk_ms: audio per delta event (100 ms like the service).
        config: the initial session config (e.g. ``EngineSessionConfig(turn_detection=None)``).
        cancel_grace_s: see :attr:`FakeSession.excused`.
        response_delay_s: latency before a response's first output item (after
            ``response.created``), like a model thinking; lets a caller barge in before audio.
        transcript_delay_s: latency of each transcription; the service sends transcripts
            asynchronously, so with a delay they arrive after the response has started.
        path, host, port: where to listen (port 0 = any free port; kept across restarts).
        tone_hz, tone_dbfs: the spoken tone (peak level).
    """

    def __init__(
        self,
        dialect: DialectName = "ga",
        script: Iterable[ScriptedResponse] = (),
        transcripts: Iterable[str] = (),
        *,
        speed: float = math.inf,
        chunk_ms: int = 100,
        config: EngineSessionConfig | None = None,
        cancel_grace_s: float = 0.5,
        response_delay_s: float = 0.0,
        transcript_delay_s: float = 0.0,
        path: str = "/v1/realtime",
        host: str = "127.0.0.1",
        port: int = 0,
        tone_hz: float = 440.0,
        tone_dbfs: float = -12.0,
    ) -> None:
        self.dialect: DialectName = dialect
        self.script: list[ScriptedResponse] = list(script)
        self.transcripts: list[str] = list(transcripts)
        self.config = config
        self.cancel_grace_s = cancel_grace_s
        self.response_delay_s = response_delay_s
        self.transcript_delay_s = transcript_delay_s
        self.tone_hz, self.tone_dbfs = tone_hz, tone_dbfs
        self.sessions: list[FakeSession] = []
        """One per connection, in order of arrival."""
        self.server = RealtimeServer(
            self._setup,
            dialect=dialect,
            host=host,
            port=port,
            path=path,
            speed=speed,
            chunk_ms=chunk_ms,
            await_transcripts=False,
            record=True,
        )

    @property
    def url(self) -> str:
        """e.g. ``ws://127.0.0.1:54321/v1/realtime``; any path works, this one is advertised."""
        return self.server.url

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def speed(self) -> float:
        return self.server.speed

    @speed.setter
    def speed(self, value: float) -> None:
        self.server.speed = value

    async def wait_for_session(self, n: int = 1, timeout: float = 5.0) -> FakeSession:
        """The ``n``-th connection (1-based), waiting for it."""
        connection = await self.server.wait_for_connection(n, timeout)
        return next(s for s in self.sessions if s.connection is connection)

    @property
    def violations(self) -> list[str]:
        """Violations of every session, each prefixed with its session number."""
        return [f"#{i}: {v}" for i, s in enumerate(self.sessions, 1) for v in s.violations]

    async def close_all(self, code: int | None = None, reason: str = "") -> None:
        """Drop every live connection (abruptly unless ``code`` is given)."""
        await self.server.close_all(code, reason)

    async def start(self) -> None:
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop()

    async def __aenter__(self) -> FakeRealtimeServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _setup(self, connection: Connection) -> SessionSetup:
        responder = ScriptedResponder(
            self.script,
            tone_hz=self.tone_hz,
            tone_dbfs=self.tone_dbfs,
            delay_s=self.response_delay_s,
        )
        transcriber = ScriptedTranscriber(self.transcripts, delay_s=self.transcript_delay_s)
        fake = FakeSession(connection, responder, transcriber, self.dialect, self.cancel_grace_s)
        self.sessions.append(fake)
        return SessionSetup(
            responder=responder,
            transcriber=transcriber,
            validator=fake._validate,
            config=self.config,
        )


__all__ = [
    "FakeRealtimeServer",
    "FakeSession",
    "FunctionCall",
    "Say",
    "ScriptedResponder",
    "ScriptedTranscriber",
]
