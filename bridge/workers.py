"""`voicebridge serve --workers N`: a supervisor and N worker processes on one port.

One bridge is one event loop on one core. With `--workers N` (N > 1) the `serve` process
becomes a supervisor: it binds N listening sockets on the same address with `SO_REUSEPORT`
(so a busy port is reported before anything starts, and the kernel spreads new connections
evenly over them), then starts one worker per socket (`python -m bridge.worker`, the socket
handed down as an inherited file descriptor). Each worker is a whole bridge with its own
calls. The supervisor itself serves nothing and holds no call:

- a worker that dies is logged (`worker_exited`) and started again on the same socket, which
  the supervisor kept open, so connections that arrive meanwhile wait in its queue instead of
  being refused; a worker that keeps dying soon after it starts is restarted after a growing
  pause (`RestartPolicy`), and one that cannot stay up at all ends the group (exit 1);
- SIGTERM or SIGINT starts a drain in every worker (SIGTERM forwarded: `/readyz` 503, busy
  TwiML, live calls go on up to `DRAIN_TIMEOUT_SECONDS`); nothing is restarted from then on;
  each worker's socket is closed as it exits so new connections go to those still draining;
  once all have exited the supervisor exits 0 (those still running at the timeout plus
  `DRAIN_MARGIN_S` are killed). A second signal is forwarded as SIGINT (uvicorn's shutdown).
- metrics: every worker writes its values to files in a folder the supervisor creates and
  removes (`PROMETHEUS_MULTIPROC_DIR`, see `bridge.metrics`); a dead worker's live gauges are
  dropped from it (`mark_process_dead`).

Workers run in process groups of their own (a terminal's Ctrl-C reaches the supervisor only,
which forwards it once; what a dead worker leaves in its group is killed) and are sent
SIGTERM by the kernel if the supervisor dies (`bridge.worker`). Hooks (`SupervisorHook`) run
in the supervisor before the first worker starts and at its exit, and may give the workers
more environment variables.

The supervisor is a plain blocking loop (no event loop): it polls its children every 0.1 s.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Protocol

from bridge.logs import get_logger
from bridge.server import listen_socket

log = get_logger("voicebridge.workers")

POLL_S = 0.1
DRAIN_MARGIN_S = 10.0
"""How long past `DRAIN_TIMEOUT_SECONDS` the supervisor waits for draining workers (their own
shutdown after the drain) before it kills those left."""


# --- restarts (pure) --------------------------------------------------------------------------


@dataclass
class RestartPolicy:
    """When to start a worker again after it exited, from when it started and exited.

    A worker that ran `quick_s` or longer is restarted at once. One that exits sooner is
    restarted at once the first time, then after `first_pause_s`, doubled each time it dies
    quickly again, up to `max_pause_s`. After `give_up_after` quick exits in a row the worker
    cannot stay up (a bad setting every worker trips on: a busy `METRICS_PORT`, a missing
    file): `after_exit` returns None and the group stops.
    """

    quick_s: float = 10.0
    first_pause_s: float = 0.5
    max_pause_s: float = 5.0
    give_up_after: int = 6
    _started: dict[int, float] = field(default_factory=dict)
    _quick_exits: dict[int, int] = field(default_factory=dict)

    def started(self, worker: int, now: float) -> None:
        self._started[worker] = now

    def after_exit(self, worker: int, now: float) -> float | None:
        """Seconds to wait before starting `worker` again, or None to give up."""
        lived = now - self._started.get(worker, now)
        if lived >= self.quick_s:
            self._quick_exits[worker] = 0
            return 0.0
        count = self._quick_exits.get(worker, 0) + 1
        self._quick_exits[worker] = count
        if count >= self.give_up_after:
            return None
        if count == 1:
            return 0.0
        return min(self.max_pause_s, self.first_pause_s * 2 ** (count - 2))


# --- sockets ----------------------------------------------------------------------------------


def listen_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """`count` listening sockets on `host:port`, all with `SO_REUSEPORT` (and `SO_REUSEADDR`),
    inheritable. Raises OSError when the address is taken, even by another group of ours: a
    socket without `SO_REUSEPORT` is bound first and let go, which a listener there refuses."""
    with listen_socket(host, port) as probe:
        port = probe.getsockname()[1]  # port 0: the one the kernel chose, for all of them
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sockets.append(listen_socket(host, port, reuse_port=True))
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


METRICS_PREFIX = "voicebridge-metrics-"


def metrics_folder() -> str:
    """A fresh folder for the group's metric files, named after this process, in shared
    memory where there is some (so that `/metrics` reads no disk). Folders of supervisors that
    no longer run (killed: they could not remove theirs) are removed first."""
    shm = "/dev/shm"
    base = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else tempfile.gettempdir()
    with contextlib.suppress(OSError):
        for name in os.listdir(base):
            owner = name.removeprefix(METRICS_PREFIX).split("-", 1)[0]
            if name.startswith(METRICS_PREFIX) and owner.isdigit() and not _alive(int(owner)):
                shutil.rmtree(os.path.join(base, name), ignore_errors=True)
    return tempfile.mkdtemp(prefix=f"{METRICS_PREFIX}{os.getpid()}-", dir=base)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- the supervisor ---------------------------------------------------------------------------


class SupervisorHook(Protocol):
    """Something the supervisor runs around the workers' lives (e.g. a state host)."""

    def start(self) -> Mapping[str, str]:
        """Before the first worker starts; returns environment variables for the workers."""
        ...

    def stop(self) -> None:
        """At the supervisor's exit, once every worker has ended (also after a failure)."""
        ...


@dataclass
class _Worker:
    index: int  # 1-based
    sock: socket.socket
    proc: subprocess.Popen[bytes] | None = None
    restart_at: float | None = None  # monotonic time of a pending restart


def worker_command(index: int, fd: int, host: str, port: int, persona: str | None) -> list[str]:
    """The command line of worker `index` serving the inherited socket `fd`."""
    command = [sys.executable, "-m", "bridge.worker", "--index", str(index), "--fd", str(fd)]
    command += ["--host", host, "--port", str(port), "--parent", str(os.getpid())]
    return command + (["--persona", persona] if persona else [])


class Supervisor:
    """Starts, watches, restarts and drains the workers (see the module's docstring).

    `command(index, fd)` is a worker's command line; `worker_env` and the hooks' variables
    are added to the supervisor's own environment for every worker.
    """

    def __init__(
        self,
        sockets: Sequence[socket.socket],
        command: Callable[[int, int], list[str]],
        drain_timeout_s: float,
        worker_env: Mapping[str, str] | None = None,
        hooks: Sequence[SupervisorHook] = (),
        policy: RestartPolicy | None = None,
    ) -> None:
        self.workers = [_Worker(i + 1, sock) for i, sock in enumerate(sockets)]
        self.command = command
        self.drain_timeout_s = drain_timeout_s
        self.worker_env = dict(worker_env or {})
        self.hooks = list(hooks)
        self.policy = policy or RestartPolicy()
        self.metrics_dir = ""
        self._signals: list[int] = []  # received, not yet acted on
        self._draining = False
        self._forced = False

    def run(self) -> int:
        """Serve until a signal and the drain end (0), or a worker cannot stay up (1)."""
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        started_hooks: list[SupervisorHook] = []
        self.metrics_dir = metrics_folder()
        try:
            env = {**os.environ, **self.worker_env, "PROMETHEUS_MULTIPROC_DIR": self.metrics_dir}
            for hook in self.hooks:
                env.update(hook.start())
                started_hooks.append(hook)
            self._env = env
            for worker in self.workers:
                self._start(worker)
            log.info("workers_started", count=len(self.workers), pid=os.getpid())
            return self._loop()
        finally:
            self._kill_all()
            for hook in reversed(started_hooks):
                try:
                    hook.stop()
                except Exception as exc:
                    log.error("supervisor_hook_failed", error=repr(exc))
            for worker in self.workers:
                worker.sock.close()
            shutil.rmtree(self.metrics_dir, ignore_errors=True)
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        self._signals.append(sig)

    def _loop(self) -> int:
        deadline = float("inf")
        while True:
            while self._signals:
                sig = self._signals.pop(0)
                if not self._draining:
                    self._draining = True
                    deadline = time.monotonic() + self.drain_timeout_s + DRAIN_MARGIN_S
                    log.info("workers_draining", signal=signal.Signals(sig).name)
                    self._send_all(signal.SIGTERM)
                elif not self._forced:
                    self._forced = True
                    self._send_all(signal.SIGINT)
            now = time.monotonic()
            for worker in self.workers:
                if self._reap(worker, now) is None:
                    return 1
                if worker.restart_at is not None and now >= worker.restart_at:
                    worker.restart_at = None
                    self._start(worker)
            if self._draining:
                if all(w.proc is None for w in self.workers):
                    log.info("workers_stopped", count=len(self.workers))
                    return 0
                if now >= deadline:
                    log.warning("workers_killed", reason="drain did not end in time")
                    return 0  # `run` kills what is left
            time.sleep(POLL_S)

    def _reap(self, worker: _Worker, now: float) -> bool | None:
        """Notice a worker's exit; False if none, None if the group must stop."""
        proc = worker.proc
        if proc is None or proc.poll() is None:
            return False
        worker.proc = None
        code = proc.returncode
        self._dead(proc.pid)
        if self._draining:
            log.info("worker_stopped", worker=worker.index, pid=proc.pid, exit_code=code)
            worker.sock.close()  # new connections go to the workers still draining
            return True
        pause = self.policy.after_exit(worker.index, now)
        how = {"signal": signal.Signals(-code).name} if code < 0 else {"exit_code": code}
        log.error("worker_exited", worker=worker.index, pid=proc.pid, restart_in_s=pause, **how)
        if pause is None:
            log.error("workers_failing", worker=worker.index, reason="it keeps exiting at start")
            return None
        worker.restart_at = now + pause
        return True

    def _start(self, worker: _Worker) -> None:
        fd = worker.sock.fileno()
        worker.proc = subprocess.Popen(
            self.command(worker.index, fd), env=self._env, pass_fds=[fd], process_group=0
        )
        self.policy.started(worker.index, time.monotonic())
        log.info("worker_started", worker=worker.index, pid=worker.proc.pid)

    def _send_all(self, sig: int) -> None:
        for worker in self.workers:
            if worker.proc is not None and worker.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.send_signal(sig)

    def _kill_all(self) -> None:
        for worker in self.workers:
            proc, worker.proc = worker.proc, None
            if proc is None:
                continue
            if proc.poll() is None:
                log.warning("worker_killed", worker=worker.index, pid=proc.pid)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait()
            self._dead(proc.pid)

    def _dead(self, pid: int) -> None:
        """After a worker's exit: what it left in its process group (the local engine's
        recognizer processes, when it was killed) goes too, and its live gauges."""
        from prometheus_client import multiprocess

        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)

        with contextlib.suppress(OSError):
            multiprocess.mark_process_dead(pid, self.metrics_dir)
