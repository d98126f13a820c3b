"""One call's record for the business: who called whom, what was said, what the agent did.

The adapter feeds it what the call core already emits (every `TranscriptLine` effect and every
`tool_call` log line) and, at the end, how the call ended; it builds the `data` of the
`call.started` and `call.ended` events (`bridge.call_events`). Pure: no I/O, no clock of its
own (times are passed in).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

TOOL_RESULT_CHARS = 4096
"""A tool's output is kept up to this many characters in the record (the rest is cut)."""


def iso(at: datetime) -> str:
    """UTC, ISO 8601 with milliseconds and `Z`, as every time in the events is written."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class CallRecord:
    call_sid: str
    caller: str
    called: str
    persona: str
    started_at: datetime
    transcript: list[dict[str, Any]] = field(default_factory=list)
    tools: list[dict[str, Any]] = field(default_factory=list)

    def started(self) -> dict[str, Any]:
        """The `data` of `call.started`."""
        return {
            "from": self.caller,
            "to": self.called,
            "persona": self.persona,
            "started_at": iso(self.started_at),
        }

    def transcript_line(self, fields: dict[str, Any]) -> None:
        """A line of the transcript, in conversation order. A late caller transcription
        fills in the line released earlier without text."""
        if fields.get("late"):
            for line in reversed(self.transcript):
                if line["item_id"] == fields.get("item_id") and not line["text"]:
                    line["text"] = fields.get("text", "")
                    line.pop("transcription_failed", None)
                    return
        line: dict[str, Any] = {
            "role": fields.get("role"),
            "text": fields.get("text", ""),
            "item_id": fields.get("item_id"),
        }
        if line["role"] == "agent":
            line["interrupted"] = bool(fields.get("interrupted", False))
            line["played_ms"] = fields.get("played_ms", 0)
        elif fields.get("transcription_failed"):
            line["transcription_failed"] = True
        self.transcript.append(line)

    def tool_call(self, fields: dict[str, Any]) -> None:
        """A `tool_call` log line: name, arguments, outcome, duration."""
        entry: dict[str, Any] = {
            "name": fields.get("name"),
            "arguments": fields.get("arguments"),
            "ok": bool(fields.get("ok")),
            "duration_ms": fields.get("duration_ms"),
            "result": None,
        }
        if fields.get("error"):
            entry["error"] = fields["error"]
        self.tools.append(entry)

    def tool_result(self, name: str, output: str) -> None:
        """The output the model got from the latest call of `name` (cut to
        `TOOL_RESULT_CHARS`)."""
        for entry in reversed(self.tools):
            if entry["name"] == name and entry["result"] is None:
                cut = len(output) - TOOL_RESULT_CHARS
                if cut > 0:
                    output = output[:TOOL_RESULT_CHARS] + f"...[cut {cut} chars]"
                entry["result"] = output
                return

    def ended(
        self,
        *,
        reason: str,
        duration_s: float,
        ended_at: datetime,
        recording: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """The `data` of `call.ended`."""
        return {
            **self.started(),
            "ended_at": iso(ended_at),
            "reason": reason,
            "duration_s": round(duration_s, 3),
            "transcript": list(self.transcript),
            "tool_calls": list(self.tools),
            "recording": recording,
        }
