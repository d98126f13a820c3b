"""The Realtime protocol over a real WebSocket: the thin async loop around the session.

One :class:`~bridge.engine.session.RealtimeSession` per connection. This module owns what
the state machine does not: sockets, the send order, the tasks that run the plug-ins
(transcriber, responder, voice) and the pacing of response audio (``speed`` 1.0 = real
time, higher = faster, ``inf`` = as fast as the socket takes it; the hosted service sends
faster than real time).

Any request path is accepted, so OpenAI (``/v1/realtime?model=…``), Azure GA
(``/openai/v1/realtime?model=…``) and Azure preview (``/openai/realtime?api-version=…``) URLs
can all be pointed here; each connection's path, query and headers are kept on its
:class:`Connection` for assertions.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed

from bridge.engine.config import EngineSessionConfig
from bridge.engine.dialect import DialectName
from bridge.engine.responder import Output, Responder, Speech
from bridge.engine.session import (
    ClientEventValidator,
    RealtimeSession,
    RespondJob,
    TranscribeJob,
    VadFactory,
    default_vad_factory,
)
from bridge.engine.transcriber import SilentTranscriber, Transcriber
from bridge.engine.voice import ToneVoice, Voice
from bridge.tasks import TaskSet

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
"""Largest client message accepted; the service documents 15 MiB per audio append."""


@dataclass
class SessionSetup:
    """The plug-ins and options for one connection's session."""

    responder: Responder
    transcriber: Transcriber = field(default_factory=SilentTranscriber)
    voice: Voice = field(default_factory=ToneVoice)
    vad_factory: VadFactory = default_vad_factory
    validator: ClientEventValidator | None = None
    config: EngineSessionConfig | None = None


@dataclass(frozen=True)
class Record:
    """One message that crossed the socket. ``event`` is None for a client message that was
    not a JSON object (``raw`` keeps the text); ``time`` is ``time.monotonic()``."""

    time: float
    direction: Literal["received", "sent"]
    event: dict[str, Any] | None
    raw: str | None = None

    @property
    def type(self) -> str | None:
        kind = self.event.get("type") if self.event is not None else None
        return kind if isinstance(kind, str) else None


class Connection:
    """One client connection: what it asked for, its session, and (if recording) its traffic."""

    def __init__(
        self, number: int, path: str, headers: Headers, dialect: DialectName, record: bool
    ) -> None:
        parts = urlsplit(path)
        self.number = number
        self.path: str = parts.path
        """The request path without the query, e.g. ``/openai/v1/realtime``."""
        self.query: str = parts.query
        """The raw query string, e.g. ``model=gpt-realtime``."""
        self.headers: Headers = headers
        """The handshake's headers (case-insensitive)."""
        self.dialect: DialectName = dialect
        self.session: RealtimeSession | None = None
        self.records: list[Record] = []
        self.closed = False
        self._record = record
        self._changed = asyncio.Event()

    @property
    def query_params(self) -> dict[str, str]:
        """The query as a dict (last value wins)."""
        return {k: v[-1] for k, v in parse_qs(self.query, keep_blank_values=True).items()}

    @property
    def received(self) -> list[Record]:
        return [r for r in self.records if r.direction == "received"]

    @property
    def sent(self) -> list[Record]:
        return [r for r in self.records if r.direction == "sent"]

    def client_events(self, type: str | None = None) -> list[dict[str, Any]]:
        """Received client events (parsed), optionally of one type."""
        return [
            r.event
            for r in self.received
            if r.event is not None and (type is None or r.type == type)
        ]

    def server_events(self, type: str | None = None) -> list[dict[str, Any]]:
        """Sent server events, optionally of one type."""
        return [
            r.event for r in self.sent if r.event is not None and (type is None or r.type == type)
        ]

    async def wait_for_event(
        self,
        type: str,
        timeout: float = 5.0,
        *,
        direction: Literal["received", "sent"] | None = None,
        where: Callable[[dict[str, Any]], bool] | None = None,
        nth: int = 1,
    ) -> dict[str, Any]:
        """The ``nth`` event of ``type`` that crossed this connection, waiting if needed.

        Client and server event names never collide, so ``direction`` is rarely needed.
        Raises TimeoutError (with what was seen) after ``timeout`` seconds.
        """

        def find() -> dict[str, Any] | None:
            count = 0
            for record in self.records:
                if record.type != type or record.event is None:
                    continue
                if direction is not None and record.direction != direction:
                    continue
                if where is not None and not where(record.event):
                    continue
                count += 1
                if count == nth:
                    return record.event
            return None

        return await self._wait(find, timeout, f"event {type!r} #{nth}")

    async def wait_closed(self, timeout: float = 5.0) -> None:
        await self._wait(lambda: True if self.closed else None, timeout, "connection close")

    async def _wait(self, find: Callable[[], T | None], timeout: float, what: str) -> T:
        try:
            async with asyncio.timeout(timeout):
                while True:
                    changed = self._changed
                    found = find()
                    if found is not None:
                        return found
                    await changed.wait()
        except TimeoutError:
            seen = [r.type for r in self.records][-30:]
            raise TimeoutError(f"no {what} within {timeout}s; last seen: {seen}") from None

    def _add(self, record: Record) -> None:
        if self._record:
            self.records.append(record)
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()


SetupFactory = Callable[[Connection], SessionSetup]


def dialect_of(path: str, headers: Headers) -> DialectName:
    """The dialect a client expects: beta for ``OpenAI-Beta: realtime=v1`` or an Azure
    preview URL (``api-version`` in the query), else GA."""
    if "realtime=v1" in headers.get("OpenAI-Beta", "").replace(" ", ""):
        return "beta"
    return "beta" if "api-version" in parse_qs(urlsplit(path).query) else "ga"


class RealtimeServer:
    """A Realtime protocol server on ``host:port`` (port 0 picks a free one).

    Parameters:
        setup: the plug-ins for each connection: one :class:`SessionSetup` for all, or a
            function of the :class:`Connection` (e.g. to script each call separately).
        dialect: ``"ga"``, ``"beta"``, or ``"auto"`` to follow :func:`dialect_of`.
        path: the path :attr:`url` advertises (any path is accepted).
        speed: audio pacing, as a multiple of real time (``math.inf`` = unpaced).
        chunk_ms: audio per delta event.
        await_transcripts: whether a response waits for pending transcriptions before asking
            the responder (a local model must hear the caller's words; the hosted service
            does not wait, so fakes turn this off).
        record: keep every message of every connection (tests; a long call's audio adds up).
        session_options: further keyword arguments for :class:`RealtimeSession`.
    """

    def __init__(
        self,
        setup: SessionSetup | SetupFactory,
        *,
        dialect: DialectName | Literal["auto"] = "auto",
        host: str = "127.0.0.1",
        port: int = 0,
        path: str = "/v1/realtime",
        speed: float = 1.0,
        chunk_ms: int = 100,
        await_transcripts: bool = True,
        record: bool = False,
        session_options: Mapping[str, Any] | None = None,
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive (math.inf for unpaced)")
        self._setup = setup
        self.dialect = dialect
        self.host = host
        self.port = port
        self.path = path
        self.speed = speed
        self.chunk_ms = chunk_ms
        self.await_transcripts = await_transcripts
        self.record = record
        self.session_options = dict(session_options or {})
        self.connections: list[Connection] = []
        """Every connection since the server was created, in order of arrival."""
        self._server: Server | None = None
        self._live: dict[ServerConnection, Connection] = {}
        self._arrivals = asyncio.Event()

    @property
    def url(self) -> str:
        """``ws://host:port/path``; stays valid while stopped, for restart tests."""
        if self.port == 0:
            raise RuntimeError("server not started yet: no port chosen")
        return f"ws://{self.host}:{self.port}{self.path}"

    async def start(self) -> None:
        """Listen; after :meth:`stop` this listens again on the same port."""
        if self._server is not None:
            return
        self._server = await serve(self._handle, self.host, self.port, max_size=MAX_MESSAGE_BYTES)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and close every live connection (going away, 1001)."""
        if self._server is None:
            return
        self._server.close(close_connections=True)
        await self._server.wait_closed()
        self._server = None

    async def close_all(self, code: int | None = None, reason: str = "") -> None:
        """End every live connection: abruptly (TCP abort, no close frame) when ``code`` is
        None, else with a close frame. For fault-injection tests."""
        for websocket in list(self._live):
            if code is None:
                websocket.transport.abort()
            else:
                await websocket.close(code, reason)

    async def wait_for_connection(self, n: int = 1, timeout: float = 5.0) -> Connection:
        """The ``n``-th connection (1-based), waiting for it to arrive."""
        async with asyncio.timeout(timeout):
            while len(self.connections) < n:
                arrived = self._arrivals
                await arrived.wait()
        return self.connections[n - 1]

    async def __aenter__(self) -> RealtimeServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- one connection ------------------------------------------------------------------

    async def _handle(self, websocket: ServerConnection) -> None:
        request = websocket.request
        assert request is not None
        headers = Headers(request.headers.raw_items())
        dialect = self.dialect if self.dialect != "auto" else dialect_of(request.path, headers)
        connection = Connection(
            len(self.connections) + 1, request.path, headers, dialect, self.record
        )
        setup = self._setup(connection) if callable(self._setup) else self._setup
        config = setup.config or EngineSessionConfig()
        if config.model is None:
            # The service names the session's model after the URL's (model or deployment).
            query = connection.query_params
            config = replace(config, model=query.get("model") or query.get("deployment"))
        connection.session = RealtimeSession(
            dialect,
            config=config,
            vad_factory=setup.vad_factory,
            validator=setup.validator,
            chunk_ms=self.chunk_ms,
            **self.session_options,
        )
        self.connections.append(connection)
        self._arrivals.set()
        self._arrivals = asyncio.Event()
        self._live[websocket] = connection
        runner = _Runner(websocket, connection, connection.session, setup, self)
        try:
            await runner.run()
        finally:
            del self._live[websocket]
            connection.closed = True
            connection._notify()


class _Runner:
    """Drives one session: reads client messages, runs jobs, streams and paces responses."""

    def __init__(
        self,
        websocket: ServerConnection,
        connection: Connection,
        session: RealtimeSession,
        setup: SessionSetup,
        server: RealtimeServer,
    ) -> None:
        self.websocket = websocket
        self.connection = connection
        self.session = session
        self.setup = setup
        self.speed = server.speed
        self.await_transcripts = server.await_transcripts
        self._send_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._tasks = TaskSet(self._task_failed)
        self._transcriptions: dict[str, asyncio.Task[None]] = {}

    async def run(self) -> None:
        self._tasks.spawn(self._pump(), "realtime:pump")
        try:
            await self._flush()
            async for message in self.websocket:
                self._received(message)
                self.session.receive(message)
                self._start_jobs()
                self._wake.set()
                await self._flush()
        except ConnectionClosed:
            pass
        finally:
            await self._tasks.cancel_all()

    def _received(self, message: str | bytes) -> None:
        text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
        try:
            event = orjson.loads(text)
        except orjson.JSONDecodeError:
            event = None
        if not isinstance(event, dict):
            self.connection._add(Record(time.monotonic(), "received", None, text))
        else:
            self.connection._add(Record(time.monotonic(), "received", event))

    async def _flush(self) -> None:
        """Send what the session produced, in order; the lock keeps concurrent flushers FIFO."""
        async with self._send_lock:
            for event in self.session.events_to_send():
                data = orjson.dumps(event).decode()
                try:
                    await self.websocket.send(data)
                except ConnectionClosed:
                    return
                self.connection._add(Record(time.monotonic(), "sent", event))

    # --- jobs ------------------------------------------------------------------------------

    def _start_jobs(self) -> None:
        for job in self.session.jobs_to_run():
            if isinstance(job, TranscribeJob):
                task = self._tasks.spawn(self._transcribe(job), "realtime:transcribe")
                self._transcriptions[job.item_id] = task
            elif isinstance(job, RespondJob):
                pending = list(self._transcriptions.values())
                self._tasks.spawn(self._respond(job, pending), "realtime:respond")

    def _task_failed(self, name: str, exc: BaseException) -> None:
        """A crashed task is an engine bug: say so and end the session as the service would
        (close code 1011), rather than leave the client waiting on a silent server."""
        log.error("realtime session task failed", exc_info=exc)
        self._tasks.spawn(self.websocket.close(1011, "server error"), "realtime:close")

    async def _transcribe(self, job: TranscribeJob) -> None:
        try:
            text = await _maybe_await(
                self.setup.transcriber.transcribe(job.audio, item_id=job.item_id)
            )
        except Exception as exc:
            log.exception("transcriber failed")
            self.session.transcription_failed(job.item_id, str(exc) or type(exc).__name__)
        else:
            self.session.transcription_completed(job.item_id, text)
        finally:
            self._transcriptions.pop(job.item_id, None)
        await self._flush()

    async def _respond(self, job: RespondJob, pending: Sequence[asyncio.Task[None]]) -> None:
        request = job.request
        try:
            if self.await_transcripts and pending:
                # The request's items are the live records: transcripts land in them.
                await asyncio.gather(*pending, return_exceptions=True)
            outputs = list(await _maybe_await(self.setup.responder.respond(request)))
            outputs = [await self._voiced(output, request.voice) for output in outputs]
        except Exception as exc:
            log.exception("responder failed")
            self.session.response_failed(request.response_id, str(exc) or type(exc).__name__)
            await self._flush()
            return
        self.session.response_planned(request.response_id, outputs)
        self._wake.set()

    async def _voiced(self, output: Output, voice: str) -> Output:
        if isinstance(output, Speech) and output.audio is None:
            audio = await _maybe_await(self.setup.voice.synthesize(output.text, voice=voice))
            return Speech(output.text, audio)
        return output

    # --- streaming -------------------------------------------------------------------------

    async def _pump(self) -> None:
        loop = asyncio.get_running_loop()
        response_id: str | None = None
        started, sent_ms = 0.0, 0.0
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.session.streaming:
                current = self.session.response.id if self.session.response else None
                if current != response_id:
                    response_id, started, sent_ms = current, loop.time(), 0.0
                ms = self.session.advance()
                await self._flush()
                if ms and math.isfinite(self.speed):
                    sent_ms += ms
                    await asyncio.sleep(
                        max(0.0, started + sent_ms / 1000 / self.speed - loop.time())
                    )
                else:
                    await asyncio.sleep(0)


async def _maybe_await(value: T | Awaitable[T]) -> T:
    if inspect.isawaitable(value):
        return await value
    return value
