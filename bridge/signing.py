"""The signature on every request the bridge sends to the business (HTTP tools, call events).

`X-Voicebridge-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` under
`WEBHOOK_SIGNING_SECRET`: the receiver recomputes it to know the request is ours, and checks
`t` to refuse a replay. For a GET the body is the query string. The same scheme as Stripe's
webhooks, so receivers can reuse what they know.
"""

from __future__ import annotations

import hashlib
import hmac

HEADER = "X-Voicebridge-Signature"
TOLERANCE_S = 300
"""How old a signature a receiver should accept (and how far in the future)."""


def sign(secret: str, body: bytes, now: float) -> str:
    """The header value for `body` sent at `now` (unix seconds)."""
    t = int(now)
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(
    secret: str, body: bytes, header: str | None, now: float, tolerance_s: float = TOLERANCE_S
) -> bool:
    """Whether `header` signs `body` under `secret` and is at most `tolerance_s` old."""
    if not header:
        return False
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        t = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - t) > tolerance_s:
        return False
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))
