"""The record of one response, as the protocol reports it in ``response.created``/``done``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from bridge.engine.items import Item

ResponseStatus = Literal["in_progress", "completed", "cancelled", "failed", "incomplete"]
CancelReason = Literal["turn_detected", "client_cancelled"]


@dataclass
class ResponseRecord:
    """A response's lifecycle: created ``in_progress``, then done with a final status.

    ``output`` holds the output items in order (they are conversation items too);
    ``instructions`` are the effective ones (session's, or the ``response.create`` override).
    """

    id: str
    conversation_id: str
    instructions: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    status: ResponseStatus = "in_progress"
    status_details: dict[str, Any] | None = None
    output: list[Item] = field(default_factory=list)
    usage: dict[str, Any] | None = None

    @property
    def done(self) -> bool:
        return self.status != "in_progress"
