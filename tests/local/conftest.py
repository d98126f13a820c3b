"""Fixtures for calls against the built-in local engine (real VAD, ASR, TTS, no network)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bridge.persona import (
    EndCallTool,
    Persona,
    Tools,
    TransferCallTool,
    TransferTarget,
    WebSearchTool,
)

GREETING = "Hello, thanks for calling. How can I help you today?"

SEARCH_PERSONA = Persona(
    name="local-test",
    business_name="voicebridge",
    default=True,
    instructions="You answer the phone. Keep answers short.",
    greeting=GREETING,
    tools=Tools(
        web_search=WebSearchTool(), transfer_call=TransferCallTool(), end_call=EndCallTool()
    ),
    transfer_targets={"operator": TransferTarget(number="+15550009999", description="people")},
)
"""A persona that offers every tool, so each intent of the local policy has somewhere to go."""


async def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
