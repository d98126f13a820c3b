"""What one call reports to the business: its events, its record, its recording.

The call's start (`bridge.stream_start`) makes one `CallReport` per call (`for_call`), hands
the call core its recorder and calls `started` once the call is logged as started; the
adapter (`bridge.stream.CallRuntime`) feeds it what the core emits (transcript lines,
`tool_call` lines, tool outputs) and calls `ended` once `finish` has run. It decides nothing
about the call; it only turns the call's facts into the `call.started` and `call.ended`
events (`bridge.call_events`) and the recording's file (`bridge.recording`) or Twilio's
recording of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bridge.call.record import CallRecord
from bridge.caller_text import clean_sid
from bridge.errors import describe
from bridge.logs import get_logger
from bridge.persona import Persona
from bridge.recording import Recorder, recording_mode, recording_path

if TYPE_CHECKING:
    from bridge.call.core import Call
    from bridge.call_events import CallEvents
    from bridge.services import Services
    from bridge.tools.call_control import TwilioCallControl

log = get_logger("voicebridge.call_report")

RECORDING_STATUS_PATH = "/recording-status"


class CallReport:
    def __init__(
        self,
        record: CallRecord,
        events: CallEvents | None,
        urls: tuple[str, ...],
        recorder: Recorder | None = None,
        twilio_recording: tuple[TwilioCallControl, str] | None = None,
    ) -> None:
        self.record = record
        self.events = events
        self.urls = urls
        self.recorder = recorder
        self._twilio_recording = twilio_recording  # (call control, status callback URL)
        self._asking: asyncio.Task[None] | None = None

    @classmethod
    def for_call(
        cls,
        services: Services,
        persona: Persona,
        *,
        call_sid: str,
        caller: str,
        called: str,
        at: datetime,
        started_at: float,
    ) -> CallReport:
        """The report of a call starting now (`at` wall clock, `started_at` monotonic, the
        call core's origin of time, which the recording's timeline shares)."""
        settings = services.settings
        events = services.call_events
        record = CallRecord(call_sid, caller, called, persona.name, at)
        mode = recording_mode(persona.recording, settings.RECORDINGS_DIR)
        recorder = twilio = None
        if mode == "local" and services.recordings is not None:
            path = recording_path(settings.RECORDINGS_DIR, call_sid, at)
            recorder = Recorder(path, started_at, services.recordings)
        elif mode == "twilio" and services.control is not None:
            callback = settings.public_http_url(RECORDING_STATUS_PATH)
            if callback is not None:
                twilio = (services.control, f"{callback}?persona={persona.name}")
        urls = events.urls(persona.webhook_url) if events is not None else ()
        return cls(record, events, urls, recorder, twilio)

    # What the adapter feeds it -------------------------------------------------------------

    def transcript_line(self, fields: dict[str, Any]) -> None:
        self.record.transcript_line(fields)

    def tool_call(self, fields: dict[str, Any]) -> None:
        self.record.tool_call(fields)

    def tool_result(self, name: str, output: str) -> None:
        self.record.tool_result(name, output)

    # The call's start and end ----------------------------------------------------------------

    def started(self) -> None:
        """`call.started`; with `recording: twilio`, Twilio is asked to record (off the
        event loop; the call never waits for it)."""
        self._send("call.started", self.record.started())
        if self._twilio_recording is not None:
            self._asking = asyncio.create_task(self._ask_twilio(), name="twilio-recording")

    async def _ask_twilio(self) -> None:
        assert self._twilio_recording is not None
        control, callback = self._twilio_recording
        outcome = await control.start_recording(self.record.call_sid, callback)
        fields: dict[str, Any] = {"ok": outcome.ok, "http_status": outcome.http_status}
        if outcome.error:
            fields["error"] = outcome.error
        (log.info if outcome.ok else log.warning)("twilio_recording", **fields)

    async def ended(self, call: Call) -> None:
        """`call.ended`, once the recording's file is complete (its path is in the event)."""
        recording: dict[str, Any] | None = None
        if self.recorder is not None:
            try:
                path = await self.recorder.close()
            except Exception as exc:  # a full disk, a folder it may not write
                log.error("recording_failed", path=str(self.recorder.path), error=describe(exc))
            else:
                recording = {
                    "source": "local",
                    "path": str(path.resolve()),
                    "format": "wav",
                    "channels": ["caller", "agent"],
                    "duration_s": round(self.recorder.duration_s, 3),
                }
        elif self._twilio_recording is not None:
            recording = {"source": "twilio", "status": "pending"}
        if self._asking is not None and not self._asking.done():
            self._asking.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._asking
        data = self.record.ended(
            reason=call.end_reason or "error",
            duration_s=time.monotonic() - call.started_at,
            ended_at=datetime.now(UTC),
            recording=recording,
        )
        self._send("call.ended", data)

    def _send(self, event_type: str, data: dict[str, Any]) -> None:
        if self.events is not None and self.urls:
            self.events.send(event_type, self.record.call_sid, data, self.urls)


def report_twilio_recording(services: Services, form: dict[str, str], persona_name: str) -> None:
    """Twilio's recording status callback (`POST /recording-status`, signed): a completed
    recording becomes a `call.recording` event to the call's persona's receivers."""
    call_sid = clean_sid(form.get("CallSid"))  # signed in signed mode; cleaned for the logs
    status = form.get("RecordingStatus", "")
    log.info(
        "recording_status",
        call_sid=call_sid,
        recording_sid=form.get("RecordingSid", ""),
        status=status,
    )
    events = services.call_events
    if status != "completed" or events is None:
        return
    persona = services.personas.get(persona_name) if persona_name else None
    urls = events.urls(persona.webhook_url if persona is not None else None)
    duration = form.get("RecordingDuration", "")
    data = {
        "source": "twilio",
        "recording_sid": form.get("RecordingSid", ""),
        "url": form.get("RecordingUrl", ""),
        "duration_s": float(duration) if duration.isdigit() else None,
        "channels": int(form["RecordingChannels"])
        if form.get("RecordingChannels", "").isdigit()
        else None,
        "persona": persona.name if persona is not None else None,
    }
    events.send("call.recording", call_sid, data, urls)
