"""The softphone as a call console, in Debian's Chromium: twenty calls in a row in one tab
(each one's transcript feed closed when it ends: Chromium allows six connections per host),
the keypad, the persona choice, the timer, the feed's events in place, the end reason, and
what the page says when the bridge is busy, down, reached over plain http, or refused the
microphone. Every state is read from the DOM and photographed."""

from __future__ import annotations

import contextlib
import math
import os
import re
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge.engine.items import MessageItem
from bridge.engine.responder import ResponseRequest
from bridge.persona import (
    DtmfAction,
    DtmfConfig,
    EndCallTool,
    Persona,
    PersonaBook,
    Tools,
    TransferTarget,
)
from bridge.sim import TwilioMediaStream, place_call
from bridge.softphone import persona_choices
from bridge.softphone.transcripts import FEED
from bridge.twiml import BUSY_SAY
from tests.conftest import LogCapture, make_settings, running_bridge, wait_until
from tests.fakes.realtime import FakeRealtimeServer, FunctionCall, Say, Step
from tests.local.test_softphone import CHROMIUM, QUIET_FLAGS, caller_wav

GREETING = "Hello, this is the console line."
MENU_LINE = "We are open nine to five."
GOODBYE = "Thanks for calling, goodbye."
CALLS = 20
END_REASONS = ("agent_hangup", "caller_hangup", "agent_hangup", "transferred")
LIMIT_S = 4.0

FEED_SAMPLES = [
    {"event": "barge_in", "item_id": "item_1", "played_ms": 1240.0, "reaction_ms": 41.7},
    {
        "event": "transcript",
        "role": "agent",
        "text": "We open at",
        "interrupted": True,
        "played_ms": 1240.0,
    },
    {"event": "handoff_started", "kind": "transfer", "target": "operator", "origin": "model"},
    {"event": "handoff_cancelled", "kind": "transfer", "reason": "caller spoke"},
    {
        "event": "tool_call",
        "name": "web_search",
        "arguments": '{"query": "weather in Paris"}',
        "ok": False,
        "error": "timeout",
        "duration_ms": 5001.2,
    },
    {
        "event": "call_control",
        "action": "transfer",
        "ok": False,
        "target": "operator",
        "http_status": 404,
        "duration_ms": 182.3,
        "code": 20404,
        "then": "connect_action",
    },
    {
        "event": "call_ended",
        "reason": "transferred",
        "duration_s": 75.4,
        "turns": 1,
        "barge_ins": 1,
    },
]
FEED_SHOWN = [
    ("note", "You talked over the agent after 1.2 s of its reply, audio cut in 42 ms", ""),
    ("agent", "We open at", "interrupted after 1.2 s"),
    ("note", "Transferring to operator (asked by the agent)", ""),
    ("note", "The transfer is called off: caller spoke", ""),
    ("note", 'Tool web_search({"query": "weather in Paris"}): failed: timeout', "5001 ms"),
    (
        "note",
        "Call control transfer to operator: failed (HTTP 404); the stream's end does it instead",
        "",
    ),
    ("end", "Call ended: transferred", "1:15 · 1 turn · 1 barge-in"),
]

OPERATOR = "+15550009999"
NUMBERS = {"console": "+15550003333", "other": "+15550004444"}


def persona(name: str) -> Persona:
    """A line with a keypad menu: 5 says a line, # hangs up, 0 transfers to the operator;
    other keys reach the model."""
    return Persona(
        name=name,
        business_name="voicebridge",
        default=name == "console",
        numbers=[NUMBERS[name]],
        instructions="You answer the phone.",
        greeting=GREETING,
        tools=Tools(end_call=EndCallTool(filler=GOODBYE)),
        transfer_targets={"operator": TransferTarget(number=OPERATOR)},
        dtmf=DtmfConfig(
            menu={
                "5": DtmfAction(action="say", text=MENU_LINE),
                "#": DtmfAction(action="end_call"),
                "0": DtmfAction(action="transfer", target="operator"),
            },
            unlisted="to_model",
        ),
    )


BOOK = PersonaBook([persona("console"), persona("other")])


def model(request: ResponseRequest) -> list[Step]:
    """The scripted model: says what the bridge asks it to say word for word (greeting, menu
    line, goodbye); asked about key 1, it hangs up with its end_call tool."""
    verbatim = re.search(r'nothing else: "(.*)"\s*$', request.instructions, re.S)
    if verbatim:
        return [Say(verbatim[1], 300)]
    said = [i.text for i in request.conversation if isinstance(i, MessageItem) and i.role == "user"]
    if said and "pressed 1" in said[-1]:
        return [FunctionCall("end_call")]
    return [Say("Sorry, I did not get that.", 300)]


def silent_wav(path: Path) -> None:
    """The fake microphone: two seconds of silence (Chromium loops it), so no call hears a
    caller talk over the agent."""
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(16000)
        f.writeframes(b"\0\0" * 32000)


STATE = """() => {
    const body = document.body.dataset, enabled = (sel) => !document.querySelector(sel).disabled;
    return {state: body.state, error: body.error, reason: body.reason,
        status: document.querySelector('#status').textContent,
        call: enabled('#call'), hangup: enabled('#hangup'),
        keypad: [...document.querySelectorAll('#keypad button')].filter(b => !b.disabled).length,
        timer: document.querySelector('#timer').textContent};
}"""
ROWS = """els => els.map(e => [e.dataset.event || '', e.className,
    e.querySelector('.text').textContent, (e.querySelector('.meta') || {}).textContent || ''])"""


class Console:
    """The page under test, read through its DOM."""

    def __init__(self, page: Any, shots: Path) -> None:
        self.page, self.shots = page, shots

    async def state(self) -> dict[str, Any]:
        return dict(await self.page.evaluate(STATE))

    async def wait_state(self, state: str, timeout: float = 10_000) -> dict[str, Any]:
        await self.page.wait_for_function(
            "s => document.body.dataset.state === s", arg=state, timeout=timeout
        )
        return await self.state()

    async def rows(self) -> list[list[str]]:
        return list(await self.page.eval_on_selector_all("#transcript li", ROWS))

    async def wait_row(self, event: str, count: int = 1, timeout: float = 10_000) -> None:
        await self.page.wait_for_function(
            "([e, n]) => document.querySelectorAll(`#transcript li[data-event='${e}']`).length"
            " >= n",
            arg=[event, count],
            timeout=timeout,
        )

    async def shot(self, name: str) -> None:
        await self.page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)


async def watched_feeds_closed() -> None:
    """The page closed the call's EventSource: the bridge keeps no call's lines any more."""
    await wait_until(lambda: FEED.watched == 0, 5, "the page to close its transcript feed")


@contextlib.asynccontextmanager
async def chromium(wav: Path) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                *QUIET_FLAGS,
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={wav}",
                "--autoplay-policy=no-user-gesture-required",
                # a name that is not localhost, for the page over plain http
                "--host-resolver-rules=MAP softphone.test 127.0.0.1",
            ],
        )
        try:
            yield browser
        finally:
            await browser.close()


def test_the_persona_list_names_each_personas_numbers_and_the_default() -> None:
    assert persona_choices(BOOK) == [
        {"name": "console", "numbers": ["+15550003333"], "default": True},
        {"name": "other", "numbers": ["+15550004444"], "default": False},
    ]


async def test_the_persona_route_serves_the_apps_book() -> None:
    async with running_bridge(make_settings(), BOOK) as bridge:  # type: ignore[arg-type]
        async with httpx.AsyncClient(base_url=bridge.base_url) as http:
            response = await http.get("/softphone/personas")
            script = await http.get("/softphone/feed.js")
    assert response.status_code == 200
    assert response.json() == persona_choices(BOOK)
    assert (script.status_code, script.headers["content-type"]) == (200, "application/javascript")


async def one_call(console: Console, index: int, logs: LogCapture) -> None:
    """Call `index` of the run; its kind decides how it ends: the keypad's hang-up, the
    caller's, the model's, a transfer from the keyboard."""
    page, kind = console.page, index % 4
    name = "other" if kind == 2 else "console"
    await page.select_option("#persona", NUMBERS[name])
    await page.click("#call")
    live = await console.wait_state("in-call")
    assert (live["call"], live["hangup"], live["keypad"]) == (False, True, 12), live
    await console.wait_row("transcript")
    rows = await console.rows()
    assert rows[0][0] == "call_started" and rows[0][2].startswith(
        f"Call to {name} ({NUMBERS[name]}) from +1555000"
    ), rows
    assert rows[1][1:3] == ["agent", GREETING], rows
    if kind == 0:  # the keypad: 5 says the menu line, # hangs up after the goodbye
        await page.click("#keypad button[data-digit='5']")
        await console.wait_row("transcript", 2)
        if index == 0:
            await console.shot("3-in-call-keypad-used")
        await page.click("#keypad button[data-digit='#']")
    elif kind == 1:  # the caller hangs up
        await page.click("#hangup")
    elif kind == 2:  # key 1 reaches the model, which calls end_call
        await page.keyboard.press("1")
    else:  # the keyboard's 0 does what the keypad's does: a transfer to the operator
        await page.keyboard.press("0")
    ended = await console.wait_state("ended")
    await watched_feeds_closed()
    rows = await console.rows()
    sid = await page.text_content("#callsid")
    [record] = [r for r in logs.events("call_ended") if r.get("call_sid") == sid]
    expected = END_REASONS[kind]
    assert ended["reason"] == expected, (ended, rows)
    assert (ended["call"], ended["hangup"], ended["keypad"]) == (True, False, 0), ended
    label = {"caller_hangup": "you hung up", "agent_hangup": "the agent hung up"}.get(
        expected, expected
    )
    assert ended["status"].startswith(f"Call ended: {label} ("), ended
    [end] = [r for r in rows if r[0] == "call_ended"]
    assert end[1:3] == ["end", f"Call ended: {label}"], rows
    # Once the bridge has closed the stream, Twilio asks the <Connect> action what follows.
    after = [r[2] for r in rows if r[0] == "after_stream"]
    if kind == 1:
        assert after == [] and rows[-1] == end, rows
    else:
        then = f"dials {OPERATOR}" if kind == 3 else "hangs up"
        assert rows[-2:] == [end, ["after_stream", "note", f"After the stream, Twilio {then}.", ""]]
    turns = record["turns"]
    assert end[3] == f"{ended['timer']} · {turns} turn{'' if turns == 1 else 's'} · 0 barge-ins"
    events = [r[0] for r in rows]
    if kind == 0:
        assert [r[2] for r in rows if r[0] == "dtmf"] == [
            "Key 5: the agent says the menu's line",
            "Key #: hang up",
        ], rows
        assert [r[2] for r in rows if r[1] == "agent"] == [GREETING, MENU_LINE, GOODBYE], rows
    elif kind == 2:
        assert [r[2] for r in rows if r[0] == "dtmf"] == ["Key 1: sent to the model"], rows
        [tool] = [r for r in rows if r[0] == "tool_call"]
        assert tool[2] == "Tool end_call({}): ok" and re.fullmatch(r"\d+ ms", tool[3]), tool
        assert "Hanging up after the goodbye (asked by the agent)" in [r[2] for r in rows]
    elif kind == 3:
        assert [r[2] for r in rows if r[0] in ("dtmf", "handoff_started", "call_control")] == [
            "Key 0: transfer",
            "Transferring to operator (asked by the keypad)",
            "Call control transfer: done (the stream ends; the <Connect> action does it)",
        ], rows
    assert events.count("call_ended") == 1, rows
    if index in (0, 3):
        await console.shot(f"4-ended-with-reason-{expected}")


@pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason="Debian's chromium is not installed")
async def test_twenty_calls_in_one_tab_and_every_way_a_call_cannot_start(
    logs: LogCapture, tmp_path: Path
) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    wav = tmp_path / "silence.wav"
    silent_wav(wav)
    script = [model] * 6
    async with (
        FakeRealtimeServer("ga", script) as fake,
        chromium(wav) as browser,
    ):
        settings = make_settings(
            OPENAI_API_KEY="sk-test-0123456789", REALTIME_URL=fake.url, MAX_CONCURRENT_CALLS=1
        )
        phone = await browser.new_context(permissions=["microphone"])
        phone.set_default_timeout(15_000)
        console = Console(await phone.new_page(), shots)
        async with running_bridge(settings, BOOK) as bridge:  # type: ignore[arg-type]
            await console.page.goto(f"{bridge.base_url}/softphone")
            await console.page.wait_for_selector(
                "#persona option[data-persona='other']", state="attached"
            )
            idle = await console.state()
            assert (idle["state"], idle["call"], idle["hangup"], idle["keypad"]) == (
                "idle",
                True,
                False,
                0,
            )
            options = await console.page.eval_on_selector_all(
                "#persona option", "os => os.map(o => [o.textContent, o.value])"
            )
            assert options == [
                ["console (default) · +15550003333", "+15550003333"],
                ["other · +15550004444", "+15550004444"],
                ["another number (type it below)", ""],
            ]
            assert await console.page.input_value("#to") == "+15550003333"
            await console.shot("1-idle")

            # Ringing, held at the webhook by the test: Hang up gives the call up, and the
            # feed it had opened is closed.
            held: list[Any] = []
            await console.page.route("**/incoming-call", lambda route: held.append(route))
            failed: list[str] = []
            console.page.on(
                "requestfailed", lambda r: failed.append(f"{r.url.split('?')[0]} {r.failure}")
            )
            await console.page.click("#call")
            ringing = await console.wait_state("ringing")
            assert ringing["status"] == "Ringing +15550003333…"
            assert (ringing["call"], ringing["hangup"], ringing["keypad"]) == (False, True, 0)
            assert FEED.watched == 1
            await console.shot("2-ringing")
            await console.page.click("#hangup")
            cancelled = await console.wait_state("ended")
            assert cancelled["status"] == "Call cancelled before it was answered."
            await watched_feeds_closed()
            await wait_until(lambda: len(failed) == 2, 5, "the page to give up its requests")
            assert sorted(failed) == [  # the webhook's answer and the transcript feed
                f"{bridge.base_url}/incoming-call net::ERR_ABORTED",
                f"{bridge.base_url}/softphone-events net::ERR_ABORTED",
            ]
            assert len(held) == 1
            await console.page.unroute("**/incoming-call")

            for index in range(CALLS):
                await one_call(console, index, logs)
            ended = logs.events("call_ended")
            assert len(ended) == CALLS
            assert [r["reason"] for r in ended] == [END_REASONS[i % 4] for i in range(CALLS)]
            assert [r["persona"] for r in logs.events("call_started")] == [
                "other" if i % 4 == 2 else "console" for i in range(CALLS)
            ]
            assert [r["digit"] for r in logs.events("dtmf")] == [
                d for i in range(CALLS) for d in ("5#", "", "1", "0")[i % 4]
            ]

            # Busy: the one line is taken by another caller; the page shows the busy <Say>.
            target = await place_call(bridge.base_url)
            async with TwilioMediaStream(target) as other_caller:
                await wait_until(lambda: other_caller.played_ms_total > 0, 5, "the greeting")
                await console.page.click("#call")
                busy = await console.wait_state("error")
                assert busy["error"] == "busy" and busy["call"], busy
                assert busy["status"] == (
                    f"The bridge did not take the call: it said “{BUSY_SAY}” and hung up."
                )
                await watched_feeds_closed()
                await console.shot("5-busy")

        # The bridge is down: the page says so and Call works again.
        await console.page.click("#call")
        down = await console.wait_state("error")
        assert down["error"] == "unreachable" and down["call"] and not down["hangup"], down
        assert down["status"].startswith(
            f"The bridge is not reachable at {bridge.base_url}: is “voicebridge serve” (make run)"
        )
        await console.shot("6-bridge-down")

        # Back, with calls of at most 4 s.
        settings = settings.model_copy(update={"MAX_CALL_SECONDS": LIMIT_S})
        async with running_bridge(settings, BOOK, port=bridge.port) as bridge:  # type: ignore[arg-type]
            # Plain http under a name that is not localhost: no microphone, and the fix.
            insecure = Console(await phone.new_page(), shots)
            await insecure.page.goto(f"http://softphone.test:{bridge.port}/softphone")
            state = await insecure.wait_state("error")
            assert state["error"] == "insecure" and not state["call"], state
            assert state["status"].startswith(
                f"This page is not a secure context (http://softphone.test:{bridge.port})"
            )
            assert f"Open http://localhost:{bridge.port}/softphone" in state["status"]
            await insecure.shot("7-insecure-context")

            # The microphone refused (a context without the permission): how to allow it,
            # and nothing left open.
            denied = Console(await (await browser.new_context()).new_page(), shots)
            await denied.page.goto(f"{bridge.base_url}/softphone")
            await denied.page.click("#call")
            state = await denied.wait_state("error")
            assert state["error"] == "mic-denied" and state["call"], state
            assert state["status"].startswith(
                "The browser refused the microphone (Permission denied).\nAllow it for this page"
            )
            assert FEED.watched == 0
            await denied.shot("8-mic-denied")

            # The same tab as before, the bridge back: a call works again. The model's
            # connection drops and comes back, then the call reaches its longest length.
            await console.page.click("#call")
            await console.wait_row("transcript")
            await fake.close_all()
            await console.wait_row("upstream_reconnected")
            ended = await console.wait_state("ended", timeout=LIMIT_S * 1000 + 10_000)
            await watched_feeds_closed()
            assert ended["reason"] == "max_duration", ended
            texts = [row[2] for row in await console.rows()]
            [back] = logs.events("upstream_reconnected")
            gap_ms = math.floor(back["gap_ms"] + 0.5)  # JavaScript's Math.round
            assert texts[texts.index(GREETING) :] == [
                GREETING,
                "The connection to the model was lost: reconnecting…",
                f"Reconnected to the model after {gap_ms} ms",
                "Limit: longest call (4 s)",
                "Hanging up after the goodbye (asked by a limit)",
                str(BOOK.default.limits.goodbye),
                "Call control hangup: done (the stream ends; the <Connect> action does it)",
                "Call ended: the call reached its longest length",
                "After the stream, Twilio hangs up.",
            ], texts
            await console.shot("9-reconnected-then-limit")

            # What the rest of the feed's events look like, as the bridge publishes them.
            shown = await console.page.evaluate(
                "async (lines) => lines.map((await import('/softphone/feed.js')).describe)",
                FEED_SAMPLES,
            )
    assert [(row["kind"], row["text"], row.get("meta", "")) for row in shown] == FEED_SHOWN
    assert fake.violations == []
    assert len(fake.sessions) == CALLS + 3  # and one more after the drop


@pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason="Debian's chromium is not installed")
async def test_a_barge_in_shows_where_the_caller_cut_the_agent_off(
    logs: LogCapture, tmp_path: Path
) -> None:
    # The caller starts talking 1.5 s into an 8 s greeting.
    wav = tmp_path / "caller.wav"
    caller_wav(wav, "hello are you there", lead_s=1.5, tail_s=30.0)
    script = [[Say("Hello, this is a very long greeting that goes on and on.", 8000)]]
    script += [[Say("Yes, I am here.", 400)]]
    async with (
        FakeRealtimeServer("ga", script, transcripts=["hello are you there"]) as fake,
        chromium(wav) as browser,
    ):
        settings = make_settings(OPENAI_API_KEY="sk-test-0123456789", REALTIME_URL=fake.url)
        context = await browser.new_context(permissions=["microphone"])
        context.set_default_timeout(15_000)
        console = Console(await context.new_page(), tmp_path)
        async with running_bridge(settings, BOOK) as bridge:  # type: ignore[arg-type]
            await console.page.goto(f"{bridge.base_url}/softphone")
            await console.page.click("#call")
            await console.wait_row("barge_in")
            await console.wait_row("transcript", 3)  # the cut greeting, the caller, the reply
            await console.shot("10-barge-in")
            await console.page.click("#hangup")
            ended = await console.wait_state("ended")
            await watched_feeds_closed()
            rows = await console.rows()
    [barge_in] = logs.events("barge_in")
    played_s = f"{barge_in['played_ms'] / 1000:.1f} s"
    ms = barge_in["reaction_ms"]
    reaction = f"{ms:.1f}" if ms < 10 else str(math.floor(ms + 0.5))  # as the page rounds
    [greeting] = [r for r in logs.events("transcript") if r["role"] == "agent" and r["interrupted"]]
    assert 1000 <= barge_in["played_ms"] < 8000, barge_in
    shown = [r for r in rows if r[0] in ("barge_in", "transcript")]
    assert shown[0] == [
        "transcript",
        "agent interrupted",
        greeting["text"],
        f"interrupted after {greeting['played_ms'] / 1000:.1f} s",
    ], rows
    assert shown[1] == [
        "barge_in",
        "note warn",
        f"You talked over the agent after {played_s} of its reply, audio cut in {reaction} ms",
        "",
    ], rows
    assert shown[2][1:3] == ["caller", "hello are you there"], rows
    assert shown[3][1:3] == ["agent", "Yes, I am here."], rows
    assert ended["reason"] == "caller_hangup"
    [end] = [r for r in rows if r[0] == "call_ended"]
    assert end[3].endswith(" · 1 barge-in"), end
