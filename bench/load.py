"""Capacity, latency and memory of the bridge under N continuous calls, against the floor.

Each step starts three processes on 127.0.0.1 and measures one of them:
- a lean fake Realtime server (`_upstream.py`) streaming 20 ms of agent audio every 20 ms to
  every session, never ending;
- the server under test: the bridge (`voicebridge serve`, via `_bridge.py`) or the floor
  (`floor.py`, the smallest relay on the same stack), told to use that upstream;
- N Twilio callers (`_loadgen.py`) sending 20 ms frames on an absolute clock and echoing marks
  once the audio before them has played.
Both directions run at real time for the whole step: the worst case. After all calls stream
and a warm-up, a window of `--duration` seconds is measured: the server's CPU time (all its
threads, from /proc) per call-second, its RSS, and every frame's added latency, inbound
(caller send → upstream receive of the matching append) and outbound (upstream send of a
delta → caller receive of its frame). Frames are matched by index within each call (20 ms
deltas become exactly one 160-byte frame each); in pcmu mode the sequence number inside the
audio is checked too. A frame is late if its added latency exceeds `--late-ms`, dropped if
it never arrives (or arrives out of order): after the window the upstream stops its audio and
the callers hang up only once nothing has arrived for half a second (up to 20 s), so a frame
stuck in a queue counts as late, not as dropped. The generator and the fake upstream time their
own sends against their schedules; if either's p99 lateness exceeds `--max-gen-lateness-ms`,
the step is INVALID: the load, not the bridge, lagged.

    .venv/bin/python bench/load.py --quick             # under 2 minutes
    .venv/bin/python bench/load.py                     # full: N = 50, 100, 200, … per mode
    .venv/bin/python bench/load.py --soak 600 --calls 100
    .venv/bin/python bench/load.py --calls 100 --modes pcm16 --targets bridge --profile
    .venv/bin/python bench/load.py --calls 100 --repeat 5  # median bridge/floor ratio
    .venv/bin/python bench/load.py --workers 2 --targets bridge  # serve --workers 2

With `--workers N` the bridge's CPU, RSS and sockets are those of the supervisor and all its
workers together (core% may then pass 100; SATURATED is then N × 90 %), and its loop's task
count is not taken. Each step also reports the server's context switches per second: voluntary
ones (an event loop going to sleep in epoll, to be woken by the next message) and preemptions.

The machine is shared: each row shows the 1-minute load average before the step and the CPU
cores that other work took during it (`others`); repeat a run where `others` is well above 0.
Even on a quiet machine one step's CPU figure varies by about ±15 % from run to run, so a
single bridge/floor ratio is one sample: `--repeat K` runs K alternating pairs per N and
reports their median.
A step whose server used ≥ 90 % of its one core is SATURATED: its event loop could not keep
up, so its latencies are queueing and its CPU per call-second is not a real-time figure.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import pickle
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from bridge.cli import worker_count

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PYTHON = sys.executable

# The load bench's standing targets: ratios to the floor in one run, no absolute CPU figure
# (that moves with the machine and the hour).
TARGET_RATIO = {"pcm16": 1.5, "pcmu": 1.3}
TARGET_RSS_MIB = 1.0
TARGET_P99_MS = {100: 5.0, 200: 20.0}
SATURATED_PCT = 90.0

QUICK = {"calls": [50, 100], "floor_calls": [100], "warmup": 2.0, "duration": 5.0}
FULL = {
    "calls": [50, 100, 200, 300, 400, 600],
    "floor_calls": None,
    "warmup": 5.0,
    "duration": 20.0,
}


# Processes ---------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """A child gets SIGTERM if this script dies, so nothing outlives an interrupted run."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _spawn(argv: list[str], log: Path, env: dict[str, str] | None = None, **kw: Any) -> Any:
    out = kw.pop("stdout", None) or open(log.with_suffix(".out"), "wb")
    err = open(log.with_suffix(".err"), "wb")
    return subprocess.Popen(
        argv, stdout=out, stderr=err, env=env, cwd=log.parent, preexec_fn=_die_with_parent, **kw
    )


def _stop(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, timeout: float = 2.0) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read().decode()
    except OSError:
        return None


def _wait_http(url: str, proc: subprocess.Popen[Any], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before serving")
        if _get(url, 0.5) is not None:
            return
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def _server_env(mode: str, upstream_port: int) -> dict[str, str]:
    """The bridge's environment (docs/reference.md), set for the bench and nothing else of the
    caller's."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not re.match(
            r"(TWILIO_|OPENAI_|AZURE_|REALTIME_|TAVILY_|PUBLIC_URL|PERSONA_|MAX_|"
            r"IDLE_|DRAIN_|LOG_)",
            k,
        )
    }
    env.update(
        OPENAI_API_KEY="sk-bench-dummy",
        REALTIME_URL=f"ws://127.0.0.1:{upstream_port}/v1/realtime",
        REALTIME_AUDIO=mode,
        LOG_FORMAT="json",
        MAX_CONCURRENT_CALLS="100000",
        DRAIN_TIMEOUT_SECONDS="2",
        PYTHONPATH=str(REPO),
    )
    return env


# /proc -------------------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU time of every thread of `pid`, in ns precision where schedstat exists."""
    try:
        total = 0
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        return total / 1e9
    except (OSError, ValueError):
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read().rsplit(")", 1)[1].split()
        return (int(stat[11]) + int(stat[12])) / _TICK


def user_system_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of `pid`, at clock-tick resolution: Python vs kernel work."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read().rsplit(")", 1)[1].split()
    return int(stat[11]) / _TICK, int(stat[12]) / _TICK


def context_switches(pid: int) -> tuple[int, int]:
    """(voluntary, involuntary) context switches of every thread of `pid`. A voluntary one is a
    sleep (an event loop waiting in epoll); an involuntary one is a preemption."""
    voluntary = involuntary = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        voluntary += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches:"):
                        involuntary += int(line.split()[1])
        except OSError:
            continue  # a thread that ended meanwhile
    return voluntary, involuntary


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return math.nan


def tcp_inodes() -> set[str]:
    """The inodes of every TCP socket of the machine (/proc/net/tcp and tcp6)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)  # the header
                inodes.update(line.split()[9] for line in f)
        except OSError:
            continue
    return inodes


def tcp_socket_count(pid: int, tcp: set[str]) -> int:
    """TCP sockets `pid` holds open (listening or connected): what a leaked call leaves.
    Other files are left out: the metrics files each worker of `serve --workers` opens at its
    first call, and the Unix sockets of its executor's threads to the supervisor's table
    (one per thread, kept for the next use)."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        count += link.startswith("socket:[") and link[8:-1] in tcp
    return count


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (`serve --workers N`: the supervisor and its workers)."""
    tree, index = [pid], 0
    while index < len(tree):
        parent = tree[index]
        index += 1
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children") as f:
                    tree += [int(child) for child in f.read().split()]
            except OSError:
                continue
    return tree


def _summed(measure: Callable[[int], Any], pid: int) -> Any:
    """`measure` summed over `pid`'s process tree (a process that ended meanwhile counts 0)."""
    total: Any = None
    for member in process_tree(pid):
        try:
            value = measure(member)
        except OSError:
            continue
        if isinstance(value, tuple):
            total = (
                value if total is None else tuple(a + b for a, b in zip(total, value, strict=True))
            )
        else:
            total = value if total is None else total + value
    return total


def tree_cpu_seconds(pid: int) -> float:
    return float(_summed(cpu_seconds, pid) or 0.0)


def tree_user_system_seconds(pid: int) -> tuple[float, float]:
    return _summed(user_system_seconds, pid) or (0.0, 0.0)


def tree_context_switches(pid: int) -> tuple[int, int]:
    return _summed(context_switches, pid) or (0, 0)


def tree_rss_mib(pid: int) -> float:
    return float(_summed(rss_mib, pid) or math.nan)


def tree_sockets(pid: int) -> int:
    tcp = tcp_inodes()
    return int(_summed(lambda member: tcp_socket_count(member, tcp), pid) or 0)


def host_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:9]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def tasks_in(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None


def active_calls(base_url: str) -> int | None:
    body = _get(base_url + "/metrics")
    if body is None:
        return None
    found = re.search(r"^voicebridge_active_calls (\S+)$", body, re.M)
    return int(float(found.group(1))) if found else None


# One step ----------------------------------------------------------------------------------


@dataclass
class Step:
    target: str
    mode: str
    calls: int
    repeat: int = 0  # which of --repeat's bridge/floor pairs
    loops: int = 1  # the server's event loops: the bridge's workers
    connected: int = 0
    seconds: float = 0.0
    cpu_ms: float = math.nan
    cpu_user_ms: float = math.nan
    cpu_sys_ms: float = math.nan
    others: float = math.nan
    server_cpu: float = math.nan  # % of one core
    rss_idle: float = math.nan
    rss: float = math.nan
    in_p50: float = math.nan
    in_p99: float = math.nan
    in_max: float = math.nan
    out_p50: float = math.nan
    out_p99: float = math.nan
    out_max: float = math.nan
    late_in: int = 0
    late_out: int = 0
    dropped_in: int = 0
    dropped_out: int = 0
    frames_in: int = 0
    frames_out: int = 0
    gen_p99: float = math.nan
    up_p99: float = math.nan
    gen_cpu: float = math.nan
    sleeps: float = math.nan  # the server's voluntary context switches per second
    preempted: float = math.nan  # and its involuntary ones
    up_cpu: float = math.nan
    host_busy: float = math.nan
    load: float = math.nan
    sockets_idle: int | None = None
    sockets_during: int | None = None
    sockets_after: int | None = None
    tasks_idle: int | None = None
    tasks_during: int | None = None
    tasks_after: int | None = None
    active_after: int | None = None
    settle_s: float = math.nan
    underruns: int = 0
    failures: list[str] = field(default_factory=list)
    invalid: str = ""
    rss_series: list[tuple[float, float]] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.invalid

    @property
    def rss_per_call(self) -> float:
        return (self.rss - self.rss_idle) / self.calls if self.calls else math.nan

    @property
    def saturated(self) -> bool:
        """The server's event loops were busy nearly all the time: they could not keep up, so
        its CPU per call-second is not a real-time figure and latencies are queueing (with
        `--workers N`, N loops share the calls evenly: N × 90 % of a core)."""
        return self.server_cpu >= SATURATED_PCT * self.loops

    @property
    def p99(self) -> float:
        return max(self.in_p99, self.out_p99)


def run_step(
    target: str,
    mode: str,
    calls: int,
    opts: argparse.Namespace,
    work: Path,
    profile: Path | None = None,
) -> Step:
    step = Step(target, mode, calls, load=os.getloadavg()[0])
    if target == "bridge":
        step.loops = opts.workers
    tag = f"{target}-{mode}-{calls}"
    run = work / tag
    run.mkdir(parents=True, exist_ok=True)
    up_out = run / "upstream.pkl"
    lg_out = run / "loadgen.pkl"
    tasks_file = run / "tasks.txt"
    procs: list[subprocess.Popen[Any]] = []
    try:
        upstream = _spawn(
            [
                PYTHON,
                str(BENCH / "_upstream.py"),
                "--mode",
                mode,
                "--out",
                str(up_out),
                "--max-seconds",
                str(opts.warmup + opts.duration + 300),
            ],
            run / "upstream",
            stdout=subprocess.PIPE,
        )
        procs.append(upstream)
        line = upstream.stdout.readline().decode()  # type: ignore[union-attr]
        if not line.startswith("PORT "):
            raise RuntimeError(f"fake upstream did not start: {line!r}")
        up_port = int(line.split()[1])
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        if target == "bridge":
            argv = [PYTHON, str(BENCH / "_bridge.py"), "--tasks-file", str(tasks_file)]
            argv += ["serve", "--port", str(port), "--workers", str(opts.workers)]
        else:
            argv = [PYTHON, str(BENCH / "floor.py"), "--port", str(port)]
        server = _spawn(argv, run / target, env=_server_env(mode, up_port))
        procs.append(server)
        _wait_http(base + "/healthz", server)
        time.sleep(1.2)  # the task counter writes every second
        pid = server.pid
        step.rss_idle, step.sockets_idle = tree_rss_mib(pid), tree_sockets(pid)
        step.tasks_idle = tasks_in(tasks_file)

        loadgen = _spawn(
            [
                PYTHON,
                str(BENCH / "_loadgen.py"),
                "--url",
                base,
                "--calls",
                str(calls),
                "--mode",
                mode,
                "--warmup",
                str(opts.warmup),
                "--duration",
                str(opts.duration),
                "--out",
                str(lg_out),
                "--max-seconds",
                str(opts.warmup + opts.duration + 240),
            ],
            run / "loadgen",
            stdout=subprocess.PIPE,
        )
        procs.append(loadgen)
        line = loadgen.stdout.readline().decode()  # type: ignore[union-attr]
        if not line.startswith("WINDOW "):
            raise RuntimeError(f"load generator failed: {line!r}")
        _, start_s, end_s, _ = line.split()
        start, end = float(start_s), float(end_s)

        time.sleep(max(0.0, start - time.monotonic()))
        spy = py_spy(server.pid, end - start, profile) if profile is not None else None
        cpu0 = [tree_cpu_seconds(server.pid), *(cpu_seconds(p.pid) for p in (loadgen, upstream))]
        us0 = tree_user_system_seconds(pid)
        cs0 = tree_context_switches(pid)
        host0, t0 = host_cpu(), time.monotonic()
        every = opts.rss_every
        next_sample = t0
        while True:
            now = time.monotonic()
            if now >= next_sample:
                step.rss_series.append((round(now - t0, 1), tree_rss_mib(pid)))
                next_sample += every
            if now >= end:
                break
            time.sleep(max(0.0, min(next_sample, end) - time.monotonic()))
        cpu1 = [tree_cpu_seconds(server.pid), *(cpu_seconds(p.pid) for p in (loadgen, upstream))]
        us1 = tree_user_system_seconds(pid)
        cs1 = tree_context_switches(pid)
        upstream.send_signal(signal.SIGUSR1)  # audio stops; the callers drain and hang up
        host1, t1 = host_cpu(), time.monotonic()
        step.sockets_during = tree_sockets(pid)
        step.tasks_during = tasks_in(tasks_file)
        step.rss_series.append((round(t1 - t0, 1), tree_rss_mib(pid)))
        seconds = t1 - t0
        step.seconds = seconds
        step.rss = float(np.median([r for _, r in step.rss_series]))
        step.gen_cpu = 100 * (cpu1[1] - cpu0[1]) / seconds
        step.sleeps = (cs1[0] - cs0[0]) / seconds
        step.preempted = (cs1[1] - cs0[1]) / seconds
        step.up_cpu = 100 * (cpu1[2] - cpu0[2]) / seconds
        step.host_busy = 100 * (host1[0] - host0[0]) / max(1, host1[1] - host0[1])
        ours = sum(b - a for a, b in zip(cpu0, cpu1, strict=True)) / seconds
        step.others = (os.cpu_count() or 1) * step.host_busy / 100 - ours

        loadgen.wait(opts.warmup + opts.duration + 180)
        if spy is not None:
            spy.wait(60)
        # Teardown: wait (up to --settle s) for sockets and tasks to return to idle.
        hung_up = time.monotonic()
        while True:
            time.sleep(0.5)
            step.sockets_after = tree_sockets(pid)
            step.tasks_after = tasks_in(tasks_file)
            step.settle_s = time.monotonic() - hung_up
            settled = step.sockets_after <= step.sockets_idle and (
                step.tasks_after is None or step.tasks_after <= (step.tasks_idle or 0)
            )
            if settled or step.settle_s >= opts.settle:
                break
        if target == "bridge":
            step.active_after = active_calls(base)
        _stop(upstream)
        with open(lg_out, "rb") as f:
            generated = pickle.load(f)
        with open(up_out, "rb") as f:
            upstreamed = pickle.load(f)
        step.connected = len(generated["callers"])
        server_cpu = cpu1[0] - cpu0[0]
        step.server_cpu = 100 * server_cpu / seconds
        call_seconds = max(1, step.connected) * seconds
        step.cpu_ms = 1000 * server_cpu / call_seconds
        step.cpu_user_ms = 1000 * (us1[0] - us0[0]) / call_seconds
        step.cpu_sys_ms = 1000 * (us1[1] - us0[1]) / call_seconds
        analyse(step, generated, upstreamed, opts)
    finally:
        for proc in reversed(procs):
            _stop(proc)
        if not opts.keep:
            shutil.rmtree(run, ignore_errors=True)
    return step


def _pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) * 1000 if len(values) else math.nan


def analyse(step: Step, gen: dict[str, Any], up: dict[str, Any], opts: argparse.Namespace) -> None:
    """Match frames per call and fill the step's latency, loss and validity fields."""
    w0, w1 = gen["window"]
    late = opts.late_ms / 1000
    by_caller = {s["caller"]: s for s in up["sessions"] if s["caller"] is not None}
    check_seq = step.mode == "pcmu"
    lat_in: list[np.ndarray] = []
    lat_out: list[np.ndarray] = []
    gen_late: list[np.ndarray] = []
    up_late: list[np.ndarray] = []
    step.failures = list(gen["failures"])
    for caller in gen["callers"]:
        session = by_caller.get(caller["index"])
        if session is None:
            step.failures.append(f"call {caller['index']}: no upstream session")
            continue
        step.underruns += caller["gaps"]
        sent = np.frombuffer(caller["sent_t"])
        due = np.frombuffer(caller["sent_due"])
        in_window = (sent >= w0) & (sent < w1)
        gen_late.append((sent - due)[in_window])
        got = np.frombuffer(session["append_t"])
        lat, dropped = _match(sent, in_window, got, session["append_seq"], check_seq)
        lat_in.append(lat)
        step.dropped_in += dropped
        step.frames_in += int(in_window.sum())

        d_sent = np.frombuffer(session["delta_sent"])
        d_due = np.frombuffer(session["delta_due"])
        d_window = (d_sent >= w0) & (d_sent < w1)
        up_late.append((d_sent - d_due)[d_window])
        recv = np.frombuffer(caller["recv_t"])
        lat, dropped = _match(d_sent, d_window, recv, caller["recv_seq"], check_seq)
        lat_out.append(lat)
        step.dropped_out += dropped
        step.frames_out += int(d_window.sum())
    li = np.concatenate(lat_in) if lat_in else np.empty(0)
    lo = np.concatenate(lat_out) if lat_out else np.empty(0)
    step.in_p50, step.in_p99 = _pct(li, 50), _pct(li, 99)
    step.out_p50, step.out_p99 = _pct(lo, 50), _pct(lo, 99)
    step.in_max = float(li.max()) * 1000 if len(li) else math.nan
    step.out_max = float(lo.max()) * 1000 if len(lo) else math.nan
    step.late_in, step.late_out = int((li > late).sum()), int((lo > late).sum())
    gl = np.concatenate(gen_late) if gen_late else np.empty(0)
    ul = np.concatenate(up_late) if up_late else np.empty(0)
    step.gen_p99, step.up_p99 = _pct(gl, 99), _pct(ul, 99)
    reasons = []
    if step.connected < step.calls:
        reasons.append(f"{step.calls - step.connected} calls failed")
    if not step.gen_p99 <= opts.max_gen_lateness_ms:
        reasons.append(f"generator p99 lateness {step.gen_p99:.1f} ms")
    if not step.up_p99 <= opts.max_gen_lateness_ms:
        reasons.append(f"fake upstream p99 lateness {step.up_p99:.1f} ms")
    step.invalid = "; ".join(reasons)


def _match(
    sent: np.ndarray, in_window: np.ndarray, got: np.ndarray, seqs: Any, check_seq: bool
) -> tuple[np.ndarray, int]:
    """Latencies of the window's frames that arrived, and how many did not (or not in order).

    Without sequence numbers, arrival j is frame j. With them (pcmu), arrival j carries its
    frame's index; a frame that is missing, or arrives after a later one, counts as dropped.
    """
    wanted = np.nonzero(in_window)[0]
    if not check_seq:
        arrived = wanted[wanted < len(got)]
        return got[arrived] - sent[arrived], len(wanted) - len(arrived)
    seq = np.frombuffer(seqs, dtype=np.int64) if len(seqs) else np.empty(0, np.int64)
    ok = (seq >= 0) & (seq < len(sent))
    in_order = np.ones(len(seq), dtype=bool)
    if len(seq) > 1:
        in_order[1:] = seq[1:] > np.maximum.accumulate(seq)[:-1]
    keep = ok & in_order
    seq_kept, got_kept = seq[keep], got[keep]
    mine = in_window[seq_kept]
    dropped = len(wanted) - int(np.isin(wanted, seq_kept).sum())
    return got_kept[mine] - sent[seq_kept[mine]], dropped


# Reporting ---------------------------------------------------------------------------------


def _f(value: float, digits: int = 1) -> str:
    return (
        "-"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else (f"{value:.{digits}f}")
    )


HEADER = (
    f"{'target':<7}{'mode':<6}{'N':>5} {'CPU ms/call-s':>13} {'(usr+sys)':>11} {'core%':>5} "
    f"{'RSS MiB/call':>12} "
    f"{'in p50/p99 ms':>15} {'out p50/p99 ms':>15} {'late':>6} {'dropped':>7} "
    f"{'gen p99':>7} {'up p99':>6} {'load':>5} {'others':>6}  valid"
)


def row(s: Step) -> str:
    return (
        f"{s.target:<7}{s.mode:<6}{s.calls:>5} {_f(s.cpu_ms, 2):>13} "
        f"{'(' + _f(s.cpu_user_ms) + '+' + _f(s.cpu_sys_ms) + ')':>11} {_f(s.server_cpu, 0):>5} "
        f"{_f(s.rss_per_call, 3):>12} "
        f"{_f(s.in_p50, 2) + '/' + _f(s.in_p99, 2):>15} "
        f"{_f(s.out_p50, 2) + '/' + _f(s.out_p99, 2):>15} "
        f"{s.late_in + s.late_out:>6} {s.dropped_in + s.dropped_out:>7} "
        f"{_f(s.gen_p99, 2):>7} {_f(s.up_p99, 2):>6} {_f(s.load, 2):>5} {_f(s.others, 2):>6}"
        f"  {'yes' if s.valid else 'INVALID: ' + s.invalid}"
        f"{' (SATURATED)' if s.saturated else ''}"
    )


def rss_slope(steps: list[Step]) -> float:
    """MiB per call: the slope of steady-state RSS against N, over the valid steps when there
    are two (an overloaded server's queues would count as memory per call)."""
    valid = [s for s in steps if s.valid and not s.saturated]
    steps = valid if len({s.calls for s in valid}) >= 2 else steps
    points = [(s.calls, s.rss) for s in steps if not math.isnan(s.rss)]
    if len({n for n, _ in points}) < 2:
        return math.nan
    n, r = np.array(points, dtype=float).T
    return float(np.polyfit(n, r, 1)[0])


def pairs(steps: list[Step]) -> list[tuple[Step, Step]]:
    """Each bridge step with the floor step of the same mode, N and repeat (by mode, then in
    the bridge steps' order); pairs without both CPU figures (NaN: not measured) are left out."""
    floors = {(s.mode, s.calls, s.repeat): s for s in steps if s.target == "floor"}
    found = [
        (s, f)
        for s in steps
        if s.target == "bridge"
        and s.cpu_ms > 0
        and (f := floors.get((s.mode, s.calls, s.repeat))) is not None
        and f.cpu_ms > 0
    ]
    return sorted(found, key=lambda pair: pair[0].mode)  # stable: steps' order within a mode


def summary(steps: list[Step]) -> list[str]:
    lines = []
    groups: dict[tuple[str, str], list[Step]] = defaultdict(list)
    for s in steps:
        groups[s.target, s.mode].append(s)
    lines.append("RSS slope against N (MiB per call; over valid steps when there are two):")
    for (target, mode), group in sorted(groups.items()):
        lines.append(f"  {target:<7}{mode:<6} {_f(rss_slope(group), 3)}")
    lines.append("bridge/floor CPU per call-second:")
    ratios: dict[tuple[str, int], list[float]] = defaultdict(list)
    for s, f in pairs(steps):
        note = " (SATURATED: not a real-time figure)" if s.saturated or f.saturated else ""
        ratios[s.mode, s.calls].append(s.cpu_ms / f.cpu_ms)
        lines.append(
            f"  {s.mode:<6}N={s.calls:<4} {s.cpu_ms:.2f} / {f.cpu_ms:.2f} = "
            f"{s.cpu_ms / f.cpu_ms:.2f}  (target ≤ {TARGET_RATIO[s.mode]}){note}"
        )
    for (mode, calls), values in ratios.items():
        if len(values) > 1:
            median = float(np.median(values))
            lines.append(
                f"  {mode:<6}N={calls:<4} median of {len(values)} pairs {median:.2f} "
                f"(range {min(values):.2f}–{max(values):.2f}): "
                f"{'pass' if median <= TARGET_RATIO[mode] else 'FAIL'}"
            )
    lines.append("targets:")
    for s in groups.get(("bridge", "pcm16"), []) + groups.get(("bridge", "pcmu"), []):
        checks = []
        if s.calls in TARGET_P99_MS:
            limit = TARGET_P99_MS[s.calls]
            checks.append(f"p99 {s.p99:.2f} ≤ {limit}: {'pass' if s.p99 <= limit else 'FAIL'}")
        drops = s.dropped_in + s.dropped_out
        checks.append(f"dropped {drops}: {'pass' if drops == 0 else 'FAIL'}")
        if not s.valid:
            checks.append("(INVALID step)")
        if s.saturated:
            checks.append("(SATURATED: one core was not enough)")
        lines.append(f"  bridge {s.mode:<6}N={s.calls:<4} " + "; ".join(checks))
    for (target, mode), group in sorted(groups.items()):
        if target == "bridge":
            slope = rss_slope(group)
            if not math.isnan(slope):
                verdict = "pass" if slope <= TARGET_RSS_MIB else "FAIL"
                lines.append(f"  bridge {mode:<6}RSS {slope:.3f} MiB/call ≤ 1: {verdict}")
    return lines


def markdown_table(steps: list[Step]) -> list[str]:
    """The table of docs/performance.md, as Markdown: per target, mode and N the median step
    by CPU (the lower middle one for an even count) with that step's latency; late and dropped
    frames summed over all of that N's steps; RSS per call the slope over N. Then the
    bridge/floor ratios, each the median of the pairs of one N."""
    groups: dict[tuple[str, str, int], list[Step]] = defaultdict(list)
    by_target: dict[tuple[str, str], list[Step]] = defaultdict(list)
    for s in steps:
        groups[s.target, s.mode, s.calls].append(s)
        by_target[s.target, s.mode].append(s)
    slopes = {key: rss_slope(group) for key, group in by_target.items()}
    modes = sorted({s.mode for s in steps}, key=lambda m: (m != "pcm16", m))
    lines = [
        "| target | mode | N | CPU ms/call-s (user + sys) | core % | RSS MiB/call "
        "| in p50 / p99 ms | out p50 / p99 ms | late | dropped |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mode in modes:
        for n in sorted({s.calls for s in steps if s.mode == mode}):
            for target in ("bridge", "floor"):
                group = groups.get((target, mode, n))
                if not group:
                    continue
                ranked = sorted(group, key=lambda s: (math.isnan(s.cpu_ms), s.cpu_ms))
                s = ranked[(len(ranked) - 1) // 2]
                flags = ("" if s.valid else " INVALID") + (" SATURATED" if s.saturated else "")
                late = sum(x.late_in + x.late_out for x in group)
                dropped = sum(x.dropped_in + x.dropped_out for x in group)
                lines.append(
                    f"| {target} | {mode} | {n} | {_f(s.cpu_ms)} ({_f(s.cpu_user_ms)} + "
                    f"{_f(s.cpu_sys_ms)}){flags} | {_f(s.server_cpu, 0)} "
                    f"| {_f(slopes[target, mode], 3)} | {_f(s.in_p50, 2)} / {_f(s.in_p99, 1)} "
                    f"| {_f(s.out_p50, 2)} / {_f(s.out_p99, 1)} | {late} | {dropped} |"
                )
    per_n: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for s, f in pairs(steps):
        per_n[s.mode][s.calls].append(s.cpu_ms / f.cpu_ms)
    ratios = []
    for mode in (m for m in modes if m in per_n):
        ns = sorted(per_n[mode])
        medians = " / ".join(f"{float(np.median(per_n[mode][n])):.2f}" for n in ns)
        ratios.append(f"{mode} {medians} (N = {' / '.join(map(str, ns))})")
    if ratios:
        lines += ["", "bridge/floor CPU, the median of each N's pairs: " + "; ".join(ratios)]
    return lines


def leaks(steps: list[Step]) -> list[str]:
    lines = ["sockets and tasks of the server (idle → during → after hang-up, and when):"]
    for s in steps:
        lines.append(
            f"  {s.target:<7}{s.mode:<6}N={s.calls:<4} sockets {s.sockets_idle} → "
            f"{s.sockets_during} → {s.sockets_after}; "
            f"tasks {s.tasks_idle} → {s.tasks_during} → {s.tasks_after} "
            f"({_f(s.settle_s)} s after hang-up); "
            f"active calls after: {s.active_after}; host busy {_f(s.host_busy, 0)}%, "
            f"generator CPU {_f(s.gen_cpu, 0)}%, "
            f"server sleeps {_f(s.sleeps, 0)}/s and preemptions {_f(s.preempted, 0)}/s, "
            f"upstream CPU {_f(s.up_cpu, 0)}%; max latency in/out {_f(s.in_max)}/"
            f"{_f(s.out_max)} ms; underruns {s.underruns}"
            + (
                f"; failures: {Counter(f.split(': ', 1)[1] for f in s.failures)}"
                if s.failures
                else ""
            )
        )
    return lines


def _git_head() -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def interpreter() -> str:
    """The Python every process of the bench runs: its version and the real path of the
    interpreter behind the venv (a distribution's optimised build or a plain source build
    differ by 10-15 % in CPU per call)."""
    base = getattr(sys, "_base_executable", sys.executable)
    return f"Python {platform.python_version()} ({os.path.realpath(base)})"


def preamble(opts: argparse.Namespace) -> str:
    return (
        f"voicebridge load bench · {time.strftime('%Y-%m-%d %H:%M:%S')} · commit {_git_head()} · "
        f"{interpreter()} · {os.cpu_count()} CPUs · load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}\n"
        f"command: {' '.join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])}\n"
        f"window {opts.duration:g} s after {opts.warmup:g} s warm-up; late = added latency > "
        f"{opts.late_ms:g} ms; valid = generator and fake-upstream p99 lateness ≤ "
        f"{opts.max_gen_lateness_ms:g} ms; servers as `voicebridge serve` runs\n"
        "core% = the server's CPU in % of one core (≥ 90 × its event loops: SATURATED, they "
        "cannot keep up); load = 1-min load average before the step; others = CPU cores busy "
        "outside the bench's three processes during the window (other work on the machine)"
    )


# Profiling ---------------------------------------------------------------------------------


def profile_summary(path: Path, top: int = 25) -> list[str]:
    """Self and inclusive shares of the samples in a py-spy `raw` (collapsed stacks) file."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        own[frames[-1]] += n
        for name in set(frames):
            incl[name] += n
    if not total:
        return ["(no samples)"]
    lines = [f"{total} samples; self time:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    lines.append("inclusive time:")
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in incl.most_common(top)]
    return lines


def py_spy(pid: int, seconds: float, out: Path) -> subprocess.Popen[Any]:
    """py-spy sampling `pid` without pausing it (its own CPU is not the server's)."""
    exe = shutil.which("py-spy") or str(Path(PYTHON).parent / "py-spy")
    return subprocess.Popen(
        [
            exe,
            "record",
            "--pid",
            str(pid),
            "--rate",
            "200",
            "--nonblocking",
            "--format",
            "raw",
            "--output",
            str(out),
            "--duration",
            str(max(1, int(seconds))),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_die_with_parent,
    )


# Main --------------------------------------------------------------------------------------


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="N = 50, 100; floor at 100; <2 min")
    parser.add_argument("--calls", type=_ints, help="N list, e.g. 50,100,200 (full: up to 600)")
    parser.add_argument("--floor-calls", type=_ints, help="N list for the floor (default: same)")
    parser.add_argument("--modes", default="pcm16,pcmu")
    parser.add_argument("--targets", default="bridge,floor")
    parser.add_argument(
        "--workers",
        type=worker_count,
        default=1,
        help="the bridge's `serve --workers` (N or auto); CPU, RSS and sockets are summed over "
        "the supervisor and its workers",
    )
    parser.add_argument("--warmup", type=float, help="seconds after all calls stream")
    parser.add_argument("--duration", type=float, help="seconds measured per step")
    parser.add_argument("--max-seconds", type=float, default=1800.0, help="cap of the whole run")
    parser.add_argument(
        "--stop-p99-ms",
        type=float,
        default=20.0,
        help="stop raising N once a bridge step's p99 passes this",
    )
    parser.add_argument("--late-ms", type=float, default=20.0)
    parser.add_argument(
        "--settle", type=float, default=10.0, help="max seconds for teardown after hang-up"
    )
    parser.add_argument("--max-gen-lateness-ms", type=float, default=5.0)
    parser.add_argument(
        "--soak", type=float, metavar="SECONDS", help="one bridge step at --calls N, leak check"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="K",
        help="run each N K times, bridge and floor alternating; report the median ratio",
    )
    parser.add_argument("--profile", action="store_true", help="py-spy the server in each step")
    parser.add_argument("--json", metavar="FILE", help="also write every step as JSON")
    parser.add_argument(
        "--report", metavar="FILE", help="print the summary and table of a --json file; no run"
    )
    parser.add_argument("--keep", metavar="DIR", help="keep raw measurements and logs here")
    opts = parser.parse_args(argv)
    preset = QUICK if opts.quick else FULL
    opts.calls = opts.calls or preset["calls"]
    opts.floor_calls = opts.floor_calls or preset["floor_calls"] or opts.calls
    opts.warmup = preset["warmup"] if opts.warmup is None else opts.warmup
    opts.duration = preset["duration"] if opts.duration is None else opts.duration
    opts.rss_every = 1.0
    if opts.soak:
        opts.duration, opts.warmup, opts.rss_every = opts.soak, max(opts.warmup, 10.0), 10.0
        opts.targets, opts.calls = "bridge", opts.calls[:1]
        opts.modes = opts.modes.split(",")[0]
    return opts


def save_steps(steps: list[Step], path: Path) -> None:
    path.write_text(json.dumps([asdict(s) | {"valid": s.valid} for s in steps], indent=1))


def load_steps(path: Path) -> list[Step]:
    """The steps of a run saved with --json (what a later version added stays at its default)."""
    names = {f.name for f in fields(Step)}
    steps = []
    for saved in json.loads(path.read_text()):
        step = Step(**{k: v for k, v in saved.items() if k in names})
        step.rss_series = [(t, r) for t, r in step.rss_series]
        steps.append(step)
    return steps


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    if opts.report:
        steps = load_steps(Path(opts.report))
        print("\n".join([*summary(steps), "", *markdown_table(steps)]))
        return 0
    print(preamble(opts), flush=True)
    work = Path(opts.keep or tempfile.mkdtemp(prefix="voicebridge-load-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    steps: list[Step] = []
    targets = opts.targets.split(",")
    print(HEADER, flush=True)
    try:
        for mode in opts.modes.split(","):
            for n in opts.calls:
                if time.monotonic() - started > opts.max_seconds:
                    print(f"(stopping: --max-seconds {opts.max_seconds:g} reached)")
                    break
                stop = False
                # Bridge and floor alternate, so that drift in the machine's load spreads
                # over both sides of each ratio.
                for target, repeat in [(t, r) for r in range(opts.repeat) for t in targets]:
                    if target == "floor" and n not in opts.floor_calls:
                        continue
                    profile = work / f"profile-{target}-{mode}-{n}.txt" if opts.profile else None
                    step = run_step(target, mode, n, opts, work, profile)
                    step.repeat = repeat
                    steps.append(step)
                    print(row(step), flush=True)
                    if profile is not None:
                        print(f"profile of {target} {mode} N={n} (py-spy; CPU above inflated):")
                        found = profile.exists()
                        print("\n".join(profile_summary(profile) if found else ["(no profile)"]))
                    # The targets' N (up to 200) always run; past them, N grows only while
                    # the bridge keeps p99 within --stop-p99-ms on a valid step.
                    if target == "bridge" and n >= 200:
                        stop = step.p99 > opts.stop_p99_ms or not step.valid
                if stop:
                    break
    finally:
        if not opts.keep:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print("\n".join(summary(steps)))
    print("\n".join(leaks(steps)))
    if not opts.soak:
        print(
            "\nThe table of docs/performance.md "
            "(the median step by CPU of each target, mode and N):"
        )
        print("\n".join(markdown_table(steps)))
    elif steps:
        print("\n".join(soak_report(steps[0])))
    if opts.json:
        save_steps(steps, Path(opts.json))
    print(f"total {time.monotonic() - started:.0f} s")
    return 0


def soak_report(step: Step) -> list[str]:
    series = step.rss_series
    lines = [f"soak: RSS every 10 s over {step.seconds:.0f} s at N={step.calls} (MiB):"]
    lines.append("  " + " ".join(f"{r:.1f}" for _, r in series))
    t, r = np.array(series).T
    slope = float(np.polyfit(t, r, 1)[0]) * 60 if len(t) > 1 else math.nan
    head = float(np.median(r[t <= 60])) if (t <= 60).any() else r[0]
    tail = float(np.median(r[t >= t[-1] - 60]))
    growth = tail - head
    flat = growth <= max(2.0, 0.02 * head)
    lines.append(
        f"  first minute {head:.1f}, last minute {tail:.1f} MiB: growth {growth:+.1f} MiB, "
        f"slope {slope:+.3f} MiB/min → {'flat' if flat else 'GROWING'}"
    )
    socket_leak = (
        step.sockets_after is not None
        and step.sockets_idle is not None
        and (step.sockets_after > step.sockets_idle + 2)
    )
    task_leak = (
        step.tasks_after is not None
        and step.tasks_idle is not None
        and (step.tasks_after > step.tasks_idle + 2)
    )
    lines.append(
        f"  after hang-up: sockets {step.sockets_after} (idle {step.sockets_idle}), tasks "
        f"{step.tasks_after} (idle {step.tasks_idle}), active calls {step.active_after} → "
        f"{'LEAK' if socket_leak or task_leak or step.active_after else 'no leak'}"
    )
    return lines


if __name__ == "__main__":
    sys.exit(main())
