"""A fake Twilio REST API on loopback: the call-update and call-create endpoints the bridge
uses, and the one that starts a recording on a live call
(``POST …/Calls/{CallSid}/Recordings.json``, answered 201 with the recording resource, as
Twilio does; see ``recordings()``).

The real twilio `Client` talks to it over HTTP (point `TWILIO_API_BASE_URL` at ``fake.url``).
It serves ``POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json`` as Twilio does:
HTTP basic auth with the account SID and auth token, form fields ``Twiml`` / ``Status``, the
call resource as JSON on success, and Twilio's error JSON (``code`` 20404 for a call that is
over, 20003 for bad credentials). It also serves ``Calls.create`` (outbound calls,
``POST /2010-04-01/Accounts/{AccountSid}/Calls.json``): 201 and a new call resource
(``status`` ``queued``, ``direction`` ``outbound-api``), or Twilio's error (21201 no ``To``,
21213 no ``From``, 21205 no ``Url``/``Twiml``, 21211 a ``To`` that is not a phone number, or
``create_error``). Repeated fields (``StatusCallbackEvent``) are kept whole in
``RestRequest.lists``. Every request is recorded with its ``time.monotonic()``
arrival time, so a test can compare it with what the caller heard::

    with FakeTwilioRest("AC…", "token") as rest:
        ...  # TWILIO_API_BASE_URL=rest.url
        request = await rest.wait_for_request(timeout=5)
        assert "<Dial>" in request.form["Twiml"]

It runs in its own thread (``http.server``), so a blocking client in a worker thread and the
test's event loop never wait on each other.
"""

from __future__ import annotations

import asyncio
import base64
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs

from tests.fakes._http import ThreadedHttpFake, read_body, send_json

_CREATE_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<account>AC[0-9A-Za-z]+)/Calls\.json$")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_CALL_PATH = re.compile(
    r"^/2010-04-01/Accounts/(?P<account>AC[0-9A-Za-z]+)/Calls/(?P<call>CA[0-9A-Za-z]+)"
    r"(?P<recordings>/Recordings)?\.json$"
)


@dataclass(frozen=True)
class RestRequest:
    """One request as it arrived: ``time`` is ``time.monotonic()`` when it was read."""

    time: float
    method: str
    path: str
    account_sid: str | None
    call_sid: str | None
    form: dict[str, str]
    headers: dict[str, str]
    status: int = 0
    """The HTTP status the fake answered."""
    resource: str = "call"
    """``call`` (an update of the call) or ``recordings`` (a recording started on it)."""
    lists: dict[str, list[str]] = field(default_factory=dict)
    """Every form field with all its values (``StatusCallbackEvent`` repeats)."""
    created: str | None = None
    """The CallSid a ``Calls.create`` answered with."""


@dataclass
class FakeTwilioRest(ThreadedHttpFake):
    """Twilio's call-update endpoint. ``ended`` holds call SIDs that answer 404 / 20404;
    ``fail_status`` makes every update fail with that status (e.g. 500);
    ``on_update(request)`` runs in the server thread before the answer is sent (e.g. to have
    the fake caller receive ``stop`` before the REST answer, as Twilio may); ``delay_s``
    holds each answer back."""

    account_sid: str
    auth_token: str
    ended: set[str] = field(default_factory=set)
    fail_status: int | None = None
    delay_s: float = 0.0
    on_update: Callable[[RestRequest], None] | None = None
    create_error: tuple[int, int, str] | None = None
    """(HTTP status, Twilio code, message) every ``Calls.create`` fails with."""
    requests: list[RestRequest] = field(default_factory=list)

    _thread_name = "fake-twilio-rest"
    _methods = ("POST", "GET")

    def updates(self, call_sid: str | None = None) -> list[RestRequest]:
        """Call updates received (any call, or one)."""
        return [
            r
            for r in list(self.requests)
            if r.call_sid is not None
            and r.resource == "call"
            and (call_sid is None or r.call_sid == call_sid)
        ]

    def creates(self) -> list[RestRequest]:
        """``Calls.create`` requests received, in arrival order."""
        found = [r for r in list(self.requests) if r.path.split("?", 1)[0].endswith("/Calls.json")]
        return sorted(found, key=lambda r: r.time)

    def recordings(self) -> list[RestRequest]:
        """Recordings started (``POST …/Calls/{CallSid}/Recordings.json``)."""
        return [r for r in list(self.requests) if r.resource == "recordings"]

    async def wait_for_request(self, n: int = 1, timeout: float = 5.0) -> RestRequest:
        """The ``n``-th request (1-based), waiting for it without blocking the event loop."""
        deadline = time.monotonic() + timeout
        while len(self.requests) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no REST request #{n} within {timeout}s")
            await asyncio.sleep(0.005)
        return self.requests[n - 1]

    # --- the endpoint ---------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        arrived = time.monotonic()
        body = read_body(handler).decode("utf-8", "replace")
        lists = parse_qs(body, keep_blank_values=True)
        form = {k: v[-1] for k, v in lists.items()}
        path = handler.path.split("?", 1)[0]
        create = _CREATE_PATH.match(path)
        match = _CALL_PATH.match(path)
        account = match["account"] if match else None
        call = match["call"] if match else None
        created = None
        if create is not None:
            status, payload = self._create(handler, create["account"], form)
            account = create["account"]
            created = payload.get("sid") if status == 201 else None
        else:
            status, payload = self._answer(handler, account, call, form)
        request = RestRequest(
            arrived,
            handler.command,
            handler.path,
            account,
            call,
            form,
            {k: v for k, v in handler.headers.items()},
            status,
            "recordings" if match and match["recordings"] else "call",
            lists,
            created,
        )
        self.requests.append(request)
        if match and handler.command == "POST" and self.on_update is not None:
            self.on_update(request)
        if self.delay_s:
            self._released.wait(self.delay_s)
        send_json(handler, status, payload)

    def _answer(
        self,
        handler: BaseHTTPRequestHandler,
        account: str | None,
        call: str | None,
        form: dict[str, str],
    ) -> tuple[int, dict[str, Any]]:
        path = handler.path
        if not self._authorized(handler.headers.get("Authorization")):
            return 401, _error(20003, "Authenticate", 401)
        if account is None or call is None or handler.command != "POST":
            return 404, _error(20404, f"The requested resource {path} was not found", 404)
        if account != self.account_sid:
            return 404, _error(20404, f"The requested resource {path} was not found", 404)
        if self.fail_status is not None:
            return self.fail_status, _error(20500, "Internal Server Error", self.fail_status)
        if call in self.ended:
            return 404, _error(20404, f"The requested resource {path} was not found", 404)
        if match_recordings(path):
            # Start a recording on the live call: Twilio answers 201 with the resource.
            return 201, {
                "sid": "RE" + call[2:],
                "account_sid": account,
                "call_sid": call,
                "api_version": "2010-04-01",
                "status": "in-progress",
                "channels": 2 if form.get("RecordingChannels") == "dual" else 1,
                "source": "StartCallRecordingAPI",  # Twilio's name for a recording started so
                "track": form.get("RecordingTrack", "both"),
                "uri": path,
            }
        if "Twiml" not in form and "Status" not in form and "Url" not in form:
            return 400, _error(21201, "No 'Twiml', 'Url' or 'Status' parameter", 400)
        status = "in-progress"
        if form.get("Status") in ("completed", "canceled"):
            status = "completed"
            self.ended.add(call)
        return 200, {
            "sid": call,
            "account_sid": account,
            "api_version": "2010-04-01",
            "status": status,
            "direction": "inbound",
            "from": "+15550001111",
            "to": "+15550002222",
            "uri": path,
        }

    def _create(
        self, handler: BaseHTTPRequestHandler, account: str, form: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        path = handler.path
        if not self._authorized(handler.headers.get("Authorization")):
            return 401, _error(20003, "Authenticate", 401)
        if handler.command != "POST" or account != self.account_sid:
            return 404, _error(20404, f"The requested resource {path} was not found", 404)
        if "To" not in form:
            return 400, _error(21201, "No 'To' number is specified", 400)
        if "From" not in form:
            return 400, _error(21213, "No 'From' number is specified", 400)
        if "Url" not in form and "Twiml" not in form and "ApplicationSid" not in form:
            return 400, _error(21205, "Url parameter is required.", 400)
        if not _E164.match(form["To"]):
            return 400, _error(21211, f"Invalid 'To' Phone Number: {form['To']}", 400)
        if self.create_error is not None:
            status, code, message = self.create_error
            return status, _error(code, message, status)
        sid = "CA" + secrets.token_hex(16)
        return 201, {
            "sid": sid,
            "account_sid": account,
            "api_version": "2010-04-01",
            "status": "queued",
            "direction": "outbound-api",
            "from": form["From"],
            "to": form["To"],
            "uri": f"/2010-04-01/Accounts/{account}/Calls/{sid}.json",
        }

    def _authorized(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return user == self.account_sid and password == self.auth_token


def match_recordings(path: str) -> bool:
    match = _CALL_PATH.match(path.split("?", 1)[0])
    return bool(match and match["recordings"])


def _error(code: int, message: str, status: int) -> dict[str, Any]:
    """Twilio's error body (the legacy shape the Api domain still answers with)."""
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


__all__ = ["FakeTwilioRest", "RestRequest"]
