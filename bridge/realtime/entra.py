"""Entra ID tokens for Azure OpenAI, for tenants where key authentication is disabled.

`AZURE_OPENAI_AUTH=entra` sends `Authorization: Bearer <token>` instead of `api-key`. The
token comes from azure-identity's `DefaultAzureCredential` (managed identity, workload
identity, the Azure CLI, …): the optional `azure` extra, `pip install 'voicebridge[azure]'`.
`get_token` is synchronous and may do network I/O, so it runs in a worker thread, never on
the event loop; a token is reused until five minutes before it expires, and registered with
the log scrubber like every other secret.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Protocol

from bridge.logs import rotate_secret

SCOPE = "https://cognitiveservices.azure.com/.default"
REFRESH_BEFORE_S = 300.0


class TokenCredential(Protocol):
    """azure-identity's credential shape: `get_token(scope)` → `.token`, `.expires_on`."""

    def get_token(self, *scopes: str) -> Any: ...


class EntraTokens:
    def __init__(self, credential: TokenCredential | None = None) -> None:
        self._credential = credential
        self._token: str | None = None
        self._expires_on = 0.0
        self._lock = asyncio.Lock()

    @staticmethod
    def default_credential() -> TokenCredential:
        try:
            from azure.identity import DefaultAzureCredential
        except ImportError as exc:
            raise RuntimeError(
                "AZURE_OPENAI_AUTH=entra needs azure-identity: pip install 'voicebridge[azure]'"
            ) from exc
        return DefaultAzureCredential()  # type: ignore[no-any-return]

    async def bearer(self) -> str:
        """A valid token, fetched off the event loop when the cached one is near its end."""
        async with self._lock:
            if self._token is None or time.time() > self._expires_on - REFRESH_BEFORE_S:
                credential = self._credential or self.default_credential()
                self._credential = credential
                access = await asyncio.to_thread(credential.get_token, SCOPE)
                self._token, self._expires_on = str(access.token), float(access.expires_on)
                rotate_secret("azure_entra_token", self._token)
            return self._token
