"""Who may call: Twilio signatures and the per-call stream token.

A public WebSocket that opens paid model sessions must only serve Twilio's calls. Three
checks, all against URLs rebuilt from `PUBLIC_URL` (never the Host header, which a proxy or
an attacker chooses):
- the webhook's `X-Twilio-Signature` (HMAC-SHA1 over URL + sorted POST params);
- the stream handshake's `X-Twilio-Signature` (over `wss://{host}/media-stream`, no params);
- a stream token minted at the webhook and carried in a `<Parameter>`: HMAC-SHA256 over the
  CallSid, the persona, the caller's and the called number and an expiry at most 60 s ahead,
  usable once. The handshake signature alone is the same for every call (no params), so the
  token is what ties a stream to a call the webhook really answered, and it is checked before
  any upstream session is opened. The numbers ride in it because the plain `<Parameter>`s
  are not signed: what the model's instructions say about the caller comes from the claims.

Tokens are secrets for their short life: each is registered with the log scrubber when minted
and when a genuine one (its signature holds) is received, so a line that quotes one by
mistake shows `[redacted]` on every replica.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import orjson
from twilio.request_validator import RequestValidator

from bridge import logs

TOKEN_TTL_S = 60.0


@dataclass(frozen=True)
class TokenClaims:
    """What the webhook signed for one call."""

    call_sid: str
    persona: str
    expires_at: float
    caller: str = ""  # the webhook's `From`, cleaned (`caller_text.clean_number`)
    called: str = ""  # the webhook's `To`, cleaned
    nonce: str = ""
    """Single use: the stream claims it in the deployment's shared store (`bridge.shared`)."""


class TokenError(ValueError):
    """Why a stream token was refused (the reason is logged; the token never is)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class StreamTokens:
    """Mints and checks per-call stream tokens.

    The key is derived from the Twilio auth token, so every replica with the same settings
    accepts a token minted by any other (the webhook and the stream may land on different
    replicas). `verify` checks the token itself; its single use is the stream's to enforce,
    by claiming the token's nonce where every worker and replica sees it (`bridge.shared`:
    Redis with `REDIS_URL`, else the process or its worker supervisor).
    """

    def __init__(
        self, secret: str, ttl_s: float = TOKEN_TTL_S, clock: Callable[[], float] = time.time
    ) -> None:
        self._key = hmac.new(
            secret.encode(), b"voicebridge stream token v2", hashlib.sha256
        ).digest()
        self.ttl_s = min(ttl_s, TOKEN_TTL_S)
        self._clock = clock

    def mint(self, call_sid: str, persona: str, caller: str = "", called: str = "") -> str:
        """A token for the call the webhook is answering; `caller` and `called` must already
        be cleaned (they are signed as given). About 190 characters for an E.164 pair, at most
        about 450 with the SID, the persona and the numbers at 64 characters each."""
        expires = int(self._clock() + self.ttl_s)
        nonce = secrets.token_hex(8)
        body = orjson.dumps([call_sid, persona, caller, called, expires, nonce])
        mac = hmac.new(self._key, body, hashlib.sha256).digest()
        token = f"{_b64(body)}.{_b64(mac)}"
        logs.add_expiring_secrets([token], expires)
        return token

    def verify(self, token: str | None, call_sid: str) -> TokenClaims:
        """Check a token presented at `start`; raises `TokenError` with the reason."""
        if not token:
            raise TokenError("missing stream token")
        try:
            body_b64, mac_b64 = token.split(".", 1)
            body, mac = _unb64(body_b64), _unb64(mac_b64)
        except (ValueError, TypeError):
            raise TokenError("malformed stream token") from None
        expected = hmac.new(self._key, body, hashlib.sha256).digest()
        if not hmac.compare_digest(mac, expected):
            raise TokenError("stream token signature mismatch")
        try:
            token_sid, persona, caller, called, expires_n, nonce = orjson.loads(body)
            expires = float(expires_n)
            if not all(isinstance(v, str) for v in (token_sid, persona, caller, called, nonce)):
                raise TypeError
        except (ValueError, TypeError, orjson.JSONDecodeError):
            raise TokenError("malformed stream token") from None
        logs.add_expiring_secrets([token], expires)  # genuine: maybe minted by another replica
        if not hmac.compare_digest(token_sid, call_sid):
            raise TokenError("stream token belongs to another call")
        now = self._clock()
        if now > expires:
            raise TokenError("stream token expired")
        return TokenClaims(
            call_sid=token_sid,
            persona=persona,
            expires_at=expires,
            caller=caller,
            called=called,
            nonce=nonce,
        )

    def seconds_left(self, claims: TokenClaims) -> float:
        """How long the token stays valid: its nonce is kept as used that long."""
        return max(1.0, claims.expires_at - self._clock() + 1.0)


class TwilioSignatures:
    """Twilio's `X-Twilio-Signature` checks, over URLs rebuilt from PUBLIC_URL."""

    def __init__(self, auth_token: str, public_base: str) -> None:
        """`public_base` is PUBLIC_URL: its path (a path-prefix proxy's) is part of every URL
        Twilio signs, though the proxy strips it from the requests that reach the bridge."""
        self._validator = RequestValidator(auth_token)
        self._base = public_base.rstrip("/")
        scheme, rest = self._base.split("://", 1)
        self.stream_url = f"{'wss' if scheme == 'https' else 'ws'}://{rest}/media-stream"

    def http_url(self, path: str, query: str = "") -> str:
        return f"{self._base}{path}" + (f"?{query}" if query else "")

    def webhook_valid(
        self, path: str, query: str, params: Mapping[str, str], signature: str | None
    ) -> bool:
        if not signature:
            return False
        return bool(self._validator.validate(self.http_url(path, query), dict(params), signature))

    def stream_valid(self, signature: str | None) -> bool:
        if not signature:
            return False
        return bool(self._validator.validate(self.stream_url, {}, signature))
