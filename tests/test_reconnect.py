"""An upstream lost mid-call is replaced within 2 s with the conversation replayed, so the
agent goes on where it was; the same mechanism renews a session before its length limit."""

from __future__ import annotations

import time
from typing import Any

import pytest

from bridge import stream_start as stream_module
from bridge.engine.responder import ResponseRequest
from bridge.sim.audio import speech_like
from tests.conftest import LogCapture, bridged_call, wait_until
from tests.fakes.realtime import FakeRealtimeServer, Say


def by_instructions(request: ResponseRequest) -> list[Say]:
    """Every connection's "model": greets, answers at length, or continues after a drop."""
    if "dropped" in request.instructions:
        return [Say("and that is the rest of the answer.", 600)]
    if "Greet the caller" in request.instructions:
        return [Say("Hello, how can I help?", 300)]
    return [Say("Here is a long answer about opening hours", 3000)]


def items_created(session: Any) -> list[tuple[str, str]]:
    out = []
    for event in session.client_events("conversation.item.create"):
        item = event["item"]
        if item["type"] == "message":
            out.append((item["role"], item["content"][0]["text"]))
    return out


async def test_a_drop_mid_answer_is_replaced_and_the_answer_continues(logs: LogCapture) -> None:
    script = [by_instructions] * 6
    async with FakeRealtimeServer("ga", script, ["When are you open?"], speed=1.0) as fake:
        async with bridged_call(fake) as (_, stream, first):
            await wait_until(lambda: stream.played_ms_total >= 300, 5, "the greeting")
            await stream.wait_playback_idle()
            stream.say(speech_like(500))
            await first.wait_for_event("response.created", 5, nth=2)
            await wait_until(lambda: stream.played_ms_total >= 300 + 800, 5, "the answer")
            dropped_at = time.monotonic()
            await fake.close_all()  # the model's socket dies mid-answer
            second = await fake.wait_for_session(2, timeout=5)
            reconnected_after = time.monotonic() - dropped_at
            await second.wait_for_event("response.done", 5)
            await stream.wait_playback_idle()
        assert fake.violations == []
    assert reconnected_after < 2.0
    # The new session was configured as before and told what was said, in order.
    types = [e["type"] for e in second.client_events()]
    assert types[0] == "session.update"
    replay = items_created(second)
    assert replay[0] == ("assistant", "Hello, how can I help?")
    assert replay[1] == ("user", "When are you open?")
    continue_request = second.client_events("response.create")[0]
    assert "dropped" in continue_request["response"]["instructions"]
    # The silence the caller heard: from the end of the audio that was already buffered to
    # the first frame of the continued answer.
    gaps = [b.start - a.end for a, b in zip(stream.played, stream.played[1:], strict=False)]
    assert max(gaps) < 2.0
    assert stream.played_ms_total >= 300 + 800 + 600  # the continuation was heard
    assert logs.events("upstream_reconnected")[0]["gap_ms"] < 2000
    assert logs.events("call_ended")[0]["reason"] == "caller_hangup"


async def test_session_renewal_moves_a_quiet_call_to_a_fresh_session(
    monkeypatch: pytest.MonkeyPatch, logs: LogCapture
) -> None:
    monkeypatch.setattr(stream_module, "SESSION_RENEW_MARGIN_S", 3600 - 1.5)
    script = [by_instructions] * 4
    async with FakeRealtimeServer("ga", script) as fake:
        async with bridged_call(fake) as (_, stream, first):
            await wait_until(lambda: stream.played_ms_total >= 300, 5, "the greeting")
            second = await fake.wait_for_session(2, timeout=5)
            await first.wait_closed(2)
            await wait_until(
                lambda: len(second.client_events("input_audio_buffer.append")) > 5, 5, "audio"
            )
        assert fake.violations == []
    assert items_created(second) == [("assistant", "Hello, how can I help?")]
    assert second.client_events("response.create") == []  # nothing was cut off
    assert logs.events("session_renewal")
    assert logs.events("upstream_reconnected")[0]["renewal"] is True
    assert logs.events("upstream_lost") == []
