"""An outbound call end to end, as Twilio runs it: `POST /calls` places it (fake Twilio REST),
Twilio requests `/outbound-answer` (signed) and opens the stream, and `/amd-status` says who
answered. Until then the agent is quiet; a person then hears the persona's outbound greeting,
a machine the voicemail after its beep and then the hang-up over Twilio REST."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from twilio.request_validator import RequestValidator

from bridge.cli import main
from bridge.persona import Outbound, Persona, PersonaBook
from bridge.sim import TwilioMediaStream
from bridge.sim.webhook import parse_connect_twiml, webhook_params
from tests.conftest import (
    LogCapture,
    RunningBridge,
    free_port,
    make_settings,
    running_bridge,
    wait_until,
)
from tests.fakes.realtime import FakeRealtimeServer, FakeSession, Say
from tests.fakes.twilio_rest import FakeTwilioRest
from tests.tools.helpers import ACCOUNT_SID, AUTH_TOKEN, OPENAI_KEY

API_KEY = "vb-api-key-0123456789abcdef"
CLINIC = "+12125550100"
CALLEE = "+14155550123"
GREETING = "Hi, this is Ada from the clinic, calling about your appointment."
VOICEMAIL = "Hi, this is the clinic: please call us back about your appointment."


def clinic() -> PersonaBook:
    return PersonaBook(
        [
            Persona(
                name="clinic",
                default=True,
                numbers=(CLINIC,),
                instructions="You answer the clinic's phone.",
                greeting="Thanks for calling the clinic.",
                outbound=Outbound(
                    greeting=GREETING,
                    instructions="You call patients to confirm appointments.",
                    voicemail=VOICEMAIL,
                ),
            )
        ]
    )


@dataclass
class Outbound_:
    bridge: RunningBridge
    rest: FakeTwilioRest
    call_sid: str
    stream: TwilioMediaStream
    session: FakeSession

    async def callback(self, path: str, form: dict[str, str]) -> httpx.Response:
        url = f"{self.bridge.base_url}{path}"
        signature = RequestValidator(AUTH_TOKEN).compute_signature(url, form)
        async with httpx.AsyncClient(timeout=10) as client:
            return await client.post(url, data=form, headers={"x-twilio-signature": signature})

    async def answered_by(self, kind: str) -> None:
        form = {"CallSid": self.call_sid, "AccountSid": ACCOUNT_SID, "AnsweredBy": kind}
        answer = await self.callback("/amd-status", {**form, "MachineDetectionDuration": "2400"})
        assert answer.status_code == 204


@asynccontextmanager
async def outbound_call(fake: FakeRealtimeServer) -> AsyncIterator[Outbound_]:
    port = free_port()
    with FakeTwilioRest(ACCOUNT_SID, AUTH_TOKEN) as rest:
        settings = make_settings(
            OPENAI_API_KEY=OPENAI_KEY,
            REALTIME_URL=fake.url,
            PUBLIC_URL=f"http://127.0.0.1:{port}",
            TWILIO_ACCOUNT_SID=ACCOUNT_SID,
            TWILIO_AUTH_TOKEN=AUTH_TOKEN,
            TWILIO_API_BASE_URL=rest.url,
            VOICEBRIDGE_API_KEY=API_KEY,
        )
        async with running_bridge(settings, clinic(), port=port) as bridge:  # type: ignore[arg-type]
            async with httpx.AsyncClient(base_url=bridge.base_url, timeout=10) as client:
                placed = await client.post(
                    "/calls",
                    json={"to": CALLEE, "context": {"patient": "Sam", "slot": "Tue 10:00"}},
                    headers={"authorization": f"Bearer {API_KEY}"},
                )
            assert placed.status_code == 201, placed.text
            call_sid = placed.json()["call_sid"]
            (create,) = rest.creates()
            # Twilio requests the call's Url when the callee picks up: From is ours.
            form = webhook_params(
                call_sid=call_sid,
                account_sid=ACCOUNT_SID,
                from_number=CLINIC,
                to_number=CALLEE,
            )
            form["Direction"] = "outbound-api"
            url = create.form["Url"]
            signature = RequestValidator(AUTH_TOKEN).compute_signature(url, form)
            async with httpx.AsyncClient(timeout=10) as client:
                answer = await client.post(
                    url, data=form, headers={"x-twilio-signature": signature}
                )
            target = parse_connect_twiml(
                answer.status_code,
                answer.headers.get("content-type", ""),
                answer.text,
                call_sid=call_sid,
                account_sid=ACCOUNT_SID,
                form=form,
            )
            async with TwilioMediaStream(target, auth_token=AUTH_TOKEN) as stream:
                session = await fake.wait_for_session()
                await wait_until(lambda: bridge.calls.runtimes, 5, "the call to be set up")
                yield Outbound_(bridge, rest, call_sid, stream, session)


def turn_detection(update: dict[str, Any]) -> dict[str, Any]:
    return update["session"]["audio"]["input"]["turn_detection"]


async def test_a_person_hears_the_outbound_greeting_once_detection_says_human(
    logs: LogCapture,
) -> None:
    async with FakeRealtimeServer("ga", script=[[Say(GREETING, 600)]]) as fake:
        async with outbound_call(fake) as call:
            first = await call.session.wait_for_event("session.update")
            instructions = first["session"]["instructions"]
            assert instructions.startswith("You call patients to confirm appointments.")
            assert '{"patient": "Sam", "slot": "Tue 10:00"}' in instructions
            assert turn_detection(first)["create_response"] is False
            await asyncio.sleep(0.3)
            assert call.session.client_events("response.create") == []  # quiet until detection
            await call.answered_by("human")
            second = await call.session.wait_for_event("session.update", nth=2)
            assert turn_detection(second)["create_response"] is True
            greeting = await call.session.wait_for_event("response.create")
            assert GREETING in greeting["response"]["instructions"]
            # The greeting's 600 ms of audio reach the callee: 4800 μ-law bytes.
            await wait_until(lambda: len(call.stream.heard_audio()) >= 4800, 10, "the greeting")
    (amd,) = logs.events("amd_status")
    assert (amd["answered_by"], amd["live"], amd["detection_ms"]) == ("human", True, 2400)
    assert [e["then"] for e in logs.events("answered_by")] == ["greet"]


async def test_a_machine_hears_the_voicemail_after_the_beep_then_twilio_hangs_up(
    logs: LogCapture,
) -> None:
    async with FakeRealtimeServer("ga", script=[[Say(VOICEMAIL, 600)]]) as fake:
        async with outbound_call(fake) as call:
            await call.session.wait_for_event("session.update")
            await call.answered_by("machine_end_beep")
            line = await call.session.wait_for_event("response.create")
            assert VOICEMAIL in line["response"]["instructions"]
            await wait_until(lambda: call.rest.updates(call.call_sid), 10, "the hang-up")
            (hangup,) = call.rest.updates(call.call_sid)
            assert hangup.form == {"Status": "completed"}
            assert len(call.session.client_events("session.update")) == 1  # never opened up
    (ended,) = logs.events("call_ended")
    assert ended["reason"] == "voicemail"


async def test_a_result_another_worker_received_reaches_the_live_call(logs: LogCapture) -> None:
    """`/amd-status` may land on another worker or replica than the stream: it leaves the
    result in the shared store, where the live call finds it."""
    async with FakeRealtimeServer("ga", script=[[Say(GREETING, 600)]]) as fake:
        async with outbound_call(fake) as call:
            await call.session.wait_for_event("session.update")
            # What another process's /amd-status does when the call is not live there.
            await call.bridge.services.answered_by.record(call.call_sid, "human")
            loop = asyncio.get_running_loop()
            left = loop.time()
            greeting = await call.session.wait_for_event("response.create")
            assert loop.time() - left < 2.0  # polled every 0.25 s
            assert GREETING in greeting["response"]["instructions"]
    assert [e["then"] for e in logs.events("answered_by")] == ["greet"]
    assert logs.events("amd_status") == []  # not through this process's route


async def test_a_result_before_the_stream_is_kept_for_it() -> None:
    async with FakeRealtimeServer("ga") as fake:
        port = free_port()
        settings = make_settings(
            OPENAI_API_KEY=OPENAI_KEY,
            REALTIME_URL=fake.url,
            PUBLIC_URL=f"http://127.0.0.1:{port}",
            TWILIO_ACCOUNT_SID=ACCOUNT_SID,
            TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        )
        async with running_bridge(settings, clinic(), port=port) as bridge:  # type: ignore[arg-type]
            form = {"CallSid": "CA" + "7" * 32, "AnsweredBy": "fax"}
            url = f"{bridge.base_url}/amd-status"
            signature = RequestValidator(AUTH_TOKEN).compute_signature(url, form)
            async with httpx.AsyncClient(timeout=10) as client:
                forged = await client.post(url, data=form)
                got = await client.post(url, data=form, headers={"x-twilio-signature": signature})
            assert (forged.status_code, got.status_code) == (403, 204)
            assert await bridge.services.answered_by.take("CA" + "7" * 32) == "fax"


# --- offline: voicebridge dial plays Twilio and the callee ------------------------------------


@asynccontextmanager
async def local_bridge(fake: FakeRealtimeServer) -> AsyncIterator[RunningBridge]:
    settings = make_settings(
        OPENAI_API_KEY=OPENAI_KEY, REALTIME_URL=fake.url, VOICEBRIDGE_API_KEY=API_KEY
    )
    async with running_bridge(settings, clinic()) as bridge:  # type: ignore[arg-type]
        yield bridge


async def test_offline_a_machine_answers_and_hears_the_voicemail(
    logs: LogCapture,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("VOICEBRIDGE_API_KEY", API_KEY)
    async with FakeRealtimeServer("ga", script=[[Say(VOICEMAIL, 800)]]) as fake:
        async with local_bridge(fake) as bridge:
            argv = ["dial", CALLEE, "--url", bridge.base_url, "--answer", "machine"]
            assert await asyncio.to_thread(main, argv) == 0
            session = fake.sessions[0]
            (line,) = session.client_events("response.create")
            assert VOICEMAIL in line["response"]["instructions"]
            assert bridge.app.state.outbound.limits.live == 0  # /call-status said completed
    out = capsys.readouterr().out
    assert "[detection] answered by machine_end_beep" in out
    assert "the bridge ended it (close 1000" in out
    (ended,) = logs.events("call_ended")
    assert ended["reason"] == "voicemail"
    (placed,) = logs.events("outbound_call_placed")
    assert placed["simulated"] is True


async def test_offline_a_person_answers_and_hears_the_greeting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VOICEBRIDGE_API_KEY", API_KEY)
    async with FakeRealtimeServer("ga", script=[[Say(GREETING, 800)]]) as fake:
        async with local_bridge(fake) as bridge:
            argv = ["dial", CALLEE, "--url", bridge.base_url, "--context", '{"slot": "Tue"}']
            assert await asyncio.to_thread(main, argv) == 0
            session = fake.sessions[0]
            (greeting,) = session.client_events("response.create")
            assert GREETING in greeting["response"]["instructions"]
            first = session.client_events("session.update")[0]
            assert '{"slot": "Tue"}' in first["session"]["instructions"]
    out = capsys.readouterr().out
    assert "[detection] answered by human" in out
    assert "agent  : 0.8 s of speech" in out
    assert "the caller hung up" in out
