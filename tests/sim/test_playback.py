"""Twilio's playback buffer, driven by explicit times: the numbers barge-in tests rely on."""

import pytest

from bridge.sim.playback import PlaybackBuffer

FRAME = 160  # bytes = 20 ms at 8 kHz μ-law
T0 = 1000.0


def ms(value: float) -> float:
    return value / 1000


def test_chunks_arriving_together_play_back_to_back() -> None:
    buffer = PlaybackBuffer()
    chunks = [buffer.push_media(bytes([i]) * FRAME, T0) for i in range(3)]
    assert [c.start - T0 for c in chunks] == pytest.approx([0, ms(20), ms(40)])
    assert [c.end - T0 for c in chunks] == pytest.approx([ms(20), ms(40), ms(60)])
    assert [c.index for c in chunks] == [0, 1, 2]


def test_idle_player_starts_a_late_chunk_when_it_arrives() -> None:
    buffer = PlaybackBuffer()
    buffer.push_media(b"\x01" * FRAME, T0)
    late = buffer.push_media(b"\x02" * FRAME, T0 + ms(500))
    assert late.start == pytest.approx(T0 + ms(500))


def test_a_payload_of_any_size_plays_len_over_8_ms() -> None:
    buffer = PlaybackBuffer()
    chunk = buffer.push_media(b"\x01" * 1000, T0)
    assert chunk.duration_ms == 125
    assert chunk.end - chunk.start == pytest.approx(ms(125))


def test_mark_comes_due_when_the_audio_before_it_has_played() -> None:
    buffer = PlaybackBuffer()
    for _ in range(10):
        buffer.push_media(b"\x01" * FRAME, T0)
    assert buffer.push_mark("m1", T0) == pytest.approx(T0 + ms(200))
    assert buffer.advance(T0 + ms(199)) == []
    [echo] = buffer.advance(T0 + ms(200))
    assert (echo.name, echo.cleared) == ("m1", False)
    assert echo.time == pytest.approx(T0 + ms(200))


def test_mark_on_an_empty_buffer_is_due_at_once() -> None:
    buffer = PlaybackBuffer()
    buffer.push_media(b"\x01" * FRAME, T0)
    assert buffer.push_mark("late", T0 + 1) == T0 + 1
    assert [e.name for e in buffer.advance(T0 + 1)] == ["late"]


def test_marks_are_echoed_in_order_each_behind_its_own_audio() -> None:
    buffer = PlaybackBuffer()
    buffer.push_media(b"\x01" * FRAME, T0)
    buffer.push_mark("a", T0)
    buffer.push_media(b"\x01" * FRAME, T0)
    buffer.push_mark("b", T0)
    assert [e.name for e in buffer.advance(T0 + ms(30))] == ["a"]
    assert [e.name for e in buffer.advance(T0 + ms(40))] == ["b"]
    assert buffer.next_due() is None


def test_clear_cuts_the_playing_chunk_by_elapsed_time_and_drops_the_rest() -> None:
    buffer = PlaybackBuffer()
    for i in range(5):
        buffer.push_media(bytes([i + 1]) * FRAME, T0)
    echoes = buffer.clear(T0 + ms(25))
    assert echoes == []
    assert buffer.heard_audio(T0 + 10) == b"\x01" * 160 + b"\x02" * 40
    assert buffer.played_ms(T0 + 10) == 25
    [record] = buffer.clears
    assert record.played_ms_total == 25
    assert record.dropped_ms == 75
    assert sum(len(c.payload) for c in buffer.dropped) == 600
    cut = buffer.played(T0 + 10)[-1]
    assert cut.cut and cut.payload == b"\x02" * 40


def test_clear_echoes_every_pending_mark_at_once_as_cleared() -> None:
    buffer = PlaybackBuffer()
    buffer.push_media(b"\x01" * FRAME, T0)
    buffer.push_mark("played", T0)
    buffer.push_media(b"\x01" * FRAME * 10, T0)
    buffer.push_mark("a", T0)
    buffer.push_media(b"\x01" * FRAME, T0)
    buffer.push_mark("b", T0)
    echoes = buffer.clear(T0 + ms(50))
    assert [(e.name, e.cleared) for e in echoes] == [
        ("played", False),
        ("a", True),
        ("b", True),
    ]
    assert [e.time for e in echoes[1:]] == [T0 + ms(50)] * 2
    assert buffer.clears[0].marks_cleared == ("a", "b")
    assert buffer.next_due() is None


def test_audio_after_a_clear_is_new_audio_and_plays_at_once() -> None:
    buffer = PlaybackBuffer()
    buffer.push_media(b"\x01" * FRAME * 50, T0)
    buffer.clear(T0 + ms(100))
    fresh = buffer.push_media(b"\x02" * FRAME, T0 + ms(101))
    assert fresh.start == pytest.approx(T0 + ms(101))
    heard = buffer.heard_audio(T0 + 10)
    assert heard == b"\x01" * 800 + b"\x02" * 160
    assert buffer.played_ms(T0 + 10) * 8 == len(heard)


def test_heard_audio_of_a_chunk_still_playing_is_partial() -> None:
    buffer = PlaybackBuffer()
    buffer.push_media(b"\x01" * FRAME, T0)
    assert len(buffer.heard_audio(T0 + ms(10))) == 80
    assert buffer.buffered_ms(T0 + ms(10)) == pytest.approx(10)
    assert buffer.played_ms(T0 - 1) == 0


def test_end_of_call_stops_playback_and_never_echoes_pending_marks() -> None:
    buffer = PlaybackBuffer()
    buffer.push_media(b"\x01" * FRAME * 5, T0)
    buffer.push_mark("never", T0)
    buffer.finish(T0 + ms(40))
    assert buffer.advance(T0 + 10) == []
    assert buffer.played_ms(T0 + 10) == 40
    assert buffer.push_media(b"\x01", T0 + 1) is None
    assert buffer.clears == []
