"""Business hours on the persona's own clock, with fixed instants (no wall clock)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bridge.persona import Hours, Persona, Weekly, load_personas
from tests.persona._support import EXAMPLES

WEEKDAYS_9_TO_5 = Weekly.model_validate(
    {day: "09:00-17:00" for day in ("monday", "tuesday", "wednesday", "thursday", "friday")}
)


def _persona(timezone: str, weekly: Weekly | None = WEEKDAYS_9_TO_5, **hours: object) -> Persona:
    return Persona(
        name="desk",
        instructions="Open instructions.",
        greeting="Open greeting.",
        hours=Hours.model_validate({"timezone": timezone, "weekly": weekly, **hours}),
    )


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def test_same_instant_is_open_in_london_and_closed_in_paris() -> None:
    # Wednesday 15 January 2025, 16:30 UTC: 16:30 in London (GMT), 17:30 in Paris (CET).
    at = _utc(2025, 1, 15, 16, 30)
    assert _persona("Europe/London").is_open(at) is True
    assert _persona("Europe/Paris").is_open(at) is False


def test_summer_time_moves_closing_by_an_hour_in_utc() -> None:
    london = _persona("Europe/London")
    # 16:30 UTC is 16:30 GMT in January (open) but 17:30 BST in July (closed).
    assert london.is_open(_utc(2025, 1, 15, 16, 30)) is True
    assert london.is_open(_utc(2025, 7, 16, 16, 30)) is False
    # 08:30 UTC is 08:30 GMT in January (closed) but 09:30 BST in July (open).
    assert london.is_open(_utc(2025, 1, 15, 8, 30)) is False
    assert london.is_open(_utc(2025, 7, 16, 8, 30)) is True


def test_opening_follows_the_us_dst_switch() -> None:
    # Clocks in New York went forward on Sunday 9 March 2025. 13:45 UTC is 08:45 EST on the
    # Friday before (closed, opens 09:00) and 09:45 EDT on the Monday after (open).
    new_york = _persona("America/New_York")
    assert new_york.is_open(_utc(2025, 3, 7, 13, 45)) is False
    assert new_york.is_open(_utc(2025, 3, 10, 13, 45)) is True


def test_weekday_is_the_local_one() -> None:
    # Sunday 2 March 2025, 21:00 UTC is Monday 10:00 in Auckland (NZDT, UTC+13): open,
    # although it is still Sunday in UTC.
    auckland = _persona("Pacific/Auckland")
    assert auckland.is_open(_utc(2025, 3, 2, 21, 0)) is True
    # Friday 7 March, 21:00 UTC is Saturday 10:00 there: closed.
    assert auckland.is_open(_utc(2025, 3, 7, 21, 0)) is False


def test_holidays_are_local_dates() -> None:
    around_the_clock = Weekly.model_validate({day: "00:00-24:00" for day in Weekly.model_fields})
    new_york = _persona("America/New_York", around_the_clock, holidays=["2025-12-25"])
    # 03:00 UTC on the 25th is still the evening of the 24th in New York: open.
    assert new_york.is_open(_utc(2025, 12, 25, 3, 0)) is True
    # 03:00 UTC on the 26th is 22:00 on the 25th in New York: the holiday, closed.
    assert new_york.is_open(_utc(2025, 12, 26, 3, 0)) is False


@pytest.mark.parametrize(
    ("hour", "minute", "is_open"),
    [(8, 59, False), (9, 0, True), (16, 59, True), (17, 0, False)],
)
def test_intervals_include_the_start_and_exclude_the_end(
    hour: int, minute: int, is_open: bool
) -> None:
    assert _persona("UTC").is_open(_utc(2025, 1, 15, hour, minute)) is is_open


def test_no_hours_means_always_open() -> None:
    persona = Persona(instructions="x", greeting="y")
    assert persona.is_open(_utc(2025, 1, 12, 3, 0)) is True  # a Sunday, 3 a.m.


def test_hours_without_weekly_are_open_except_on_holidays() -> None:
    persona = _persona("Europe/Berlin", None, holidays=["2025-10-03"])
    assert persona.is_open(_utc(2025, 10, 2, 23, 30)) is False  # 01:30 on 3 Oct in Berlin
    assert persona.is_open(_utc(2025, 10, 2, 21, 30)) is True


def test_a_naive_datetime_is_taken_as_utc() -> None:
    paris = _persona("Europe/Paris")
    assert paris.is_open(datetime(2025, 1, 15, 16, 30)) is False  # 17:30 in Paris


def test_after_hours_greeting_and_instructions_replace_the_open_ones() -> None:
    persona = _persona(
        "Europe/Paris",
        after_hours_greeting="Closed at {now}.",
        after_hours_instructions="Take a message; it is {today}.",
    )
    closed = _utc(2025, 1, 15, 16, 30)  # 17:30 in Paris
    open_ = _utc(2025, 1, 15, 9, 30)  # 10:30 in Paris
    assert persona.greeting_for(closed) == "Closed at 17:30."
    assert persona.instructions_for(closed) == "Take a message; it is Wednesday 15 January 2025."
    assert persona.greeting_for(open_) == "Open greeting."
    assert persona.instructions_for(open_) == "Open instructions."
    assert persona.session_config("pcm16", at=closed).instructions.startswith("Take a message")


def test_without_after_hours_texts_the_open_ones_are_used_when_closed() -> None:
    persona = _persona("Europe/Paris")
    closed = _utc(2025, 1, 15, 16, 30)
    assert persona.greeting_for(closed) == "Open greeting."
    assert persona.instructions_for(closed) == "Open instructions."


def test_receptionist_example_closes_over_thursday_lunch() -> None:
    receptionist = load_personas(EXAMPLES / "receptionist.yaml").default
    # Thursday 6 March 2025 in New York (EST, UTC-5).
    assert receptionist.is_open(_utc(2025, 3, 6, 16, 30)) is True  # 11:30
    assert receptionist.is_open(_utc(2025, 3, 6, 17, 30)) is False  # 12:30, lunch
    assert receptionist.is_open(_utc(2025, 3, 6, 18, 30)) is True  # 13:30
    assert receptionist.greeting_for(_utc(2025, 3, 6, 17, 30)).startswith(
        "Thank you for calling Maple Street Dental. We are closed right now"
    )
    assert receptionist.is_open(_utc(2025, 12, 25, 15, 0)) is False  # Christmas, 10:00
