"""Process and call lifecycle: graceful drain on SIGTERM, nothing leaked when a caller
vanishes, a clean fallback when the upstream cannot be reached."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from bridge.sim import CallRejected, TwilioMediaStream, continue_after_stream, place_call
from bridge.twiml import UNAVAILABLE_SAY
from tests.conftest import (
    LogCapture,
    free_port,
    make_settings,
    running_bridge,
    wait_until,
    wait_until_serving,
)
from tests.fakes.realtime import FakeRealtimeServer, Say


@contextmanager
def serve_process(
    env_extra: dict[str, str], tmp_path: Any
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI", "AZURE", "TWILIO"))}
    env.update({"LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1", **env_extra})
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge", "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=tmp_path,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base, proc, lambda: proc.stdout.read() if proc.stdout else "", 20)
        yield proc, base
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


async def get(url: str) -> int:
    async with httpx.AsyncClient() as client:
        return (await client.get(url, timeout=5)).status_code


async def test_sigterm_drains_live_calls_then_exits_zero(tmp_path: Any) -> None:
    async with FakeRealtimeServer("ga", [[Say("A long greeting.", 6000)]], speed=1.0) as fake:
        env = {
            "OPENAI_API_KEY": "sk-test-0123456789",
            "REALTIME_URL": fake.url,
            "DRAIN_TIMEOUT_SECONDS": "20",
        }
        with serve_process(env, tmp_path) as (proc, base):
            target = await place_call(base)
            async with TwilioMediaStream(target) as stream:
                await wait_until(lambda: stream.played_ms_total >= 300, 5, "audio")
                proc.send_signal(signal.SIGTERM)
                await wait_until(
                    lambda: httpx.get(f"{base}/readyz").status_code == 503, 5, "readiness to drop"
                )
                assert await get(f"{base}/healthz") == 200
                with pytest.raises(CallRejected) as busy:
                    await place_call(base)
                assert busy.value.verbs == ("Say", "Hangup")
                heard = stream.played_ms_total
                await asyncio.sleep(1.0)
                assert stream.played_ms_total >= heard + 800  # the live call goes on
                assert proc.poll() is None
            # The caller hung up: the last call is over, so the process exits, cleanly.
            exit_code = await asyncio.to_thread(proc.wait, 10)
        assert exit_code == 0
        output = proc.stdout.read() if proc.stdout else ""
        assert '"drain_finished"' in output and '"timed_out":false' in output


async def test_drain_gives_up_after_the_timeout_and_exits_zero(tmp_path: Any) -> None:
    async with FakeRealtimeServer("ga", [[Say("Endless.", 20000)]], speed=1.0) as fake:
        env = {
            "OPENAI_API_KEY": "sk-test-0123456789",
            "REALTIME_URL": fake.url,
            "DRAIN_TIMEOUT_SECONDS": "1",
        }
        with serve_process(env, tmp_path) as (proc, base):
            target = await place_call(base)
            async with TwilioMediaStream(target) as stream:
                await wait_until(lambda: stream.played_ms_total >= 200, 5, "audio")
                signalled = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                exit_code = await asyncio.to_thread(proc.wait, 10)
                assert 1.0 <= time.monotonic() - signalled < 5.0
        assert exit_code == 0


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_a_caller_that_vanishes_without_stop_leaves_nothing_behind(logs: LogCapture) -> None:
    async with FakeRealtimeServer("ga", [[Say("Hello there.", 2000)]], speed=1.0) as fake:
        settings = make_settings(OPENAI_API_KEY="sk-test-0123456789", REALTIME_URL=fake.url)
        async with running_bridge(settings) as bridge:
            async with httpx.AsyncClient() as client:  # warm the HTTP path once
                await client.get(f"{bridge.base_url}/healthz")
            tasks_before = len(asyncio.all_tasks())
            fds_before = _fds()
            target = await place_call(bridge.base_url)
            stream = TwilioMediaStream(target)
            await stream.connect()
            session = await fake.wait_for_session()
            await wait_until(lambda: stream.played_ms_total >= 200, 5, "audio")
            await stream.hangup_abruptly()
            await stream.aclose(raise_errors=False)
            await session.wait_closed(2)
            await wait_until(lambda: bridge.calls.active_calls == 0, 2, "the call to end")
            await wait_until(lambda: len(asyncio.all_tasks()) <= tasks_before, 2, "tasks to end")
            await wait_until(lambda: _fds() <= fds_before, 2, "sockets to close")
            assert not bridge.calls.runtimes
            names = {t.get_name() for t in asyncio.all_tasks()}
            assert not any(n.startswith(("twilio:", "upstream:", "tool:")) for n in names)
    assert logs.events("call_ended")[0]["reason"] == "caller_hangup"


async def test_unreachable_upstream_ends_the_stream_so_twilio_plays_the_fallback(
    logs: LogCapture,
) -> None:
    dead = f"ws://127.0.0.1:{free_port()}/v1/realtime"  # nothing listens there
    settings = make_settings(OPENAI_API_KEY="sk-test-0123456789", REALTIME_URL=dead)
    async with running_bridge(settings) as bridge:
        target = await place_call(bridge.base_url)
        started = time.monotonic()
        async with TwilioMediaStream(target) as stream:
            info = await asyncio.wait_for(stream.closed, 5)
        assert info.code == 1011
        assert time.monotonic() - started < 3
        # Twilio asks the <Connect> action: the caller hears the apology, never silence.
        after = await continue_after_stream(target)
        assert after.via == "action" and after.said == [UNAVAILABLE_SAY]
    failed = logs.events("upstream_connect_failed")
    assert len(failed) == 1 and failed[0]["url"] == dead
    assert logs.events("call_ended")[0]["reason"] == "upstream_failed"


async def test_a_stalled_upstream_drops_caller_audio_but_never_stalls_the_call(
    logs: LogCapture,
) -> None:
    import websockets

    stalled = asyncio.Event()
    connections: list[Any] = []

    async def stalling_upstream(ws: Any) -> None:
        connections.append(ws)
        await ws.send('{"type":"session.created","event_id":"e1","session":{}}')
        await ws.recv()  # session.update
        await ws.send('{"type":"session.updated","event_id":"e2","session":{}}')
        await ws.recv()  # the greeting's response.create: an empty answer, then nothing due
        await ws.send('{"type":"response.created","event_id":"e3","response":{"id":"r1"}}')
        await ws.send(
            '{"type":"response.done","event_id":"e4","response":{"id":"r1","status":"completed"}}'
        )
        ws.transport.pause_reading()  # a model that stopped reading: TCP fills up
        stalled.set()
        await ws.wait_closed()

    # A small receive buffer so the stall shows within a second, not after megabytes of
    # kernel buffering on loopback.
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    listener.bind(("127.0.0.1", 0))
    async with websockets.serve(stalling_upstream, sock=listener) as server:
        port = server.sockets[0].getsockname()[1]
        settings = make_settings(
            OPENAI_API_KEY="sk-test-0123456789", REALTIME_URL=f"ws://127.0.0.1:{port}/v1/realtime"
        )
        async with running_bridge(settings) as bridge:
            target = await place_call(bridge.base_url)
            async with TwilioMediaStream(target) as stream:
                await stalled.wait()
                await logs.wait_for("upstream_slow", 1, timeout=10)
                stopped = time.monotonic()
            # `stop` still got through at once: the Twilio reader never waited on the model.
            await wait_until(lambda: bridge.calls.active_calls == 0, 2, "the call to end")
            assert time.monotonic() - stopped < 2.0
        for ws in connections:  # it cannot read our close frame: don't wait for it
            ws.transport.abort()
    ended = logs.events("call_ended")[0]
    assert ended["reason"] == "caller_hangup"
    assert ended["frames_dropped"] >= 1
    assert ended["frames_in"] == len(stream.frames)


async def test_at_capacity_new_calls_hear_busy_and_readiness_drops(logs: LogCapture) -> None:
    async with FakeRealtimeServer("ga", [[Say("Hello.", 3000)]], speed=1.0) as fake:
        settings = make_settings(
            OPENAI_API_KEY="sk-test-0123456789", REALTIME_URL=fake.url, MAX_CONCURRENT_CALLS=1
        )
        async with running_bridge(settings) as bridge:
            assert await get(f"{bridge.base_url}/readyz") == 200
            target = await place_call(bridge.base_url)
            async with TwilioMediaStream(target) as stream:
                await wait_until(lambda: stream.played_ms_total > 0, 5, "the first call")
                assert await get(f"{bridge.base_url}/readyz") == 503
                with pytest.raises(CallRejected) as busy:
                    await place_call(bridge.base_url)
                assert busy.value.verbs == ("Say", "Hangup")
                assert "busy" in busy.value.body
            await wait_until(lambda: bridge.calls.active_calls == 0, 2, "the call to end")
            assert await get(f"{bridge.base_url}/readyz") == 200
    assert logs.events("call_rejected")[0]["reason"] == "at capacity"


async def test_start_up_objects_are_frozen_out_of_the_collectors_sight() -> None:
    """A full collection mid-call must not walk every object the libraries brought (it paused
    the loop for 148 ms at 100 calls): the app freezes what exists once it has started."""
    import gc

    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    async with running_bridge(make_settings(OPENAI_API_KEY="sk-test-0123456789")):
        frozen = gc.get_freeze_count()
    gc.freeze()  # leave the test process as other bridges leave it
    assert frozen > 50_000  # the libraries' objects: a few hundred thousand
