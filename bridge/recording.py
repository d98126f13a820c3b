"""A call kept as a stereo WAV (8 kHz, 16-bit PCM): the caller on the left, the agent on the
right as the caller really heard it, both on the call's own timeline.

The call core hands the `Recorder` its audio facts (`bridge.call.recorder.CallRecorder`):
a caller frame is placed at its Twilio timestamp (where it arrived, if it has none or an
implausible one); an agent frame only once Twilio echoes its mark as played, and 20 ms
before the echo (a mark comes back when its frame has *finished* playing), so audio a
barge-in's `clear` dropped never reaches the file. Frames that follow each other make a
stretch, put at the earliest time its frames allow (`_Track`), so network jitter neither
punches clicks of silence into steady audio nor shifts it late, and a real gap (Twilio ran
out of audio to play) stays where it was. The recorder only buffers on
the event loop; every second the audio older than one second (final by then: echoes come
within a frame of play) goes to one writer thread of the process (`RecordingWriter`),
which decodes, interleaves and appends it to the file.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import re
import wave
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np

from bridge.audio.g711 import ULAW_SILENCE, ulaw_decode

SAMPLE_RATE = 8000
SNAP_SAMPLES = 40  # 5 ms: a frame up to this late on the end of the previous one joins it
TIMESTAMP_AHEAD_S = 0.2  # a caller frame's timestamp may put it this far past its arrival
TIMESTAMP_BEHIND_S = 5.0  # or this far before it; beyond either, its arrival is used
FINAL_AFTER_S = 1.0  # audio older than this cannot move any more: it is written out
FLUSH_EVERY_S = 1.0
DEFAULT_DIR = "recordings"
"""Where `recording: true` keeps files when `RECORDINGS_DIR` is unset (the working folder)."""

RecordingMode = Literal["local", "twilio"]
_SILENCE = bytes([ULAW_SILENCE]) * (SAMPLE_RATE * 2)
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def recording_mode(
    persona_recording: bool | str | None, recordings_dir: str | None
) -> RecordingMode | None:
    """How a call is recorded: the persona's `recording` wins (`true`, `false`, `twilio`);
    left unset, calls are recorded locally exactly when `RECORDINGS_DIR` is set."""
    if persona_recording == "twilio":
        return "twilio"
    if persona_recording is None:
        return "local" if recordings_dir else None
    return "local" if persona_recording else None


def recording_path(recordings_dir: str | None, call_sid: str, at: datetime) -> Path:
    """`{dir}/{YYYYmmddTHHMMSSZ}_{CallSid}.wav`. The CallSid comes from the stream, so
    anything but letters, digits, `_` and `-` is replaced: it can never leave the folder."""
    safe = _UNSAFE.sub("_", call_sid)[:64] or "call"
    return Path(recordings_dir or DEFAULT_DIR) / f"{at:%Y%m%dT%H%M%SZ}_{safe}.wav"


def _timestamp_ms(value: object) -> int | None:
    """Twilio sends the timestamp as a string of digits; anything else is not one."""
    if type(value) is str and 0 < len(value) <= 10 and value.isdigit():
        return int(value)
    if type(value) is int and value >= 0:
        return value
    return None


class _Track:
    """One channel: the rendered μ-law from the recorder's `base` sample on, and the stretch
    of contiguous frames still being placed.

    A frame's position is an upper bound of its true one (a frame cannot arrive before it
    was said; an echo cannot come before its frame played). Frames that follow each other
    without a gap form a stretch played back to back, so the stretch starts no later than
    the smallest of its frames' bounds, less what precedes each: late echoes that come in a
    burst do not push it later, and one early echo pulls the whole stretch back, up to where
    the stretch before it ended. A late frame starts a stretch of its own, which the next
    frame on time pulls back against the previous one; after a real gap it stays put.
    """

    __slots__ = ("anchor", "buf", "floor", "rendered", "stretch")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.floor = 0  # where the last rendered stretch ended: nothing goes before it
        self.rendered = False
        self.anchor: int | None = None  # the open stretch's start (absolute sample)
        self.stretch = bytearray()

    def place(self, pos: int, data: bytes, base: int) -> None:
        anchor = self.anchor
        if anchor is not None:
            if pos <= anchor + len(self.stretch) + SNAP_SAMPLES:
                self.anchor = max(min(anchor, pos - len(self.stretch)), self.floor)
                self.stretch += data
                return
            self.render(base)
        if self.rendered and pos <= self.floor + SNAP_SAMPLES:
            pos = self.floor  # straight on from the stretch rendered last
        self.anchor = pos
        self.stretch = bytearray(data)

    def render(self, base: int) -> None:
        """Fix the open stretch where it is and write it into the buffer."""
        anchor = self.anchor
        if anchor is None:
            return
        data = self.stretch
        self.floor = anchor + len(data)
        self.rendered = True
        self.anchor, self.stretch = None, bytearray()
        offset = anchor - base
        if offset < 0:  # older than what is written already: only its newer part fits
            data = data[-offset:]
            offset = 0
        self._fill(offset + len(data))
        self.buf[offset : offset + len(data)] = data

    def _fill(self, length: int) -> None:
        while len(self.buf) < length:
            self.buf += _SILENCE[: length - len(self.buf)]

    def take(self, n: int) -> bytes:
        self._fill(n)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


class Recorder:
    """One call's recording (a `CallRecorder`): buffers on the event loop, writes through
    `writer` off it. `close` returns when the file is complete."""

    def __init__(self, path: Path, started_at: float, writer: RecordingWriter) -> None:
        self.path = path
        self.started_at = started_at
        self._writer = writer
        self._caller = _Track()
        self._agent = _Track()
        self._pending: OrderedDict[str, str] = OrderedDict()  # mark → frame, in send order
        self._base = 0  # the sample index of both buffers' first byte
        self._flushed_at = started_at
        self.samples = 0  # written so far

    def _index(self, now: float) -> int:
        return round((now - self.started_at) * SAMPLE_RATE)

    def caller(self, payload_b64: str, now: float, timestamp: object = None) -> None:
        try:
            data = binascii.a2b_base64(payload_b64)
        except binascii.Error:
            return  # the core has rejected it already
        pos = arrived = self._index(now)
        # Twilio's timestamp counts from the stream's start, which is the call's start here
        # (give or take the `start` message's way): frames that waited in a socket (while
        # the model's session opened) still land where they were said.
        ms = _timestamp_ms(timestamp)
        if ms is not None:
            at = ms * SAMPLE_RATE // 1000
            if arrived - TIMESTAMP_BEHIND_S * SAMPLE_RATE <= at:
                if at <= arrived + TIMESTAMP_AHEAD_S * SAMPLE_RATE:
                    pos = at
        self._caller.place(pos, data, self._base)
        if now - self._flushed_at >= FLUSH_EVERY_S:
            self._flush(self._index(now - FINAL_AFTER_S))
            self._flushed_at = now

    def agent_sent(self, mark: str, payload_b64: str) -> None:
        self._pending[mark] = payload_b64

    def agent_played(self, mark: str, now: float) -> None:
        if mark not in self._pending:
            return
        frames: list[bytes] = []
        pending = self._pending
        while pending:
            name, payload = pending.popitem(last=False)
            frames.append(binascii.a2b_base64(payload))
            if name == mark:
                break
        # The echoed frame ended at `now`; any earlier one not confirmed played just before.
        pos = self._index(now) - sum(len(f) for f in frames)
        for data in frames:
            self._agent.place(pos, data, self._base)
            pos += len(data)

    def agent_cleared(self) -> None:
        self._pending.clear()

    def _flush(self, upto: int) -> None:
        n = upto - self._base
        if n <= 0:
            return
        self._caller.render(self._base)
        self._agent.render(self._base)
        caller, agent = self._caller.take(n), self._agent.take(n)
        self._base = upto
        self.samples += n
        self._writer.append(self.path, caller, agent)  # a failure surfaces at `close`

    async def close(self) -> Path:
        """Write what is left and complete the file; raises `OSError` if it could not be
        written. Frames sent and never confirmed played are not in it."""
        self._pending.clear()
        for track in (self._caller, self._agent):
            track.render(self._base)
        self._flush(max(self._base, self._caller.floor, self._agent.floor))
        # The writer runs in order: the close completes after every append, and raises the
        # first error any of them met.
        await asyncio.wrap_future(self._writer.close(self.path))
        return self.path

    @property
    def duration_s(self) -> float:
        return self.samples / SAMPLE_RATE


class RecordingWriter:
    """The process's one thread that writes recordings: appends run in submission order, so
    each file grows in order, and no disk write ever runs on the event loop."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recordings")
        self._open: dict[Path, wave.Wave_write] = {}  # touched only in the thread
        self._failed: dict[Path, Exception] = {}

    def append(self, path: Path, caller: bytes, agent: bytes) -> Future[None]:
        return self._pool.submit(self._append, path, caller, agent)

    def close(self, path: Path) -> Future[None]:
        return self._pool.submit(self._close, path)

    def _file(self, path: Path) -> wave.Wave_write:
        out = self._open.get(path)
        if out is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            out = wave.open(str(path), "wb")  # kept open across appends
            out.setnchannels(2)
            out.setsampwidth(2)
            out.setframerate(SAMPLE_RATE)
            self._open[path] = out
        return out

    def _append(self, path: Path, caller: bytes, agent: bytes) -> None:
        if path in self._failed:
            return
        try:
            frames = np.empty(2 * len(caller), dtype="<i2")
            frames[0::2] = ulaw_decode(caller)
            frames[1::2] = ulaw_decode(agent)
            self._file(path).writeframesraw(frames.tobytes())
        except Exception as exc:
            self._failed[path] = exc

    def _close(self, path: Path) -> None:
        failed = self._failed.pop(path, None)
        out = self._open.pop(path, None)
        if failed is not None:
            if out is not None:
                with contextlib.suppress(Exception):
                    out.close()
            raise failed
        (out or self._file(path)).close()  # patches the header's sizes
        self._open.pop(path, None)

    async def aclose(self) -> None:
        """Finish every write submitted (the process is ending)."""
        await asyncio.to_thread(self._pool.shutdown, True)
