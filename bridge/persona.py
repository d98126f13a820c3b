"""Who answers the phone: personas, the files they live in, and the session each call asks for.

A persona is everything the person who runs the line configures without touching code: what
the agent says and how, which tools it may use, where it may transfer, the keypad menu, the
opening hours, the limits of a call and what happens when the model cannot be reached.

Persona files are YAML, validated once at the edge (`load_personas`) into frozen pydantic
models; every mistake is reported as `file:line: field.path: reason`, because the operator
fixing it has the file open, not the code. A `PersonaBook` holds the loaded personas and picks
one by the called number (`To`); the webhook sends the chosen persona's name to the stream in
a `<Parameter>`, and the stream looks it up again with `PersonaBook.get`.

All spoken texts and the instructions are templates: `{caller_number}`, `{business_name}`,
`{today}`, `{now}` (in the persona's time zone) and `{persona_name}`; `{{` and `}}` are
literal braces. An unknown placeholder is a load-time error, never a surprise on a call.
"""

from __future__ import annotations

import difflib
import functools
import itertools
import re
import sys
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, NamedTuple, Union
from zoneinfo import ZoneInfo

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from bridge.realtime.events import AudioFormat, FunctionTool, SessionConfig, TurnDetection

__all__ = [
    "DEFAULT_PERSONA",
    "PLACEHOLDERS",
    "TOOL_NAMES",
    "DtmfAction",
    "FallbackPlan",
    "Persona",
    "PersonaBook",
    "PersonaError",
    "check_command",
    "describe",
    "load_personas",
    "normalize_number",
]


class PersonaError(ValueError):
    """One or more problems in persona files, each a line `file:line: field.path: reason`.

    The server refuses to start with the same message `voicebridge persona check` prints.
    """

    def __init__(self, errors: Iterable[str]) -> None:
        self.errors: tuple[str, ...] = tuple(errors)
        super().__init__("\n".join(self.errors))


def _field_error(reason: str, *path: str | int, offset: int | None = None) -> PydanticCustomError:
    """A validation error that points below the model that raised it.

    Cross-field checks run on the parent model, but the operator needs the line of the field
    at fault; `path` travels in the error's context and the formatter appends it to `loc`.
    """
    ctx: dict[str, Any] = {"reason": reason, "path": path}
    if offset is not None:
        ctx["offset"] = offset
    return PydanticCustomError("persona", "{reason}", ctx)


def _suggest(word: str, choices: Iterable[str], fmt: str = "{!r}") -> str | None:
    """`'monday'`, or `'monday' or 'sunday'` when several are equally close; None if none is."""
    options = sorted(set(choices))
    ratios = []
    for choice in options:
        matcher = difflib.SequenceMatcher(None, word, choice)
        if matcher.real_quick_ratio() >= 0.6 and matcher.quick_ratio() >= 0.6:
            ratios.append((matcher.ratio(), choice))
    best = max((r for r, _ in ratios), default=0.0)
    if best < 0.6:
        return None
    return " or ".join([fmt.format(c) for r, c in ratios if r == best][:3])


# --- Templates ------------------------------------------------------------------------------

PLACEHOLDERS: tuple[str, ...] = (
    "business_name",
    "caller_number",
    "now",
    "persona_name",
    "today",
)
"""The names a persona text may use in braces."""

_ALLOWED = ", ".join("{" + p + "}" for p in PLACEHOLDERS)


class _TemplateError(ValueError):
    def __init__(self, reason: str, offset: int) -> None:
        super().__init__(reason)
        self.offset = offset


@functools.lru_cache(maxsize=512)
def _parse_template(text: str) -> tuple[tuple[str, int] | str, ...]:
    """Split a template into literal strings and `(placeholder, offset)` pairs.

    Hand-written rather than `string.Formatter` so errors carry the offset, which becomes a
    line number inside a multi-line YAML block.
    """
    parts: list[tuple[str, int] | str] = []
    literal: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "{":
            if text.startswith("{{", i):
                literal.append("{")
                i += 2
                continue
            end = text.find("}", i + 1)
            if end < 0:
                raise _TemplateError("unclosed '{'; write {{ for a literal brace", i)
            name = text[i + 1 : end]
            if not name:
                raise _TemplateError(
                    f"empty placeholder {{}}; use one of {_ALLOWED}, or {{{{ }}}} for braces", i
                )
            if name not in PLACEHOLDERS:
                hint = _suggest(name.strip(), PLACEHOLDERS, "{{{}}}")
                did = f"did you mean {hint}? " if hint else ""
                raise _TemplateError(
                    f"unknown placeholder {{{name}}}; {did}allowed: {_ALLOWED} "
                    "(write {{ and }} for literal braces)",
                    i,
                )
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append((name, i))
            i = end + 1
            continue
        if c == "}":
            if text.startswith("}}", i):
                literal.append("}")
                i += 2
                continue
            raise _TemplateError("single '}'; write }} for a literal brace", i)
        literal.append(c)
        i += 1
    if literal:
        parts.append("".join(literal))
    return tuple(parts)


def _check_template(text: str) -> str:
    try:
        _parse_template(text)
    except _TemplateError as exc:
        raise _field_error(str(exc), offset=exc.offset) from None
    return text


def _render(text: str, values: Mapping[str, str]) -> str:
    return "".join(p if isinstance(p, str) else values[p[0]] for p in _parse_template(text))


Template = Annotated[str, AfterValidator(_check_template)]
"""A persona text with placeholders, checked when the persona is loaded."""


# --- Phone numbers ----------------------------------------------------------------------------

_E164 = re.compile(r"^\+[1-9]\d{1,14}$")
_NUMBER_SEPARATORS = re.compile(r"[\s\-().]")


def normalize_number(raw: str) -> str:
    """Drop the spaces, dashes, dots and parentheses people write inside phone numbers."""
    return _NUMBER_SEPARATORS.sub("", raw)


def _phone(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return value
    number = normalize_number(value)
    if not _E164.match(number):
        raise _field_error(
            f"not an E.164 number: {value!r}; write '+', the country code and the number, "
            'in quotes (e.g. "+1 212 555 0100")'
        )
    return number


Phone = Annotated[str, BeforeValidator(_phone)]


# --- Sections ---------------------------------------------------------------------------------


class _Section(BaseModel):
    """Base of every persona model: unknown keys are errors, and values never change after
    loading, since one persona serves many concurrent calls."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # How unknown keys of this section are named in errors ("unknown tool 'x'").
    _key_kind: ClassVar[str] = "field"


class TurnDetectionConfig(_Section):
    """When the caller's turn ends: volume-based `server_vad` or model-based `semantic_vad`.
    `None` values leave the provider's defaults."""

    type: Literal["server_vad", "semantic_vad"] = "server_vad"
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    prefix_padding_ms: int | None = Field(default=None, ge=0, le=10_000)
    silence_duration_ms: int | None = Field(default=None, ge=0, le=10_000)
    idle_timeout_ms: int | None = Field(default=None, ge=0)
    eagerness: Literal["low", "medium", "high", "auto"] | None = None
    create_response: bool = True
    interrupt_response: bool = True

    @model_validator(mode="after")
    def _fields_fit_type(self) -> TurnDetectionConfig:
        # The wire format silently drops the other kind's fields; say so instead.
        if self.type == "semantic_vad":
            for key in ("threshold", "prefix_padding_ms", "silence_duration_ms", "idle_timeout_ms"):
                if getattr(self, key) is not None:
                    raise _field_error(f"only for type server_vad (this is {self.type})", key)
        elif self.eagerness is not None:
            raise _field_error("only for type semantic_vad (this is server_vad)", "eagerness")
        return self

    def to_core(self) -> TurnDetection:
        return TurnDetection(**self.model_dump())


class WebSearchTool(_Section):
    """Web search: results are capped so a long page cannot flood the model's context."""

    max_results: int = Field(default=3, ge=1, le=10)
    max_chars: int = Field(default=2000, ge=200, le=20_000)
    timeout_seconds: float = Field(default=8.0, gt=0, le=60)
    filler: Template = "Let me look that up for you."


class TransferCallTool(_Section):
    """Transfer to one of the persona's `transfer_targets` (the model picks it by name)."""

    filler: Template = "Please hold while I transfer you."


class EndCallTool(_Section):
    """Hang up when the conversation is over; the last words play out first."""

    filler: Template = "Thank you for calling. Goodbye."


TOOL_NAMES: tuple[str, ...] = ("web_search", "transfer_call", "end_call")


class Tools(_Section):
    """The tools this persona offers the model; a tool is enabled by being listed."""

    _key_kind: ClassVar[str] = "tool"

    web_search: WebSearchTool | None = None
    transfer_call: TransferCallTool | None = None
    end_call: EndCallTool | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_name_enables(cls, data: object) -> object:
        # `end_call:` with nothing after it means "on, with default settings".
        if isinstance(data, dict):
            return {k: ({} if v is None and k in TOOL_NAMES else v) for k, v in data.items()}
        return data

    @property
    def enabled(self) -> tuple[str, ...]:
        return tuple(name for name in TOOL_NAMES if getattr(self, name) is not None)


_TARGET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _-]{0,63}$")


class TransferTarget(_Section):
    """A named number the agent may transfer to; the description tells the model when."""

    number: Phone
    description: str = ""


class DtmfAction(_Section):
    """What one keypad digit does."""

    action: Literal["transfer", "say", "end_call", "to_model"]
    target: str | None = None
    text: Template | None = None

    @model_validator(mode="after")
    def _arguments_fit_action(self) -> DtmfAction:
        if self.action == "transfer" and not self.target:
            raise _field_error("action transfer needs a target (a transfer_targets name)", "target")
        if self.action == "say" and not self.text:
            raise _field_error("action say needs a text", "text")
        if self.action != "transfer" and self.target is not None:
            raise _field_error(f"only for action transfer (this is {self.action})", "target")
        if self.action != "say" and self.text is not None:
            raise _field_error(f"only for action say (this is {self.action})", "text")
        return self


_DIGITS = "0123456789*#"


class DtmfConfig(_Section):
    """The keypad menu. Digits not in `menu` go to the model as text (`to_model`) so it can
    react, or are dropped (`ignore`)."""

    menu: dict[str, DtmfAction] = Field(default_factory=dict)
    unlisted: Literal["to_model", "ignore"] = "to_model"

    @field_validator("menu", mode="before")
    @classmethod
    def _digit_keys(cls, value: object) -> object:
        # YAML reads `0:` as the integer 0; a digit is a key either way.
        if not isinstance(value, dict):
            return value
        out: dict[str, object] = {}
        for key, action in value.items():
            digit = str(key) if isinstance(key, int) and not isinstance(key, bool) else key
            if not isinstance(digit, str) or len(digit) != 1 or digit not in _DIGITS:
                raise _field_error(
                    f'menu keys are single keypad keys 0-9, "*" or "#" (quoted), not {key!r}',
                    str(key),
                )
            out[digit] = action
        return out


class OpeningInterval(NamedTuple):
    """Open from `start` to `end`, in minutes after local midnight (end 1440 = midnight)."""

    start: int
    end: int

    def __str__(self) -> str:
        return (
            f"{self.start // 60:02d}:{self.start % 60:02d}-{self.end // 60:02d}:{self.end % 60:02d}"
        )


_INTERVAL = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def _interval(value: object) -> object:
    if not isinstance(value, str):
        return value
    m = _INTERVAL.match(value)
    if not m:
        raise _field_error(f'not an opening interval: {value!r}; write "09:00-17:30"')
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2):
        raise _field_error(f"not a time of day in {value!r}")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if end <= start:
        raise _field_error(
            f"{value!r} ends before it starts; split an interval past midnight over two days"
        )
    return OpeningInterval(start, end)


def _day(value: object) -> object:
    if value is None or value == "closed":
        return ()
    if isinstance(value, str):
        return (value,)
    return value


Day = Annotated[
    tuple[Annotated[OpeningInterval, BeforeValidator(_interval)], ...], BeforeValidator(_day)
]
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class Weekly(_Section):
    """Opening intervals per weekday in local time; a day not listed is closed."""

    _key_kind: ClassVar[str] = "weekday"

    monday: Day = ()
    tuesday: Day = ()
    wednesday: Day = ()
    thursday: Day = ()
    friday: Day = ()
    saturday: Day = ()
    sunday: Day = ()

    @field_validator(*_WEEKDAYS, mode="after")
    @classmethod
    def _no_overlap(cls, intervals: tuple[OpeningInterval, ...]) -> tuple[OpeningInterval, ...]:
        ordered = sorted(intervals)
        for a, b in itertools.pairwise(ordered):
            if b.start < a.end:
                raise _field_error(f"intervals {a} and {b} overlap")
        return tuple(ordered)

    def for_weekday(self, weekday: int) -> tuple[OpeningInterval, ...]:
        result: tuple[OpeningInterval, ...] = getattr(self, _WEEKDAYS[weekday])
        return result


class Hours(_Section):
    """Business hours. Without `weekly` the line is open around the clock (but `timezone`
    still sets the clock of `{today}` and `{now}`); holidays are closed all day."""

    timezone: str = "UTC"
    weekly: Weekly | None = None
    holidays: tuple[date, ...] = ()
    after_hours_greeting: Template | None = None
    after_hours_instructions: Template | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ValueError, KeyError):  # ZoneInfoNotFoundError is a KeyError
            import zoneinfo

            hint = _suggest(value, zoneinfo.available_timezones())
            did = f"; did you mean {hint}?" if hint else " (an IANA name like 'Europe/London')"
            raise _field_error(f"unknown time zone {value!r}{did}") from None
        return value


class Limits(_Section):
    """Per-call limits; `None` uses the server's MAX_CALL_SECONDS / IDLE_TIMEOUT_SECONDS."""

    max_call_seconds: float | None = Field(default=None, gt=0)
    idle_seconds: float | None = Field(default=None, gt=0)
    idle_reprompt: Template | None = "Are you still there?"
    goodbye: Template = "I'm sorry, we have reached the time limit for this call. Goodbye."


class Fallback(_Section):
    """What the caller hears when the model is unreachable: an apology, then a transfer to a
    human (`transfer_to`, a transfer target) or a hang-up."""

    say: Template = (
        "Sorry, our assistant is not available right now. Please call again later. Goodbye."
    )
    transfer_to: str | None = None
    hangup: bool | None = None

    @model_validator(mode="after")
    def _one_ending(self) -> Fallback:
        if self.transfer_to is not None and self.hangup:
            raise _field_error("choose transfer_to or hangup: true, not both", "hangup")
        if self.transfer_to is None and self.hangup is False:
            raise _field_error("with hangup: false, name a transfer_to target", "hangup")
        return self


@dataclass(frozen=True, slots=True)
class FallbackPlan:
    """The fallback of one call, rendered: say `say`, then dial `transfer_number` if set,
    else hang up."""

    say: str
    transfer_number: str | None


_PERSONA_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_SECTIONS = ("turn_detection", "tools", "transfer_targets", "dtmf", "limits", "fallback")


class Persona(_Section):
    """One configured agent: what it says, how it listens, what it may do, and when.

    Only `instructions` and `greeting` are required; every other field has a default that
    suits a phone line.
    """

    name: str = "default"
    business_name: str = "our office"
    numbers: tuple[Phone, ...] = ()
    default: bool = False
    instructions: Template
    greeting: Template
    voice: str = Field(default="alloy", min_length=1, max_length=64)
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

    @model_validator(mode="before")
    @classmethod
    def _empty_section_is_default(cls, data: object) -> object:
        # `tools:` with nothing under it is an empty section, not an error.
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not (v is None and k in _SECTIONS)}
        return data

    @field_validator("name")
    @classmethod
    def _name_is_a_token(cls, value: str) -> str:
        # It travels in a TwiML <Parameter> and in every log line of the call.
        if not _PERSONA_NAME.match(value):
            raise _field_error(
                f"{value!r} is not a persona name: letters, digits, '_', '.', '-' (max 64)"
            )
        return value

    @field_validator("numbers", mode="before")
    @classmethod
    def _one_number_is_a_list(cls, value: object) -> object:
        if value is None:
            return ()
        return [value] if isinstance(value, str | int) and not isinstance(value, bool) else value

    @field_validator("language")
    @classmethod
    def _iso_639_1(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[a-z]{2}", value):
            raise _field_error(f"{value!r} is not an ISO-639-1 language code like 'en' or 'de'")
        return value

    @field_validator("transfer_targets")
    @classmethod
    def _target_names(cls, value: dict[str, TransferTarget]) -> dict[str, TransferTarget]:
        for key in value:
            if not _TARGET_NAME.match(key):
                raise _field_error(
                    f"{key!r} is not a target name: letters, digits, ' ', '_', '-' (max 64)",
                    key,
                )
        return value

    @model_validator(mode="after")
    def _references_resolve(self) -> Persona:
        targets = self.transfer_targets
        known = ", ".join(targets) or "none defined"
        for digit, action in self.dtmf.menu.items():
            if action.action == "transfer" and action.target not in targets:
                raise _field_error(
                    f"unknown transfer target {action.target!r} (transfer_targets: {known})",
                    "dtmf",
                    "menu",
                    digit,
                    "target",
                )
        if self.fallback.transfer_to is not None and self.fallback.transfer_to not in targets:
            raise _field_error(
                f"unknown transfer target {self.fallback.transfer_to!r} "
                f"(transfer_targets: {known})",
                "fallback",
                "transfer_to",
            )
        if self.tools.transfer_call is not None and not targets:
            raise _field_error(
                "transfer_call needs at least one entry in transfer_targets",
                "tools",
                "transfer_call",
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
        return _render(
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

    def session_config(
        self,
        audio_format: AudioFormat,
        caller_number: str = "",
        tools: Iterable[FunctionTool] = (),
        at: datetime | None = None,
    ) -> SessionConfig:
        """The dialect-neutral session of one call. `tools` are the function tools built for
        this persona's `tools` section (the tools module owns their schemas)."""
        return SessionConfig(
            instructions=self.instructions_for(at, caller_number),
            voice=self.voice,
            audio_format=audio_format,
            speed=self.speed,
            transcription_model=self.transcription_model,
            transcription_language=self.language,
            turn_detection=self.turn_detection.to_core(),
            tools=tuple(tools),
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
    tools=Tools(end_call=EndCallTool()),
)
"""The built-in persona, used when no PERSONA_FILE is set. `personas/default.yaml` holds the
same persona as a documented file (a test keeps the two equal); it stays in code because the
installed package does not ship the `personas/` folder."""


# --- YAML with positions ----------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader without YAML 1.1's traps for persona files: `no`/`on`/`off` stay strings
    (`language: no` is Norwegian), and `+15551234567` stays a string, not an integer."""


_BOOL_TAG = "tag:yaml.org,2002:bool"
_NUMERIC_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
_Loader.yaml_implicit_resolvers = {
    first: [
        (tag, rx)
        for tag, rx in resolvers
        if tag != _BOOL_TAG and not (first == "+" and tag in _NUMERIC_TAGS)
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)

_Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class _Source:
    """Where one persona came from, to put file and line on errors found after validation."""

    file: str
    root: yaml.Node
    prefix: _Loc

    def locate(self, loc: _Loc, key_line: bool = False) -> str:
        return f"{self.file}:{_line(self.root, self.prefix + loc, key_line)}"


def _walk(node: yaml.Node, loc: _Loc) -> tuple[yaml.Node, yaml.Node | None, int]:
    """Follow `loc` into the node tree as far as it goes: (deepest node, its key node, how
    many parts of `loc` were matched)."""
    key_node: yaml.Node | None = None
    for depth, part in enumerate(loc):
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == str(part):
                    key_node, node = k, v
                    break
            else:
                return node, key_node, depth
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if not 0 <= part < len(node.value):
                return node, key_node, depth
            key_node, node = None, node.value[part]
        else:
            return node, key_node, depth
    return node, key_node, len(loc)


def _line(root: yaml.Node, loc: _Loc, key_line: bool = False, offset: int | None = None) -> int:
    """The 1-based line of the field at `loc`; of its key when the key is what is wrong."""
    node, key_node, matched = _walk(root, loc)
    if matched == len(loc) and key_line and key_node is not None:
        return key_node.start_mark.line + 1
    if (
        matched == len(loc)
        and offset is not None
        and isinstance(node, yaml.ScalarNode)
        and isinstance(node.value, str)
    ):
        before = node.value[:offset].count("\n")
        if node.style == "|":  # content starts on the line after the `|`
            return node.start_mark.line + 2 + before
        if before == 0:
            return node.start_mark.line + 1
    return node.start_mark.line + 1


def _dotted(loc: _Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part):
            out += f".{part}" if out else part
        else:
            out += f'["{part}"]'
    return out or "(persona)"


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _model_at(loc: _Loc) -> type[BaseModel] | None:
    """The persona model class that holds the field at `loc`, to list its valid keys."""
    tp: Any = Persona
    for part in loc:
        tp = _unwrap(tp)
        origin = typing.get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(str(part))
            if field is None:
                return None
            tp = field.annotation
        elif origin is dict:
            tp = typing.get_args(tp)[1]
        elif origin in (tuple, list):
            tp = typing.get_args(tp)[0]
        else:
            return None
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _scalar(value: object) -> bool:
    return isinstance(value, str | int | float | bool | date) or value is None


def _reason(err: Mapping[str, Any], loc: _Loc) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "persona":
        return str(ctx["reason"])
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        key = str(loc[-1])
        label = "field"
        if model is not None:
            label = getattr(model, "_key_kind", "field")
            fields = list(model.model_fields)
            hint = _suggest(key, fields)
            if hint:
                return f"unknown {label} {key!r}; did you mean {hint}?"
            return f"unknown {label} {key!r}; allowed: {', '.join(fields)}"
        return f"unknown {label} {key!r}"
    if kind == "missing":
        return "required field is missing"
    if kind in ("model_type", "dict_type"):
        # pydantic says "instance of Tools"; the operator wrote YAML, not Python.
        value = err.get("input")
        got = {list: "a list", str: "text", type(None): "nothing"}.get(type(value), "a value")
        shown = f" {value!r}" if _scalar(value) and value is not None else ""
        return f"expected a mapping (`key: value` lines), got {got}{shown}"
    msg = str(err["msg"])
    msg = msg.removeprefix("Value error, ")
    msg = msg[:1].lower() + msg[1:]
    value = err.get("input")
    if _scalar(value):
        msg += f" (got {value!r})"
    if kind == "literal_error" and isinstance(value, str):
        expected = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        hint = _suggest(value, expected)
        if hint:
            msg += f"; did you mean {hint}?"
    return msg


def _validation_messages(exc: ValidationError, source: _Source) -> list[tuple[int, str]]:
    out = []
    for err in exc.errors():
        loc: _Loc = tuple(err["loc"])
        ctx = err.get("ctx") or {}
        if err["type"] == "persona":
            loc += tuple(ctx.get("path", ()))
        full = source.prefix + loc
        line = _line(
            source.root,
            full,
            key_line=err["type"] in ("extra_forbidden", "persona") and "offset" not in ctx,
            offset=ctx.get("offset"),
        )
        out.append((line, f"{source.file}:{line}: {_dotted(full)}: {_reason(err, loc)}"))
    return out


def _duplicate_keys(node: yaml.Node, file: str, loc: _Loc = ()) -> list[tuple[int, str]]:
    """PyYAML keeps the last of two equal keys without a word; an operator editing a long file
    deserves to hear about the first one being ignored."""
    out: list[tuple[int, str]] = []
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else None
            if key is None or key == "<<":
                continue
            line = k.start_mark.line + 1
            if key in seen:
                out.append(
                    (
                        line,
                        f"{file}:{line}: {_dotted((*loc, key))}: duplicate key "
                        f"(first at line {seen[key]})",
                    )
                )
            else:
                seen[key] = line
            out += _duplicate_keys(v, file, (*loc, key))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out += _duplicate_keys(item, file, (*loc, i))
    return out


_Loaded = list[tuple[Persona, _Source]]


def _load_file(path: Path, file: str) -> tuple[_Loaded, list[str]]:
    """Parse and validate one YAML file: `(personas, errors)`; all errors, not just the first."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return [], [f"{file}: not UTF-8 text"]
    except OSError as exc:
        return [], [f"{file}: {exc.strerror or exc}"]
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        what = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        return [], [f"{file}{line}: YAML syntax: {what}"]
    finally:
        loader.dispose()
    if root is None:
        return [], [f"{file}: empty file; a persona needs at least name, instructions, greeting"]
    dupes = _duplicate_keys(root, file)
    if dupes:
        return [], [m for _, m in sorted(dupes)]

    entries: list[tuple[object, _Loc]]
    if isinstance(data, dict) and "personas" in data:
        others = [str(k) for k in data if k != "personas"]
        if others:
            line = _line(root, (others[0],), key_line=True)
            return [], [
                f"{file}:{line}: {others[0]}: a file with a `personas:` list holds nothing "
                "else; put each persona's fields inside its list item"
            ]
        items = data["personas"]
        if not isinstance(items, list) or not items:
            line = _line(root, ("personas",))
            return [], [f"{file}:{line}: personas: expected a non-empty list of personas"]
        entries = [(item, ("personas", i)) for i, item in enumerate(items)]
    else:
        entries = [(data, ())]

    loaded: _Loaded = []
    errors: list[tuple[int, str]] = []
    for item, prefix in entries:
        source = _Source(file, root, prefix)
        if not isinstance(item, dict):
            line = _line(root, prefix)
            where = _dotted(prefix) if prefix else "(persona)"
            errors.append(
                (
                    line,
                    f"{file}:{line}: {where}: expected a mapping of persona fields "
                    f"(name, instructions, greeting, …), got {type(item).__name__}",
                )
            )
            continue
        try:
            loaded.append((Persona.model_validate(item), source))
        except ValidationError as exc:
            errors += _validation_messages(exc, source)
    return loaded, [m for _, m in sorted(errors, key=lambda e: e[0])]


def _cross_check(
    personas: list[Persona], locate: Callable[[int, _Loc, bool], str], origin: str
) -> list[str]:
    """The rules no single persona can check: unique names, one persona per number, one
    default. `locate(index, loc, key_line)` says where a field is, as `file:line: `."""
    errors: list[str] = []
    names: dict[str, int] = {}
    numbers: dict[str, tuple[int, int]] = {}
    for i, p in enumerate(personas):
        if p.name in names:
            first = locate(names[p.name], ("name",), False)
            errors.append(
                f"{locate(i, ('name',), False)}name: persona {p.name!r} is already defined"
                f"{' at ' + first.rstrip(': ') if first else ''}"
            )
        else:
            names[p.name] = i
        for j, number in enumerate(p.numbers):
            if number in numbers:
                other, k = numbers[number]
                first = locate(other, ("numbers", k), False)
                errors.append(
                    f"{locate(i, ('numbers', j), False)}numbers[{j}]: {number} is already "
                    f"routed to persona {personas[other].name!r}"
                    f"{' at ' + first.rstrip(': ') if first else ''}"
                )
            else:
                numbers[number] = (i, j)
    defaults = [i for i, p in enumerate(personas) if p.default]
    if len(defaults) > 1:
        first = defaults[0]
        where = locate(first, ("default",), True).rstrip(": ")
        for i in defaults[1:]:
            errors.append(
                f"{locate(i, ('default',), True)}default: persona {personas[i].name!r} is a "
                f"second default; {personas[first].name!r}"
                f"{' at ' + where if where else ''} is already the default"
            )
    elif not defaults and len(personas) > 1:
        errors.append(
            f"{origin}: no default persona among {len(personas)} "
            f"({', '.join(p.name for p in personas)}): mark the one that answers unrouted "
            "numbers with `default: true`"
        )
    return errors


class PersonaBook:
    """The loaded personas, and which one answers a given called number."""

    def __init__(self, personas: Iterable[Persona]) -> None:
        """Check names, numbers and the default across `personas` (raises `PersonaError`)."""
        items = list(personas)
        if not items:
            raise PersonaError(["no personas"])
        errors = _cross_check(items, lambda i, loc, key: "", "personas")
        if errors:
            raise PersonaError(errors)
        self._personas: tuple[Persona, ...] = tuple(items)
        self._by_name = {p.name: p for p in items}
        self._by_number = {n: p for p in items for n in p.numbers}
        defaults = [p for p in items if p.default]
        self.default: Persona = defaults[0] if defaults else items[0]

    @classmethod
    def builtin(cls) -> PersonaBook:
        """Only the built-in persona: what the bridge runs without a PERSONA_FILE."""
        return cls([DEFAULT_PERSONA])

    def for_number(self, to: str) -> Persona:
        """The persona routed to the called number `to` (Twilio's `To`), else the default."""
        return self._by_number.get(normalize_number(to or ""), self.default)

    def get(self, name: str) -> Persona | None:
        return self._by_name.get(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._by_name)

    def warnings(self) -> list[str]:
        """Legal but probably unintended: personas no call can reach."""
        return [
            f"persona {p.name!r} has no numbers and is not the default: no call reaches it"
            for p in self._personas
            if not p.numbers and p is not self.default
        ]

    def __iter__(self) -> Iterator[Persona]:
        return iter(self._personas)

    def __len__(self) -> int:
        return len(self._personas)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __repr__(self) -> str:
        return f"PersonaBook({', '.join(self.names)}; default={self.default.name})"


def load_personas(path: str | Path) -> PersonaBook:
    """Load one YAML file (a persona, or a `personas:` list) or a directory of `*.yaml` and
    `*.yml` files (not recursive; hidden files skipped, which also skips the `..data` links
    of a Kubernetes ConfigMap mount). Raises `PersonaError` listing every problem found."""
    root = Path(path)
    origin = str(path)
    if root.is_dir():
        files = sorted(
            p
            for p in root.iterdir()
            if p.suffix in (".yaml", ".yml") and not p.name.startswith(".") and p.is_file()
        )
        if not files:
            raise PersonaError([f"{origin}: no persona files (*.yaml, *.yml) in this directory"])
    elif root.exists():
        files = [root]
    else:
        raise PersonaError([f"{origin}: no such file or directory"])

    loaded: _Loaded = []
    errors: list[str] = []
    for file in files:
        items, file_errors = _load_file(file, str(file))
        loaded += items
        errors += file_errors
    if errors:
        raise PersonaError(errors)

    def locate(i: int, loc: _Loc, key_line: bool) -> str:
        return loaded[i][1].locate(loc, key_line) + ": "

    personas = [p for p, _ in loaded]
    cross = _cross_check(personas, locate, origin)
    if cross:
        raise PersonaError(cross)
    return PersonaBook(personas)


def describe(book: PersonaBook) -> str:
    """One line naming each persona with its numbers, e.g. for `persona check`."""
    parts = []
    for p in book:
        tags = [*p.numbers, *(["default"] if p is book.default else [])]
        parts.append(f"{p.name} ({', '.join(tags)})" if tags else p.name)
    return f"{len(book)} persona(s): {'; '.join(parts)}"


def check_command(path: str) -> int:
    """`voicebridge persona check FILE`: 0 and a summary when valid, else 1 and the errors."""
    try:
        book = load_personas(path)
    except PersonaError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        return 1
    for warning in book.warnings():
        print(f"{path}: warning: {warning}", file=sys.stderr)
    print(f"OK: {describe(book)}")
    return 0
