"""Caller-controlled text (`bridge/caller_text.py`): cleaned and capped before it reaches the
TwiML, the logs or the model's instructions; over the real webhook where it matters."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from urllib.parse import quote

import httpx
import pytest

from bridge.caller_text import (
    NUMBER_MAX_CHARS,
    PARAMETER_MAX_CHARS,
    PARAMETERS_MAX_COUNT,
    SID_MAX_CHARS,
    clean_number,
    clean_parameters,
    clean_text,
)
from tests.conftest import LogCapture, make_settings, running_bridge

CALL_SID = "CA" + "c" * 32


def test_control_and_non_xml_characters_are_removed() -> None:
    assert clean_number("+1555\x1b[31m\x00\x0b0001\r\n\t\x7f\x85") == "+1555[31m0001"
    assert clean_text("a\u202eb\ud800c\ufffe\uffffd\u2066é", 32) == "abcdé"
    assert clean_number("client:alice") == "client:alice"  # honest values are untouched
    assert clean_number("sip:+15550001111@pbx.example.com") == "sip:+15550001111@pbx.example.com"


def test_values_are_capped_and_non_strings_are_empty() -> None:
    assert clean_number("9" * 60_000) == "9" * NUMBER_MAX_CHARS
    assert clean_number("\x00" * 1000 + "+1555") == ""  # the work is capped before cleaning
    assert clean_text("é" * 600, PARAMETER_MAX_CHARS) == "é" * PARAMETER_MAX_CHARS
    assert clean_number(None) == "" and clean_number(12) == ""


def test_stream_parameters_are_cleaned_capped_and_counted() -> None:
    params: dict[str, object] = {f"p{i}": "v" for i in range(40)}
    params = {"From": "+1\x1b555" + "1" * 100, "token": "t" * 900, "n\x00ame": ["x"], **params}
    cleaned = clean_parameters(params)
    assert len(cleaned) == PARAMETERS_MAX_COUNT
    assert cleaned["From"] == ("+1555" + "1" * 100)[:NUMBER_MAX_CHARS]
    assert cleaned["token"] == "t" * PARAMETER_MAX_CHARS
    assert cleaned["name"] == ""


def twiml_parameters(body: str) -> dict[str, str]:
    root = ET.fromstring(body)  # raises on XML that is not well-formed
    stream = root.find("./Connect/Stream")
    assert stream is not None
    return {p.attrib["name"]: p.attrib["value"] for p in stream.findall("Parameter")}


@pytest.mark.parametrize(
    ("bad", "left"),
    [("\x1b[2J", "[2J"), ("\x00", ""), ("\x0b", ""), ("\x0c\x1f\x7f\xc2\x9b", "")],
)
async def test_control_characters_in_from_and_to_give_well_formed_twiml(
    bad: str, left: str
) -> None:
    form = {"CallSid": CALL_SID, "From": f"+1555{bad}0001111", "To": f"{bad}+15550002222"}
    body = "&".join(f"{k}={quote(v, safe='', encoding='latin-1')}" for k, v in form.items())
    async with running_bridge(make_settings()) as bridge, httpx.AsyncClient() as http:
        response = await http.post(f"{bridge.base_url}/incoming-call", content=body.encode())
    assert response.status_code == 200
    params = twiml_parameters(response.text)
    assert (params["From"], params["To"]) == (f"+1555{left}0001111", f"{left}+15550002222")


async def test_a_60_kb_from_is_capped_in_the_twiml_and_the_logs(logs: LogCapture) -> None:
    huge = "+1" + "5" * 60_000
    async with running_bridge(make_settings()) as bridge, httpx.AsyncClient() as http:
        form = {"CallSid": "CA" + "d" * 2000, "From": huge, "To": "+15550002222"}
        response = await http.post(f"{bridge.base_url}/incoming-call", data=form)
    assert response.status_code == 200
    params = twiml_parameters(response.text)
    assert params["From"] == huge[:NUMBER_MAX_CHARS]
    assert len(response.content) < 2000
    (line,) = logs.events("webhook")
    assert line["call_sid"] == ("CA" + "d" * 2000)[:SID_MAX_CHARS]
    assert max(len(raw) for raw in logs.lines) < 4000


async def test_a_signed_webhook_signs_the_cleaned_numbers_into_the_token() -> None:
    from bridge.security import StreamTokens
    from bridge.sim import place_call
    from tests.conftest import free_port

    auth = "twilio-auth-token-0123456789abcdef"
    port = free_port()
    settings = make_settings(
        TWILIO_AUTH_TOKEN=auth,
        TWILIO_ACCOUNT_SID="AC" + "0" * 32,
        PUBLIC_URL=f"http://127.0.0.1:{port}",
    )
    huge = "+1\x1b" + "5" * 30_000  # twice in the form (From and Caller): 60 KB
    async with running_bridge(settings, port=port) as bridge:
        target = await place_call(
            bridge.base_url, auth_token=auth, from_number=huge, to_number="+1555\x000002222"
        )
    claims = StreamTokens(auth).verify(target.parameters["token"], target.call_sid)
    assert claims.caller == ("+1" + "5" * 30_000)[:NUMBER_MAX_CHARS] == target.parameters["From"]
    assert claims.called == "+15550002222" == target.parameters["To"]
    assert len(target.parameters["token"]) < PARAMETER_MAX_CHARS
