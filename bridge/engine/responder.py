"""The policy that decides what the assistant says or calls next.

This is where a language model plugs in. The engine asks for one response at a time,
showing the conversation so far; the answer is a list of outputs that become the
response's output items, in order.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from bridge.engine.codec import Pcm
from bridge.engine.items import Item


@dataclass(frozen=True)
class Speech:
    """A spoken assistant message: ``text`` is its transcript.

    ``audio`` (PCM16 24 kHz) is what is played; when None the server's
    :class:`~bridge.engine.voice.Voice` synthesizes it from the text.
    """

    text: str
    audio: Pcm | None = None


@dataclass(frozen=True)
class ToolCall:
    """A function call output item; ``arguments`` is the JSON text the client will parse."""

    name: str
    arguments: str = "{}"
    call_id: str | None = None
    stream_ms: int = 0
    """How long the model takes to write the arguments (0: at once). A response cancelled
    meanwhile ends the call item `incomplete`, its arguments cut where they were, and still
    sends `response.function_call_arguments.done`, as the hosted service does."""


@dataclass(frozen=True)
class Failure:
    """The response fails here, as the hosted service fails one (quota, rate limit, a server
    error): `response.done` with status `failed` and `status_details.error`."""

    type: str
    code: str
    message: str


Output = Speech | ToolCall | Failure


@dataclass(frozen=True)
class ResponseRequest:
    """What a responder is told when a response starts.

    ``conversation`` is a snapshot of the items at that moment (treat as read-only);
    ``instructions`` already includes a ``response.create`` override if the client sent one;
    ``overrides`` is that ``response`` object as the client sent it.
    """

    response_id: str
    conversation: tuple[Item, ...]
    instructions: str
    tools: tuple[Mapping[str, Any], ...] = ()
    voice: str = "alloy"
    overrides: Mapping[str, Any] = field(default_factory=dict)


class Responder(Protocol):
    def respond(self, request: ResponseRequest) -> Sequence[Output] | Awaitable[Sequence[Output]]:
        """The outputs of the response, in order; may be a coroutine (models are slow)."""
        ...
