"""`voicebridge dial`: place an outbound call through a running bridge's `POST /calls`.

The command is a client of the bridge's own API, not of Twilio: the bridge holds the Twilio
credentials, the limits and the call's context, so a call dialled here is placed, paced and
answered exactly like one the business's systems ask for. It reads only
`VOICEBRIDGE_API_KEY` (environment or `.env`). Against a bridge without Twilio (local mode)
the call is placed in the bridge only, and the command plays Twilio's and the callee's part
(`bridge.sim.dial`): a person or a machine answers (`--answer`).
"""

from __future__ import annotations

import json
import sys
from typing import Any
from urllib.parse import urlsplit

import httpx

from bridge.outbound import E164

__all__ = ["DIAL_TIMEOUT_S", "dial_command"]

DIAL_TIMEOUT_S = 30.0
"""The bridge may hold the request for its turn at the pace (up to 5 s) plus Twilio's answer."""


def _fail(message: str, status: int) -> int:
    print(f"voicebridge dial: {message}", file=sys.stderr)
    return status


def dial_command(
    url: str,
    to: str,
    persona: str | None,
    from_: str | None,
    context: str | None,
    api_key: str | None,
    who_answers: str = "human",
) -> int:
    """Exit status: 0 placed (the CallSid on stdout), 1 the bridge refused it, 2 a wrong
    input (found before anything is sent), 3 the bridge could not be reached."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return _fail(f"--url {url!r}: expected http://host:port or https://host", 2)
    if not E164.match(to):
        return _fail(f"{to!r} is not an E.164 phone number (like +12125550100)", 2)
    if from_ is not None and not E164.match(from_):
        return _fail(f"--from {from_!r} is not an E.164 phone number", 2)
    body: dict[str, object] = {"to": to}
    if persona is not None:
        body["persona"] = persona
    if from_ is not None:
        body["from"] = from_
    if context is not None:
        try:
            parsed = json.loads(context)
        except ValueError as exc:
            return _fail(f"--context is not JSON: {exc}", 2)
        if not isinstance(parsed, dict):
            return _fail("--context must be a JSON object, like '{\"order\": 42}'", 2)
        body["context"] = parsed
    if api_key is None:
        return _fail("VOICEBRIDGE_API_KEY is not set (the bridge's POST /calls needs it)", 2)
    if who_answers not in ("human", "machine"):
        return _fail(f"--answer {who_answers!r}: expected human or machine", 2)
    endpoint = url.rstrip("/") + "/calls"
    try:
        answer = httpx.post(
            endpoint,
            json=body,
            headers={"authorization": f"Bearer {api_key}"},
            timeout=DIAL_TIMEOUT_S,
        )
    except httpx.HTTPError as exc:
        return _fail(f"cannot reach {endpoint}: {exc or type(exc).__name__}", 3)
    try:
        payload = answer.json()
    except ValueError:
        payload = {}
    if answer.status_code == 201 and isinstance(payload, dict) and "call_sid" in payload:
        print(payload["call_sid"])
        if payload.get("simulated"):
            return _answer_offline(url, payload, to, who_answers)
        return 0
    error = payload.get("error") if isinstance(payload, dict) else None
    detail = error or answer.text.strip()[:200] or answer.reason_phrase
    if answer.status_code == 404 and not error:
        detail = "not found: the bridge has no VOICEBRIDGE_API_KEY, so POST /calls is off"
    if isinstance(payload, dict) and payload.get("twilio_code") is not None:
        detail += f" (Twilio {payload['twilio_code']}: {payload.get('twilio_message')})"
    elif isinstance(payload, dict) and payload.get("twilio_message"):
        detail += f" ({payload['twilio_message']})"
    retry = answer.headers.get("retry-after")
    if retry:
        detail += f"; retry after {retry} s"
    return _fail(f"HTTP {answer.status_code}: {detail}", 1)


def _answer_offline(url: str, placed: dict[str, Any], to: str, who_answers: str) -> int:
    """The bridge has no Twilio: play Twilio's and the callee's part, as `voicebridge call`
    plays a caller's, and print the call and its summary."""
    import asyncio

    from websockets.exceptions import WebSocketException

    from bridge.sim.cli import summary
    from bridge.sim.dial import ring_simulated
    from bridge.sim.errors import CallRejected, SimError, StreamRejected

    try:
        report = asyncio.run(
            ring_simulated(
                url, placed, to, "machine" if who_answers == "machine" else "human", None, print
            )
        )
    except (CallRejected, StreamRejected) as exc:
        return _fail(f"the bridge refused the call: {exc}", 1)
    except (httpx.HTTPError, OSError, TimeoutError) as exc:
        return _fail(f"the call's callbacks failed: {exc or type(exc).__name__}", 3)
    except (SimError, WebSocketException) as exc:
        return _fail(f"the media stream failed: {exc}", 1)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    for line in report.transcript:
        print(line)
    print(summary(report))
    return 1 if report.failed else 0
