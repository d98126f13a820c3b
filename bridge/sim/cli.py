"""`voicebridge call`: a simulated phone call against a running bridge, from the terminal.

It does what Twilio does (the signed webhook when `TWILIO_AUTH_TOKEN` is set, signed for the
bridge's public URL; the TwiML's `<Stream>` opened with its parameters on the same host and
port as `--url`; 20 ms μ-law frames in real time; marks echoed as audio plays), and what a
caller does: listens to the greeting, says each `--say` line (espeak-ng, 8 kHz) or plays
`--wav`, waits for the agent between lines, presses `--dtmf` keys, then hangs up.

Inputs are all checked before it dials (`bridge.sim.inputs`). A caller answers as soon as the
agent has been quiet for `QUIET_S`: the agent's lines are transcribed beside the call, never
in its way, and printed once it is over. They are the agent's lines **as this simulator
heard them**: only audio crosses a phone line, so each agent turn goes through the local
engine's recogniser (pocketsphinx, general model). Expect recognition errors; the bridge's
own log has the exact words.

Exit status (`EXIT_*`): 0 the call ran and ended normally, 1 the bridge refused or failed the
call, 2 an input is wrong (nothing was dialled), 3 the bridge could not be reached.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import numpy as np
from websockets.exceptions import WebSocketException

from bridge.audio import Resampler8kTo24k, ulaw_decode
from bridge.sim.errors import CallRejected, SimError, StreamClosed, StreamRejected
from bridge.sim.inputs import (
    LEAD_IN_SAMPLES,
    CallPlan,
    InputError,
    plan_call,
    read_wav_ulaw,
    tts_ulaw,
)
from bridge.sim.media_stream import FRAME_MS, CloseInfo, TwilioMediaStream
from bridge.sim.recording import call_timeline, write_stereo_wav
from bridge.sim.webhook import StreamTarget, continue_after_stream, place_call

__all__ = [
    "EXIT_FAILED",
    "EXIT_INPUT",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "CallReport",
    "Printer",
    "call_command",
    "read_wav_ulaw",
    "run_call",
    "run_plan",
    "summary",
    "tts_ulaw",
]

DEFAULT_URL: Final = "http://127.0.0.1:8080"
GREETING_TIMEOUT_S: Final = 10.0
"""How long to wait for the agent to speak first before the caller talks anyway."""
ANSWER_TIMEOUT_S: Final = 20.0
"""How long to wait for any answer after a caller line (a slow tool included)."""
QUIET_S: Final = 0.5
"""Silence after the agent's audio that ends its turn. With the line's 200 ms lead-in the
caller speaks about 0.7 s after the agent stops, as people do; a tool's answer that comes
later than this after its filler is heard as the start of the next turn."""
POLL_S: Final = 0.02
DTMF_GAP_S: Final = 0.3
LEAD_IN_S: Final = LEAD_IN_SAMPLES / 8000

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_INPUT: Final = 2
EXIT_UNREACHABLE: Final = 3

NORMAL_CLOSE: Final = 1000


@dataclass
class CallReport:
    """What happened on the call, for the summary (and for tests). Times are seconds from
    the stream's `start`."""

    call_sid: str = ""
    caller_lines: list[str] = field(default_factory=list)
    agent_lines: list[str] = field(default_factory=list)
    """The agent's turns as recognised from the audio heard, in order."""
    transcript: list[str] = field(default_factory=list)
    """Both sides in order, as printed after the call."""
    first_audio_s: float | None = None
    """From the stream's start to the first agent audio the caller heard."""
    reply_latencies_s: list[float] = field(default_factory=list)
    """Per caller line (or key presses): from its last frame (the first key) to the first
    agent audio the caller heard after it."""
    agent_spans: list[tuple[float, float]] = field(default_factory=list)
    """When the caller's loudspeaker played agent audio: (start, end), gaps under 50 ms
    merged."""
    caller_speech_at: list[float] = field(default_factory=list)
    """When each caller line's speech began (after its lead-in), in seconds after `start` on
    the call's timeline (the recording's)."""
    barge_ins: int = 0
    duration_s: float = 0.0
    """From the stream's `start` to its close: the length of the recording."""
    heard_ms: float = 0.0
    ended_by: str = "caller"
    """"caller" (we hung up), "bridge" (it closed normally: the agent hung up, a limit), or
    "error" (it closed with an error code, or the stream never opened)."""
    close_code: int | None = None
    close_reason: str = ""
    after_stream: str | None = None
    """What Twilio did next, from the `<Connect>` action ("hung up", "transferred to …")."""

    @property
    def turns(self) -> int:
        return len(self.caller_lines)

    @property
    def failed(self) -> bool:
        return self.ended_by == "error"


Printer = Callable[[str], None]


def _to_engine_rate(ulaw: bytes) -> np.ndarray:
    return Resampler8kTo24k().process(ulaw_decode(ulaw))


async def _recognise(ulaw: bytes) -> str:
    """What the caller made of one agent turn (in the recogniser's worker processes)."""
    from bridge.engine.asr import Recognizer

    try:
        hearing = await Recognizer().recognise(_to_engine_rate(ulaw))
    except Exception as exc:  # recognition is a courtesy; the transcript goes on
        return f"(not recognised: {type(exc).__name__})"
    return hearing.transcript or "…"


class _Listener:
    """Waits for agent turns; each turn's audio is transcribed in the background."""

    def __init__(self, stream: TwilioMediaStream, report: CallReport, out: Printer) -> None:
        self.stream, self.report, self.out = stream, report, out
        self._heard_upto = 0
        self._seen = 0
        self._entries: list[tuple[str, str | asyncio.Task[str], float]] = []

    def elapsed(self) -> float:
        started = self.stream.started_at
        return time.monotonic() - started if started is not None else 0.0

    def note(self, who: str, text: str) -> None:
        """A caller line or key press, in the transcript's order."""
        self._entries.append((who, text, 0.0))
        self.out(f"[{self.elapsed():6.1f} s] {who} : {text}")

    async def agent_turn(self, timeout: float, since: float | None = None) -> bool:
        """Wait for the agent to speak and then be quiet for `QUIET_S`. False on silence.

        Each poll looks only at messages that arrived since the last one, so a long call
        costs no more per poll than a short one."""
        stream = self.stream
        deadline = time.monotonic() + timeout
        while not self._new_media():
            if stream.closed.done() or time.monotonic() > deadline:
                return False
            await asyncio.sleep(POLL_S)
        if since is not None:
            first = next((c for c in stream.played if c.received_at >= since), None)
            if first is not None:
                self.report.reply_latencies_s.append(first.start - since)
        while not stream.closed.done():
            received = stream.received
            quiet_since = max(stream.playback.idle_at, received[-1].time)
            if time.monotonic() - quiet_since >= QUIET_S:
                break
            await asyncio.sleep(POLL_S)
        self._seen = len(stream.received)
        heard = stream.heard_audio()
        turn = heard[self._heard_upto :]
        self._heard_upto = len(heard)
        task = asyncio.ensure_future(_recognise(turn))
        self._entries.append(("agent ", task, len(turn) / 8000))
        self.out(f"[{self.elapsed():6.1f} s] agent  : {len(turn) / 8000:.1f} s of speech")
        return True

    def _new_media(self) -> bool:
        """Whether agent audio arrived since the last look (or the end of the last turn)."""
        received = self.stream.received
        while self._seen < len(received):
            message = received[self._seen].message
            self._seen += 1
            if message is not None and message.get("event") == "media":
                return True
        return False

    async def transcript(self) -> list[str]:
        """Both sides in order, the agent's lines once recognised."""
        lines = []
        for who, what, seconds in self._entries:
            if isinstance(what, str):
                lines.append(f"{who} : {what}")
                continue
            text = await what
            self.report.agent_lines.append(text)
            lines.append(f"agent  ~ {text}   [{seconds:.1f} s heard]")
        return lines

    def cancel(self) -> None:
        for _, what, _ in self._entries:
            if not isinstance(what, str):
                what.cancel()


def _spans(stream: TwilioMediaStream, t0: float) -> list[tuple[float, float]]:
    spans: list[tuple[float, float]] = []
    for chunk in stream.played:
        start, end = chunk.start - t0, chunk.end - t0
        if spans and start - spans[-1][1] < 0.05:
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
    return spans


async def run_call(
    url: str = DEFAULT_URL,
    *,
    says: Sequence[str] = (),
    wav: str | None = None,
    dtmf: str = "",
    record: str | None = None,
    auth_token: str | None = None,
    public_url: str | None = None,
    out: Printer = print,
) -> CallReport:
    """Check the inputs, place one call and play the caller's part; returns the report.

    Raises `InputError` before dialling, `CallRejected`/`StreamRejected` when the bridge
    refuses the call, httpx or OS errors when it cannot be reached.
    """
    plan = plan_call(url, says=says, wav=wav, dtmf=dtmf, record=record, public_url=public_url)
    return await run_plan(plan, auth_token, out)


async def run_plan(
    plan: CallPlan,
    auth_token: str | None,
    out: Printer,
    target: StreamTarget | None = None,
    beside: Coroutine[Any, Any, None] | None = None,
) -> CallReport:
    """One call: rung through the webhook, or, given its `target`, already answered (an
    outbound call, `bridge.sim.dial`); `beside` runs while the caller plays (Twilio's
    detection callback)."""
    report = CallReport()
    if target is None:
        target = await place_call(plan.url, auth_token=auth_token, sign_base=plan.sign_base)
        out(f"calling {plan.url} (CallSid {target.call_sid})")
    report.call_sid = target.call_sid
    stream = TwilioMediaStream(
        target, auth_token=auth_token, connect_url=_stream_url_on(plan.url, target.url)
    )
    await stream.connect()
    listener = _Listener(stream, report, out)
    side = asyncio.ensure_future(beside) if beside is not None else None
    try:
        try:
            await _play_caller(stream, listener, plan, report)
            if side is not None:
                await side
        except StreamClosed:
            pass
        finally:
            if side is not None and not side.done():
                side.cancel()
            await _hang_up(stream, report, plan.record)
    except BaseException:
        listener.cancel()
        raise
    if report.ended_by != "caller" and target.action is not None:
        # As Twilio does: the stream is over, so ask its <Connect> action what comes next.
        try:
            after = await continue_after_stream(
                target,
                auth_token=auth_token,
                post_url=_http_url_on(plan.url, target.action),
                sign_url=target.action,
            )
            report.after_stream = after.describe()
        except (CallRejected, httpx.HTTPError) as exc:
            report.after_stream = f"the action failed: {exc}"
    report.transcript = await listener.transcript()
    return report


def _http_url_on(base_url: str, url: str) -> str:
    """`url`'s path on the host and port the user gave (it may name a public host)."""
    from urllib.parse import urlsplit, urlunsplit

    base, other = urlsplit(base_url), urlsplit(url)
    return urlunsplit((base.scheme, base.netloc, other.path, other.query, ""))


async def _play_caller(
    stream: TwilioMediaStream, listener: _Listener, plan: CallPlan, report: CallReport
) -> None:
    if await listener.agent_turn(GREETING_TIMEOUT_S):
        first = stream.played[0].start if stream.played else None
        if first is not None and stream.started_at is not None:
            report.first_audio_s = first - stream.started_at
    for line in plan.lines:
        if stream.closed.done():
            return
        listener.note("caller", line.text)
        report.caller_lines.append(line.text)
        utterance = stream.say(line.audio)
        said = await stream.wait_said()
        if utterance.first_chunk is not None:
            # On the recording's timeline: frame k carries the 20 ms spoken before it was due,
            # so a late frame does not move the speech it carries.
            spoken_from = (utterance.first_chunk - 1) * FRAME_MS / 1000
            report.caller_speech_at.append(spoken_from + LEAD_IN_S)
        said_at = said.finished_at if said and said.finished_at else None
        if not await listener.agent_turn(ANSWER_TIMEOUT_S, since=said_at):
            listener.note("agent ", "(no answer)")
    first_key: float | None = None
    for digit in plan.dtmf:
        if stream.closed.done():
            return
        listener.note("caller", f"[DTMF {digit}]")
        first_key = first_key or time.monotonic()
        await stream.send_dtmf(digit)
        await asyncio.sleep(DTMF_GAP_S)
    if plan.dtmf and not stream.closed.done():
        await listener.agent_turn(ANSWER_TIMEOUT_S, since=first_key)


async def _hang_up(stream: TwilioMediaStream, report: CallReport, record: str | None) -> None:
    """Hang up (unless the bridge did), then fill in how the call ended and save it."""
    closed = stream.closed
    info: CloseInfo = (
        closed.result() if closed.done() else await stream.stop()
    )  # stop() is Twilio's hang-up: a `stop` message, then a normal close
    await stream.aclose(raise_errors=False)
    report.close_code, report.close_reason = info.code, info.reason
    if info.initiator == "client":
        report.ended_by = "caller"
    elif info.code == NORMAL_CLOSE:
        report.ended_by = "bridge"
    else:
        report.ended_by = "error"
    report.barge_ins = len(stream.clears)
    report.heard_ms = stream.played_ms_total
    t0 = stream.started_at
    if t0 is None:
        report.ended_by = "error"
        return
    report.duration_s = info.time - t0
    report.agent_spans = _spans(stream, t0)
    if record:
        write_stereo_wav(record, call_timeline(stream.frames, stream.played, t0, info.time))


def _stream_url_on(base_url: str, stream_url: str) -> str:
    """The TwiML's stream path on the host and port the user gave (the TwiML may name a
    public host that this machine cannot reach)."""
    from urllib.parse import urlsplit, urlunsplit

    base, stream = urlsplit(base_url), urlsplit(stream_url)
    scheme = "wss" if base.scheme == "https" else "ws"
    return urlunsplit((scheme, base.netloc, stream.path, "", ""))


def _ended(report: CallReport) -> str:
    if report.ended_by == "caller":
        return "the caller hung up"
    code = f"close {report.close_code}" if report.close_code is not None else "no close code"
    reason = f": {report.close_reason}" if report.close_reason else ""
    if report.ended_by == "bridge":
        return f"the bridge ended it ({code}{reason})"
    return f"the bridge failed it ({code}{reason})"


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
        f"duration:                 {report.duration_s:.1f} s ({_ended(report)})",
    ]
    if report.after_stream:
        lines.append(f"after the stream:         {report.after_stream}")
    if record:
        lines.append(f"recording:                {record} (stereo: caller left, agent right)")
    return "\n".join(lines)


def _unreachable(url: str, exc: BaseException) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer from the bridge at {url} (timed out): is it overloaded?"
    cause = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectError | ConnectionRefusedError) or "refused" in cause:
        cause = "connection refused"
    return f"cannot reach the bridge at {url}: {cause} (is `voicebridge serve` running there?)"


def call_command(
    url: str,
    says: Sequence[str],
    wav: str | None,
    dtmf: str,
    record: str | None,
    auth_token: str | None,
    public_url: str | None = None,
    *,
    out: Printer = print,
    err: Printer | None = None,
) -> int:
    """The `voicebridge call` entry point: the call on stdout, one line on stderr for any
    error; returns the exit status (`EXIT_*`)."""

    def fail(message: str) -> None:
        (err or (lambda line: print(line, file=sys.stderr)))(f"voicebridge call: {message}")

    try:
        plan = plan_call(url, says=says, wav=wav, dtmf=dtmf, record=record, public_url=public_url)
    except InputError as exc:
        fail(str(exc))
        return EXIT_INPUT
    try:
        report = asyncio.run(run_plan(plan, auth_token, out))
    except (CallRejected, StreamRejected) as exc:
        fail(f"the bridge refused the call: {exc}")
        return EXIT_FAILED
    except (httpx.TransportError, OSError, TimeoutError) as exc:
        fail(_unreachable(plan.url, exc))
        return EXIT_UNREACHABLE
    except SimError as exc:
        fail(str(exc))
        return EXIT_FAILED
    except WebSocketException as exc:
        fail(f"the media stream failed: {exc}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        fail("interrupted")
        return 130
    except Exception as exc:  # still one line, never a traceback, for whatever we missed
        fail(f"the call failed: {type(exc).__name__}: {exc}")
        return EXIT_FAILED
    if report.transcript:
        out("--- transcript (the agent's lines as recognised from the audio heard) ---")
        for line in report.transcript:
            out(line)
    out(summary(report, record))
    if report.failed:
        fail(f"the call failed: {_ended(report)}")
        return EXIT_FAILED
    return EXIT_OK
