"""Settings: validated once at start-up, with the variable's name and the reason."""

from __future__ import annotations

import pytest

from bridge.realtime.upstream import upstream_target
from bridge.settings import SettingsError, load_settings
from tests.conftest import make_settings


def error_of(**values: object) -> str:
    with pytest.raises(SettingsError) as info:
        load_settings(_env_file=None, **values)
    return str(info.value)


def test_no_key_means_local_provider_on_loopback() -> None:
    settings = make_settings()
    assert settings.provider == "local"
    assert settings.signed is False


def test_provider_is_inferred_from_the_credentials_present() -> None:
    assert make_settings(OPENAI_API_KEY="sk-x").provider == "openai"
    azure = make_settings(
        AZURE_OPENAI_ENDPOINT="https://res.openai.azure.com",
        AZURE_OPENAI_API_KEY="k",
        AZURE_OPENAI_DEPLOYMENT="rt",
    )
    assert azure.provider == "azure"


def test_azure_without_a_deployment_names_the_missing_variable() -> None:
    message = error_of(
        AZURE_OPENAI_ENDPOINT="https://res.openai.azure.com", AZURE_OPENAI_API_KEY="k"
    )
    assert "AZURE_OPENAI_DEPLOYMENT" in message


def test_openai_provider_without_key_is_refused() -> None:
    assert "OPENAI_API_KEY" in error_of(REALTIME_PROVIDER="openai")


def test_public_url_must_be_https_except_on_loopback() -> None:
    assert "must be https" in error_of(PUBLIC_URL="http://voice.example.com", TWILIO_AUTH_TOKEN="t")
    assert make_settings(PUBLIC_URL="http://127.0.0.1:9000").PUBLIC_URL == "http://127.0.0.1:9000"
    assert make_settings(PUBLIC_URL="http://localhost:9000").PUBLIC_URL


def test_bad_enum_values_name_the_variable() -> None:
    assert "REALTIME_AUDIO" in error_of(REALTIME_AUDIO="opus")
    assert "REALTIME_URL" in error_of(REALTIME_URL="https://not-a-websocket")


def test_blank_values_from_an_env_template_count_as_unset() -> None:
    settings = make_settings(OPENAI_API_KEY="", PUBLIC_URL="", REALTIME_PROVIDER="")
    assert settings.provider == "local"


def test_stream_url_follows_public_url_and_keeps_its_path_prefix() -> None:
    assert make_settings(PUBLIC_URL="https://voice.example.com").stream_url("evil.example") == (
        "wss://voice.example.com/media-stream"
    )
    behind_a_proxy = make_settings(PUBLIC_URL="https://voice.example.com/base/")
    assert behind_a_proxy.stream_url("evil.example") == "wss://voice.example.com/base/media-stream"
    assert behind_a_proxy.public_http_url("/incoming-call") == (
        "https://voice.example.com/base/incoming-call"
    )
    assert make_settings().stream_url("127.0.0.1:8080") == "ws://127.0.0.1:8080/media-stream"


def test_openai_url_and_bearer_header() -> None:
    target = upstream_target(make_settings(OPENAI_API_KEY="sk-secret"))
    assert target.url == "wss://api.openai.com/v1/realtime?model=gpt-realtime"
    assert target.headers == {"Authorization": "Bearer sk-secret"}
    assert target.dialect == "ga"
    assert "sk-secret" not in repr(target)


def test_azure_ga_url_and_api_key_header() -> None:
    target = upstream_target(
        make_settings(
            AZURE_OPENAI_ENDPOINT="https://res.openai.azure.com/",
            AZURE_OPENAI_API_KEY="azkey",
            AZURE_OPENAI_DEPLOYMENT="my-rt",
        )
    )
    assert target.url == "wss://res.openai.azure.com/openai/v1/realtime?model=my-rt"
    assert target.headers == {"api-key": "azkey"}
    assert target.dialect == "ga"


def test_azure_preview_url_and_beta_dialect() -> None:
    target = upstream_target(
        make_settings(
            AZURE_OPENAI_ENDPOINT="https://res.openai.azure.com",
            AZURE_OPENAI_API_KEY="azkey",
            AZURE_OPENAI_DEPLOYMENT="my-rt",
            AZURE_OPENAI_API_VERSION="2025-04-01-preview",
        )
    )
    assert target.url == (
        "wss://res.openai.azure.com/openai/realtime?api-version=2025-04-01-preview&deployment=my-rt"
    )
    assert target.headers == {"api-key": "azkey"}
    assert target.dialect == "beta"


def test_realtime_url_overrides_the_url_but_keeps_auth_headers() -> None:
    target = upstream_target(
        make_settings(OPENAI_API_KEY="sk-x", REALTIME_URL="ws://127.0.0.1:9999/v1/realtime")
    )
    assert target.url == "ws://127.0.0.1:9999/v1/realtime"
    assert target.headers == {"Authorization": "Bearer sk-x"}
