"""What a call needs from the process, built once at start-up and passed down typed.

The routes build `Services` from the settings and the personas; the media-stream adapter
reads it and never reaches back into the app. Nothing here holds a call's state (that is
the call core's) or the set of live calls (`bridge.calls.CallRegistry`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from bridge.after_stream import (
    CallFacts,
    StreamOutcomes,
    TransferNotAnswered,
    stream_outcomes,
    transfer_resumes,
)
from bridge.call_events import CallEvents
from bridge.logs import get_logger
from bridge.outbound import OutboundCall, decode_outbound, encode_outbound
from bridge.persona import Persona, PersonaBook
from bridge.realtime.entra import EntraTokens
from bridge.realtime.upstream import UpstreamTarget, upstream_target
from bridge.recording import RecordingWriter
from bridge.security import StreamTokens, TwilioSignatures
from bridge.settings import Settings
from bridge.shared import SharedStore, shared_store
from bridge.tools.call_control import TwilioCallControl
from bridge.tools.catalogue import ToolCatalogue

log = get_logger("voicebridge.services")


class CallWatchers(Protocol):
    """Someone watching calls live (the softphone page): gets each call's lines as they are
    logged (`call_started`, `transcript`, `call_ended`)."""

    def publish(self, call_sid: str, line: dict[str, Any]) -> None: ...


class UpstreamTargets:
    """Where each call's Realtime session is opened. The built-in local engine's address is
    only known once it listens, at start-up (`use_local_engine`)."""

    def __init__(self, settings: Settings, entra: EntraTokens | None = None) -> None:
        self._settings = settings
        self._local_url: str | None = None
        if entra is None and settings.provider == "azure" and settings.AZURE_OPENAI_AUTH == "entra":
            entra = EntraTokens()
        self._entra = entra

    def use_local_engine(self, url: str) -> None:
        self._local_url = url

    @property
    def local_engine_url(self) -> str | None:
        return self._local_url

    def target(self) -> UpstreamTarget:
        bearer = self._entra.bearer if self._entra is not None else None
        return upstream_target(self._settings, self._local_url, bearer)


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    personas: PersonaBook
    upstream: UpstreamTargets
    signatures: TwilioSignatures | None
    """Set when signed (`TWILIO_AUTH_TOKEN` and `PUBLIC_URL`): every request is checked."""
    tokens: StreamTokens | None
    shared: SharedStore
    """Where the facts below, the tokens' single use and the deployment's live calls are
    kept: this process, the worker supervisor, or Redis (`bridge.shared`)."""
    control: TwilioCallControl | None
    """Twilio REST call control; None without credentials (local mode)."""
    outcomes: StreamOutcomes
    """How each ended stream wants its call to go on, for the `<Connect>` action."""
    resumes: CallFacts[TransferNotAnswered]
    """Calls coming back to the agent after a transfer nobody answered, for their new stream."""
    dialled: CallFacts[OutboundCall]
    """Calls the deployment placed (`POST /calls`), for their stream: persona, context."""
    answered_by: CallFacts[str]
    """Detection results (`/amd-status`) for a call whose stream is not live here."""
    watchers: CallWatchers | None = None
    call_events: CallEvents | None = None
    """The sender of call events to the business (`start`/`aclose` at the app's lifespan)."""
    recordings: RecordingWriter | None = None
    """The thread that writes call recordings (`aclose` at the app's end)."""
    tools: ToolCatalogue | None = None
    """Each call's tools (`tools_for`); its MCP listings live from the app's start-up to its
    end (`start`, `aclose` in the lifespan). None: built-in and HTTP tools only."""

    @classmethod
    def build(
        cls, settings: Settings, personas: PersonaBook, watchers: CallWatchers | None = None
    ) -> Services:
        signatures = tokens = None
        if settings.TWILIO_AUTH_TOKEN is not None and settings.PUBLIC_URL is not None:
            secret = settings.TWILIO_AUTH_TOKEN.get_secret_value()
            signatures = TwilioSignatures(secret, settings.PUBLIC_URL)
            tokens = StreamTokens(secret)
        shared = shared_store(settings)
        return cls(
            settings=settings,
            personas=personas,
            upstream=UpstreamTargets(settings),
            signatures=signatures,
            tokens=tokens,
            shared=shared,
            control=TwilioCallControl.from_settings(settings),
            outcomes=stream_outcomes(shared),
            resumes=transfer_resumes(shared),
            dialled=CallFacts("dialled", shared, encode_outbound, decode_outbound),
            answered_by=CallFacts("answered_by", shared, str, str),
            watchers=watchers,
            call_events=CallEvents.from_settings(settings),
            recordings=RecordingWriter(),
            tools=ToolCatalogue(settings, personas),
        )

    def persona_for(self, name: str | None) -> Persona:
        """The persona the webhook chose (by name, from the stream's parameters)."""
        persona = self.personas.get(name) if name else None
        if persona is None:
            if name:
                log.warning("persona_unknown", persona=name, using=self.personas.default.name)
            persona = self.personas.default
        return persona
