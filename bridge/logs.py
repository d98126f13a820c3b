"""Structured logging: one JSON object a line on stdout (or readable console lines).

Call code binds `call_sid` and `stream_sid` into context variables once; every line logged
inside that call's tasks then carries them. A last processor scrubs every configured secret
from every line, whatever field it hides in.

Lines are rendered where they are logged and written by one thread (`LineWriter`), never on
the event loop: a write to stdout blocks when a pipe's reader falls behind or a file's
journal is busy, and on the loop that would hold every call's audio (a file `open` on the
loop once held it for 0.7 s under load). If the stream stays blocked until
`LOG_QUEUE_LINES` lines wait, newer lines are dropped and counted, and a `log_lines_dropped`
line says how many once the stream takes lines again. `flush_logs` waits for the written
lines (at exit, and in tests before reading a captured stream).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import sys
import threading
import time
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import orjson
import structlog

REDACTED = "[redacted]"

_secrets: tuple[str, ...] = ()


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        for secret in _secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def _redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    if not _secrets:
        return event_dict
    return {k: _scrub(v) for k, v in event_dict.items()}


def _orjson_dumps(obj: Any, default: Any = None) -> str:
    return orjson.dumps(obj, default=default or str).decode()


LOG_QUEUE_LINES = 50_000  # about 15-25 MiB of lines: minutes of a busy replica's logging
FLUSH_TIMEOUT_S = 5.0


class LineWriter:
    """Takes rendered lines from any thread without blocking; one daemon thread writes them.

    The lock is only held to append or to take the pending list, never during a write.
    """

    def __init__(self, stream: TextIO, capacity: int = LOG_QUEUE_LINES) -> None:
        self.stream = stream
        self.capacity = capacity
        self._lock = threading.Condition()
        self._pending: list[str] = []
        self._dropped = 0  # not yet reported
        self._taken = 0  # lines accepted for writing, for `flush`
        self._done = 0  # lines the writer has finished with
        self._thread: threading.Thread | None = None

    def put(self, line: str) -> None:
        with self._lock:
            if len(self._pending) >= self.capacity:
                self._dropped += 1
                return
            self._pending.append(line)
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
                dropped, self._dropped = self._dropped, 0
            if lines:
                self._write("\n".join(lines) + "\n")
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


def add_secrets(secrets: Iterable[str]) -> None:
    """Register more values to scrub (e.g. per-call stream tokens)."""
    global _secrets
    _secrets = tuple(
        sorted({*_secrets, *(s for s in secrets if s and len(s) >= 6)}, key=len, reverse=True)
    )


def configure_logging(
    fmt: str = "json",
    level: str = "INFO",
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> None:
    """Configure structlog once at start-up; safe to call again (tests do: the lines logged
    before go to the stream they were logged for)."""
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
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
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
