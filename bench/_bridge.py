"""`voicebridge serve` for the load bench: the CLI itself, plus a count of the loop's tasks.

Runs `bridge.cli.main` unchanged. Around uvicorn's `Server.serve` it adds one task that
writes `<monotonic> <tasks>` to `--tasks-file` every second (the soak's leak check: tasks
must return to the idle count once calls hang up).

The count is taken on the loop; the file is written by a worker thread. Written on the loop,
an `open(path, "w")` that waited for the file system's journal once held every call for
0.7 s (a watchdog thread's stack dump, at 200 pcmu calls, in a step with p99 168 ms): the
bench's own file, not the bridge, had made the bridge's worst latencies.

    .venv/bin/python bench/_bridge.py [--tasks-file F] serve --port P
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from typing import Any


def _write_count(path: str, tasks: int) -> None:
    with open(path, "w") as out:
        out.write(f"{time.monotonic():.3f} {tasks}\n")


async def _count_tasks(path: str) -> None:
    while True:
        await asyncio.to_thread(_write_count, path, len(asyncio.all_tasks()))
        await asyncio.sleep(1.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks-file")
    args, rest = parser.parse_known_args()
    if args.tasks_file:
        import uvicorn

        serve = uvicorn.Server.serve
        path = args.tasks_file

        async def serve_counting(self: uvicorn.Server, *a: Any, **kw: Any) -> None:
            counter = asyncio.create_task(_count_tasks(path))
            try:
                await serve(self, *a, **kw)
            finally:
                counter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await counter

        uvicorn.Server.serve = serve_counting  # type: ignore[method-assign]
    from bridge.cli import main as cli_main

    return cli_main(rest)


if __name__ == "__main__":
    sys.exit(main())
