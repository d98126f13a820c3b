"""Twilio's voice webhook, exactly as Twilio calls it: the first half of a simulated call.

Twilio POSTs the call's details form-encoded to the number's webhook, signs them with the
account's auth token, and expects TwiML back. For a bridge the answer is
`<Connect><Stream url=…>` whose `<Parameter>` children come back in the stream's `start`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
from twilio.request_validator import RequestValidator

from bridge.sim.errors import CallRejected
from bridge.sim.ids import DEFAULT_ACCOUNT_SID, new_sid

WEBHOOK_PATH = "/incoming-call"
WEBHOOK_TIMEOUT_SECONDS = 15.0
"""Twilio gives up on a voice webhook after 15 seconds."""

TWILIO_USER_AGENT = "TwilioProxy/1.1"
_TWIML_CONTENT_TYPES = ("text/xml", "application/xml", "text/html")


@dataclass(frozen=True)
class StreamTarget:
    """Where the bridge told Twilio to stream the call, and with which parameters."""

    url: str
    parameters: dict[str, str] = field(hash=False)
    call_sid: str
    account_sid: str
    twiml: str


def webhook_params(
    *, call_sid: str, account_sid: str, from_number: str, to_number: str
) -> dict[str, str]:
    """The form fields of an inbound-call webhook (the subset a bridge relies on)."""
    return {
        "CallSid": call_sid,
        "AccountSid": account_sid,
        "From": from_number,
        "To": to_number,
        "CallStatus": "ringing",
        "Direction": "inbound",
        "ApiVersion": "2010-04-01",
        "Caller": from_number,
        "Called": to_number,
    }


async def place_call(
    base_url: str,
    *,
    from_number: str = "+15550001111",
    to_number: str = "+15550002222",
    call_sid: str | None = None,
    account_sid: str = DEFAULT_ACCOUNT_SID,
    auth_token: str | None = None,
    client: httpx.AsyncClient | None = None,
    extra_params: Mapping[str, str] | None = None,
    sign_base: str | None = None,
) -> StreamTarget:
    """Ring the bridge as Twilio would and return the stream its TwiML asks for.

    Signs the request with `auth_token` when given (omitting the header otherwise, as an
    unsigned attacker would). `extra_params` adds form fields (they are signed too), for
    checking that a server validates over every field it received. Raises `CallRejected`
    on a non-200 answer or TwiML without `<Connect><Stream>`. `sign_base` is the public base
    URL Twilio would have requested (the bridge's PUBLIC_URL) when the request goes elsewhere
    (a tunnel's far end, a port on this machine); the signature covers it, as Twilio's does.
    """
    url = base_url.rstrip("/") + WEBHOOK_PATH
    signed_url = sign_base.rstrip("/") + WEBHOOK_PATH if sign_base else url
    params = webhook_params(
        call_sid=call_sid or new_sid("CA"),
        account_sid=account_sid,
        from_number=from_number,
        to_number=to_number,
    )
    params.update(extra_params or {})
    headers = {"User-Agent": TWILIO_USER_AGENT}
    if auth_token is not None:
        headers["X-Twilio-Signature"] = RequestValidator(auth_token).compute_signature(
            signed_url, params
        )
    if client is None:
        async with httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_SECONDS) as own_client:
            response = await own_client.post(url, data=params, headers=headers)
    else:
        response = await client.post(url, data=params, headers=headers)
    return parse_connect_twiml(
        response.status_code,
        response.headers.get("content-type", ""),
        response.text,
        call_sid=params["CallSid"],
        account_sid=account_sid,
    )


def parse_connect_twiml(
    status: int, content_type: str, body: str, *, call_sid: str, account_sid: str
) -> StreamTarget:
    """Read a webhook answer the way Twilio would, keeping only what a stream needs."""
    if status != 200:
        raise CallRejected("webhook did not answer 200", status=status, body=body)
    media_type = content_type.split(";")[0].strip().lower()
    if media_type not in _TWIML_CONTENT_TYPES:
        raise CallRejected(
            f"Content-Type {content_type!r} is not TwiML (Twilio error 12300)",
            status=status,
            body=body,
        )
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise CallRejected(f"TwiML is not XML: {exc}", status=status, body=body) from exc
    if root.tag != "Response":
        raise CallRejected(f"TwiML root is <{root.tag}>, not <Response>", status=status, body=body)
    verbs = tuple(child.tag for child in root)
    stream = root.find("Connect/Stream")
    if stream is None:
        raise CallRejected("TwiML has no <Connect><Stream>", status=status, body=body, verbs=verbs)
    url = stream.get("url", "")
    if urlsplit(url).scheme not in ("ws", "wss") or not urlsplit(url).netloc:
        raise CallRejected(
            f"<Stream url={url!r}> is not an absolute ws(s):// URL",
            status=status,
            body=body,
            verbs=verbs,
        )
    parameters: dict[str, str] = {}
    for parameter in stream.findall("Parameter"):
        name = parameter.get("name")
        if not name:
            raise CallRejected("<Parameter> without a name", status=status, body=body, verbs=verbs)
        parameters[name] = parameter.get("value", "")
    return StreamTarget(
        url=url,
        parameters=parameters,
        call_sid=call_sid,
        account_sid=account_sid,
        twiml=body,
    )
