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
class Verb:
    """One TwiML verb as Twilio would run it: `<Say>` text, `<Dial>` number, `<Hangup/>`,
    or a `<Connect><Stream>` (then `stream` is its target)."""

    name: str
    text: str = ""
    attrs: dict[str, str] = field(default_factory=dict, hash=False)
    stream: StreamTarget | None = None


@dataclass(frozen=True)
class StreamTarget:
    """Where the bridge told Twilio to stream the call, and with which parameters; what
    Twilio does when that stream ends: request `action` (the `<Connect action>`), or run
    `after_connect`, the verbs after `</Connect>`."""

    url: str
    parameters: dict[str, str] = field(hash=False)
    call_sid: str
    account_sid: str
    twiml: str
    action: str | None = None
    status_callback: str | None = None
    after_connect: tuple[Verb, ...] = ()
    form: dict[str, str] = field(default_factory=dict, hash=False)
    """The call's webhook parameters, which Twilio sends (and signs) with the action too."""


@dataclass(frozen=True)
class Continuation:
    """What the call did once its stream had ended, as Twilio runs it."""

    via: str  # "action": the <Connect> action's TwiML; "document": the verbs after </Connect>
    verbs: tuple[Verb, ...]
    twiml: str = ""

    @property
    def said(self) -> list[str]:
        return [v.text for v in self.verbs if v.name == "Say"]

    @property
    def dialed(self) -> str | None:
        return next((v.text for v in self.verbs if v.name == "Dial"), None)

    @property
    def reconnect(self) -> StreamTarget | None:
        """A new `<Connect><Stream>` for the same call (the agent takes the caller back)."""
        return next((v.stream for v in self.verbs if v.stream is not None), None)

    def describe(self) -> str:
        if self.reconnect is not None:
            return "back to the agent on a new stream"
        if self.dialed:
            return f"transferred to {self.dialed}"
        if self.said:
            return "heard: " + " / ".join(self.said)
        return "hung up"


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
    sign_url: str | None = None,
    sign_base: str | None = None,
) -> StreamTarget:
    """Ring the bridge as Twilio would and return the stream its TwiML asks for.

    Signs the request with `auth_token` when given (omitting the header otherwise, as an
    unsigned attacker would). `extra_params` adds form fields (they are signed too), for
    checking that a server validates over every field it received. Raises `CallRejected`
    on a non-200 answer or TwiML without `<Connect><Stream>`. `sign_base` is the public base
    URL Twilio would have requested (the bridge's PUBLIC_URL) when the request goes elsewhere
    (a tunnel's far end, a port on this machine); the signature covers it, as Twilio's does.
    `sign_url` is the whole URL to sign instead, when it is known.
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
    signed_url = sign_url or signed_url
    if auth_token is not None:
        validator = RequestValidator(auth_token)
        headers["X-Twilio-Signature"] = validator.compute_signature(signed_url, params)
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
        form=params,
    )


def parse_connect_twiml(
    status: int,
    content_type: str,
    body: str,
    *,
    call_sid: str,
    account_sid: str,
    form: Mapping[str, str] | None = None,
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
    connect = root.find("Connect")
    assert connect is not None
    children = list(root)
    after = tuple(
        _verb(child, call_sid, account_sid) for child in children[children.index(connect) + 1 :]
    )
    return StreamTarget(
        url=url,
        parameters=parameters,
        call_sid=call_sid,
        account_sid=account_sid,
        twiml=body,
        action=connect.get("action"),
        status_callback=stream.get("statusCallback"),
        after_connect=after,
        form=dict(form or {}),
    )


def _verb(
    element: ET.Element, call_sid: str, account_sid: str, form: Mapping[str, str] | None = None
) -> Verb:
    stream = None
    if element.tag == "Connect" and element.find("Stream") is not None:
        stream = parse_connect_twiml(
            200,
            "text/xml",
            f"<Response>{ET.tostring(element, encoding='unicode')}</Response>",
            call_sid=call_sid,
            account_sid=account_sid,
            form=form,
        )
    text = (element.text or "").strip()
    if element.tag == "Dial" and not text:
        number = element.find("Number")
        text = (number.text or "").strip() if number is not None else ""
    return Verb(element.tag, text, dict(element.attrib), stream)


async def continue_after_stream(
    target: StreamTarget,
    *,
    auth_token: str | None = None,
    client: httpx.AsyncClient | None = None,
    sign_url: str | None = None,
    post_url: str | None = None,
) -> Continuation:
    """What Twilio does once the bridge has closed the call's stream: request the
    `<Connect>` action (POST, the call's parameters, signed like the webhook) and run the
    TwiML it returns; without an action, run the verbs after `</Connect>`. `post_url` sends
    the request elsewhere than the action names (the bridge's local port behind a tunnel),
    still signed for the action's URL."""
    if target.action is None:
        return Continuation("document", target.after_connect)
    url = _absolute(target.action, target.url)
    if post_url is not None:
        sign_url, url = sign_url or url, post_url
    params = {**target.form, "CallStatus": "in-progress"}
    return await _request_twiml(url, params, target, auth_token, client, "action", sign_url)


async def dial_ends(
    after: Continuation,
    target: StreamTarget,
    status: str,
    *,
    auth_token: str | None = None,
    client: httpx.AsyncClient | None = None,
    post_base: str | None = None,
) -> Continuation:
    """What Twilio does when the `<Dial>` of `after` ends with `status` (`completed`,
    `no-answer`, `busy`, `failed`): request its action (signed, with the call's parameters and
    `DialCallStatus`) and run the TwiML it returns; without an action the call ends.
    `post_base` sends the request to that base URL (the bridge's local port behind a tunnel),
    still signed for the action's own URL."""
    dial = next((v for v in after.verbs if v.name == "Dial"), None)
    if dial is None or not dial.attrs.get("action"):
        return Continuation("document", ())
    url = _absolute(dial.attrs["action"], target.url)
    params = {**target.form, "CallStatus": "in-progress", "DialCallStatus": status}
    sign_url = None
    if post_base is not None:
        parts = urlsplit(url)
        sign_url, url = (
            url,
            post_base.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else ""),
        )
    return await _request_twiml(url, params, target, auth_token, client, "dial_action", sign_url)


async def _request_twiml(
    url: str,
    params: dict[str, str],
    target: StreamTarget,
    auth_token: str | None,
    client: httpx.AsyncClient | None,
    via: str,
    sign_url: str | None = None,
) -> Continuation:
    headers = {"User-Agent": TWILIO_USER_AGENT}
    if auth_token is not None:
        validator = RequestValidator(auth_token)
        headers["X-Twilio-Signature"] = validator.compute_signature(sign_url or url, params)
    if client is None:
        async with httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_SECONDS) as own_client:
            response = await own_client.post(url, data=params, headers=headers)
    else:
        response = await client.post(url, data=params, headers=headers)
    if response.status_code != 200:
        raise CallRejected(
            f"the {via} did not answer 200 (Twilio: an application error)",
            status=response.status_code,
            body=response.text,
        )
    try:
        root = ET.fromstring(response.text)
    except ET.ParseError as exc:
        raise CallRejected(f"{via} TwiML is not XML: {exc}", body=response.text) from exc
    form = target.form
    verbs = tuple(_verb(child, target.call_sid, target.account_sid, form) for child in root)
    return Continuation(via, verbs, response.text)


def _absolute(url: str, stream_url: str) -> str:
    """A relative action URL resolves against the call's host, as Twilio resolves it."""
    if urlsplit(url).scheme:
        return url
    parts = urlsplit(stream_url)
    scheme = "https" if parts.scheme == "wss" else "http"
    return f"{scheme}://{parts.netloc}{url}"
