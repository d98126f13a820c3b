"""Structured logging: one JSON object a line on stdout (or readable console lines).

Call code binds `call_sid` and `stream_sid` into context variables once; every line logged
inside that call's tasks then carries them. A last processor scrubs every configured secret
from every line, whatever field it hides in, and then cuts what is too long: a field's string
past `FIELD_MAX_BYTES` ends in `...[cut N bytes]` (ASCII: a line of ASCII is held in one
byte a character, and one "…" would make it two), and a line still past `LINE_MAX_BYTES` is
replaced by its event, ids and the names of its fields (`line_cut_bytes`). A caller controls
some of what is logged (numbers, parameters, a model's words); scrubbing first means a secret
astride the cut is redacted whole, never left half-shown.

Per-call stream tokens are secrets too, but live 60 s and number one per call: they are kept
with their expiry in a bounded map (`add_expiring_secrets`) and found by shape, one regular
expression scan a string whatever their number, rather than one search per token.

Lines are rendered where they are logged and written by one thread (`LineWriter`), never on
the event loop: a write to stdout blocks when a pipe's reader falls behind or a file's
journal is busy, and on the loop that would hold every call's audio (a file `open` on the
loop once held it for 0.7 s under load). If the stream stays blocked until
`LOG_QUEUE_LINES` lines or `LOG_QUEUE_BYTES` bytes wait, newer lines are dropped and
counted, and a `log_lines_dropped` line says how many once the stream takes lines again.
`flush_logs` waits for the written lines (at exit, and in tests before reading a captured
stream).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import re
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from typing import Any, TextIO

import orjson
import structlog

REDACTED = "[redacted]"
FIELD_MAX_BYTES = 2048  # a string field (UTF-8), but those below
FIELD_MAX_BYTES_FOR = {"exception": 16384, "text": 8192}  # tracebacks; a transcript's turn
LINE_MAX_BYTES = 32768  # a rendered line; past it only the event, ids and field names stay
LIST_MAX_ITEMS = 64  # items of a list field kept (then a marker item)
_LINE_KEEPS = ("ts", "level", "event", "logger", "call_sid", "stream_sid")

_secrets: tuple[str, ...] = ()


class ExpiringSecrets:
    """Secrets that lapse (stream tokens): at most `capacity`, each dropped at its expiry.

    Found in a string by their shape (`pattern`, here base64url words joined by dots, as a
    token is) and a dictionary look-up per match, so the cost of a scrub does not grow with
    how many are registered. One that stands inside a longer word of the same characters is
    not found; the tokens are logged, if ever, as a whole value or a URL parameter.
    """

    def __init__(self, capacity: int = 10_000, clock: Callable[[], float] = time.time) -> None:
        self.capacity = capacity
        self._clock = clock
        self._expiry: OrderedDict[str, float] = OrderedDict()  # insertion ≈ expiry order
        self._pattern = re.compile(r"[A-Za-z0-9_-]{16,}(?:\.[A-Za-z0-9_-]{16,})*")
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._expiry)

    def add(self, secrets: Iterable[str], expires_at: float) -> None:
        now = self._clock()
        with self._lock:
            expiry = self._expiry
            for secret in secrets:
                if len(secret) >= 16:
                    expiry[secret] = max(expires_at, expiry.get(secret, expires_at))
                    expiry.move_to_end(secret)
            # Tokens share one lifetime, so the oldest is the first to lapse.
            while expiry and (len(expiry) > self.capacity or next(iter(expiry.values())) < now):
                expiry.popitem(last=False)

    def scrub(self, value: str) -> str:
        if not self._expiry or len(value) < 16:
            return value
        expiry = self._expiry
        return self._pattern.sub(lambda m: REDACTED if m[0] in expiry else m[0], value)


_expiring = ExpiringSecrets()


def _cut(value: str, limit: int) -> str:
    """`value` in at most `limit` UTF-8 bytes, then how many were cut."""
    if len(value) * 4 <= limit:  # a quick pass for every short string
        return value
    data = value.encode()
    if len(data) <= limit:
        return value
    kept = data[:limit].decode(errors="ignore")  # never half a character
    return kept + f"...[cut {len(data) - len(kept.encode())} bytes]"


def _bound(value: Any, limit: int) -> Any:
    """Scrub, then cut: a secret astride the cut is redacted whole before anything is cut."""
    if isinstance(value, str):
        for secret in _secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return _cut(_expiring.scrub(value), limit)
    if isinstance(value, dict):
        return {k: _bound(v, limit) for k, v in value.items()}
    if isinstance(value, list | tuple):
        kept = [_bound(v, limit) for v in value[:LIST_MAX_ITEMS]]
        if len(value) > LIST_MAX_ITEMS:
            kept.append(f"...[cut {len(value) - LIST_MAX_ITEMS} items]")
        return kept
    return value


def _redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    caps = FIELD_MAX_BYTES_FOR
    return {k: _bound(v, caps.get(k, FIELD_MAX_BYTES)) for k, v in event_dict.items()}


class _LineCap:
    """The renderer, then the line cap: a line past `LINE_MAX_BYTES` (its fields already cut,
    so many of them) keeps its event and ids, and says what it had."""

    def __init__(self, render: Callable[[Any, str, MutableMapping[str, Any]], str]) -> None:
        self.render = render

    def __call__(self, logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> str:
        line = self.render(logger, method, event_dict)
        if len(line) * 4 <= LINE_MAX_BYTES:
            return line
        size = len(line.encode())
        if size <= LINE_MAX_BYTES:
            return line
        short = {k: event_dict[k] for k in _LINE_KEEPS if k in event_dict}
        short["line_cut_bytes"] = size
        short["fields"] = [k for k in event_dict if k not in _LINE_KEEPS][:LIST_MAX_ITEMS]
        return self.render(logger, method, short)


class _StaticFields:
    """Adds the same fields to every line (a line's own value of one of them wins)."""

    def __init__(self, fields: Mapping[str, Any]) -> None:
        self.fields = dict(fields)

    def __call__(self, _: Any, __: str, event_dict: MutableMapping[str, Any]) -> Any:
        for key, value in self.fields.items():
            event_dict.setdefault(key, value)
        return event_dict


def _orjson_dumps(obj: Any, default: Any = None) -> str:
    return orjson.dumps(obj, default=default or str).decode()


LOG_QUEUE_LINES = 50_000  # about 15-25 MiB of lines: minutes of a busy replica's logging
LOG_QUEUE_BYTES = 32 * 1024 * 1024  # the lines' memory (`sys.getsizeof`), however long they are
WRITE_CHUNK_BYTES = 1024 * 1024  # lines joined per write: no second copy of the whole queue
FLUSH_TIMEOUT_S = 5.0


class LineWriter:
    """Takes rendered lines from any thread without blocking; one daemon thread writes them.

    The lock is only held to append or to take the pending list, never during a write.
    """

    def __init__(
        self, stream: TextIO, capacity: int = LOG_QUEUE_LINES, max_bytes: int = LOG_QUEUE_BYTES
    ) -> None:
        self.stream = stream
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._lock = threading.Condition()
        self._pending: list[str] = []
        self.pending_bytes = 0  # memory of the waiting lines
        self._dropped = 0  # not yet reported
        self._taken = 0  # lines accepted for writing, for `flush`
        self._done = 0  # lines the writer has finished with
        self._thread: threading.Thread | None = None

    def put(self, line: str) -> None:
        size = sys.getsizeof(line)
        with self._lock:
            if len(self._pending) >= self.capacity or self.pending_bytes + size > self.max_bytes:
                self._dropped += 1
                return
            self._pending.append(line)
            self.pending_bytes += size
            self._taken += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
                self._thread.start()
            self._lock.notify()

    def flush(self, timeout: float = FLUSH_TIMEOUT_S) -> bool:
        """Wait until every line put so far is written; False if the stream stayed blocked."""
        if self._thread is threading.current_thread():
            return False
        deadline = time.monotonic() + timeout
        with self._lock:
            target = self._taken
            while self._done < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
        return True

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._dropped:
                    self._lock.wait()
                lines, self._pending = self._pending, []
                self.pending_bytes = 0
                dropped, self._dropped = self._dropped, 0
            if lines:
                start = size = 0
                for index, line in enumerate(lines):
                    size += len(line)
                    if size >= WRITE_CHUNK_BYTES or index == len(lines) - 1:
                        self._write("\n".join(lines[start : index + 1]) + "\n")
                        start, size = index + 1, 0
                with self._lock:
                    self._done += len(lines)
                    self._lock.notify_all()
            if dropped:  # said after the lines kept before them, once the stream moves again
                get_logger("voicebridge.logs").error("log_lines_dropped", count=dropped)

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except Exception as exc:  # a closed stdout: nowhere left to say it but stderr
            with contextlib.suppress(Exception):
                sys.stderr.write(f"voicebridge: log lines lost: {exc!r}\n")


_writer: LineWriter | None = None


class _QueuedLogger:
    """What structlog's bound logger calls with the rendered line, whatever the level."""

    __slots__ = ("_put",)

    def __init__(self, writer: LineWriter) -> None:
        self._put = writer.put

    def msg(self, message: str) -> None:
        self._put(message)

    log = debug = info = warn = warning = error = err = critical = exception = fatal = msg


def flush_logs(timeout: float = FLUSH_TIMEOUT_S) -> bool:
    """Wait until every line logged so far is written (True), or `timeout` passes (False)."""
    return _writer.flush(timeout) if _writer is not None else True


atexit.register(flush_logs)


def add_expiring_secrets(secrets: Iterable[str], expires_at: float) -> None:
    """Register values to scrub until `expires_at` (epoch seconds): per-call stream tokens,
    when minted and when received. Bounded (`ExpiringSecrets`), and free per log line."""
    _expiring.add(secrets, expires_at)


_rotating: dict[str, tuple[str, ...]] = {}


def rotate_secret(name: str, value: str) -> None:
    """Scrub `value`, and the one before it under `name`, but no older: a credential that is
    replaced every hour (an Entra ID token) keeps the scrubber's list short."""
    global _secrets
    old = _rotating.get(name, ())
    kept = (value, *old[:1])
    _rotating[name] = kept
    dropped = set(old) - set(kept)
    _secrets = tuple(
        sorted({*(x for x in _secrets if x not in dropped), *kept}, key=len, reverse=True)
    )


def add_secrets(secrets: Iterable[str]) -> None:
    """Register more values to scrub, for the life of the process (credentials)."""
    global _secrets
    _secrets = tuple(
        sorted({*_secrets, *(s for s in secrets if s and len(s) >= 6)}, key=len, reverse=True)
    )


def configure_logging(
    fmt: str = "json",
    level: str = "INFO",
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
    static: Mapping[str, Any] | None = None,
) -> None:
    """Configure structlog once at start-up; safe to call again (tests do: the lines logged
    before go to the stream they were logged for). `static`: fields every line carries (a
    worker of `serve --workers N` names itself with `{"worker": index}`); none by default."""
    global _secrets, _writer
    _secrets = ()
    add_secrets(secrets)
    if _writer is None:
        _writer = LineWriter(stream or sys.stdout)
    else:
        _writer.flush()
        _writer.stream = stream or sys.stdout
    writer = _writer
    renderer: Any
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    else:
        renderer = structlog.processors.JSONRenderer(serializer=_orjson_dumps)
    renderer = _LineCap(renderer)
    fields = dict(static or {})
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            *([_StaticFields(fields)] if fields else []),
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            structlog.processors.format_exc_info,
            _redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=lambda *_: _QueuedLogger(writer),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str = "voicebridge") -> Any:
    """A structlog logger; `log.info("event_name", field=value)`."""
    return structlog.get_logger(name)
