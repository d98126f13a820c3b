"""`bench/hotpath.py` times what it says: each tick of either relay is a real round trip."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def load_hotpath() -> ModuleType:
    path = list(sys.path)
    try:
        spec = importlib.util.spec_from_file_location("bench_hotpath", BENCH / "hotpath.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path[:] = path  # it puts bench/ first, for floor.py


@pytest.mark.parametrize("mode", ["pcm16", "pcmu"])
async def test_every_tick_relays_a_frame_each_way_and_echoes_its_mark(mode: str) -> None:
    hotpath = load_hotpath()
    codes = {}
    for target in ("bridge", "floor"):
        caller = hotpath.Caller(target, mode, 7)
        spent = [0.0, 0.0, 0.0]
        for _ in range(5):
            caller.tick(False, spent)
        # bridge: one session.update when the upstream opened, then one append per media
        assert caller.upstream.sent == 5 + (target == "bridge")
        assert caller.twilio.sent == 10  # a media and its mark per delta
        assert caller.twilio.marks == []  # all echoed back
        assert all(part > 0 for part in spent)
        codes[target] = hotpath.bytecodes_per_tick(caller, ticks=5)
    assert codes["bridge"] > codes["floor"] > 20


async def test_calls_taking_turns_each_relay_every_tick_in_both_directions() -> None:
    hotpath = load_hotpath()
    for target in ("bridge", "floor"):
        callers = [hotpath.Caller(target, "pcm16", i) for i in range(3)]
        parts = hotpath.timed_in_turn(callers, 6)  # 7 rounds of 2 ticks per call
        assert all(part > 0 for part in parts)
        for caller in callers:
            assert caller.upstream.sent == 14 + (target == "bridge")
            assert caller.twilio.sent == 28  # a media and its mark per delta
            assert caller.twilio.marks == []  # all echoed back
