"""Barge-in end to end: what the bridge truncates is what the caller really heard.

The fake caller plays the agent's audio in real time and records, at the instant `clear`
arrives, how many milliseconds it had played; the fake Realtime server records every
`conversation.item.truncate`. They must agree within one 20 ms frame.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bridge.persona import DEFAULT_PERSONA, Persona, TurnDetectionConfig
from bridge.sim import TwilioMediaStream
from bridge.sim.audio import speech_like
from tests.conftest import LogCapture, LoopLagWatch, bridged_call, wait_until
from tests.fakes.realtime import FakeRealtimeServer, FakeSession, Say

FRAME_MS = 20


def within_a_frame(end_ms: float, heard_ms: float, lag: LoopLagWatch) -> None:
    """The bridge's `audio_end_ms` is within one frame of what the caller heard at the clear.

    Bridge and fake caller share this event loop: if the machine stalled it between the
    bridge's reckoning and the caller's reading of `clear` (or held back the caller's mark
    echoes), the caller played on meanwhile, so the stall measured in that window is allowed
    on top of the frame.
    """
    error = end_ms - heard_ms
    assert abs(error) <= FRAME_MS + lag.worst_ms, (
        f"audio_end_ms {end_ms} is {error:+.1f} ms off what was heard ({heard_ms:.1f}); "
        f"the loop stalled up to {lag.worst_ms:.1f} ms meanwhile"
    )


def truncates(session: FakeSession) -> list[dict[str, Any]]:
    return session.client_events("conversation.item.truncate")


def media_after(stream: TwilioMediaStream, t: float) -> list[Any]:
    return [
        r for r in stream.received if r.message and r.message.get("event") == "media" and r.time > t
    ]


def no_interrupt_persona() -> Persona:
    return DEFAULT_PERSONA.model_copy(
        update={"turn_detection": TurnDetectionConfig(interrupt_response=False)}
    )


async def test_barge_in_during_the_greeting_truncates_within_one_frame_of_what_was_heard(
    logs: LogCapture,
) -> None:
    script = [[Say("A long greeting that the caller will not wait for.", 4000)], [Say("Yes?", 400)]]
    # Unpaced, like the hosted service: the whole greeting is buffered at Twilio at once.
    async with FakeRealtimeServer("ga", script, ["hello"]) as fake:
        async with bridged_call(fake) as (_, stream, session):
            await wait_until(lambda: stream.played_ms_total >= 900, 5, "0.9 s of greeting")
            async with LoopLagWatch() as lag:
                await wait_until(lambda: stream.played_ms_total >= 1100, 5, "1.1 s of greeting")
                stream.say(speech_like(500))
                await wait_until(lambda: stream.clears, 5, "the clear")
            await wait_until(lambda: truncates(session), 2, "the truncate")
            await session.wait_for_event("response.done", 5, nth=2)
            await wait_until(lambda: len(logs.events("transcript")) >= 2, 5, "transcripts")
        clear = stream.clears[0]
        truncate = truncates(session)[0]
        heard_ms = clear.played_ms_total
        within_a_frame(truncate["audio_end_ms"], heard_ms, lag)
        assert 1100 <= heard_ms < 4000
        greeting_item = session.server_events("response.output_item.added")[0]["item"]["id"]
        assert truncate["item_id"] == greeting_item
        assert fake.violations == []
    barge = logs.events("barge_in")
    assert len(barge) == 1 and barge[0]["item_id"] == greeting_item
    assert barge[0]["played_ms"] == truncate["audio_end_ms"]
    assert 0 <= barge[0]["reaction_ms"] < 1000
    agent = next(x for x in logs.events("transcript") if x["role"] == "agent")
    assert agent["interrupted"] is True and agent["played_ms"] == truncate["audio_end_ms"]
    # The words the caller heard, from the transcript deltas: never empty once words were said.
    words = "A long greeting that the caller will not wait for.".split()
    assert agent["text"] == " ".join(words[: round(len(words) * heard_ms / 4000)]) != ""


async def test_no_frame_of_the_interrupted_response_reaches_the_caller_after_clear() -> None:
    # Paced at real time with the server not cancelling: deltas keep coming after the
    # caller speaks until the bridge's cancel lands, and every one of them must be dropped.
    script = [[Say("Greeting that runs on and on.", 5000)], [Say("Reply.", 600)]]
    async with FakeRealtimeServer("ga", script, ["stop"], speed=1.2) as fake:
        async with bridged_call(fake, no_interrupt_persona()) as (_, stream, session):
            await wait_until(lambda: stream.played_ms_total >= 600, 5, "0.6 s of greeting")
            async with LoopLagWatch() as lag:
                await wait_until(lambda: stream.played_ms_total >= 800, 5, "0.8 s of greeting")
                stream.say(speech_like(400))
                await wait_until(lambda: stream.clears, 5, "the clear")
            reply = await session.wait_for_event("response.created", 5, nth=2)
            await wait_until(
                lambda: stream.played_ms_total - stream.clears[0].played_ms_total >= 600,
                5,
                "the reply",
            )
        cleared_at = stream.clears[0].time
        reply_started = next(r.time for r in session.sent if r.event is reply)
        late = [r for r in media_after(stream, cleared_at) if r.time < reply_started]
        assert late == []
        # After the clear, exactly the reply's audio arrived: 600 ms, plus the filter tail.
        after = media_after(stream, cleared_at)
        assert 600 <= len(after) * FRAME_MS <= 640
        cancels = session.client_events("response.cancel")
        assert len(cancels) == 1
        assert fake.violations == []
        within_a_frame(truncates(session)[0]["audio_end_ms"], stream.clears[0].played_ms_total, lag)


async def test_two_barge_ins_in_a_row_each_truncate_their_own_item() -> None:
    script = [
        [Say("First long answer.", 3000)],
        [Say("Second long answer.", 3000)],
        [Say("Third.", 300)],
    ]
    async with FakeRealtimeServer("ga", script, ["one", "two"]) as fake:
        async with bridged_call(fake) as (_, stream, session):
            lags = []
            for n in range(2):
                base = stream.clears[-1].played_ms_total if stream.clears else 0.0
                await wait_until(lambda b=base: stream.played_ms_total - b >= 500, 6, "audio")
                async with LoopLagWatch() as lag:
                    await wait_until(lambda b=base: stream.played_ms_total - b >= 700, 6, "audio")
                    stream.say(speech_like(400))
                    await wait_until(lambda n=n: len(stream.clears) > n, 5, f"clear {n + 1}")
                lags.append(lag)
                await wait_until(lambda n=n: len(truncates(session)) > n, 2, f"truncate {n + 1}")
            await session.wait_for_event("response.done", 5, nth=3)
        items = [e["item"]["id"] for e in session.server_events("response.output_item.added")]
        heard = [
            stream.clears[0].played_ms_total,
            stream.clears[1].played_ms_total - stream.clears[0].played_ms_total,
        ]
        got = [(t["item_id"], t["audio_end_ms"]) for t in truncates(session)]
        assert [g[0] for g in got] == items[:2]
        for (_, end_ms), truly, lag in zip(got, heard, lags, strict=True):
            within_a_frame(end_ms, truly, lag)
        assert fake.violations == []


async def test_marks_echoed_because_of_clear_are_not_counted_as_played() -> None:
    async with FakeRealtimeServer("ga", [[Say("Long.", 3000)], [Say("Ok.", 200)]], ["x"]) as fake:
        async with bridged_call(fake) as (bridge, stream, session):
            await wait_until(lambda: stream.played_ms_total >= 500, 5, "audio")
            stream.say(speech_like(400))
            await wait_until(lambda: stream.clears, 5, "the clear")
            await wait_until(lambda: truncates(session), 2, "the truncate")
            # Twilio echoed every pending mark at once on clear; they were not played.
            cleared = [m for m in stream.marks if m.cleared]
            assert len(cleared) >= 50
            await asyncio.sleep(0.1)
            runtime = next(iter(bridge.calls.runtimes))
            item = runtime.call.items[truncates(session)[0]["item_id"]]
            assert item.played_ms <= stream.clears[0].played_ms_total + FRAME_MS
            assert item.heard_ms == truncates(session)[0]["audio_end_ms"]
        assert fake.violations == []


async def test_caller_talking_over_silence_sends_no_clear_truncate_or_cancel() -> None:
    script = [[Say("Short hello.", 300)], [Say("Answer.", 300)]]
    async with FakeRealtimeServer("ga", script, ["question"]) as fake:
        async with bridged_call(fake, no_interrupt_persona()) as (_, stream, session):
            await wait_until(lambda: stream.played_ms_total >= 300, 5, "the greeting")
            await stream.wait_playback_idle()
            await asyncio.sleep(0.1)  # last mark echoed: the caller hears nothing now
            stream.say(speech_like(400))
            await session.wait_for_event("input_audio_buffer.speech_started", 5)
            await session.wait_for_event("response.done", 5, nth=2)
        assert stream.clears == []
        assert truncates(session) == []
        assert session.client_events("response.cancel") == []
        assert fake.violations == []


async def test_barge_in_before_any_audio_drops_the_response_without_a_clear() -> None:
    # Every response's audio starts 1.2 s after response.created: the caller speaks into
    # that gap, so nothing is playing (no clear, no truncate) but the response must go.
    script = [[Say("Hello!", 300)], [Say("Slow answer.", 1000)], [Say("Next.", 300)]]
    async with FakeRealtimeServer("ga", script, ["q1", "q2"], response_delay_s=1.2) as fake:
        async with bridged_call(fake, no_interrupt_persona()) as (_, stream, session):
            await wait_until(lambda: stream.played_ms_total >= 300, 5, "the greeting")
            await stream.wait_playback_idle()
            stream.say(speech_like(300))
            await session.wait_for_event("response.created", 5, nth=2)
            stream.say(speech_like(300))
            await session.wait_for_event("response.cancel", 5)
            await session.wait_for_event("response.done", 8, nth=3)
            await wait_until(lambda: stream.played_ms_total >= 600, 5, "the last answer")
        assert stream.clears == []
        assert truncates(session) == []
        assert stream.played_ms_total < 300 + 1000  # the slow answer was never heard
        assert fake.violations == []
