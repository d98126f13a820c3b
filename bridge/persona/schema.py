"""The persona model: what the agent says and how, its sections, and the session, greeting
and fallback one call gets from it; `DEFAULT_PERSONA` is the one used without persona files.

The rules that tie sections together (a keypad transfer names a transfer target, …) are
`reference_problems`, a function over plain values, so the loader can report them from the
raw YAML as well, in the same run as the field errors (pydantic checks them only once every
field is valid).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from bridge.audio_format import AudioFormat
from bridge.persona.errors import Loc, field_error
from bridge.persona.integrations import McpServer, server_names
from bridge.persona.sections import (
    TOOL_NAMES,
    DtmfAction,
    DtmfConfig,
    EndCallTool,
    Fallback,
    Hours,
    Limits,
    Outbound,
    Phone,
    Section,
    Tools,
    TransferTarget,
    TurnDetectionConfig,
    WebSearchTool,
)
from bridge.persona.templates import Template, render_template
from bridge.realtime.events import FunctionTool, SessionConfig
from bridge.settings import business_url_problem


@dataclass(frozen=True, slots=True)
class FallbackPlan:
    """The fallback of one call, rendered: say `say`, then dial `transfer_number` if set,
    else hang up."""

    say: str
    transfer_number: str | None


_TARGET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _-]{0,63}$")
_PERSONA_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_SECTIONS = (
    "turn_detection",
    "tools",
    "transfer_targets",
    "dtmf",
    "limits",
    "fallback",
    "mcp_servers",
)


def _persona_name(value: str) -> str:
    # It travels in a TwiML <Parameter> and in every log line of the call.
    if not _PERSONA_NAME.match(value):
        raise field_error(
            f"{value!r} is not a persona name: letters, digits, '_', '.', '-' (max 64)"
        )
    return value


def _number_list(value: object) -> object:
    if value is None:
        return ()
    return [value] if isinstance(value, str | int) and not isinstance(value, bool) else value


def _recording(value: object) -> object:
    if value is None or isinstance(value, bool) or value == "twilio":
        return value
    raise field_error(
        f"{value!r} is not a recording choice: true (a WAV file on this server), false, "
        "or twilio (Twilio's dual-channel recording)"
    )


PersonaName = Annotated[str, AfterValidator(_persona_name)]
Recording = Annotated[bool | Literal["twilio"] | None, BeforeValidator(_recording)]
Numbers = Annotated[tuple[Phone, ...], BeforeValidator(_number_list)]


class Identity(Section):
    """What routing needs of a persona (name, numbers, default), read on its own so the
    checks across personas still run when some other field of the persona is wrong."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: PersonaName = "default"
    numbers: Numbers = ()
    default: bool = False


def reference_problems(
    targets: Sequence[str],
    menu_targets: Iterable[tuple[str, str]],
    fallback_to: str | None,
    transfer_call: bool,
) -> list[tuple[Loc, str]]:
    """Every reference to a transfer target that does not resolve, as `(loc, reason)`.

    `menu_targets` are the `(digit, target)` of the keypad's transfer actions.
    """
    known = ", ".join(targets) or "none defined"
    out: list[tuple[Loc, str]] = []
    for digit, target in menu_targets:
        if target not in targets:
            out.append(
                (
                    ("dtmf", "menu", digit, "target"),
                    f"unknown transfer target {target!r} (transfer_targets: {known})",
                )
            )
    if fallback_to is not None and fallback_to not in targets:
        out.append(
            (
                ("fallback", "transfer_to"),
                f"unknown transfer target {fallback_to!r} (transfer_targets: {known})",
            )
        )
    if transfer_call and not targets:
        out.append(
            (
                ("tools", "transfer_call"),
                "transfer_call needs at least one entry in transfer_targets",
            )
        )
    return out


def raw_references(data: Mapping[object, object]) -> list[tuple[Loc, str]]:
    """`reference_problems` of a persona as read from YAML, whatever else is wrong with it.

    Values of the wrong shape are skipped: their own field errors say what is wrong.
    """
    raw_targets = data.get("transfer_targets")
    if raw_targets is not None and not isinstance(raw_targets, Mapping):
        return []
    targets = [str(k) for k in raw_targets or {}]
    menu_targets: list[tuple[str, str]] = []
    dtmf = data.get("dtmf")
    menu = dtmf.get("menu") if isinstance(dtmf, Mapping) else None
    if isinstance(menu, Mapping):
        for key, action in menu.items():
            if isinstance(action, Mapping) and action.get("action") == "transfer":
                target = action.get("target")
                if isinstance(target, str) and target:
                    menu_targets.append((str(key), target))
    fallback = data.get("fallback")
    fallback_to = fallback.get("transfer_to") if isinstance(fallback, Mapping) else None
    tools = data.get("tools")
    return reference_problems(
        targets,
        menu_targets,
        fallback_to if isinstance(fallback_to, str) else None,
        isinstance(tools, Mapping) and "transfer_call" in tools,
    )


class Persona(Section):
    """One configured agent: what it says, how it listens, what it may do, and when.

    Only `instructions` and `greeting` are required; every other field has a default that
    suits a phone line.
    """

    name: PersonaName = "default"
    business_name: str = "our office"
    numbers: Numbers = ()
    default: bool = False
    instructions: Template
    greeting: Template
    voice: str = Field(default="alloy", min_length=1, max_length=64)
    noise_reduction: Literal["near_field", "far_field", "off"] | None = None
    """The provider's input noise reduction: `near_field` for handsets and headsets (most
    phone calls), `far_field` for speakerphones, `off`; unset leaves its default."""
    speed: float | None = Field(default=None, ge=0.25, le=1.5)
    language: str | None = None
    transcription_model: str | None = "gpt-4o-mini-transcribe"
    turn_detection: TurnDetectionConfig = Field(default_factory=TurnDetectionConfig)
    tools: Tools = Field(default_factory=Tools)
    transfer_targets: dict[str, TransferTarget] = Field(default_factory=dict)
    dtmf: DtmfConfig = Field(default_factory=DtmfConfig)
    hours: Hours | None = None
    limits: Limits = Field(default_factory=Limits)
    fallback: Fallback = Field(default_factory=Fallback)
    # Integrations: where this persona's call events go (besides CALL_WEBHOOK_URL), and
    # whether its calls are recorded (unset: as RECORDINGS_DIR says; `twilio`: by Twilio).
    webhook_url: str | None = None
    recording: Recording = None
    outbound: Outbound | None = None
    """Calls this persona places (`POST /calls`); unset, they open with `greeting`."""
    mcp_servers: Annotated[dict[str, McpServer], AfterValidator(server_names)] = Field(
        default_factory=dict
    )

    @model_validator(mode="before")
    @classmethod
    def _empty_section_is_default(cls, data: object) -> object:
        # `tools:` with nothing under it is an empty section, not an error.
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not (v is None and k in _SECTIONS)}
        return data

    @field_validator("language")
    @classmethod
    def _iso_639_1(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[a-z]{2}", value):
            raise field_error(f"{value!r} is not an ISO-639-1 language code like 'en' or 'de'")
        return value

    @field_validator("webhook_url")
    @classmethod
    def _business_url(cls, value: str | None) -> str | None:
        if value is not None:
            problem = business_url_problem(value)
            if problem:
                raise field_error(f"{value!r}: {problem}")
        return value

    @field_validator("transfer_targets")
    @classmethod
    def _target_names(cls, value: dict[str, TransferTarget]) -> dict[str, TransferTarget]:
        for key in value:
            if not _TARGET_NAME.match(key):
                raise field_error(
                    f"{key!r} is not a target name: letters, digits, ' ', '_', '-' (max 64)",
                    key,
                )
        return value

    @model_validator(mode="after")
    def _references_resolve(self) -> Persona:
        # pydantic can raise one error here; the loader reports the rest (`raw_references`).
        problems = reference_problems(
            list(self.transfer_targets),
            ((d, a.target) for d, a in self.dtmf.menu.items() if a.target is not None),
            self.fallback.transfer_to,
            self.tools.transfer_call is not None,
        )
        if problems:
            loc, reason = problems[0]
            raise field_error(reason, *loc)
        return self

    @property
    def secrets(self) -> tuple[str, ...]:
        """The values the `${VAR}`s of its HTTP tools' and MCP servers' headers resolved to:
        the server registers them with the log scrubber at start-up."""
        remotes = [*self.tools.http.values(), *self.mcp_servers.values()]
        return tuple(s for remote in remotes for s in remote.secrets)

    @model_validator(mode="after")
    def _mcp_names_free(self) -> Persona:
        # An allow-listed MCP tool under a name the persona already uses would never be offered.
        taken = {*TOOL_NAMES, *self.tools.http}
        for server, config in self.mcp_servers.items():
            for i, name in enumerate(config.tools or ()):
                if name in taken:
                    kind = "a built-in tool" if name in TOOL_NAMES else f"tools.{name}"
                    raise field_error(
                        f"{name!r} is already {kind}; an MCP tool cannot have its name",
                        "mcp_servers",
                        server,
                        "tools",
                        i,
                    )
        return self

    # --- Per-call rendering -------------------------------------------------------------

    @property
    def tz(self) -> tzinfo:
        """The persona's clock: its business hours' time zone, else UTC."""
        return ZoneInfo(self.hours.timezone) if self.hours else UTC

    def local_time(self, at: datetime | None = None) -> datetime:
        """`at` (default: now) on the persona's clock. A naive `at` is taken as UTC."""
        if at is None:
            at = datetime.now(UTC)
        elif at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        return at.astimezone(self.tz)

    def is_open(self, at: datetime | None = None) -> bool:
        """Whether `at` falls in business hours (always, when the persona has none)."""
        if self.hours is None:
            return True
        local = self.local_time(at)
        if local.date() in self.hours.holidays:
            return False
        if self.hours.weekly is None:
            return True
        minute = local.hour * 60 + local.minute
        return any(
            i.start <= minute < i.end for i in self.hours.weekly.for_weekday(local.weekday())
        )

    def render(self, text: str, at: datetime | None = None, caller_number: str = "") -> str:
        """Fill a persona template (any spoken text of this persona) for one call."""
        local = self.local_time(at)
        return render_template(
            text,
            {
                "business_name": self.business_name,
                "caller_number": caller_number or "unknown",
                "now": f"{local:%H:%M}",
                "persona_name": self.name,
                "today": f"{local:%A} {local.day} {local:%B %Y}",
            },
        )

    def greeting_for(self, at: datetime | None = None, caller_number: str = "") -> str:
        """The first words of the call: the after-hours greeting when closed, if there is one."""
        at = self.local_time(at)
        text = self.greeting
        if self.hours and self.hours.after_hours_greeting and not self.is_open(at):
            text = self.hours.after_hours_greeting
        return self.render(text, at, caller_number)

    def instructions_for(self, at: datetime | None = None, caller_number: str = "") -> str:
        """The session instructions: the after-hours ones when closed, if there are any."""
        at = self.local_time(at)
        text = self.instructions
        if self.hours and self.hours.after_hours_instructions and not self.is_open(at):
            text = self.hours.after_hours_instructions
        return self.render(text, at, caller_number)

    def outbound_greeting_for(self, at: datetime | None = None, callee_number: str = "") -> str:
        """The first words of a call this persona placed: `outbound.greeting`, else its
        greeting."""
        text = self.outbound.greeting if self.outbound is not None else self.greeting
        return self.render(text, at, callee_number)

    def voicemail_for(self, at: datetime | None = None, callee_number: str = "") -> str | None:
        """The message left on a machine that answered a call this persona placed; None:
        hang up without one."""
        if self.outbound is None or self.outbound.voicemail is None:
            return None
        return self.render(self.outbound.voicemail, at, callee_number)

    def session_config(
        self,
        audio_format: AudioFormat,
        caller_number: str = "",
        tools: Iterable[FunctionTool] = (),
        at: datetime | None = None,
        outbound: bool = False,
    ) -> SessionConfig:
        """The dialect-neutral session of one call. `tools` are the function tools built for
        this persona's `tools` section (the tools module owns their schemas). A call the
        persona placed (`outbound`) uses `outbound.instructions` when it has them."""
        instructions = self.instructions_for(at, caller_number)
        if outbound and self.outbound is not None and self.outbound.instructions is not None:
            instructions = self.render(self.outbound.instructions, at, caller_number)
        return SessionConfig(
            instructions=instructions,
            voice=self.voice,
            audio_format=audio_format,
            speed=self.speed,
            transcription_model=self.transcription_model,
            transcription_language=self.language,
            turn_detection=self.turn_detection.to_core(),
            tools=tuple(tools),
            noise_reduction=self.noise_reduction,
        )

    def dtmf_action(self, digit: str) -> DtmfAction | None:
        """What a pressed key does; `None` means ignore it."""
        action = self.dtmf.menu.get(digit)
        if action is not None:
            return action
        return _TO_MODEL if self.dtmf.unlisted == "to_model" else None

    def fallback_plan(self, at: datetime | None = None, caller_number: str = "") -> FallbackPlan:
        """The TwiML to put after `</Connect>`: it plays when the stream ends without the agent
        having ended the call (model unreachable, bridge restarting)."""
        target = self.fallback.transfer_to
        return FallbackPlan(
            say=self.render(self.fallback.say, at, caller_number),
            transfer_number=self.transfer_targets[target].number if target else None,
        )


_TO_MODEL = DtmfAction(action="to_model")


DEFAULT_PERSONA = Persona(
    name="default",
    business_name="voicebridge",
    default=True,
    instructions=(
        "You are the friendly voice assistant answering the phone for {business_name}. "
        "You are on a phone call: keep every answer short, one or two sentences, in plain "
        "spoken language with no lists or markup. The caller's number is {caller_number}; "
        "today is {today}."
    ),
    greeting="Hello, thanks for calling. How can I help you today?",
    tools=Tools(web_search=WebSearchTool(), end_call=EndCallTool()),
)
"""The built-in persona, used when no PERSONA_FILE is set. `personas/default.yaml` holds the
same persona as a documented file (a test keeps the two equal); it stays in code because the
installed package does not ship the `personas/` folder."""
