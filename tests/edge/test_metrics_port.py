"""`METRICS_PORT`: /metrics on its own listener, and gone from the public port."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest

from bridge.metrics_port import MetricsApart
from bridge.settings import SettingsError, load_settings
from tests.conftest import free_port, make_settings, running_bridge

SETTINGS = {"OPENAI_API_KEY": "sk-test-0123456789", "REALTIME_URL": "ws://127.0.0.1:9/v1"}


async def test_metrics_move_to_their_own_port_and_leave_the_public_one() -> None:
    port = free_port()
    async with running_bridge(make_settings(METRICS_PORT=port, **SETTINGS)) as served:
        async with httpx.AsyncClient() as client:
            public = await client.get(f"{served.base_url}/metrics")
            health = await client.get(f"{served.base_url}/healthz")
            private = await client.get(f"http://127.0.0.1:{port}/metrics")
            other = await client.get(f"http://127.0.0.1:{port}/healthz")
    assert public.status_code == 404
    assert health.status_code == 200
    assert private.status_code == 200
    assert private.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "voicebridge_active_calls" in private.text
    assert 'voicebridge_http_refused_total{reason="header_too_large"}' in private.text
    assert other.status_code == 404
    # The listener closed with the app.
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


async def test_without_metrics_port_they_stay_on_the_public_port() -> None:
    async with running_bridge(make_settings(**SETTINGS)) as served:
        async with httpx.AsyncClient() as client:
            public = await client.get(f"{served.base_url}/metrics")
    assert public.status_code == 200
    assert "voicebridge_http_refused_total" in public.text


async def test_a_metrics_port_taken_fails_the_start_naming_the_setting() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})

    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        await MetricsApart(app, "127.0.0.1", port)({"type": "lifespan"}, receive, send)
    # What uvicorn turns into "Application startup failed" and exit status 3.
    assert [m["type"] for m in sent] == ["lifespan.startup.failed"]
    assert sent[0]["message"].startswith(f"METRICS_PORT={port}: cannot listen on 127.0.0.1:")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"METRICS_PORT": "0"}, "METRICS_PORT"),
        ({"METRICS_PORT": "70000"}, "METRICS_PORT"),
        ({"METRICS_HOST": "0.0.0.0"}, "METRICS_HOST is set but METRICS_PORT is not"),
        ({"METRICS_PORT": "9100", "METRICS_HOST": "metrics.local"}, "expected an IP address"),
    ],
)
def test_metrics_settings_are_checked_at_start(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=message):
        load_settings()


def test_metrics_settings_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METRICS_PORT", "9100")
    monkeypatch.setenv("METRICS_HOST", "127.0.0.1")
    settings = load_settings()
    assert (settings.METRICS_HOST, settings.METRICS_PORT) == ("127.0.0.1", 9100)
    monkeypatch.setenv("METRICS_PORT", " ")
    monkeypatch.delenv("METRICS_HOST")
    assert load_settings().METRICS_PORT is None  # blank is unset
