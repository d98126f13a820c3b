"""One worker of `voicebridge serve --workers N` (`bridge.workers` starts it; not for people).

`python -m bridge.worker --index I --fd FD --host H --port P --parent PID [--persona FILE]`
serves the listening socket inherited as `FD` exactly as a single `serve` serves its own:
the same settings and personas (the same environment and working folder as the supervisor,
which has already checked them), `create_app`, and `DrainingServer` (SIGTERM drains). Every
log line carries `"worker": I`. The kernel sends it SIGTERM when the supervisor dies.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import socket
import sys
from collections.abc import Sequence

from bridge.app import create_app
from bridge.cli import load_for_serve
from bridge.logs import configure_logging, get_logger
from bridge.server import DrainingServer, uvicorn_config

log = get_logger("voicebridge.worker")

PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Have the kernel send SIGTERM when the supervisor dies (Linux); exit at once if it
    already has (it died before this could be asked)."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:
        sys.exit(0)


class WorkerServer(DrainingServer):
    """`DrainingServer` that says when this worker accepts connections (`worker_serving`)."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.should_exit:
            log.info("worker_serving", pid=os.getpid())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bridge.worker", description=__doc__)
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--persona")
    args = parser.parse_args(argv)
    die_with_parent(args.parent)

    loaded = load_for_serve(args.persona)
    if isinstance(loaded, int):
        return loaded
    settings, book = loaded
    configure_logging(
        settings.LOG_FORMAT, settings.LOG_LEVEL, settings.secrets(), static={"worker": args.index}
    )
    listener = socket.socket(fileno=args.fd)
    app = create_app(settings, book)
    config = uvicorn_config(app, args.host, args.port)
    server = WorkerServer(config, app.state.calls, settings.DRAIN_TIMEOUT_SECONDS)
    server.run(sockets=[listener])
    return 0


if __name__ == "__main__":
    sys.exit(main())
