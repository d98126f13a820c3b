"""What an unauthenticated HTTP peer can make the bridge spend: the public port's attacks.

Runs `voicebridge serve` in a subprocess (file descriptors limited to 1,024, as measured
before the edge limits) with the lean fake upstream (`_upstream.py`), and for each attack one
healthy Twilio call (`_loadgen.py`, pcmu, so every frame's loss is checked by its sequence
number) that streams both ways through the attack. Per attack it measures, from /proc, the
bridge's peak RSS over its RSS before (the peak counter is reset first: `clear_refs`), its
CPU seconds, its open file descriptors; from the bridge's log, the event loop's worst stall
(the loop-lag watcher samples every 10 ms here, so no stall of 100 ms goes unseen); from the
attacker's side, what it was answered and how soon. Prints the table: attack, the figure
measured before `bridge/edge.py`, the figure now.

    .venv/bin/python bench/edge.py            # the sizes of the table (a minute or two)
    .venv/bin/python bench/edge.py --scale 0.04

`tests/edge/test_http_edge.py` runs the same attacks, a few MB each, with assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import pickle
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PYTHON = sys.executable
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import load as bench_load  # noqa: E402  (bench/load.py: its process and /proc helpers)

MODE = "pcmu"
FD_LIMIT = 1024
LOOP_LAG_INTERVAL_S = 0.01
SEND_CHUNK_BYTES = 256 * 1024
ANSWER_WAIT_S = 10.0
CALL_WARMUP_S = 1.5

# The bridge as `voicebridge serve` runs it, with its loop-lag watcher sampling densely.
_RUNNER = (
    "import sys, bridge.loop_lag as lag; lag.INTERVAL_S = {interval}; "
    "from bridge.cli import main; sys.exit(main(sys.argv[1:]))"
)


def _limit_fds() -> None:
    bench_load._die_with_parent()
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


def _status_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


@dataclass
class Bridge:
    """The bridge subprocess and its fake upstream (restarted per measurement, same port)."""

    work: Path
    port: int = 0
    upstream_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    upstream: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.work / "bridge.out"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        self.upstream_port = bench_load.free_port()
        self.start_upstream()
        self.port = bench_load.free_port()
        env = bench_load._server_env(MODE, self.upstream_port)
        env["LOG_LEVEL"] = "INFO"
        self.proc = subprocess.Popen(
            [
                PYTHON,
                "-c",
                _RUNNER.format(interval=LOOP_LAG_INTERVAL_S),
                *("serve", "--port", str(self.port)),
            ],
            stdout=open(self.log_path, "wb"),
            stderr=open(self.work / "bridge.err", "wb"),
            env=env,
            cwd=self.work,
            preexec_fn=_limit_fds,
        )
        bench_load._wait_http(self.base_url + "/healthz", self.proc, timeout=60)

    def start_upstream(self) -> None:
        self.upstream = subprocess.Popen(
            [
                PYTHON,
                str(BENCH / "_upstream.py"),
                *("--mode", MODE, "--port", str(self.upstream_port)),
                *("--out", str(self.work / "upstream.pkl"), "--max-seconds", "600"),
            ],
            stdout=subprocess.PIPE,
            stderr=open(self.work / "upstream.err", "ab"),
            cwd=self.work,
            preexec_fn=bench_load._die_with_parent,
        )
        line = self.upstream.stdout.readline().decode()  # type: ignore[union-attr]
        if not line.startswith("PORT "):
            raise RuntimeError(f"fake upstream did not start: {line!r}")

    def stop_upstream(self) -> dict[str, Any]:
        assert self.upstream is not None
        bench_load._stop(self.upstream)
        with open(self.work / "upstream.pkl", "rb") as f:
            return pickle.load(f)  # type: ignore[no-any-return]

    def stop(self) -> None:
        for proc in (self.proc, self.upstream):
            if proc is not None:
                bench_load._stop(proc)

    # /proc --------------------------------------------------------------------------------

    def rss_mib(self) -> float:
        return _status_kib(self.pid, "VmRSS") / 1024

    def peak_mib(self) -> float:
        return _status_kib(self.pid, "VmHWM") / 1024

    def reset_peak(self) -> None:
        """Linux: writing 5 to clear_refs resets VmHWM to the current RSS."""
        with open(f"/proc/{self.pid}/clear_refs", "w") as f:
            f.write("5")

    def cpu_s(self) -> float:
        return bench_load.cpu_seconds(self.pid)

    def fds(self) -> int:
        """Every open file of the bridge: what its file limit counts."""
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def log_offset(self) -> int:
        return self.log_path.stat().st_size

    def log_records(self, since: int) -> list[dict[str, Any]]:
        with open(self.log_path, "rb") as f:
            f.seek(since)
            lines = f.read().splitlines()
        records = []
        for line in lines:
            with contextlib.suppress(orjson.JSONDecodeError):
                records.append(orjson.loads(line))
        return records


@dataclass
class Measured:
    """What one attack cost the bridge, and what the healthy call went through."""

    result: Any = None
    rss_before_mib: float = math.nan
    rss_growth_mib: float = math.nan
    cpu_s: float = math.nan
    max_fds: int = 0
    stalls_ms: list[float] = field(default_factory=list)
    refused: dict[str, int] = field(default_factory=dict)
    frames: int = 0
    frames_in: int = 0
    frames_out: int = 0
    dropped: int = 0
    late: int = 0
    call_failures: list[str] = field(default_factory=list)

    @property
    def max_stall_ms(self) -> float:
        return max(self.stalls_ms, default=0.0)


async def measure(
    bridge: Bridge, attack: Callable[[], Awaitable[Any]], call_seconds: float
) -> Measured:
    """Run `attack` while one healthy call streams for `call_seconds`."""
    out = Measured()
    with tempfile.TemporaryDirectory(dir=bridge.work) as tmp:
        pkl = Path(tmp) / "loadgen.pkl"
        if bridge.upstream is None or bridge.upstream.poll() is not None:
            bridge.start_upstream()
        gen = await asyncio.create_subprocess_exec(
            PYTHON,
            str(BENCH / "_loadgen.py"),
            "--url",
            bridge.base_url,
            "--calls",
            "1",
            "--mode",
            MODE,
            "--warmup",
            str(CALL_WARMUP_S),
            "--duration",
            str(call_seconds),
            "--out",
            str(pkl),
            "--max-seconds",
            str(call_seconds + 60),
            stdout=subprocess.PIPE,
            cwd=tmp,
        )
        line = (await asyncio.wait_for(gen.stdout.readline(), 30)).decode()  # type: ignore[union-attr]
        if not line.startswith("WINDOW "):
            raise RuntimeError(f"the healthy call did not start: {line!r}")
        window_start, window_end = float(line.split()[1]), float(line.split()[2])
        await asyncio.sleep(max(0.0, window_start - time.monotonic()))
        offset = bridge.log_offset()
        out.rss_before_mib = bridge.rss_mib()
        bridge.reset_peak()
        cpu0 = bridge.cpu_s()
        sampler = asyncio.create_task(_sample_fds(bridge, out))
        try:
            out.result = await attack()
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        out.cpu_s = bridge.cpu_s() - cpu0
        await asyncio.sleep(max(0.0, window_end - time.monotonic()))
        out.rss_growth_mib = bridge.peak_mib() - out.rss_before_mib
        bridge.upstream.send_signal(signal.SIGUSR1)  # type: ignore[union-attr]
        await asyncio.wait_for(gen.wait(), call_seconds + 60)
        upstreamed = await asyncio.to_thread(bridge.stop_upstream)
        generated = _load(pkl)
    await asyncio.sleep(0.3)  # the bridge's log thread writes its last lines
    for record in bridge.log_records(offset):
        if record.get("event") == "event_loop_stalled":
            out.stalls_ms.append(float(record["lag_ms"]))
        elif record.get("event") == "http_refused":
            reason = str(record["reason"])
            out.refused[reason] = out.refused.get(reason, 0) + int(record["count"])
    step = bench_load.Step("bridge", MODE, 1)
    opts = argparse.Namespace(late_ms=20.0, max_gen_lateness_ms=math.inf)
    bench_load.analyse(step, generated, upstreamed, opts)
    out.frames = step.frames_in + step.frames_out
    out.dropped = step.dropped_in + step.dropped_out
    out.late = step.late_in + step.late_out
    out.frames_in, out.frames_out = step.frames_in, step.frames_out
    out.call_failures = list(step.failures)
    if not generated["callers"]:
        out.call_failures.append("the healthy call did not connect")
    return out


def _load(path: Path) -> Any:
    with open(path, "rb") as f:
        return pickle.load(f)


async def _sample_fds(bridge: Bridge, out: Measured) -> None:
    while True:
        out.max_fds = max(out.max_fds, bridge.fds())
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running_bridge(work: Path) -> AsyncIterator[Bridge]:
    bridge = Bridge(work)
    try:
        await asyncio.to_thread(bridge.start)
        yield bridge
    finally:
        await asyncio.to_thread(bridge.stop)


# The attacker's side ----------------------------------------------------------------------


@dataclass
class Answer:
    """What one attacking connection got: the status line's code (None: closed without an
    answer), after how long, and how much it had sent by then."""

    status: int | None
    seconds: float
    sent_bytes: int


def _status(data: bytes) -> int | None:
    if data.startswith(b"HTTP/1.1 ") and len(data) >= 12:
        with contextlib.suppress(ValueError):
            return int(data[9:12])
    return None


async def send_and_watch(port: int, head: bytes, filler: bytes, total_bytes: int) -> Answer:
    """Send `head`, then `filler` repeated up to `total_bytes`, as fast as the socket takes
    it, while watching for the answer (or the close) from the first byte on."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    answered = asyncio.get_running_loop().create_future()

    async def watch() -> None:
        try:
            data = await reader.read(256)
        except OSError:
            data = b""
        if not answered.done():
            answered.set_result((data, time.monotonic() - started))

    watcher = asyncio.create_task(watch())
    sent = 0
    chunk = filler * max(1, SEND_CHUNK_BYTES // max(1, len(filler)))
    try:
        writer.write(head)
        sent += len(head)
        while sent < total_bytes and not answered.done():
            piece = chunk[: total_bytes - sent]
            writer.write(piece)
            sent += len(piece)
            await writer.drain()
    except OSError:
        pass
    try:
        data, seconds = await asyncio.wait_for(answered, ANSWER_WAIT_S)
    except TimeoutError:
        data, seconds = b"", math.inf
    watcher.cancel()
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return Answer(_status(data), seconds, sent)


def small_headers(port: int, total_bytes: int) -> Awaitable[Answer]:
    head = b"GET /healthz HTTP/1.1\r\nHost: bridge\r\n"
    return send_and_watch(port, head, b"X-A: b\r\n", total_bytes)


def one_header(port: int, total_bytes: int) -> Awaitable[Answer]:
    head = b"GET /healthz HTTP/1.1\r\nHost: bridge\r\nX-Big: "
    return send_and_watch(port, head, b"a", total_bytes)


def form_body(port: int, total_bytes: int, *, chunked: bool = False) -> Awaitable[Answer]:
    """An unsigned webhook with a huge form: declared by Content-Length, or chunked (one
    64 KiB chunk after another, no length said)."""
    head = b"POST /incoming-call HTTP/1.1\r\nHost: bridge\r\n"
    head += b"Content-Type: application/x-www-form-urlencoded\r\n"
    if chunked:
        size = 64 * 1024
        chunk = b"%x\r\n" % size + b"a" * size + b"\r\n"
        return send_and_watch(
            port, head + b"Transfer-Encoding: chunked\r\n\r\n", chunk, total_bytes
        )
    head += b"Content-Length: %d\r\n\r\nCallSid=" % total_bytes
    return send_and_watch(port, head, b"a", total_bytes)


@dataclass
class Flood:
    """Connections that send nothing, or an upgrade request never finished."""

    opened: int = 0
    refused_at_once: int = 0  # answered or closed within a second of connecting
    longest_held_s: float = 0.0
    still_open: int = 0  # after the header timeout and a second
    new_call: str = ""  # what a webhook and a media-stream upgrade got during the flood


async def flood(port: int, silent: int, partial: int, hold_s: float) -> Flood:
    """Open `silent` + `partial` connections, then place a new call's webhook and stream
    upgrade while they are held; wait `hold_s` for the bridge to close them."""
    result = Flood()
    partial_head = b"GET /media-stream HTTP/1.1\r\nHost: bridge\r\nUpgrade: websocket\r\n"
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
    closed_after: list[float] = []

    async def watch(reader: asyncio.StreamReader, started: float) -> None:
        with contextlib.suppress(OSError):
            await reader.read(256)
        closed_after.append(time.monotonic() - started)

    watchers = []
    for k in range(silent + partial):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            result.refused_at_once += 1
            continue
        started = time.monotonic()
        if k >= silent:
            writer.write(partial_head)
        conns.append((reader, writer, started))
        watchers.append(asyncio.create_task(watch(reader, started)))
    result.opened = len(conns)
    result.new_call = await new_call(port)
    if watchers:
        await asyncio.wait(watchers, timeout=hold_s)
    result.still_open = sum(not w.done() for w in watchers)
    result.refused_at_once += sum(1 for s in closed_after if s < 1.0)
    result.longest_held_s = max(closed_after, default=0.0)
    for w in watchers:
        w.cancel()
    for _, writer, _ in conns:
        writer.close()
    return result


async def new_call(port: int) -> str:
    """A webhook and a media-stream upgrade, as Twilio places a call: `200 101` if both
    were answered as they should be."""
    form = b"CallSid=CA0123&From=%2B15550001111&To=%2B15550002222"
    webhook = (
        b"POST /incoming-call HTTP/1.1\r\nHost: bridge\r\nConnection: close\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(form), form)
    )
    upgrade = (
        b"GET /media-stream HTTP/1.1\r\nHost: bridge\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    statuses = []
    for request in (webhook, upgrade):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            data = await asyncio.wait_for(reader.read(256), 5)
            writer.close()
        except (OSError, TimeoutError):
            data = b""
        statuses.append(str(_status(data)))
    return " ".join(statuses)


# The table --------------------------------------------------------------------------------


def _answers(answers: list[Answer]) -> str:
    codes = sorted({str(a.status) if a.status else "closed" for a in answers})
    worst = max(a.seconds for a in answers)
    sent = max(a.sent_bytes for a in answers) / 2**20
    return f"{'/'.join(codes)} within {worst:.3f} s ({sent:.1f} MiB written by then)"


def _costs(m: Measured) -> str:
    lost = (
        f"call lost {m.dropped} of {m.frames_in} + {m.frames_out} frames in + out "
        f"({m.late} late > 20 ms)"
    )
    if m.call_failures:
        lost += f", call failed: {'; '.join(m.call_failures)}"
    return (
        f"RSS +{m.rss_growth_mib:.1f} MiB, CPU {m.cpu_s:.2f} s, "
        f"worst stall {m.max_stall_ms:.0f} ms, {lost}"
    )


async def run(scale: float, work: Path) -> list[tuple[str, str, str]]:
    mib = 2**20
    rows: list[tuple[str, str, str]] = []
    async with running_bridge(work) as bridge:
        port = bridge.port
        size = int(25 * mib * scale)
        m = await measure(
            bridge,
            lambda: asyncio.gather(small_headers(port, size), small_headers(port, size)),
            2.0,
        )
        rows.append(
            (
                f"many small headers, 2 × {size / mib:.0f} MB",
                "RSS 368 → 1,121 MiB",
                f"{_answers(m.result)}; {_costs(m)}",
            )
        )
        size = int(100 * mib * scale)
        m = await measure(bridge, lambda: one_header(port, size), 2.0)
        rows.append(
            (
                f"one {size / mib:.0f} MB header",
                "22.7 s of CPU, loop stalled 4.3 s, healthy call lost 427 frames",
                f"{_answers([m.result])}; {_costs(m)}",
            )
        )
        size = int(200 * mib * scale)
        m = await measure(
            bridge, lambda: asyncio.gather(form_body(port, size), form_body(port, size)), 2.0
        )
        rows.append(
            (
                f"webhook bodies 2 × {size / mib:.0f} MB, unsigned, Content-Length",
                "read whole before the signature check: RSS peak 843 MiB",
                f"{_answers(m.result)}; {_costs(m)}",
            )
        )
        m = await measure(
            bridge,
            lambda: asyncio.gather(
                form_body(port, size, chunked=True), form_body(port, size, chunked=True)
            ),
            2.0,
        )
        rows.append(
            (
                f"webhook bodies 2 × {size / mib:.0f} MB, unsigned, chunked",
                "(not measured; same path: read whole)",
                f"{_answers(m.result)}; {_costs(m)}",
            )
        )
        idle = bridge.fds()
        m = await measure(bridge, lambda: flood(port, 1000, 10, 8.0), 8.0)
        f: Flood = m.result
        rows.append(
            (
                f"{f.opened} TCP connections sending nothing / a partial upgrade",
                "held 130 s, no header timeout; ~1,010 fill a 1,024 fd limit, new calls fail",
                f"{f.refused_at_once} closed within 1 s (evicted or refused), longest held "
                f"{f.longest_held_s:.1f} s, {f.still_open} open after 8 s; bridge fds "
                f"{idle} idle, {m.max_fds} at most; new call during the flood got "
                f"{f.new_call}; {_costs(m)}",
            )
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="attack sizes × this")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = asyncio.run(run(args.scale, Path(tmp)))
    print(f"edge bench at scale {args.scale}, the bridge's file descriptor limit {FD_LIMIT}")
    print("| attack | measured before the edge limits | measured now |")
    print("|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
