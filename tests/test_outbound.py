"""Outbound calls: `POST /calls` against the real twilio `Client` and the fake Twilio REST, and the
pure rules under it (`bridge.outbound`): what a body may say, how many calls go out how fast."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from twilio.request_validator import RequestValidator

from bridge.cli import main
from bridge.outbound import (
    MAX_CONTEXT_BYTES,
    DialError,
    OutboundLimits,
    Refused,
    Slot,
    parse_dial,
)
from bridge.persona import Persona, PersonaBook
from tests.conftest import LogCapture, RunningBridge, free_port, make_settings, running_bridge
from tests.fakes.twilio_rest import FakeTwilioRest
from tests.tools.helpers import ACCOUNT_SID, AUTH_TOKEN, OPENAI_KEY

API_KEY = "vb-api-key-0123456789abcdef"
SALES_NUMBER = "+12125550100"
CALLEE = "+14155550123"


def sales() -> Persona:
    return Persona(
        name="sales",
        instructions="Sell.",
        greeting="Hello.",
        numbers=(SALES_NUMBER,),
    )


def book() -> PersonaBook:
    return PersonaBook(
        [Persona(name="desk", instructions="Answer.", greeting="Hi.", default=True), sales()]
    )


# --- the body ---------------------------------------------------------------------------------


def test_a_body_names_the_callee_the_persona_and_defaults_from_to_its_first_number() -> None:
    dial = parse_dial(
        json.dumps({"to": CALLEE, "persona": "sales", "context": {"order": 42}}).encode(), book()
    )
    assert (dial.to, dial.from_, dial.persona.name, dial.context) == (
        CALLEE,
        SALES_NUMBER,
        "sales",
        {"order": 42},
    )
    explicit = parse_dial(
        json.dumps({"to": CALLEE, "persona": "sales", "from": "+442071838750"}).encode(), book()
    )
    assert explicit.from_ == "+442071838750"


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b"not json", 400, "not JSON"),
        (b"[1]", 400, "not a JSON object"),
        (json.dumps({"to": "4155550123", "persona": "sales"}).encode(), 422, "to: '4155550123'"),
        (json.dumps({"to": "+0123456789", "persona": "sales"}).encode(), 422, "E.164"),
        (json.dumps({"to": "+1234567890123456", "persona": "sales"}).encode(), 422, "E.164"),
        (json.dumps({"to": 14155550123, "persona": "sales"}).encode(), 422, "'int'"),
        (json.dumps({"to": CALLEE, "persona": "nobody"}).encode(), 404, "'nobody' is not loaded"),
        (json.dumps({"to": CALLEE, "persona": "desk"}).encode(), 422, "has no numbers"),
        (json.dumps({"to": CALLEE, "persona": "sales", "from": "x"}).encode(), 422, "from:"),
        (json.dumps({"to": CALLEE, "persona": "sales", "context": [1]}).encode(), 422, "context"),
        (json.dumps({"to": CALLEE, "persona": "sales", "ring": 1}).encode(), 422, "ring"),
        (
            json.dumps(
                {"to": CALLEE, "persona": "sales", "context": {"x": "a" * MAX_CONTEXT_BYTES}}
            ).encode(),
            422,
            f"over {MAX_CONTEXT_BYTES} bytes",
        ),
    ],
)
def test_a_bad_body_gets_its_status_and_says_what_is_wrong(
    body: bytes, status: int, words: str
) -> None:
    with pytest.raises(DialError) as caught:
        parse_dial(body, book())
    assert caught.value.status == status
    assert words in caught.value.message


# --- the limits -------------------------------------------------------------------------------


def test_the_pace_spaces_slots_one_interval_apart_and_refuses_past_the_wait() -> None:
    limits = OutboundLimits(max_calls=100, per_second=2.0, ttl_s=60.0, max_wait_s=1.0)
    slots = [limits.reserve(10.0) for _ in range(4)]
    assert [s.at for s in slots if isinstance(s, Slot)] == [10.0, 10.5, 11.0]
    refused = slots[3]
    assert isinstance(refused, Refused) and refused.retry_after_s == 1
    assert "2 calls a second" in refused.reason
    # Later, the pace has room again: the next slot is now, not in the past.
    later = limits.reserve(20.0)
    assert isinstance(later, Slot) and later.at == 20.0


def test_calls_count_until_they_end_or_expire_and_a_refused_create_frees_its_place() -> None:
    limits = OutboundLimits(max_calls=2, per_second=100.0, ttl_s=60.0)
    first, second = limits.reserve(0.0), limits.reserve(0.0)
    assert isinstance(first, Slot) and isinstance(second, Slot)
    full = limits.reserve(0.1)
    assert isinstance(full, Refused) and full.retry_after_s == 1
    assert "2 outbound calls already live" in full.reason
    limits.placed(first.ticket, "CA1", now=0.0)
    limits.release(second.ticket)  # Twilio refused it
    assert limits.live == 1
    third = limits.reserve(1.0)
    assert isinstance(third, Slot)
    limits.placed(third.ticket, "CA3", now=1.0)
    assert isinstance(limits.reserve(1.0), Refused)
    assert limits.ended("CA1") is True and limits.ended("CA1") is False
    assert limits.live == 1
    # CA3's end never reported: it stops counting ttl_s after it was placed.
    assert limits.live == 1 and isinstance(limits.reserve(61.5), Slot)
    assert not limits.is_ours("CA3")


# --- the route, over the real twilio Client -------------------------------------------------


@asynccontextmanager
async def outbound_bridge(
    rest: FakeTwilioRest | None = None, **settings: Any
) -> AsyncIterator[RunningBridge]:
    port = free_port()
    values: dict[str, Any] = {
        "OPENAI_API_KEY": OPENAI_KEY,
        "REALTIME_URL": "ws://127.0.0.1:9/realtime",
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_API_BASE_URL": rest.url if rest is not None else "http://127.0.0.1:9",
        "VOICEBRIDGE_API_KEY": API_KEY,
    }
    values.update(settings)
    values = {k: v for k, v in values.items() if v is not None}
    async with running_bridge(make_settings(**values), book(), port=port) as bridge:  # type: ignore[arg-type]
        yield bridge


def bearer(key: str = API_KEY) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def post_calls(
    bridge: RunningBridge, body: object, headers: dict[str, str] | None = None
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=bridge.base_url, timeout=15) as client:
        return await client.post(
            "/calls", json=body, headers=bearer() if headers is None else headers
        )


async def test_a_call_is_placed_with_detection_and_signed_callbacks(logs: LogCapture) -> None:
    with FakeTwilioRest(ACCOUNT_SID, AUTH_TOKEN) as rest:
        async with outbound_bridge(rest) as bridge:
            answer = await post_calls(
                bridge, {"to": CALLEE, "persona": "sales", "context": {"order": 42}}
            )
            assert answer.status_code == 201, answer.text
            call_sid = answer.json()["call_sid"]
            (create,) = rest.creates()
            assert create.created == call_sid and len(call_sid) == 34
            base = bridge.base_url
            assert create.form == {
                "To": CALLEE,
                "From": SALES_NUMBER,
                "Url": f"{base}/outbound-answer?persona=sales",
                "Method": "POST",
                "MachineDetection": "DetectMessageEnd",
                "AsyncAmd": "true",
                "AsyncAmdStatusCallback": f"{base}/amd-status",
                "AsyncAmdStatusCallbackMethod": "POST",
                "StatusCallback": f"{base}/call-status",
                "StatusCallbackEvent": "completed",
                "StatusCallbackMethod": "POST",
            }
            assert create.lists["StatusCallbackEvent"] == [
                "initiated",
                "ringing",
                "answered",
                "completed",
            ]
            # The context stays in the process, never in a URL Twilio holds.
            assert "order" not in create.form["Url"]  # (the Url is pinned above, too)
            placed = await bridge.app.state.outbound.placed.take(call_sid)
            assert placed is not None and placed.context == {"order": 42}
            assert bridge.app.state.outbound.limits.live == 1
    (placed,) = logs.events("outbound_call_placed")
    assert placed["call_sid"] == call_sid and placed["persona"] == "sales"


async def test_the_key_is_required_and_without_one_the_route_is_not_there() -> None:
    with FakeTwilioRest(ACCOUNT_SID, AUTH_TOKEN) as rest:
        async with outbound_bridge(rest) as bridge:
            body = {"to": CALLEE, "persona": "sales"}
            missing = await post_calls(bridge, body, headers={})
            wrong = await post_calls(bridge, body, headers=bearer("vb-wrong-key"))
            basic = await post_calls(bridge, body, headers={"authorization": f"Basic {API_KEY}"})
            assert [r.status_code for r in (missing, wrong, basic)] == [401, 401, 401]
            assert missing.headers["www-authenticate"] == "Bearer"
        async with outbound_bridge(rest, VOICEBRIDGE_API_KEY=None) as bridge:
            off = await post_calls(bridge, body)
            assert off.status_code == 404
        assert rest.creates() == []


async def test_bad_requests_never_reach_twilio() -> None:
    with FakeTwilioRest(ACCOUNT_SID, AUTH_TOKEN) as rest:
        async with outbound_bridge(rest) as bridge:
            unknown = await post_calls(bridge, {"to": CALLEE, "persona": "nobody"})
            not_e164 = await post_calls(bridge, {"to": "415-555-0123", "persona": "sales"})
            assert (unknown.status_code, not_e164.status_code) == (404, 422)
            assert "not an E.164" in not_e164.json()["error"]
            async with httpx.AsyncClient(base_url=bridge.base_url, timeout=15) as client:
                huge = await client.post(
                    "/calls", content=b"{" + b" " * 20_000 + b"}", headers=bearer()
                )
            assert huge.status_code == 413
        assert rest.creates() == []


async def test_twilio_s_refusal_is_a_502_with_its_code_and_message(logs: LogCapture) -> None:
    message = "Permission to send an SMS or make a call to this number has not been enabled"
    with FakeTwilioRest(ACCOUNT_SID, AUTH_TOKEN, create_error=(400, 21215, message)) as rest:
        async with outbound_bridge(rest) as bridge:
            answer = await post_calls(bridge, {"to": CALLEE, "persona": "sales"})
            assert answer.status_code == 502
            assert answer.json() == {
                "error": "Twilio did not place the call",
                "twilio_code": 21215,
                "twilio_message": message,
                "twilio_status": 400,
            }
            assert bridge.app.state.outbound.limits.live == 0  # its place is free again
    (failed,) = logs.events("outbound_call_failed")
    assert (failed["code"], failed["http_status"]) == (21215, 400)


async def test_an_unreachable_twilio_is_a_502_without_a_code() -> None:
    async with outbound_bridge(None) as bridge:  # nothing listens on port 9
        answer = await post_calls(bridge, {"to": CALLEE, "persona": "sales"})
        assert answer.status_code == 502
        assert answer.json()["twilio_code"] is None and answer.json()["twilio_message"]
        assert bridge.app.state.outbound.limits.live == 0


def sign(bridge: RunningBridge, path: str, form: dict[str, str]) -> dict[str, str]:
    url = f"{bridge.base_url}{path}"
    return {"x-twilio-signature": RequestValidator(AUTH_TOKEN).compute_signature(url, form)}


async def test_the_end_twilio_reports_frees_the_place_and_is_logged(logs: LogCapture) -> None:
    with FakeTwilioRest(ACCOUNT_SID, AUTH_TOKEN) as rest:
        async with outbound_bridge(rest, MAX_OUTBOUND_CALLS=1) as bridge:
            first = await post_calls(bridge, {"to": CALLEE, "persona": "sales"})
            call_sid = first.json()["call_sid"]
            full = await post_calls(bridge, {"to": CALLEE, "persona": "sales"})
            assert full.status_code == 429 and full.headers["retry-after"] == "1"
            async with httpx.AsyncClient(base_url=bridge.base_url, timeout=15) as client:
                ringing = {"CallSid": call_sid, "CallStatus": "ringing"}
                busy = {"CallSid": call_sid, "CallStatus": "busy", "CallDuration": "0"}
                forged = await client.post("/call-status", data=busy)
                assert forged.status_code == 403
                for form in (ringing, busy):
                    got = await client.post(
                        "/call-status", data=form, headers=sign(bridge, "/call-status", form)
                    )
                    assert got.status_code == 204
            assert bridge.app.state.outbound.limits.live == 0
            await asyncio.sleep(1.0)  # the pace: one call a second
            again = await post_calls(bridge, {"to": CALLEE, "persona": "sales"})
            assert again.status_code == 201
    (ended,) = logs.events("outbound_call_ended")
    assert (ended["call_sid"], ended["outcome"], ended["known"]) == (call_sid, "busy", True)
    assert [e["status"] for e in logs.events("outbound_call_status")] == ["ringing"]
    assert len(logs.events("call_status_rejected")) == 1


async def test_fifty_at_once_only_the_allowed_reach_twilio_at_its_pace() -> None:
    rate = 10.0
    with FakeTwilioRest(ACCOUNT_SID, AUTH_TOKEN) as rest:
        async with outbound_bridge(
            rest, MAX_OUTBOUND_CALLS=4, OUTBOUND_CALLS_PER_SECOND=rate
        ) as bridge:
            async with httpx.AsyncClient(
                base_url=bridge.base_url,
                timeout=20,
                limits=httpx.Limits(max_connections=50),
            ) as client:
                answers = await asyncio.gather(
                    *(
                        client.post(
                            "/calls", json={"to": CALLEE, "persona": "sales"}, headers=bearer()
                        )
                        for _ in range(50)
                    )
                )
            statuses = [a.status_code for a in answers]
            assert statuses.count(201) == 4 and statuses.count(429) == 46
            assert {a.headers["retry-after"] for a in answers if a.status_code == 429} == {"1"}
            creates = rest.creates()
            assert len(creates) == 4
            assert {c.created for c in creates} == {
                a.json()["call_sid"] for a in answers if a.status_code == 201
            }
            gaps = [b.time - a.time for a, b in itertools.pairwise(creates)]
            assert len(gaps) == 3 and min(gaps) >= 1 / rate, gaps


# --- voicebridge dial ---------------------------------------------------------------------------


async def test_dial_places_the_call_through_the_bridge_and_prints_its_sid(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VOICEBRIDGE_API_KEY", API_KEY)
    with FakeTwilioRest(ACCOUNT_SID, AUTH_TOKEN) as rest:
        async with outbound_bridge(rest) as bridge:
            argv = ["dial", CALLEE, "--url", bridge.base_url, "--persona", "sales"]
            status = await asyncio.to_thread(main, [*argv, "--context", '{"order": 42}'])
            assert status == 0
            (create,) = rest.creates()
            assert (create.form["To"], create.form["From"]) == (CALLEE, SALES_NUMBER)
            assert create.created in capsys.readouterr().out.splitlines()  # with the log lines
            held = await bridge.app.state.outbound.placed.take(create.created)
            assert held.context == {"order": 42}
            monkeypatch.setenv("VOICEBRIDGE_API_KEY", "vb-wrong-key")
            assert await asyncio.to_thread(main, argv) == 1
            assert "HTTP 401" in capsys.readouterr().err
            assert len(rest.creates()) == 1


@pytest.mark.parametrize(
    ("argv", "status", "words"),
    [
        (["dial", "4155550123"], 2, "not an E.164"),
        (["dial", CALLEE, "--from", "12"], 2, "--from '12'"),
        (["dial", CALLEE, "--context", "{"], 2, "--context is not JSON"),
        (["dial", CALLEE, "--context", "[1]"], 2, "must be a JSON object"),
        (["dial", CALLEE, "--url", "127.0.0.1:8080"], 2, "expected http://"),
        (
            ["dial", CALLEE, "--url", "http://127.0.0.1:9"],
            3,
            "cannot reach http://127.0.0.1:9/calls",
        ),
    ],
)
def test_dial_says_what_is_wrong_with_its_exit_status(
    argv: list[str],
    status: int,
    words: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("VOICEBRIDGE_API_KEY", API_KEY)
    assert main(argv) == status
    err = capsys.readouterr().err
    assert err.startswith("voicebridge dial: ") and words in err, err


def test_dial_without_a_key_stops_before_sending(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("VOICEBRIDGE_API_KEY", raising=False)
    assert main(["dial", CALLEE, "--url", "http://127.0.0.1:9"]) == 2
    assert "VOICEBRIDGE_API_KEY is not set" in capsys.readouterr().err


def test_the_api_key_is_a_secret_scrubbed_from_logs_and_blank_is_unset() -> None:
    settings = make_settings(VOICEBRIDGE_API_KEY=API_KEY)
    assert API_KEY in settings.secrets() and API_KEY not in repr(settings)
    assert make_settings(VOICEBRIDGE_API_KEY="  ").VOICEBRIDGE_API_KEY is None
    assert (settings.MAX_OUTBOUND_CALLS, settings.OUTBOUND_CALLS_PER_SECOND) == (10, 1.0)


async def test_a_draining_bridge_places_no_call() -> None:
    with FakeTwilioRest(ACCOUNT_SID, AUTH_TOKEN) as rest:
        async with outbound_bridge(rest) as bridge:
            bridge.calls.draining = True
            answer = await post_calls(bridge, {"to": CALLEE, "persona": "sales"})
            assert answer.status_code == 503 and "draining" in answer.json()["error"]
        assert rest.creates() == []


async def test_a_call_nobody_answered_is_a_call_ended_event() -> None:
    from tests.fakes.events import FakeEventReceiver

    with FakeTwilioRest(ACCOUNT_SID, AUTH_TOKEN) as rest, FakeEventReceiver() as receiver:
        async with outbound_bridge(
            rest,
            WEBHOOK_SIGNING_SECRET="whsec-test-0123456789",
            CALL_WEBHOOK_URL=receiver.url + "/events",
        ) as bridge:
            first = await post_calls(bridge, {"to": CALLEE, "persona": "sales"})
            call_sid = first.json()["call_sid"]
            form = {"CallSid": call_sid, "CallStatus": "no-answer", "CallDuration": "0"}
            async with httpx.AsyncClient(base_url=bridge.base_url, timeout=15) as client:
                got = await client.post(
                    "/call-status", data=form, headers=sign(bridge, "/call-status", form)
                )
                assert got.status_code == 204
                # Reported twice (Twilio retries): one event only, the call is no longer held.
                await client.post(
                    "/call-status", data=form, headers=sign(bridge, "/call-status", form)
                )
            (event,) = await receiver.wait_for("call.ended", 1, timeout=10)
    assert event["call_sid"] == call_sid
    data = event["data"]
    assert (data["reason"], data["direction"], data["duration_s"]) == ("no_answer", "outbound", 0.0)
    assert (data["from"], data["to"], data["persona"]) == (SALES_NUMBER, CALLEE, "sales")
    assert data["transcript"] == [] and data["recording"] is None
    assert len(receiver.of_type("call.ended")) == 1
