"""Where and how to open a call's Realtime session: URL, auth headers, the socket itself.

OpenAI GA: `wss://api.openai.com/v1/realtime?model=…` with a Bearer key. Azure GA:
`{endpoint}/openai/v1/realtime?model={deployment}` with an `api-key` header, or an Entra ID
token as `Authorization: Bearer` (`AZURE_OPENAI_AUTH=entra`). Azure preview (a preview
`AZURE_OPENAI_API_VERSION`): `{endpoint}/openai/realtime?api-version=…&deployment=…`, spoken
in the beta dialect; a GA api-version changes nothing (the GA URL takes none).
`REALTIME_URL` replaces the URL and keeps the provider's headers. Keys go in headers only:
URLs end up in logs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit, urlunsplit

from bridge.settings import Settings
from bridge.ws import UpstreamSocket, open_upstream

# Server events are small except audio deltas (a second of 24 kHz PCM16 is 64 KiB of base64);
# 4 MiB leaves room for long transcripts and session echoes while refusing nonsense.
UPSTREAM_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
CONNECT_TIMEOUT_S = 10.0
# Caller audio queued towards a slow upstream beyond this is dropped rather than waited for
# (about one second of 24 kHz PCM16 appends): waiting would stall the Twilio reader, and with
# it the marks and `stop` that must keep flowing. See `CallRules.upstream_audio_backlog_bytes`.
UPSTREAM_SOCKET_SNDBUF = 64 * 1024


@dataclass(frozen=True)
class UpstreamTarget:
    url: str
    headers: dict[str, str] = field(repr=False)
    dialect: str
    bearer: Callable[[], Awaitable[str]] | None = field(default=None, repr=False, compare=False)
    """A token for `Authorization: Bearer`, asked for at each connection (it expires)."""

    @property
    def safe_url(self) -> str:
        """The URL without its query, for logs."""
        parts = urlsplit(self.url)
        return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _azure_base(endpoint: str) -> tuple[str, str]:
    parts = urlsplit(endpoint)
    scheme = {"https": "wss", "http": "ws"}.get(parts.scheme, parts.scheme)
    return scheme, parts.netloc


def upstream_target(
    settings: Settings,
    local_url: str | None = None,
    bearer: Callable[[], Awaitable[str]] | None = None,
) -> UpstreamTarget:
    """The upstream URL and headers for the configured provider; `bearer` gives the token
    of each connection when the provider takes one (Azure with Entra ID)."""
    provider = settings.provider
    headers: dict[str, str] = {}
    if provider == "openai":
        key = settings.OPENAI_API_KEY.get_secret_value() if settings.OPENAI_API_KEY else ""
        headers["Authorization"] = f"Bearer {key}"
        query = urlencode({"model": settings.OPENAI_REALTIME_MODEL})
        url = f"wss://api.openai.com/v1/realtime?{query}"
    elif provider == "azure":
        key = (
            settings.AZURE_OPENAI_API_KEY.get_secret_value()
            if settings.AZURE_OPENAI_API_KEY
            else ""
        )
        if settings.AZURE_OPENAI_AUTH == "key":
            headers["api-key"] = key
        scheme, host = _azure_base(settings.AZURE_OPENAI_ENDPOINT or "")
        deployment = settings.AZURE_OPENAI_DEPLOYMENT or ""
        if settings.azure_preview:
            query = urlencode(
                {"api-version": settings.AZURE_OPENAI_API_VERSION, "deployment": deployment}
            )
            url = f"{scheme}://{host}/openai/realtime?{query}"
        else:
            url = f"{scheme}://{host}/openai/v1/realtime?{urlencode({'model': deployment})}"
    else:
        query = urlencode({"model": "local"})
        url = f"{local_url or 'ws://127.0.0.1:8765/v1/realtime'}?{query}"
    if settings.REALTIME_URL:
        url = settings.REALTIME_URL
    if settings.dialect == "beta" and provider == "openai":
        headers["OpenAI-Beta"] = "realtime=v1"
    return UpstreamTarget(url=url, headers=headers, dialect=settings.dialect, bearer=bearer)


async def connect(target: UpstreamTarget) -> UpstreamSocket:
    """Open the Realtime socket. Raises OSError, TimeoutError or a picows handshake error."""
    headers = target.headers
    if target.bearer is not None:
        headers = {**headers, "Authorization": f"Bearer {await target.bearer()}"}
    return await open_upstream(
        target.url,
        headers,
        max_message_bytes=UPSTREAM_MAX_MESSAGE_BYTES,
        timeout_s=CONNECT_TIMEOUT_S,
        # A fixed kernel send buffer: autotuning lets it grow to megabytes (a minute of audio)
        # before a stalled upstream shows at all. 64 KiB is far above what a 50 KB/s stream
        # needs on any real path, and keeps the total lag before dropping near 2 s.
        send_buffer_bytes=UPSTREAM_SOCKET_SNDBUF,
    )
