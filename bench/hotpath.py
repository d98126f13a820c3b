"""The per-call code of one 20 ms tick, bridge beside floor, without sockets or load.

A tick is what every call does every 20 ms in the load bench: a Twilio `media` in (an
`append` out), an agent audio delta in (a frame and its mark out) and a mark echo in. Here
the bridge's real `CallRuntime` and `bench/floor.py`'s real `FloorCall` get those messages
from sockets that only record what is written, so what is timed is the Python and compiled
code of the call and nothing of the network stack (which both pay alike, see `load.py`).

Printed per mode: µs per message and per tick in three conditions, and the Python bytecodes
one tick executes (a count, not a timing, so it does not move with the machine's noise):

- warm: the same few calls over and over, all in cache;
- cold: 4 MiB written before each message, as the kernel and the other processes do between
  two messages of a call under load;
- `--many` calls (300) in turn: every call's media, then every call's delta, then every
  echo, as the event loop meets them under load. No eviction by hand: what a call touches
  is evicted by the other calls' work, so this shows how a call's own memory scales.

Run: `.venv/bin/python bench/hotpath.py [--calls 10] [--ticks 1000] [--many 300]`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/floor.py

from floor import FloorCall
from load import interpreter

from bridge.audio import make_pipeline
from bridge.audio_format import AudioFormat
from bridge.call import Call
from bridge.realtime.dialect import Dialect
from bridge.realtime.events import SessionConfig
from bridge.stream import CallRuntime

EVICT = bytearray(4 << 20)
EVICT_STEP = b"\1" * (len(EVICT) // 64)
KINDS = ("media", "delta", "mark")


class RecordingSocket:
    """Stands in for `bridge.ws` sockets: open, never backed up; counts what is sent and
    keeps the marks, to echo them."""

    open = True
    close_code = None

    def __init__(self) -> None:
        self.sent = 0
        self.marks: list[str] = []

    def send(self, text: str) -> None:
        self.sent += 1

    def send_batch(self, messages: list[str], at_once: bool = False) -> int:
        self.sent += len(messages)
        self.marks.extend(m for m in messages if m.startswith('{"event":"mark"'))
        return 0

    def write_buffer_size(self) -> int:
        return 0

    def attach(self, *_handlers: Any) -> None:
        pass


class Caller:
    """One call's three handlers and the messages of its next tick."""

    def __init__(self, target: str, mode: str, index: int) -> None:
        sid = f"MZ{index:032d}"
        self.twilio = RecordingSocket()
        self.upstream = RecordingSocket()
        if target == "bridge":
            call = Call(
                stream_sid=sid,
                call_sid=f"CA{index:032d}",
                dialect=Dialect("ga"),
                audio=make_pipeline(mode),
                session=SessionConfig(instructions="be brief", audio_format=AudioFormat(mode)),
                greeting=None,
                started_at=time.monotonic(),
            )
            runtime = CallRuntime(
                call=call,
                twilio=cast(Any, self.twilio),
                upstream=cast(Any, self.upstream),
                services=cast(Any, None),
                tools=cast(Any, None),
                webhook_at=None,
                called="+15550002222",
            )
            call.upstream_opened(0.0)
            runtime.drain()
            self.on_twilio: Callable[[str], None] = runtime.on_twilio_text
            self.on_upstream: Callable[[str], None] = runtime.on_upstream_text
        else:
            floor = FloorCall(cast(Any, self.twilio), "", mode)
            floor.upstream = cast(Any, self.upstream)
            floor.name_stream(sid)
            self.on_twilio, self.on_upstream = floor.on_twilio, floor.on_upstream
        payload = base64.b64encode(os.urandom(160)).decode()
        self.media = orjson.dumps(
            {
                "event": "media",
                "sequenceNumber": "5",
                "streamSid": sid,
                "media": {"track": "inbound", "chunk": "4", "timestamp": "80", "payload": payload},
            }
        ).decode()
        audio = os.urandom(960 if mode == "pcm16" else 160)
        self.delta = orjson.dumps(
            {
                "type": "response.output_audio.delta",
                "event_id": "event_1",
                "response_id": "resp_1",
                "item_id": "item_1",
                "output_index": 0,
                "content_index": 0,
                "delta": base64.b64encode(audio).decode(),
            }
        ).decode()

    def tick(self, evict: bool, spent: list[float]) -> None:
        """One tick; adds the seconds each kind of message took to `spent`."""
        clock = time.perf_counter
        for kind, handler, text in (
            (0, self.on_twilio, self.media),
            (1, self.on_upstream, self.delta),
        ):
            if evict:
                EVICT[::64] = EVICT_STEP
            started = clock()
            handler(text)
            spent[kind] += clock() - started
        for echo in self.twilio.marks:  # the floor sends marks too, and ignores their echoes
            if evict:
                EVICT[::64] = EVICT_STEP
            started = clock()
            self.on_twilio(echo)
            spent[2] += clock() - started
        self.twilio.marks.clear()


def median_of_rounds(
    callers: list[Caller], ticks: int, one_pass: Callable[[list[float]], None]
) -> list[float]:
    """Median over 7 rounds of µs per tick spent on each kind of message; `one_pass` gives
    every caller one tick, adding the seconds each kind took to its argument."""
    rounds: list[list[float]] = []
    per_caller = max(1, ticks // len(callers))
    for _ in range(7):
        spent = [0.0, 0.0, 0.0]
        for _ in range(per_caller):
            one_pass(spent)
        rounds.append([1e6 * s / (per_caller * len(callers)) for s in spent])
    return [statistics.median(r[k] for r in rounds) for k in range(3)]


def timed(callers: list[Caller], ticks: int, evict: bool) -> list[float]:
    """Each call's whole tick before the next call's."""

    def one_pass(spent: list[float]) -> None:
        for caller in callers:
            caller.tick(evict, spent)

    return median_of_rounds(callers, ticks, one_pass)


def timed_in_turn(callers: list[Caller], ticks: int) -> list[float]:
    """Each kind of message to every call before the next kind."""
    clock = time.perf_counter

    def one_pass(spent: list[float]) -> None:
        started = clock()
        for caller in callers:
            caller.on_twilio(caller.media)
        media_done = clock()
        for caller in callers:
            caller.on_upstream(caller.delta)
        deltas_done = clock()
        for caller in callers:
            for echo in caller.twilio.marks:
                caller.on_twilio(echo)
            caller.twilio.marks.clear()
        spent[0] += media_done - started
        spent[1] += deltas_done - media_done
        spent[2] += clock() - deltas_done

    return median_of_rounds(callers, ticks, one_pass)


def bytecodes_per_tick(caller: Caller, ticks: int = 50) -> float:
    """Bytecodes executed per tick outside this file (the harness and its sockets)."""
    count = 0
    harness = __file__

    def trace(frame: Any, event: str, _arg: Any) -> Any:
        nonlocal count
        frame.f_trace_opcodes = True
        frame.f_trace_lines = False
        if event == "opcode" and frame.f_code.co_filename != harness:
            count += 1
        return trace

    spent = [0.0, 0.0, 0.0]
    sys.settrace(trace)
    try:
        for _ in range(ticks):
            caller.tick(False, spent)
    finally:
        sys.settrace(None)
    return count / ticks


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--ticks", type=int, default=1000, help="per round, over all calls")
    parser.add_argument("--many", type=int, default=300, help="calls taking turns")
    args = parser.parse_args()
    gc.collect()
    print(
        f"µs of per-call code per message and per 20 ms tick ({args.calls} calls, or"
        f" {args.many} in turn; median of 7 rounds), and the Python bytecodes one tick executes;"
        f" {interpreter()}"
    )
    header = (
        f"{'target':7}{'mode':7}{'cache':11}"
        + "".join(f"{k:>8}" for k in KINDS)
        + f"{'tick':>8}{'ms/call-s':>11}{'bytecodes':>11}"
    )
    print(header)
    for mode in ("pcm16", "pcmu"):
        for target in ("bridge", "floor"):
            callers = [Caller(target, mode, i) for i in range(args.calls)]
            timed(callers, args.ticks // 4, False)  # warm-up: first frames, caches, items
            codes = bytecodes_per_tick(callers[0])
            many = [Caller(target, mode, i) for i in range(args.many)]
            timed_in_turn(many, len(many))  # warm-up
            for condition in ("warm", "cold", "in turn"):
                if condition == "in turn":
                    parts = timed_in_turn(many, 3 * len(many))
                else:
                    parts = timed(callers, args.ticks, condition == "cold")
                tick = sum(parts)
                label = f"{args.many} calls" if condition == "in turn" else condition
                print(
                    f"{target:7}{mode:7}{label:11}"
                    + "".join(f"{p:8.1f}" for p in parts)
                    + f"{tick:8.1f}{tick * 50 / 1000:11.2f}{codes:11.0f}"
                )
            del many


if __name__ == "__main__":
    asyncio.run(main())
