"""The conversation: the items the service keeps and clients refer to by id.

Items are mutable records because the protocol mutates them in place: a transcript arrives
after the item, truncation cuts an assistant item's audio, a cancelled item ends
``incomplete``. Everything else reads them; only the session writes them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from bridge.audio_format import AudioFormat
from bridge.engine.codec import ENGINE_RATE, Pcm

ItemStatus = Literal["completed", "incomplete", "in_progress"]
Role = Literal["user", "assistant", "system"]
ContentType = Literal["input_text", "input_audio", "output_text", "output_audio"]


@dataclass
class ContentPart:
    """One content part of a message.

    ``pcm`` holds caller audio (PCM16 at 24 kHz) of an ``input_audio`` part; ``audio`` holds
    the wire bytes of an ``output_audio`` part exactly as sent to the client, in ``format``,
    so its length is the length the client knows about (and may truncate to).
    """

    type: ContentType
    text: str | None = None
    transcript: str | None = None
    pcm: Pcm | None = None
    audio: bytes = b""
    format: AudioFormat | None = None
    truncated: bool = False
    """Set by ``conversation.item.truncate``; a part still streaming stops growing there."""

    @property
    def audio_ms(self) -> float:
        """Duration of this part's audio in milliseconds (0 for text parts)."""
        if self.type == "output_audio" and self.format is not None:
            return self.format.duration_ms(len(self.audio))
        if self.pcm is not None:
            return len(self.pcm) * 1000 / ENGINE_RATE
        return 0.0


@dataclass
class MessageItem:
    id: str
    role: Role
    content: list[ContentPart]
    status: ItemStatus = "completed"
    type: Literal["message"] = "message"

    @property
    def text(self) -> str:
        """The words of the message: typed text or (possibly partial) audio transcript."""
        return " ".join(p.text or p.transcript or "" for p in self.content).strip()


@dataclass
class FunctionCallItem:
    id: str
    call_id: str
    name: str
    arguments: str = ""
    status: ItemStatus = "completed"
    type: Literal["function_call"] = "function_call"


@dataclass
class FunctionCallOutputItem:
    id: str
    call_id: str
    output: str
    status: ItemStatus = "completed"
    type: Literal["function_call_output"] = "function_call_output"


Item = MessageItem | FunctionCallItem | FunctionCallOutputItem


@dataclass
class Conversation:
    """The ordered items of the default conversation."""

    id: str
    items: list[Item] = field(default_factory=list)

    def __iter__(self) -> Iterator[Item]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def get(self, item_id: str) -> Item | None:
        return next((item for item in self.items if item.id == item_id), None)

    def add(self, item: Item, previous_item_id: str | None = None) -> str | None:
        """Insert after ``previous_item_id`` (``"root"`` = first; None = last).

        Returns the id of the item now before it, which events report as ``previous_item_id``.
        Raises KeyError when ``previous_item_id`` names no item.
        """
        if previous_item_id is None:
            index = len(self.items)
        elif previous_item_id == "root":
            index = 0
        else:
            index = next(
                (i + 1 for i, other in enumerate(self.items) if other.id == previous_item_id),
                -1,
            )
            if index < 0:
                raise KeyError(previous_item_id)
        self.items.insert(index, item)
        return self.items[index - 1].id if index > 0 else None

    def delete(self, item_id: str) -> Item | None:
        item = self.get(item_id)
        if item is not None:
            self.items.remove(item)
        return item

    def function_call(self, call_id: str) -> FunctionCallItem | None:
        return next(
            (i for i in self.items if isinstance(i, FunctionCallItem) and i.call_id == call_id),
            None,
        )


def empty_pcm() -> Pcm:
    return np.zeros(0, dtype=np.int16)
