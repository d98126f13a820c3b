"""The framer: any μ-law in, whole 160-byte (20 ms) frames out."""

from __future__ import annotations

from bridge.audio import FRAME_BYTES, Framer


def test_push_returns_whole_160_byte_frames_and_keeps_the_remainder() -> None:
    framer = Framer()
    data = bytes(range(256)) + bytes(144)  # 400 bytes
    frames = framer.push(data)
    assert FRAME_BYTES == 160
    assert frames == [data[:160], data[160:320]]
    assert framer.pending == 80


def test_small_pushes_come_out_as_the_same_bytes_in_order() -> None:
    framer = Framer()
    data = bytes(i % 251 for i in range(1000))
    frames = [f for i in range(0, 1000, 7) for f in framer.push(data[i : i + 7])]
    assert len(frames) == 6
    assert all(len(f) == 160 for f in frames)
    assert b"".join(frames) == data[:960]
    assert framer.pending == 40


def test_push_of_exactly_one_frame_returns_it_at_once() -> None:
    framer = Framer()
    assert framer.push(b"\x11" * 160) == [b"\x11" * 160]
    assert framer.pending == 0


def test_flush_pads_the_partial_frame_with_ulaw_silence() -> None:
    framer = Framer()
    assert framer.push(b"\x01" * 100) == []
    assert framer.flush() == [b"\x01" * 100 + b"\xff" * 60]
    assert framer.pending == 0
    assert framer.flush() == []


def test_flush_with_nothing_pending_returns_nothing() -> None:
    framer = Framer()
    assert framer.flush() == []
    framer.push(b"\x02" * 320)
    assert framer.flush() == []


def test_reset_drops_the_remainder() -> None:
    framer = Framer()
    framer.push(b"\x03" * 100)
    framer.reset()
    assert framer.pending == 0
    assert framer.push(b"\x04" * 160) == [b"\x04" * 160]
    assert framer.flush() == []


def test_pushing_nothing_returns_nothing() -> None:
    framer = Framer()
    assert framer.push(b"") == []
    assert framer.pending == 0
