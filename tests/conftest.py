"""Shared fixtures: an isolated environment, captured JSON logs, the bridge on a real port."""

from __future__ import annotations

import asyncio
import contextlib
import io
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from fastapi import FastAPI

from bridge.app import create_app
from bridge.logs import add_expiring_secrets, configure_logging, flush_logs
from bridge.loop_lag import watch_loop_lag
from bridge.persona import Persona
from bridge.server import uvicorn_config
from bridge.settings import Settings

INTERFACE_VARS = (
    "PUBLIC_URL TWILIO_ACCOUNT_SID TWILIO_AUTH_TOKEN TWILIO_API_BASE_URL REALTIME_PROVIDER "
    "OPENAI_API_KEY OPENAI_REALTIME_MODEL AZURE_OPENAI_ENDPOINT AZURE_OPENAI_API_KEY "
    "AZURE_OPENAI_DEPLOYMENT AZURE_OPENAI_API_VERSION REALTIME_URL REALTIME_AUDIO TAVILY_API_KEY "
    "TAVILY_API_BASE_URL PERSONA_FILE MAX_CONCURRENT_CALLS MAX_CALL_SECONDS IDLE_TIMEOUT_SECONDS "
    "DRAIN_TIMEOUT_SECONDS LOG_FORMAT LOG_LEVEL SOFTPHONE_ENABLED METRICS_PORT METRICS_HOST "
    "WEBHOOK_SIGNING_SECRET CALL_WEBHOOK_URL RECORDINGS_DIR REDIS_URL MAX_DEPLOYMENT_CALLS "
    "VOICEBRIDGE_STATE_HOST VOICEBRIDGE_STATE_KEY"
).split()


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """No test sees the developer's or CI's environment or `.env`."""
    for name in INTERFACE_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


# Every log line of the whole run, for the secrets scan in `pytest_sessionfinish`.
ALL_LOG_LINES: list[str] = []
# Values that must never appear in a log line: the fake credentials tests configure, and
# every stream token minted during the run.
TEST_SECRETS = {
    "sk-test-0123456789",
    "az-key-0123456789",
    "twilio-auth-token-0123456789abcdef",
    "sk-bench-0123456789",
    "vb-api-key-0123456789abcdef",
    "whsec-test-0123456789",  # WEBHOOK_SIGNING_SECRET of the call-event and receiver tests
}
MINTED_TOKENS: set[str] = set()
REAL_ADD_EXPIRING_SECRETS = add_expiring_secrets


class _Tee(io.TextIOBase):
    """The default log stream in tests: pytest's current stdout, and the run-wide record."""

    def write(self, text: str) -> int:
        ALL_LOG_LINES.extend(text.splitlines())
        return sys.stdout.write(text)


class LogCapture(io.TextIOBase):
    """A stream for structlog that keeps every JSON line, parsed.

    The log writer thread writes here; reading `lines` first waits for every line logged so
    far, so a test reads what its code logged, as it would read a synchronous stream.
    """

    def __init__(self) -> None:
        self._lines: list[str] = []

    def write(self, text: str) -> int:
        lines = [line for line in text.splitlines() if line.strip()]
        self._lines.extend(lines)
        ALL_LOG_LINES.extend(lines)
        return len(text)

    @property
    def lines(self) -> list[str]:
        assert flush_logs(), "the log writer did not write the lines logged so far in time"
        return self._lines

    @property
    def records(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in self.lines]

    def events(self, name: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("event") == name]

    def problems(self) -> list[dict[str, Any]]:
        """Warning and error lines, but the loop-lag watcher's: a stall on a busy test machine
        is the machine's, not the code's under test."""
        return [
            r
            for r in self.records
            if r["level"] in ("warning", "error") and r.get("event") != "event_loop_stalled"
        ]

    async def wait_for(
        self, name: str, count: int = 1, timeout: float = 5.0
    ) -> list[dict[str, Any]]:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.events(name)) < count:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for {count} '{name}' log lines")
            await asyncio.sleep(0.01)
        return self.events(name)


@pytest.fixture(autouse=True, scope="session")
def _log_everything() -> Iterator[None]:
    """Route all logging through the run-wide record, and note every stream token minted.

    Stream tokens are not registered with the log scrubber in tests (see
    `pytest_sessionfinish`); tests of that registration use `REAL_ADD_EXPIRING_SECRETS`."""
    from bridge import logs as logs_module
    from bridge.security import StreamTokens

    original = StreamTokens.mint

    def recording_mint(self: StreamTokens, *args: Any, **kwargs: Any) -> str:
        token = original(self, *args, **kwargs)
        MINTED_TOKENS.add(token)
        return token

    StreamTokens.mint = recording_mint  # type: ignore[method-assign]
    logs_module.add_expiring_secrets = lambda _secrets, _expires_at: None
    configure_logging("json", "DEBUG", secrets=(), stream=_Tee())
    yield
    logs_module.add_expiring_secrets = REAL_ADD_EXPIRING_SECRETS
    StreamTokens.mint = original  # type: ignore[method-assign]


@pytest.fixture
def logs() -> Iterator[LogCapture]:
    capture = LogCapture()
    configure_logging("json", "DEBUG", secrets=(), stream=capture)
    yield capture
    configure_logging("json", "DEBUG", secrets=(), stream=_Tee())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """No secret in any log line of the whole run: API keys, auth tokens, stream tokens.

    The redactor is off in tests on purpose: this checks that the code never logs them at
    all, not merely that the last line of defence scrubs them.
    """
    flush_logs()
    needles = TEST_SECRETS | MINTED_TOKENS
    leaks = [line for line in ALL_LOG_LINES if any(n in line for n in needles)]
    if leaks:
        sys.stderr.write(f"\nSECRETS IN LOGS ({len(leaks)} lines), first: {leaks[0][:300]}\n")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif ALL_LOG_LINES:
        sys.stderr.write(
            f"\nsecrets scan: {len(ALL_LOG_LINES)} log lines, {len(needles)} secrets, no leak\n"
        )


async def wait_until(predicate: Any, timeout: float = 5.0, what: str = "condition") -> None:
    """Poll a condition that some other task will make true (sockets, playback clocks)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


class LoopLagWatch:
    """How late this event loop ran a 2 ms timer at worst, while the watch ran (the bridge's
    own `watch_loop_lag`, sampled into `worst_ms` instead of the histogram).

    Everything of an in-process call (bridge, fake caller, fake model) shares one loop, so a
    machine that takes the CPU away from the test delays every timer and reader alike: the
    fake caller's mark echoes leave late and the bridge learns of its playback late. A test
    comparing the bridge's view of time with the caller's allows for what it measured here.
    """

    def __init__(self) -> None:
        self.worst_ms = 0.0
        self._task: asyncio.Task[None] | None = None

    def _observe(self, lag_s: float) -> None:
        self.worst_ms = max(self.worst_ms, lag_s * 1000.0)

    async def __aenter__(self) -> LoopLagWatch:
        self._task = asyncio.create_task(watch_loop_lag(0.002, self._observe))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def wait_until_serving(
    base_url: str, proc: subprocess.Popen[Any], output: Callable[[], str], timeout: float = 30.0
) -> None:
    """Block until a `voicebridge serve` process answers `/healthz`; if it exits or the time
    runs out first, fail with what it printed (`output()`)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            raise AssertionError("bridge did not start: " + output())
        time.sleep(0.05)


def make_settings(**values: Any) -> Settings:
    """Settings from explicit values only (no environment, no `.env`)."""
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@dataclass
class RunningBridge:
    app: FastAPI
    server: uvicorn.Server
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/media-stream"

    @property
    def calls(self) -> Any:
        """The app's `CallRegistry`: its live calls."""
        return self.app.state.calls

    @property
    def services(self) -> Any:
        return self.app.state.services


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def serving(config: uvicorn.Config) -> AsyncIterator[tuple[uvicorn.Server, int]]:
    """uvicorn serving `config` in this event loop; yields the server and the port it bound."""
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.005)
    try:
        yield server, server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@asynccontextmanager
async def running_bridge(
    settings: Settings, persona: Persona | None = None, *, port: int = 0, **app_kwargs: Any
) -> AsyncIterator[RunningBridge]:
    """The real app under uvicorn on a loopback port (free unless given), in this event loop."""
    app = create_app(settings, persona, **app_kwargs)
    async with serving(uvicorn_config(app, "127.0.0.1", port)) as (server, bound):
        yield RunningBridge(app, server, bound)


@asynccontextmanager
async def bridged_call(
    fake: Any, persona: Persona | None = None, **settings: Any
) -> AsyncIterator[tuple[RunningBridge, Any, Any]]:
    """One phone call end to end: the bridge on a real port pointed at `fake` (a
    FakeRealtimeServer), Twilio's webhook, and the fake caller's media stream. Yields the
    bridge, the caller's stream and the first upstream session."""
    from bridge.sim import TwilioMediaStream, place_call

    values: dict[str, Any] = {"OPENAI_API_KEY": "sk-test-0123456789", "REALTIME_URL": fake.url}
    values.update(settings)
    async with running_bridge(make_settings(**values), persona) as bridge:
        target = await place_call(bridge.base_url)
        async with TwilioMediaStream(target) as stream:
            yield bridge, stream, await fake.wait_for_session()
