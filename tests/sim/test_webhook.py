"""The voice webhook as Twilio calls it: form fields, signature, TwiML reading."""

import re
from collections.abc import Callable
from urllib.parse import parse_qsl

import httpx
import pytest
from twilio.request_validator import RequestValidator

from bridge.sim import CallRejected, place_call

BASE = "https://bridge.example.com"
TOKEN = "test-auth-token"
CONNECT_TWIML = (
    '<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
    '<Stream url="wss://bridge.example.com/media-stream">'
    '<Parameter name="token" value="tok-123"/><Parameter name="persona" value="default"/>'
    "</Stream></Connect></Response>"
)
BUSY_TWIML = "<Response><Say>All lines are busy.</Say><Hangup/></Response>"


def answering(
    status: int, body: str, seen: list[httpx.Request], content_type: str = "text/xml"
) -> httpx.AsyncClient:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, text=body, headers={"content-type": content_type})

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


def form(request: httpx.Request) -> dict[str, str]:
    return dict(parse_qsl(request.content.decode()))


async def test_webhook_posts_twilios_form_fields_to_incoming_call() -> None:
    seen: list[httpx.Request] = []
    async with answering(200, CONNECT_TWIML, seen) as client:
        await place_call(BASE + "/", call_sid="CA" + "1" * 32, client=client)
    [request] = seen
    assert request.method == "POST"
    assert str(request.url) == BASE + "/incoming-call"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert form(request) == {
        "CallSid": "CA" + "1" * 32,
        "AccountSid": "AC" + "0" * 32,
        "From": "+15550001111",
        "To": "+15550002222",
        "CallStatus": "ringing",
        "Direction": "inbound",
        "ApiVersion": "2010-04-01",
        "Caller": "+15550001111",
        "Called": "+15550002222",
    }
    assert "x-twilio-signature" not in request.headers


async def test_signature_validates_with_twilios_own_validator() -> None:
    seen: list[httpx.Request] = []
    async with answering(200, CONNECT_TWIML, seen) as client:
        await place_call(BASE, auth_token=TOKEN, client=client, extra_params={"FromCity": "X"})
    [request] = seen
    signature = request.headers["x-twilio-signature"]
    validator = RequestValidator(TOKEN)
    assert validator.validate(str(request.url), form(request), signature)
    assert not RequestValidator("other-token").validate(str(request.url), form(request), signature)
    tampered = form(request) | {"From": "+15559999999"}
    assert not validator.validate(str(request.url), tampered, signature)


async def test_connect_stream_twiml_becomes_the_stream_target() -> None:
    async with answering(200, CONNECT_TWIML, []) as client:
        target = await place_call(
            BASE, call_sid="CA" + "2" * 32, account_sid="AC" + "3" * 32, client=client
        )
    assert target.url == "wss://bridge.example.com/media-stream"
    assert target.parameters == {"token": "tok-123", "persona": "default"}
    assert target.call_sid == "CA" + "2" * 32
    assert target.account_sid == "AC" + "3" * 32
    assert target.twiml == CONNECT_TWIML


async def test_a_fresh_call_sid_is_ca_and_32_hex_digits() -> None:
    seen: list[httpx.Request] = []
    async with answering(200, CONNECT_TWIML, seen) as client:
        first = await place_call(BASE, client=client)
        second = await place_call(BASE, client=client)
    assert re.fullmatch(r"CA[0-9a-f]{32}", first.call_sid)
    assert first.call_sid != second.call_sid
    assert form(seen[0])["CallSid"] == first.call_sid


async def test_busy_twiml_raises_call_rejected_naming_the_verbs() -> None:
    async with answering(200, BUSY_TWIML, []) as client:
        with pytest.raises(CallRejected) as caught:
            await place_call(BASE, client=client)
    assert caught.value.status == 200
    assert caught.value.verbs == ("Say", "Hangup")
    assert caught.value.body == BUSY_TWIML
    assert "<Connect><Stream>" in str(caught.value)


async def test_forbidden_webhook_raises_call_rejected_with_status_and_body() -> None:
    async with answering(403, "bad signature", [], content_type="text/plain") as client:
        with pytest.raises(CallRejected) as caught:
            await place_call(BASE, client=client)
    assert caught.value.status == 403
    assert caught.value.body == "bad signature"
    assert "403" in str(caught.value)


@pytest.mark.parametrize(
    ("body", "content_type", "why"),
    [
        (CONNECT_TWIML, "application/json", "Content-Type"),
        ("<Response><Connect>", "text/xml", "not XML"),
        ("<Respons/>", "text/xml", "root"),
        (CONNECT_TWIML.replace("wss://", "https://"), "text/xml", "ws(s)://"),
    ],
)
async def test_unusable_answers_are_rejected_with_a_reason(
    body: str, content_type: str, why: str
) -> None:
    async with answering(200, body, [], content_type=content_type) as client:
        with pytest.raises(CallRejected, match=re.escape(why)):
            await place_call(BASE, client=client)


async def test_without_a_client_place_call_opens_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[httpx.Request] = []
    real_client: Callable[..., httpx.AsyncClient] = httpx.AsyncClient
    opened: list[httpx.AsyncClient] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, text=CONNECT_TWIML, headers={"content-type": "text/xml"})

    def with_mock(**kwargs: object) -> httpx.AsyncClient:
        opened.append(real_client(transport=httpx.MockTransport(handler)))
        return opened[-1]

    monkeypatch.setattr(httpx, "AsyncClient", with_mock)
    target = await place_call(BASE)
    assert target.parameters["token"] == "tok-123"
    assert len(seen) == 1
    assert opened[0].is_closed
