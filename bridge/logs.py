"""Structured logging: one JSON object a line on stdout (or readable console lines).

Call code binds `call_sid` and `stream_sid` into context variables once; every line logged
inside that call's tasks then carries them. A last processor scrubs every configured secret
from every line, whatever field it hides in.
"""

from __future__ import annotations

import logging
import sys
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
    """Configure structlog once at start-up; safe to call again (tests do)."""
    global _secrets
    _secrets = ()
    add_secrets(secrets)
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
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stdout),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str = "voicebridge") -> Any:
    """A structlog logger; `log.info("event_name", field=value)`."""
    return structlog.get_logger(name)
