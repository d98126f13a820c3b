"""Who may call: signed webhooks, signed stream handshakes, single-use stream tokens.

Every refusal must happen before an upstream Realtime session is opened: the fake upstream
counts its sessions.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from twilio.request_validator import RequestValidator

from bridge.security import StreamTokens, TokenError
from bridge.sim import StreamTarget, TwilioMediaStream, place_call
from tests.conftest import (
    LogCapture,
    RunningBridge,
    free_port,
    make_settings,
    running_bridge,
    wait_until,
)
from tests.fakes.realtime import FakeRealtimeServer, Say

TOKEN = "twilio-auth-token-0123456789abcdef"


@asynccontextmanager
async def signed_bridge(fake: FakeRealtimeServer) -> AsyncIterator[RunningBridge]:
    port = free_port()
    settings = make_settings(
        OPENAI_API_KEY="sk-test-0123456789",
        REALTIME_URL=fake.url,
        TWILIO_AUTH_TOKEN=TOKEN,
        TWILIO_ACCOUNT_SID="AC" + "0" * 32,
        PUBLIC_URL=f"http://127.0.0.1:{port}",
    )
    async with running_bridge(settings, port=port) as bridge:
        yield bridge


async def closed_with(stream: TwilioMediaStream) -> int:
    info = await asyncio.wait_for(stream.closed, 5)
    return info.code


async def open_stream(target: StreamTarget, **kwargs: Any) -> TwilioMediaStream:
    stream = TwilioMediaStream(target, **kwargs)
    await stream.connect()
    return stream


async def test_unsigned_and_badly_signed_webhooks_get_403() -> None:
    async with FakeRealtimeServer("ga") as fake, signed_bridge(fake) as bridge:
        async with httpx.AsyncClient() as client:
            form = {"CallSid": "CA" + "1" * 32, "From": "+15550001111", "To": "+15550002222"}
            unsigned = await client.post(f"{bridge.base_url}/incoming-call", data=form)
            forged = await client.post(
                f"{bridge.base_url}/incoming-call",
                data=form,
                headers={"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"},
            )
            status = await client.post(f"{bridge.base_url}/stream-status", data=form)
        assert (unsigned.status_code, forged.status_code, status.status_code) == (403, 403, 403)
        assert fake.sessions == []


async def test_signature_is_checked_against_public_url_not_the_host_header() -> None:
    async with FakeRealtimeServer("ga") as fake, signed_bridge(fake) as bridge:
        form = {"CallSid": "CA" + "2" * 32, "From": "+15550001111", "To": "+15550002222"}
        validator = RequestValidator(TOKEN)
        url = f"{bridge.base_url}/incoming-call"
        spoofed_host = "evil.example.com"
        async with httpx.AsyncClient() as client:
            # Signed for the URL the attacker's Host header names: refused.
            bad = validator.compute_signature(f"http://{spoofed_host}/incoming-call", form)
            refused = await client.post(
                url, data=form, headers={"Host": spoofed_host, "X-Twilio-Signature": bad}
            )
            # Signed for PUBLIC_URL, whatever the Host header says: accepted.
            good = validator.compute_signature(url, form)
            accepted = await client.post(
                url, data=form, headers={"Host": spoofed_host, "X-Twilio-Signature": good}
            )
        assert refused.status_code == 403
        assert accepted.status_code == 200
        assert f"ws://127.0.0.1:{bridge.port}/media-stream" in accepted.text


async def test_signed_call_carries_a_token_and_connects(logs: LogCapture) -> None:
    async with FakeRealtimeServer("ga", [[Say("Hello", 200)]]) as fake, signed_bridge(fake) as b:
        target = await place_call(b.base_url, auth_token=TOKEN)
        assert set(target.parameters) >= {"From", "To", "persona", "token"}
        async with TwilioMediaStream(target, auth_token=TOKEN) as stream:
            await fake.wait_for_session()
            await wait_until(lambda: stream.played_ms_total >= 200, 5, "the greeting")
        assert stream.played_ms_total >= 200
        assert fake.violations == []
    assert target.parameters["token"] not in "\n".join(logs.lines)


async def test_unsigned_stream_handshake_is_closed_1008_before_any_upstream() -> None:
    async with FakeRealtimeServer("ga") as fake, signed_bridge(fake) as bridge:
        target = await place_call(bridge.base_url, auth_token=TOKEN)
        stream = await open_stream(target)  # no handshake signature
        assert await closed_with(stream) == 1008
        await stream.aclose(raise_errors=False)
        await asyncio.sleep(0.2)
        assert fake.sessions == []


@pytest.mark.parametrize("case", ["missing", "other_call", "tampered", "replayed"])
async def test_bad_stream_tokens_close_1008_and_open_nothing_upstream(case: str) -> None:
    async with FakeRealtimeServer("ga", [[Say("Hi", 100)]]) as fake, signed_bridge(fake) as b:
        target = await place_call(b.base_url, auth_token=TOKEN)
        params = dict(target.parameters)
        if case == "missing":
            del params["token"]
        elif case == "other_call":
            other = await place_call(b.base_url, auth_token=TOKEN)
            params["token"] = other.parameters["token"]
        elif case == "tampered":
            body, mac = params["token"].split(".")
            params["token"] = body + "." + mac[::-1]
        if case == "replayed":
            first = await open_stream(target, auth_token=TOKEN)
            await fake.wait_for_session()
            await first.stop()
            await first.aclose(raise_errors=False)
        bad = StreamTarget(target.url, params, target.call_sid, target.account_sid, target.twiml)
        stream = await open_stream(bad, auth_token=TOKEN)
        assert await closed_with(stream) == 1008
        await stream.aclose(raise_errors=False)
        await asyncio.sleep(0.2)
        assert len(fake.sessions) == (1 if case == "replayed" else 0)


def test_tokens_expire_after_at_most_sixty_seconds() -> None:
    now = [1_000_000.0]
    tokens = StreamTokens("secret-0123456789", ttl_s=3600, clock=lambda: now[0])
    token = tokens.mint("CA" + "3" * 32, "default")
    now[0] += 60.5
    with pytest.raises(TokenError, match="expired"):
        tokens.verify(token, "CA" + "3" * 32)


def test_token_carries_the_persona_the_webhook_chose() -> None:
    tokens = StreamTokens("secret-0123456789")
    claims = tokens.verify(tokens.mint("CA" + "4" * 32, "receptionist"), "CA" + "4" * 32)
    assert claims.persona == "receptionist"


def test_auth_token_without_public_url_is_a_configuration_error() -> None:
    from bridge.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="PUBLIC_URL"):
        load_settings(_env_file=None, TWILIO_AUTH_TOKEN="x" * 32)


def test_the_token_signs_the_caller_and_called_numbers() -> None:
    tokens = StreamTokens("secret-0123456789")
    sid = "CA" + "5" * 32
    token = tokens.mint(sid, "default", "+15550001111", "+15550002222")
    claims = tokens.verify(token, sid)
    assert (claims.caller, claims.called) == ("+15550001111", "+15550002222")
    assert len(token) < 200
    # the numbers cannot be swapped: the body is what is signed
    forged = tokens.mint(sid, "default", "+19990000000", "+15550002222")
    mac = token.split(".")[1]
    with pytest.raises(TokenError, match="signature mismatch"):
        tokens.verify(forged.split(".")[0] + "." + mac, sid)


def test_a_token_at_every_cap_still_fits_a_parameter_value() -> None:
    from bridge.caller_text import NUMBER_MAX_CHARS, PARAMETER_MAX_CHARS, SID_MAX_CHARS

    tokens = StreamTokens("secret-0123456789")
    sid, persona = "C" * SID_MAX_CHARS, "p" * 64
    token = tokens.mint(sid, persona, "1" * NUMBER_MAX_CHARS, "2" * NUMBER_MAX_CHARS)
    assert len(token) < 450 < PARAMETER_MAX_CHARS
    assert tokens.verify(token, sid).caller == "1" * NUMBER_MAX_CHARS


async def test_the_stream_tokens_are_registered_with_the_log_scrubber(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bridge import logs
    from tests.conftest import REAL_ADD_EXPIRING_SECRETS

    store = logs.ExpiringSecrets()
    monkeypatch.setattr(logs, "_expiring", store)
    monkeypatch.setattr(logs, "add_expiring_secrets", REAL_ADD_EXPIRING_SECRETS)
    webhook, stream_side = StreamTokens(TOKEN), StreamTokens(TOKEN)  # two replicas
    sid = "CA" + "6" * 32
    minted = webhook.mint(sid, "default", "+15550001111", "+15550002222")
    assert store.scrub(f"token={minted}") == "token=[redacted]"
    received = webhook.mint(sid, "default")
    store = logs.ExpiringSecrets()
    monkeypatch.setattr(logs, "_expiring", store)
    body, mac = received.split(".")
    with pytest.raises(TokenError):
        stream_side.verify(body + "." + mac[::-1], sid)  # not genuine: not registered
    assert len(store) == 0
    stream_side.verify(received, sid)
    assert store.scrub(received) == "[redacted]"
