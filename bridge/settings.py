"""Process settings: read once from the environment (and `.env`), validated into typed values.

Every variable name here is part of the product's outside (docs/reference.md, "Environment
variables"); a bad combination fails at start-up with the variable's name and the reason,
never mid-call.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
from collections.abc import Iterable
from typing import Final, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bridge.audio_format import AudioFormat

Provider = Literal["openai", "azure", "local"]


class SettingsError(Exception):
    """A configuration problem, worded for the operator who has to fix it."""


def is_loopback_host(host: str | None) -> bool:
    """True for `localhost` and loopback addresses, the only hosts allowed plain http/ws."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def business_url_problem(url: str) -> str | None:
    """Why `url` cannot receive the bridge's requests to the business, or None: an absolute
    https URL (plain http only for loopback hosts, e.g. the example receiver)."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "expected an absolute https URL such as https://crm.example.com/voicebridge"
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        return "must be https; plain http is allowed for loopback hosts only"
    return None


def _is_ip_or_localhost(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class Settings(BaseSettings):
    """All the product's environment variables, typed. Secrets are `SecretStr` so they never
    print by accident."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=True
    )

    PUBLIC_URL: str | None = None
    TWILIO_ACCOUNT_SID: str | None = None
    TWILIO_AUTH_TOKEN: SecretStr | None = None
    TWILIO_API_BASE_URL: str = "https://api.twilio.com"

    REALTIME_PROVIDER: Provider | None = None
    OPENAI_API_KEY: SecretStr | None = None
    OPENAI_REALTIME_MODEL: str = "gpt-realtime"
    AZURE_OPENAI_ENDPOINT: str | None = None
    AZURE_OPENAI_API_KEY: SecretStr | None = None
    AZURE_OPENAI_DEPLOYMENT: str | None = None
    AZURE_OPENAI_API_VERSION: str | None = None
    # On Azure the input transcription `model` is a deployment of the transcription model.
    AZURE_OPENAI_TRANSCRIPTION_DEPLOYMENT: str | None = None
    # `entra`: an Entra ID token (azure-identity's DefaultAzureCredential) instead of the key,
    # for tenants with key authentication disabled.
    AZURE_OPENAI_AUTH: Literal["key", "entra"] = "key"
    REALTIME_URL: str | None = None
    REALTIME_AUDIO: AudioFormat = AudioFormat.PCM16

    TAVILY_API_KEY: SecretStr | None = None
    TAVILY_API_BASE_URL: str | None = None

    PERSONA_FILE: str | None = None

    MAX_CONCURRENT_CALLS: int = Field(default=100, ge=1)  # half a core: docs/deploy.md
    MAX_CALL_SECONDS: float = Field(default=1800.0, gt=0)
    IDLE_TIMEOUT_SECONDS: float = Field(default=30.0, gt=0)
    DRAIN_TIMEOUT_SECONDS: float = Field(default=30.0, ge=0)

    # Outbound calls (`POST /calls`, bridge/outbound.py): the key that authorizes them (the
    # route is off without it), how many may be live at once, and Twilio's pace per number.
    VOICEBRIDGE_API_KEY: SecretStr | None = None
    MAX_OUTBOUND_CALLS: int = Field(default=10, ge=1)
    OUTBOUND_CALLS_PER_SECOND: float = Field(default=1.0, gt=0, le=100)

    # The browser softphone: unset = on exactly in local (unsigned) mode. It cannot sign
    # webhooks, so turning it on in signed mode only makes sense behind your own access control.
    SOFTPHONE_ENABLED: bool | None = None

    # Signs every request sent to the business's systems (HTTP tools, call events).
    WEBHOOK_SIGNING_SECRET: SecretStr | None = None
    # Where every call's events go (`call.started`, `call.ended`, `call.recording`), signed.
    CALL_WEBHOOK_URL: str | None = None
    # Every call kept as a stereo WAV in this folder (a persona's `recording` overrides).
    RECORDINGS_DIR: str | None = None

    # /metrics on its own address, off the public port (bridge/metrics_port.py). Unset: served
    # on the public port. METRICS_HOST defaults to the public port's bind address.
    METRICS_PORT: int | None = Field(default=None, ge=1, le=65535)
    METRICS_HOST: str | None = None

    # State shared by replicas (single-use stream tokens, one stream per CallSid, each
    # stream's outcome, the count of live calls): redis://[:password@]host:port/db. Unset:
    # in process memory (shared by the workers of `serve --workers N`).
    REDIS_URL: SecretStr | None = None
    # Live calls of the whole deployment (every worker and replica) at once; past it callers
    # hear the busy message. Unset: only each process's MAX_CONCURRENT_CALLS.
    MAX_DEPLOYMENT_CALLS: int | None = Field(default=None, ge=1)

    LOG_FORMAT: Literal["json", "console"] = "json"
    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator(
        "PUBLIC_URL",
        "TWILIO_ACCOUNT_SID",
        "AZURE_OPENAI_ENDPOINT",
        "AZURE_OPENAI_DEPLOYMENT",
        "AZURE_OPENAI_API_VERSION",
        "AZURE_OPENAI_TRANSCRIPTION_DEPLOYMENT",
        "REALTIME_URL",
        "TAVILY_API_BASE_URL",
        "PERSONA_FILE",
        "REALTIME_PROVIDER",
        "SOFTPHONE_ENABLED",
        "WEBHOOK_SIGNING_SECRET",
        "CALL_WEBHOOK_URL",
        "RECORDINGS_DIR",
        "METRICS_PORT",
        "METRICS_HOST",
        "MAX_DEPLOYMENT_CALLS",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # `.env.example` copies leave variables present but empty; treat them as unset.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator(
        "TWILIO_AUTH_TOKEN",
        "OPENAI_API_KEY",
        "AZURE_OPENAI_API_KEY",
        "TAVILY_API_KEY",
        "VOICEBRIDGE_API_KEY",
        "REDIS_URL",
        mode="before",
    )
    @classmethod
    def _blank_secret_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("REALTIME_PROVIDER", "REALTIME_AUDIO", "LOG_FORMAT", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("LOG_LEVEL", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_combinations(self) -> Settings:
        if self.PUBLIC_URL is not None:
            parts = urlsplit(self.PUBLIC_URL)
            if parts.scheme not in ("https", "http") or not parts.hostname:
                raise ValueError(
                    f"PUBLIC_URL={self.PUBLIC_URL!r}: expected an absolute https URL "
                    "such as https://voice.example.com"
                )
            if parts.scheme == "http" and not is_loopback_host(parts.hostname):
                raise ValueError(
                    f"PUBLIC_URL={self.PUBLIC_URL!r}: must be https (Twilio only reaches "
                    "public servers over TLS); plain http is allowed for loopback hosts only"
                )
            if parts.query or parts.fragment:
                raise ValueError(f"PUBLIC_URL={self.PUBLIC_URL!r}: no query or fragment allowed")
        if self.TWILIO_AUTH_TOKEN is not None and self.PUBLIC_URL is None:
            raise ValueError(
                "TWILIO_AUTH_TOKEN is set but PUBLIC_URL is not: signatures are checked against "
                "the public URL Twilio calls, so set PUBLIC_URL=https://your.host"
            )
        if self.REALTIME_URL is not None:
            scheme = urlsplit(self.REALTIME_URL).scheme
            if scheme not in ("wss", "ws"):
                raise ValueError(
                    f"REALTIME_URL={self.REALTIME_URL!r}: must be a ws:// or wss:// URL"
                )
        if self.CALL_WEBHOOK_URL is not None:
            problem = business_url_problem(self.CALL_WEBHOOK_URL)
            if problem:
                raise ValueError(f"CALL_WEBHOOK_URL={self.CALL_WEBHOOK_URL!r}: {problem}")
            if self.WEBHOOK_SIGNING_SECRET is None:
                raise ValueError(
                    "CALL_WEBHOOK_URL is set but WEBHOOK_SIGNING_SECRET is not: call events "
                    "are always signed, so set WEBHOOK_SIGNING_SECRET to a secret the "
                    "receiver shares"
                )
        if self.REDIS_URL is not None:
            redis_url = urlsplit(self.REDIS_URL.get_secret_value())
            if redis_url.scheme not in ("redis", "rediss", "unix") or not (
                redis_url.hostname or redis_url.path
            ):
                raise ValueError(
                    "REDIS_URL: expected a redis:// (or rediss://, unix://) URL such as "
                    "redis://redis:6379/0"
                )
        if self.METRICS_HOST is not None:
            if self.METRICS_PORT is None:
                raise ValueError(
                    "METRICS_HOST is set but METRICS_PORT is not: set METRICS_PORT to serve "
                    "/metrics on its own address"
                )
            if not _is_ip_or_localhost(self.METRICS_HOST):
                raise ValueError(
                    f"METRICS_HOST={self.METRICS_HOST!r}: expected an IP address to listen on, "
                    "such as 0.0.0.0, 127.0.0.1 or ::"
                )
        provider = self.provider
        if provider == "openai" and self.OPENAI_API_KEY is None:
            raise ValueError("REALTIME_PROVIDER=openai needs OPENAI_API_KEY")
        if provider == "azure":
            needed = ["AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_DEPLOYMENT"]
            if self.AZURE_OPENAI_AUTH == "key":
                needed.insert(1, "AZURE_OPENAI_API_KEY")
            missing = [name for name in needed if getattr(self, name) is None]
            if missing:
                raise ValueError(f"REALTIME_PROVIDER=azure needs {', '.join(missing)}")
            if self.AZURE_OPENAI_ENDPOINT and urlsplit(self.AZURE_OPENAI_ENDPOINT).scheme not in (
                "https",
                "http",
                "wss",
                "ws",
            ):
                raise ValueError(
                    f"AZURE_OPENAI_ENDPOINT={self.AZURE_OPENAI_ENDPOINT!r}: expected "
                    "https://{resource}.openai.azure.com"
                )
        return self

    # Derived values -------------------------------------------------------------------------

    @property
    def provider(self) -> Provider:
        """The provider in force: explicit, else inferred from which credentials are present."""
        if self.REALTIME_PROVIDER is not None:
            return self.REALTIME_PROVIDER
        if self.OPENAI_API_KEY is not None:
            return "openai"
        if self.AZURE_OPENAI_ENDPOINT is not None:
            return "azure"
        return "local"

    @property
    def signed(self) -> bool:
        """With a Twilio auth token every webhook and stream must be signed (production mode)."""
        return self.TWILIO_AUTH_TOKEN is not None

    @property
    def azure_preview(self) -> bool:
        """An Azure preview api-version (`2025-04-01-preview`): the preview URL and the beta
        event shapes. A GA version names nothing the GA URL takes (it has no api-version)."""
        version = self.AZURE_OPENAI_API_VERSION or ""
        return self.provider == "azure" and "preview" in version.lower()

    @property
    def dialect(self) -> Literal["ga", "beta"]:
        """Azure preview api-versions speak the beta event shapes; everything else is GA."""
        return "beta" if self.azure_preview else "ga"

    @property
    def session_limit_s(self) -> float:
        """How long the provider lets one Realtime session last (Azure: 30 minutes, OpenAI:
        60); a call is moved to a fresh session before that."""
        return 30 * 60.0 if self.provider == "azure" else 60 * 60.0

    def stream_url(self, request_host: str | None = None, request_scheme: str = "http") -> str:
        """The `<Stream url>`: PUBLIC_URL with https→wss (http→ws), its path prefix kept, and
        `/media-stream`. Only without PUBLIC_URL (local mode) does it follow the request's
        own host."""
        if self.PUBLIC_URL is not None:
            parts = urlsplit(self.PUBLIC_URL)
            scheme = "wss" if parts.scheme == "https" else "ws"
            return urlunsplit((scheme, parts.netloc, self.public_prefix + "/media-stream", "", ""))
        scheme = "wss" if request_scheme in ("https", "wss") else "ws"
        return f"{scheme}://{request_host or '127.0.0.1:8080'}/media-stream"

    @property
    def public_prefix(self) -> str:
        """The path of PUBLIC_URL without its trailing slash: what a path-prefix proxy in
        front of the bridge strips before it forwards a request (`/voice`, or "")."""
        if self.PUBLIC_URL is None:
            return ""
        return urlsplit(self.PUBLIC_URL).path.rstrip("/")

    def public_http_url(self, path: str) -> str | None:
        """The URL Twilio requests for the bridge's route `path` (what it signs), rebuilt from
        PUBLIC_URL, its path prefix included; None in local mode."""
        if self.PUBLIC_URL is None:
            return None
        parts = urlsplit(self.PUBLIC_URL)
        return urlunsplit((parts.scheme, parts.netloc, self.public_prefix + path, "", ""))

    def callback_url(self, path: str, request_host: str | None, request_scheme: str) -> str:
        """An absolute URL of the bridge's route `path` for Twilio to request (a `<Connect>`
        action, a status callback): from PUBLIC_URL, or in local mode the request's host."""
        public = self.public_http_url(path)
        if public is not None:
            return public
        scheme = "https" if request_scheme in ("https", "wss") else "http"
        return f"{scheme}://{request_host or '127.0.0.1:8080'}{path}"

    def secrets(self) -> list[str]:
        """Every secret value in force, so the log redactor can scrub them."""
        values = [
            self.TWILIO_AUTH_TOKEN,
            self.OPENAI_API_KEY,
            self.AZURE_OPENAI_API_KEY,
            self.TAVILY_API_KEY,
            self.WEBHOOK_SIGNING_SECRET,
            self.VOICEBRIDGE_API_KEY,
            self.REDIS_URL,
        ]
        found = [v.get_secret_value() for v in values if v is not None and v.get_secret_value()]
        if self.REDIS_URL is not None:
            password = urlsplit(self.REDIS_URL.get_secret_value()).password
            if password:
                found.append(password)
        return found


OUR_PREFIXES: Final = (
    "OPENAI_",
    "AZURE_OPENAI_",
    "TWILIO_",
    "REALTIME_",
    "TAVILY_",
    "PERSONA_",
    "MAX_",
    "IDLE_",
    "DRAIN_",
    "SOFTPHONE_",
    "METRICS_",
    "LOG_",
    "VOICEBRIDGE_",
    "OUTBOUND_",
)
"""Prefixes of the product's variables: another name with one of them is a misspelling of
ours (or a library's variable the bridge does not read), never the shell's."""

CLOSE_ENOUGH: Final = 0.85
"""How alike (difflib's ratio) a name without our prefix must be to one of ours to be taken
for a misspelling: PUBLIC_ULR is, PATH and HOSTNAME are not."""


def known_names() -> frozenset[str]:
    """Every variable the settings read."""
    return frozenset(Settings.model_fields)


def unknown_settings(names: Iterable[str]) -> list[tuple[str, str | None]]:
    """Names that look like ours but are not, each with the closest known name (or None).

    Variables are case-sensitive, so `openai_api_key` is unknown too (and suggests the
    upper-case name). Everything else in an environment (PATH, HOME, …) is left alone.
    """
    known = known_names()
    found = []
    for name in sorted(set(names)):
        if name in known:
            continue
        upper = name.upper()
        if upper in known:
            found.append((name, upper))
            continue
        prefix = next((p for p in OUR_PREFIXES if upper.startswith(p)), None)
        if prefix is not None:
            # A suggestion from the same family first: OPENAI_KEY → OPENAI_API_KEY.
            family = [k for k in known if k.startswith(prefix)]
            close = difflib.get_close_matches(upper, family, n=1, cutoff=0.7)
            close = close or difflib.get_close_matches(upper, known, n=1, cutoff=CLOSE_ENOUGH)
            found.append((name, close[0] if close else None))
            continue
        close = difflib.get_close_matches(upper, known, n=1, cutoff=CLOSE_ENOUGH)
        if close:
            found.append((name, close[0]))
    return found


def names_in_force(env: Iterable[str], env_file: str | None = ".env") -> dict[str, str]:
    """Every variable name set, in the environment or the `.env` file, with where it was
    set ("environment" or the file's name): what `unknown_settings` looks through."""
    found = {name: "environment" for name in env}
    if env_file is not None and os.path.isfile(env_file):
        from dotenv import dotenv_values

        for name in dotenv_values(env_file):
            found.setdefault(name, env_file)
    return found


class CallerSettings(BaseSettings):
    """What `voicebridge call` reads, from the same places: only the token it signs with and
    the public URL it signs for. A simulated caller is not held to the server's rules (a
    token needs PUBLIC_URL there), since `--url` says where the bridge is."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=True
    )

    PUBLIC_URL: str | None = None
    TWILIO_AUTH_TOKEN: SecretStr | None = None

    @field_validator("PUBLIC_URL", "TWILIO_AUTH_TOKEN", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value


class DialerSettings(BaseSettings):
    """What `voicebridge dial` reads, from the same places: only the key it authorizes its
    `POST /calls` with."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=True
    )

    VOICEBRIDGE_API_KEY: SecretStr | None = None

    @field_validator("VOICEBRIDGE_API_KEY", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value


def load_settings(**overrides: object) -> Settings:
    """Read and validate settings; raise `SettingsError` with one line per problem."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{loc}: {msg}" if loc else msg)
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(lines)) from None
