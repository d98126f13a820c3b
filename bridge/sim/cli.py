"""`voicebridge call`: a simulated phone call against a running bridge, from the terminal.

It does what Twilio does (the signed webhook when `TWILIO_AUTH_TOKEN` is set, the TwiML's
`<Stream>` opened with its parameters on the same host and port as `--url`, 20 ms μ-law
frames in real time, marks echoed as audio plays), and what a caller does: listens to the
greeting, says each `--say` line (espeak-ng, 8 kHz) or plays `--wav`, waits for the agent
between lines, presses `--dtmf` keys, then hangs up.

The transcript it prints has the caller's lines as sent and the agent's lines **as this
simulator heard them**: only audio crosses a phone line, so each agent turn is run through
the local engine's recogniser (pocketsphinx, general model). Expect recognition errors in
those lines; the bridge's own log has the agent's exact words.
"""

from __future__ import annotations

import asyncio
import time
import wave
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import numpy as np
from scipy.signal import resample_poly

from bridge.audio import Resampler8kTo24k, ulaw_decode, ulaw_encode
from bridge.sim.audio import write_wav
from bridge.sim.errors import SimError, StreamClosed
from bridge.sim.media_stream import TwilioMediaStream
from bridge.sim.webhook import place_call

DEFAULT_URL: Final = "http://127.0.0.1:8080"
GREETING_TIMEOUT_S: Final = 10.0
"""How long to wait for the agent to speak first before the caller talks anyway."""
ANSWER_TIMEOUT_S: Final = 20.0
"""How long to wait for any answer after a caller line (a slow tool included)."""
QUIET_S: Final = 1.5
"""Silence after the agent's audio that ends its turn: long enough to cover the gap between a
spoken filler and a tool's answer, short enough to keep the call moving."""
DTMF_GAP_S: Final = 0.3


@dataclass
class CallReport:
    """What happened on the call, for the summary (and for tests)."""

    call_sid: str = ""
    caller_lines: list[str] = field(default_factory=list)
    agent_lines: list[str] = field(default_factory=list)
    first_audio_s: float | None = None
    """From the stream's start to the first agent audio the caller heard."""
    reply_latencies_s: list[float] = field(default_factory=list)
    """Per caller line: from its last frame to the agent's first audio after it."""
    barge_ins: int = 0
    duration_s: float = 0.0
    heard_ms: float = 0.0
    ended_by: str = "caller"

    @property
    def turns(self) -> int:
        return len(self.caller_lines)


Printer = Callable[[str], None]


def _media_count(stream: TwilioMediaStream) -> int:
    return sum(1 for r in stream.received if r.message and r.message.get("event") == "media")


def _to_engine_rate(ulaw: bytes) -> np.ndarray:
    return Resampler8kTo24k().process(ulaw_decode(ulaw))


def read_wav_ulaw(path: str | Path) -> bytes:
    """A mono or stereo PCM16 WAV at any rate → 8 kHz μ-law (the first channel)."""
    with wave.open(str(path), "rb") as f:
        if f.getsampwidth() != 2:
            raise SimError(f"{path}: only 16-bit PCM WAV files are supported")
        rate, channels = f.getframerate(), f.getnchannels()
        pcm = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2")[::channels]
    if rate != 8000:
        from math import gcd

        g = gcd(8000, rate)
        pcm = np.clip(
            np.rint(resample_poly(pcm.astype(np.float64), 8000 // g, rate // g)), -32768, 32767
        )
    return ulaw_encode(pcm.astype(np.int16))


def tts_ulaw(text: str) -> bytes:
    """`text` as a caller says it: espeak-ng at 8 kHz, μ-law, with a short lead-in pause."""
    from bridge.engine.tts import CALLER_WPM, speak

    pcm = speak(text, rate=8000, wpm=CALLER_WPM)
    return ulaw_encode(np.concatenate([np.zeros(1600, np.int16), pcm]))


class _Listener:
    """Waits for agent turns and transcribes what the caller heard in each."""

    def __init__(self, stream: TwilioMediaStream, report: CallReport, out: Printer) -> None:
        self.stream, self.report, self.out = stream, report, out
        self._heard_upto = 0
        self._recognizer = None

    async def agent_turn(self, timeout: float, since: float | None = None) -> bool:
        """Wait for the agent to speak and finish; print what was heard. False on silence."""
        stream = self.stream
        baseline = self._heard_upto
        deadline = time.monotonic() + timeout
        while len(stream.heard_audio()) <= baseline:
            if stream.closed.done() or time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.02)
        if since is not None:
            self.report.reply_latencies_s.append(time.monotonic() - since)
        while True:
            count = _media_count(stream)
            await stream.wait_playback_idle()
            await asyncio.sleep(QUIET_S)
            if _media_count(stream) == count and stream.buffered_ms <= 0:
                break
        heard = stream.heard_audio()
        self._heard_upto = len(heard)
        await self._print_agent(heard[baseline:])
        return True

    async def _print_agent(self, ulaw: bytes) -> None:
        from bridge.engine.asr import Recognizer

        if self._recognizer is None:
            self._recognizer = Recognizer()
        try:
            hearing = await self._recognizer.recognise(_to_engine_rate(ulaw))
            text = hearing.transcript or "…"
        except Exception as exc:  # recognition is a courtesy; the call goes on
            text = f"(not recognised: {type(exc).__name__})"
        self.report.agent_lines.append(text)
        self.out(f"agent  ~ {text}   [{len(ulaw) / 8000:.1f} s heard]")


def _stream_url_on(base_url: str, stream_url: str) -> str:
    """The TwiML's stream path on the host and port the user gave (the TwiML may name a
    public host that this machine cannot reach)."""
    base, stream = urlsplit(base_url), urlsplit(stream_url)
    scheme = "wss" if base.scheme == "https" else "ws"
    return urlunsplit((scheme, base.netloc, stream.path, "", ""))


async def run_call(
    url: str = DEFAULT_URL,
    *,
    says: Sequence[str] = (),
    wav: str | None = None,
    dtmf: str = "",
    record: str | None = None,
    auth_token: str | None = None,
    out: Printer = print,
) -> CallReport:
    """Place one call and play the caller's part; returns the report."""
    report = CallReport()
    target = await place_call(url, auth_token=auth_token)
    report.call_sid = target.call_sid
    out(f"calling {url} (CallSid {target.call_sid})")
    stream = TwilioMediaStream(
        target, auth_token=auth_token, connect_url=_stream_url_on(url, target.url)
    )
    started = time.monotonic()
    await stream.connect()
    listener = _Listener(stream, report, out)
    try:
        if await listener.agent_turn(GREETING_TIMEOUT_S):
            first = stream.played[0].start if stream.played else None
            if first is not None and stream.started_at is not None:
                report.first_audio_s = first - stream.started_at
        lines: list[tuple[str, bytes]] = [(text, tts_ulaw(text)) for text in says]
        if wav:
            lines.append((f"[{wav}]", read_wav_ulaw(wav)))
        for text, audio in lines:
            if stream.closed.done():
                break
            out(f"caller : {text}")
            report.caller_lines.append(text)
            stream.say(audio)
            utterance = await stream.wait_said()
            said_at = utterance.finished_at if utterance and utterance.finished_at else None
            if not await listener.agent_turn(ANSWER_TIMEOUT_S, since=said_at):
                out("agent  : (no answer)")
        for digit in dtmf:
            if stream.closed.done():
                break
            out(f"caller : [DTMF {digit}]")
            await stream.send_dtmf(digit)
            await asyncio.sleep(DTMF_GAP_S)
        if dtmf:
            await listener.agent_turn(ANSWER_TIMEOUT_S, since=time.monotonic())
    except StreamClosed:
        pass
    finally:
        report.barge_ins = len(stream.clears)
        report.heard_ms = stream.played_ms_total
        if record:
            write_wav(record, stream.heard_audio())
        if stream.closed.done():
            report.ended_by = "bridge"
        await stream.aclose(raise_errors=False)
        report.duration_s = time.monotonic() - started
    return report


def summary(report: CallReport, record: str | None = None) -> str:
    """The closing lines: turns, time to first agent audio, replies, barge-ins."""

    def secs(value: float | None) -> str:
        return f"{value:.2f} s" if value is not None else "n/a"

    latencies = report.reply_latencies_s
    mean = sum(latencies) / len(latencies) if latencies else None
    lines = [
        "--- call summary ---",
        f"call sid:                 {report.call_sid}",
        f"turns (caller lines):     {report.turns}",
        f"time to first agent audio: {secs(report.first_audio_s)}",
        f"agent reply latency:      {secs(mean)} mean over {len(latencies)}",
        f"barge-ins:                {report.barge_ins}",
        f"agent audio heard:        {report.heard_ms / 1000:.1f} s",
        f"duration:                 {report.duration_s:.1f} s (ended by {report.ended_by})",
    ]
    if record:
        lines.append(f"recording:                {record}")
    return "\n".join(lines)


def call_command(
    url: str,
    says: Sequence[str],
    wav: str | None,
    dtmf: str,
    record: str | None,
    auth_token: str | None,
) -> int:
    """The `voicebridge call` entry point; returns the exit status."""
    for digit in dtmf:
        if digit not in "0123456789*#":
            print(f"voicebridge call: --dtmf takes 0-9, * and #, not {digit!r}")
            return 2
    try:
        report = asyncio.run(
            run_call(url, says=says, wav=wav, dtmf=dtmf, record=record, auth_token=auth_token)
        )
    except (SimError, OSError) as exc:
        print(f"voicebridge call: {exc}")
        return 1
    print(summary(report, record))
    return 0
