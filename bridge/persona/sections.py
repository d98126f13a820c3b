"""The sections of a persona: turn detection, tools, transfer targets, the keypad menu,
business hours, call limits and the fallback, plus the phone-number type they share.

Every section is a frozen pydantic model that forbids unknown keys; a rule that involves
fields of one section is checked here, one that ties sections together is on `Persona`.
"""

from __future__ import annotations

import itertools
import re
from datetime import date
from typing import Annotated, ClassVar, Literal, NamedTuple
from zoneinfo import ZoneInfo

from pydantic import BeforeValidator, ConfigDict, Field, field_validator, model_validator

from bridge.persona.base import PROBLEM, Section
from bridge.persona.errors import field_error, suggest
from bridge.persona.integrations import FUNCTION_NAME, HttpTool
from bridge.persona.templates import Template
from bridge.realtime.events import TurnDetection

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
        raise field_error(
            f"not an E.164 number: {value!r}; write '+', the country code and the number, "
            'in quotes (e.g. "+1 212 555 0100")'
        )
    return number


Phone = Annotated[str, BeforeValidator(_phone)]


# --- Sections ---------------------------------------------------------------------------------


class TurnDetectionConfig(Section):
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
                    raise field_error(f"only for type server_vad (this is {self.type})", key)
        elif self.eagerness is not None:
            raise field_error("only for type semantic_vad (this is server_vad)", "eagerness")
        return self

    def to_core(self) -> TurnDetection:
        return TurnDetection(**self.model_dump())


class WebSearchTool(Section):
    """Web search: results are capped so a long page cannot flood the model's context."""

    max_results: int = Field(default=3, ge=1, le=10)
    max_chars: int = Field(default=2000, ge=200, le=20_000)
    timeout_seconds: float = Field(default=8.0, gt=0, le=60)
    filler: Template = "Let me look that up for you."


class TransferCallTool(Section):
    """Transfer to one of the persona's `transfer_targets` (the model picks it by name)."""

    filler: Template = "Please hold while I transfer you."


class EndCallTool(Section):
    """Hang up when the conversation is over; the last words play out first."""

    filler: Template = "Thank you for calling. Goodbye."


TOOL_NAMES: tuple[str, ...] = ("web_search", "transfer_call", "end_call")


class Tools(Section):
    """The tools this persona offers the model; a tool is enabled by being listed. Besides
    the built-in ones, any other name with `type: http` is a tool of the business's own
    (`HttpTool`), kept in `http`."""

    model_config = ConfigDict(extra="allow", frozen=True)
    __pydantic_extra__: dict[str, HttpTool] = Field(init=False)
    _key_kind: ClassVar[str] = "tool"

    web_search: WebSearchTool | None = None
    transfer_call: TransferCallTool | None = None
    end_call: EndCallTool | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_name_enables(cls, data: object) -> object:
        # `end_call:` with nothing after it means "on, with default settings".
        if not isinstance(data, dict):
            return data
        out: dict[object, object] = {}
        for key, value in data.items():
            declared = isinstance(value, HttpTool) or (isinstance(value, dict) and "type" in value)
            problem = None
            if key in TOOL_NAMES and declared:
                problem = f"{key!r} is a built-in tool; give your own tool another name"
            elif key not in TOOL_NAMES and not declared:
                hint = suggest(str(key), TOOL_NAMES)
                problem = f"unknown tool {key!r}; " + (
                    f"did you mean {hint}?"
                    if hint
                    else f"built in: {', '.join(TOOL_NAMES)}; a tool of your own needs `type: http`"
                )
            elif not isinstance(key, str) or not FUNCTION_NAME.match(key):
                problem = f"{key!r} is not a tool name: letters, digits, '_', '-' (max 64)"
            if problem is not None:
                out[key] = {PROBLEM: problem}
            else:
                out[key] = {} if value is None and key in TOOL_NAMES else value
        return out

    @property
    def enabled(self) -> tuple[str, ...]:
        """The built-in tools listed."""
        return tuple(name for name in TOOL_NAMES if getattr(self, name) is not None)

    @property
    def http(self) -> dict[str, HttpTool]:
        """The persona's HTTP tools by name, in file order."""
        return dict(self.__pydantic_extra__ or {})


class TransferTarget(Section):
    """A named number the agent may transfer to; the description tells the model when."""

    number: Phone
    description: str = ""


class DtmfAction(Section):
    """What one keypad digit does."""

    action: Literal["transfer", "say", "end_call", "to_model"]
    target: str | None = None
    text: Template | None = None

    @model_validator(mode="after")
    def _arguments_fit_action(self) -> DtmfAction:
        if self.action == "transfer" and not self.target:
            raise field_error("action transfer needs a target (a transfer_targets name)", "target")
        if self.action == "say" and not self.text:
            raise field_error("action say needs a text", "text")
        if self.action != "transfer" and self.target is not None:
            raise field_error(f"only for action transfer (this is {self.action})", "target")
        if self.action != "say" and self.text is not None:
            raise field_error(f"only for action say (this is {self.action})", "text")
        return self


_DIGITS = "0123456789*#"


class DtmfConfig(Section):
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
                raise field_error(
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
        raise field_error(f'not an opening interval: {value!r}; write "09:00-17:30"')
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2):
        raise field_error(f"not a time of day in {value!r}")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if end <= start:
        raise field_error(
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


class Weekly(Section):
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
                raise field_error(f"intervals {a} and {b} overlap")
        return tuple(ordered)

    def for_weekday(self, weekday: int) -> tuple[OpeningInterval, ...]:
        result: tuple[OpeningInterval, ...] = getattr(self, _WEEKDAYS[weekday])
        return result


class Hours(Section):
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

            hint = suggest(value, zoneinfo.available_timezones())
            did = f"; did you mean {hint}?" if hint else " (an IANA name like 'Europe/London')"
            raise field_error(f"unknown time zone {value!r}{did}") from None
        return value


class Limits(Section):
    """Per-call limits; `None` uses the server's MAX_CALL_SECONDS / IDLE_TIMEOUT_SECONDS."""

    max_call_seconds: float | None = Field(default=None, gt=0)
    idle_seconds: float | None = Field(default=None, gt=0)
    idle_reprompt: Template | None = "Are you still there?"
    goodbye: Template = "I'm sorry, we have reached the time limit for this call. Goodbye."


class Fallback(Section):
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
            raise field_error("choose transfer_to or hangup: true, not both", "hangup")
        if self.transfer_to is None and self.hangup is False:
            raise field_error("with hangup: false, name a transfer_to target", "hangup")
        return self
