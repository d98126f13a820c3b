"""`voicebridge serve` as real processes for the tests of state shared between them: each
on its own loopback port, its JSON log lines read from a file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.conftest import free_port, wait_until, wait_until_serving


class BridgeProcess:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/media-stream"

    def events(self, name: str) -> list[dict[str, Any]]:
        lines = self.log.read_text(errors="replace").splitlines()
        found = []
        for line in lines:
            if f'"{name}"' in line:
                entry = json.loads(line)
                if entry.get("event") == name:
                    found.append(entry)
        return found

    async def wait_events(self, name: str, count: int = 1, timeout: float = 5.0) -> list[Any]:
        """The lines of `name` once `count` are written (the process writes its log from a
        thread of its own, a moment after the request that caused it was answered)."""
        await wait_until(lambda: len(self.events(name)) >= count, timeout, f"{count} {name}")
        return self.events(name)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def bridge_process(
    env_extra: dict[str, str], folder: Path, port: int | None = None, *args: str
) -> Iterator[BridgeProcess]:
    """`python -m bridge serve` on a loopback port with the test's settings only."""
    port = port or free_port()
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / f"bridge-{port}.log"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI", "AZURE", "TWILIO", "REDIS", "MAX_", "PUBLIC_URL"))
    }
    env.update({"LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1", **env_extra})
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bridge",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                *args,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=folder,
        )
    bridge = BridgeProcess(proc, port, log)
    try:
        wait_until_serving(bridge.base_url, proc, bridge.output)
        yield bridge
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
