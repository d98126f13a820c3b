"""`voicebridge serve --workers N`: real processes on one loopback port (bridge/workers.py).

Each test starts a supervisor and its workers against the fake Realtime server, places calls
with the simulator until both workers hold some (the kernel spreads connections at random),
and reads the JSON log lines, every worker's carrying `worker`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bridge.cli import build_parser
from bridge.sim import CallRejected, TwilioMediaStream, place_call
from bridge.workers import RestartPolicy
from tests.conftest import free_port, wait_until
from tests.fakes.realtime import FakeRealtimeServer, Say


class Group:
    """A running `serve --workers N` and every line it has printed so far."""

    def __init__(self, proc: subprocess.Popen[str], base: str) -> None:
        self.proc, self.base = proc, base
        self.lines: list[dict[str, Any]] = []
        self.text: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.text.append(line)
            if line.startswith("{"):
                self.lines.append(orjson.loads(line))

    def events(self, name: str, **fields: Any) -> list[dict[str, Any]]:
        return [
            e
            for e in list(self.lines)
            if e.get("event") == name and all(e.get(k) == v for k, v in fields.items())
        ]

    def worker_of(self, call_sid: str) -> int | None:
        started = self.events("call_started", call_sid=call_sid)
        return started[0]["worker"] if started else None

    def pids(self) -> dict[int, int]:
        """The latest pid of each worker."""
        return {e["worker"]: e["pid"] for e in self.events("worker_started")}

    def output(self) -> str:
        return "".join(self.text)

    def not_json(self) -> list[str]:
        """Every line printed that is not a JSON log line (a traceback, a warning), once the
        group has exited and its output is read to the end."""
        self._reader.join(10)
        return [line for line in self.text if not line.startswith("{")]


@contextmanager
def serve_group(
    env_extra: dict[str, str], tmp_path: Any, workers: str = "2", port: int | None = None
) -> Iterator[Group]:
    port = port or free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI", "AZURE", "TWILIO"))}
    env.update({"LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1", **env_extra})
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge", "serve", "--port", str(port), "--workers", workers],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=tmp_path,
        text=True,
    )
    group = Group(proc, f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 25
        while True:
            started = group.events("workers_started")
            count = started[0]["count"] if started else -1
            if len(group.events("worker_serving")) >= count > 0:
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise AssertionError("workers did not start:\n" + group.output())
            time.sleep(0.05)
        yield group
    finally:
        pids = list(group.pids().values())
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()  # the workers get SIGTERM from the kernel (parent death)
        proc.wait(10)
        for pid in pids:  # nothing may outlive the test
            with pytest.raises(ProcessLookupError):
                for _ in range(100):
                    os.kill(pid, 0)
                    time.sleep(0.1)
                os.kill(pid, signal.SIGKILL)


def fake_env(fake: FakeRealtimeServer, **extra: str) -> dict[str, str]:
    return {"OPENAI_API_KEY": "sk-test-0123456789", "REALTIME_URL": fake.url, **extra}


@asynccontextmanager
async def calls_on_both(group: Group, tries: int = 24) -> AsyncIterator[list[TwilioMediaStream]]:
    """Live calls (each hearing audio) until both workers hold at least one."""
    streams: list[TwilioMediaStream] = []
    try:
        for _ in range(tries):
            target = await place_call(group.base)
            stream = TwilioMediaStream(target)
            await stream.connect()
            streams.append(stream)
            await wait_until(lambda s=stream: s.played_ms_total >= 100, 10, "audio")
            await wait_until(lambda t=target: group.worker_of(t.call_sid), 5, "call_started")
            if {group.worker_of(s.target.call_sid) for s in streams} == {1, 2}:
                break
        else:
            raise AssertionError(f"{tries} calls all went to one worker")
        yield streams
    finally:
        for stream in streams:
            await stream.aclose(raise_errors=False)


async def new_connection_status(url: str) -> int:
    async with httpx.AsyncClient() as client:  # a new connection: any worker may answer
        return (await client.get(url, timeout=5)).status_code


# --- the command line --------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "-1", "x", "1.5"])
def test_workers_must_be_a_whole_number_or_auto(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["serve", "--workers", value])
    assert exit_.value.code == 2
    assert "argument --workers" in capsys.readouterr().err


def test_workers_auto_is_one_per_core_and_default_is_one() -> None:
    parser = build_parser()
    assert parser.parse_args(["serve"]).workers == 1
    assert parser.parse_args(["serve", "--workers", "auto"]).workers == (os.cpu_count() or 1)
    assert parser.parse_args(["serve", "--workers", "3"]).workers == 3


def test_a_busy_port_is_reported_before_any_worker_starts(tmp_path: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI", "TWILIO"))}
        done = subprocess.run(
            [sys.executable, "-m", "bridge", "serve", "--port", str(port), "--workers", "2"],
            capture_output=True,
            text=True,
            env={**env, "LOG_FORMAT": "json"},
            cwd=tmp_path,
            timeout=30,
        )
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "worker_started" not in done.stdout


# --- the group ---------------------------------------------------------------------------------


async def test_two_workers_on_one_port_both_serve_calls(tmp_path: Any) -> None:
    async with FakeRealtimeServer("ga", [[Say("Hello.", 1500)]], speed=1.0) as fake:
        with serve_group(fake_env(fake), tmp_path) as group:
            started = group.events("workers_started")
            assert len(started) == 1 and started[0]["count"] == 2
            assert started[0]["pid"] == group.proc.pid
            assert sorted(group.pids()) == [1, 2]
            async with calls_on_both(group) as streams:
                for stream in streams:
                    assert stream.played_ms_total >= 100
            sids = {s.target.call_sid: group.worker_of(s.target.call_sid) for s in streams}
            await wait_until(
                lambda: len(group.events("call_ended")) >= len(streams), 10, "calls to end"
            )
            for sid, worker in sids.items():
                # Every line of a call's stream names its worker, and only that one (the
                # webhook, a request of its own, may have gone to the other).
                lines = [e for e in group.lines if e.get("call_sid") == sid and "stream_sid" in e]
                assert lines and {e["worker"] for e in lines} == {worker}
            # The supervisor's own lines name no worker.
            assert "worker" not in group.events("serving")[0]


async def test_killing_a_worker_leaves_the_other_workers_calls_whole(tmp_path: Any) -> None:
    async with FakeRealtimeServer("ga", [[Say("A long greeting.", 12000)]], speed=1.0) as fake:
        with serve_group(fake_env(fake), tmp_path) as group:
            async with calls_on_both(group) as streams:
                on: dict[int, list[TwilioMediaStream]] = {1: [], 2: []}
                for stream in streams:
                    on[group.worker_of(stream.target.call_sid) or 0].append(stream)
                victim = group.pids()[1]
                heard = [s.played_ms_total for s in on[2]]
                os.kill(victim, signal.SIGKILL)
                for stream in on[1]:  # the killed worker's calls are gone ...
                    await asyncio.wait_for(stream.closed, 5)
                await asyncio.sleep(1.5)
                for stream, before in zip(on[2], heard, strict=True):  # ... the others' go on
                    assert not stream.closed.done()
                    assert stream.played_ms_total >= before + 1000
                await wait_until(lambda: group.events("worker_exited"), 5, "worker_exited")
                exited = group.events("worker_exited")[0]
                assert exited["worker"] == 1 and exited["pid"] == victim
                assert exited["signal"] == "SIGKILL" and exited["restart_in_s"] == 0
                await wait_until(lambda: group.pids()[1] != victim, 5, "a new worker 1")
                for stream in on[2]:
                    await stream.stop()  # the caller hangs up: a normal end
            for stream in on[2]:
                sid = stream.target.call_sid
                await wait_until(lambda s=sid: group.events("call_ended", call_sid=s), 5, "end")
                ended = group.events("call_ended", call_sid=sid)
                assert len(ended) == 1 and ended[0]["reason"] == "caller_hangup"
                assert ended[0]["worker"] == 2
            # The new worker 1 serves calls.
            await wait_until(lambda: group.events("worker_serving", worker=1)[1:], 20, "ready")
            for _ in range(24):
                target = await place_call(group.base)
                async with TwilioMediaStream(target) as stream:
                    await wait_until(lambda: stream.played_ms_total >= 100, 10, "audio")
                    sid = target.call_sid
                    await wait_until(lambda s=sid: group.worker_of(s), 5, "started")
                if group.worker_of(target.call_sid) == 1:
                    break
            else:
                raise AssertionError("the restarted worker took no call")
            assert group.proc.poll() is None


async def test_sigterm_drains_every_worker_then_the_group_exits_zero(tmp_path: Any) -> None:
    async with FakeRealtimeServer("ga", [[Say("A long greeting.", 12000)]], speed=1.0) as fake:
        env = fake_env(fake, DRAIN_TIMEOUT_SECONDS="20")
        with serve_group(env, tmp_path) as group:
            async with calls_on_both(group) as streams:
                group.proc.send_signal(signal.SIGTERM)
                await wait_until(lambda: len(group.events("drain_started")) == 2, 5, "drains")
                for _ in range(6):
                    assert await new_connection_status(f"{group.base}/readyz") == 503
                    assert await new_connection_status(f"{group.base}/healthz") == 200
                for _ in range(3):
                    with pytest.raises(CallRejected) as busy:
                        await place_call(group.base)
                    assert busy.value.verbs == ("Say", "Hangup")
                heard = [s.played_ms_total for s in streams]
                await asyncio.sleep(1.0)
                for stream, before in zip(streams, heard, strict=True):
                    assert stream.played_ms_total >= before + 700  # the live calls go on
                assert group.proc.poll() is None
                assert not group.events("worker_started")[2:]  # nothing restarted
                for stream in streams:
                    await stream.stop()
            exit_code = await asyncio.to_thread(group.proc.wait, 20)
            assert exit_code == 0
            finished = group.events("drain_finished")
            assert len(finished) == 2 and not any(e["timed_out"] for e in finished)
            assert group.events("workers_stopped")
            assert group.not_json() == []  # nothing but log lines, at the exit too
            for pid in group.pids().values():
                with pytest.raises(ProcessLookupError):
                    os.kill(pid, 0)


def _metric(body: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    raise AssertionError(f"{name} {labels} not in /metrics")


async def test_metrics_of_two_workers_are_the_groups(tmp_path: Any) -> None:
    async with FakeRealtimeServer("ga", [[Say("A long greeting.", 12000)]], speed=1.0) as fake:
        with serve_group(fake_env(fake), tmp_path) as group:
            async with calls_on_both(group) as streams:
                live = len(streams)
                async with httpx.AsyncClient() as client:
                    for _ in range(6):
                        client.cookies.clear()
                        body = (await client.get(f"{group.base}/metrics")).text
                        assert _metric(body, "voicebridge_active_calls") == live
                    for stream in streams:
                        await stream.stop()
            await wait_until(lambda: len(group.events("call_ended")) >= live, 10, "calls to end")
            for _ in range(6):
                async with httpx.AsyncClient() as client:
                    body = (await client.get(f"{group.base}/metrics")).text
                assert _metric(body, "voicebridge_active_calls") == 0
                ended = _metric(body, "voicebridge_calls_total", outcome="caller_hangup")
                assert ended == live
                assert _metric(body, "voicebridge_frames_out_total") >= live * 5


# --- restarts (pure) ---------------------------------------------------------------------------


def test_restart_policy_restarts_at_once_then_backs_off_then_gives_up() -> None:
    policy = RestartPolicy(quick_s=10, first_pause_s=0.5, max_pause_s=5, give_up_after=7)
    pauses = []
    now = 0.0
    for _ in range(7):
        policy.started(1, now)
        now += 1.0  # dies a second after each start
        pauses.append(policy.after_exit(1, now))
        now += pauses[-1] or 0
    assert pauses == [0.0, 0.5, 1.0, 2.0, 4.0, 5.0, None]


def test_restart_policy_forgets_quick_exits_after_a_long_life_and_per_worker() -> None:
    policy = RestartPolicy(quick_s=10, first_pause_s=0.5, max_pause_s=5, give_up_after=3)
    policy.started(1, 0.0)
    policy.started(2, 0.0)
    assert policy.after_exit(1, 1.0) == 0.0
    policy.started(1, 1.0)
    assert policy.after_exit(1, 2.0) == 0.5
    assert policy.after_exit(2, 3.0) == 0.0  # worker 2's first quick exit
    policy.started(1, 2.5)
    assert policy.after_exit(1, 100.0) == 0.0  # it ran 97 s: a fresh start
    policy.started(1, 100.0)
    assert policy.after_exit(1, 101.0) == 0.0


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_workers_end_when_the_supervisor_is_killed(tmp_path: Any) -> None:
    async with FakeRealtimeServer("ga", [[Say("Hello.", 1000)]], speed=1.0) as fake:
        with serve_group(fake_env(fake), tmp_path) as group:
            pids = list(group.pids().values())
            group.proc.kill()  # no drain, no clean-up of its own: the kernel tells the workers
            await asyncio.to_thread(group.proc.wait, 10)
            await wait_until(lambda: all(_gone(pid) for pid in pids), 15, "the workers to end")
            # Their drain (no calls) ran: each said so before it went.
            assert len(group.events("drain_finished")) == 2
