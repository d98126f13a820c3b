"""Azure as Azure behaves: the transcription model is a deployment name, sessions end at 30
minutes (so calls renew before 25), only a preview api-version means the preview dialect,
and an Entra ID token can replace the key (with a fake token provider)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from bridge.persona import DEFAULT_PERSONA
from bridge.realtime.entra import SCOPE, EntraTokens
from bridge.realtime.upstream import upstream_target
from bridge.services import Services, UpstreamTargets
from bridge.sim import TwilioMediaStream, place_call
from bridge.stream_start import call_rules
from tests.conftest import TEST_SECRETS, LogCapture, bridged_call, make_settings, running_bridge
from tests.fakes.realtime import FakeRealtimeServer, Say

AZURE = {
    "AZURE_OPENAI_ENDPOINT": "https://res.openai.azure.com",
    "AZURE_OPENAI_API_KEY": "azure-test-key-0123456789",
    "AZURE_OPENAI_DEPLOYMENT": "my-rt",
}
ENTRA_TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.entra-test-token-0123456789"
TEST_SECRETS.add(ENTRA_TOKEN)


def test_a_ga_api_version_does_not_force_the_preview_dialect() -> None:
    ga = make_settings(**AZURE, AZURE_OPENAI_API_VERSION="2025-08-28")
    assert (ga.dialect, upstream_target(ga).url) == (
        "ga",
        "wss://res.openai.azure.com/openai/v1/realtime?model=my-rt",
    )
    preview = make_settings(**AZURE, AZURE_OPENAI_API_VERSION="2025-04-01-preview")
    assert preview.dialect == "beta"
    assert "api-version=2025-04-01-preview" in upstream_target(preview).url


def test_sessions_are_renewed_before_the_providers_cap() -> None:
    azure = Services.build(make_settings(**AZURE), _book())
    openai = Services.build(make_settings(OPENAI_API_KEY="sk-test-0123456789"), _book())
    assert call_rules(DEFAULT_PERSONA, azure, "").session_renew_s == 25 * 60.0  # cap: 30 min
    assert call_rules(DEFAULT_PERSONA, openai, "").session_renew_s == 55 * 60.0  # cap: 60 min


def _book() -> Any:
    from bridge.persona import PersonaBook

    return PersonaBook.builtin()


async def test_the_transcription_model_is_the_deployment_on_azure(logs: LogCapture) -> None:
    async with FakeRealtimeServer("ga", [[Say("Hello.", 200)]]) as fake:
        settings = {
            **AZURE,
            "REALTIME_PROVIDER": "azure",
            "AZURE_OPENAI_TRANSCRIPTION_DEPLOYMENT": "my-transcribe",
        }
        async with bridged_call(fake, **settings) as (_bridge, _stream, session):
            await session.wait_for_event("response.done", 5)
            (update,) = session.client_events("session.update")
    transcription = update["session"]["audio"]["input"]["transcription"]
    assert transcription == {"model": "my-transcribe"}
    assert session.headers["api-key"] == AZURE["AZURE_OPENAI_API_KEY"]


@dataclass
class _Access:
    token: str
    expires_on: int


class FakeCredential:
    """azure-identity's credential shape, counting what it is asked."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str) -> _Access:
        self.scopes.append(scopes)
        return _Access(ENTRA_TOKEN, int(time.time()) + 3600)


async def test_an_entra_id_token_replaces_the_key_and_is_never_logged(logs: LogCapture) -> None:
    credential = FakeCredential()
    settings = make_settings(
        AZURE_OPENAI_ENDPOINT="https://res.openai.azure.com",
        AZURE_OPENAI_DEPLOYMENT="my-rt",
        AZURE_OPENAI_AUTH="entra",
    )
    targets = UpstreamTargets(settings, EntraTokens(credential))
    first, second = targets.target(), targets.target()
    assert first.bearer is not None and second.bearer is not None
    assert "api-key" not in first.headers
    assert (await first.bearer(), await second.bearer()) == (ENTRA_TOKEN, ENTRA_TOKEN)
    assert credential.scopes == [(SCOPE,)]  # fetched once, then reused until near expiry
    async with FakeRealtimeServer("ga", [[Say("Hello.", 200)]]) as fake:
        entra = make_settings(
            REALTIME_PROVIDER="azure",
            AZURE_OPENAI_ENDPOINT="https://res.openai.azure.com",
            AZURE_OPENAI_DEPLOYMENT="my-rt",
            AZURE_OPENAI_AUTH="entra",
            REALTIME_URL=fake.url,
        )
        async with running_bridge(entra) as bridge:
            bridge.services.upstream._entra = EntraTokens(credential)  # the fake provider
            target = await place_call(bridge.base_url)
            async with TwilioMediaStream(target):
                session = await fake.wait_for_session()
                await session.wait_for_event("response.done", 5)
    assert session.headers["Authorization"] == f"Bearer {ENTRA_TOKEN}"
    assert "api-key" not in session.headers
    # and the token is in no log line: the suite's secrets scan has it (TEST_SECRETS)
