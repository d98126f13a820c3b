"""The call-event sender against a receiver on loopback: signed, retried, at least once."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from bridge import metrics, signing
from bridge.call_events import CallEvents, retry_after_s, unavailable_integrations
from bridge.persona import DEFAULT_PERSONA, PersonaBook, PersonaError, load_personas
from bridge.settings import SettingsError, load_settings
from tests.conftest import LogCapture, make_settings, wait_until
from tests.fakes.events import FakeEventReceiver

SECRET = "whsec-test-0123456789"


def counted(outcome: str) -> float:
    return metrics.CALL_EVENTS.labels(outcome=outcome)._value.get()


def sender(**kwargs: object) -> CallEvents:
    options: dict[str, object] = {"timeout_s": 0.3, "backoff_s": 0.05, "max_backoff_s": 2.0}
    options.update(kwargs)
    return CallEvents(SECRET, **options)  # type: ignore[arg-type]


async def test_a_flaky_receiver_gets_every_event_exactly_once_by_id_after_retries(
    logs: LogCapture,
) -> None:
    # Each event is refused with 503, then held past the client's timeout, then taken.
    with FakeEventReceiver(answers=["503", "timeout", "200"], hold_s=1.0) as receiver:
        events = sender()
        await events.start()
        delivered = counted("delivered")
        url = receiver.url + "/events"
        ids = [events.send("call.ended", f"CA{n:032d}", {"n": n}, (url,)) for n in range(5)]
        await wait_until(lambda: events.pending == 0, 10, "every delivery")
        await events.aclose(time.monotonic() + 1)
    assert events.pending == 0
    assert sorted(receiver.events) == sorted(ids)  # each id stored once: exactly once
    assert len(receiver.requests) == 15  # three attempts of each of the five
    for event_id in ids:
        attempts = [r for r in receiver.requests if r.event["id"] == event_id]
        assert [a.answer for a in attempts] == ["503", "timeout", "200"]
        assert len({a.body for a in attempts}) == 1  # the same event every time
        for attempt in attempts:
            header = attempt.headers[signing.HEADER]
            assert signing.verify(SECRET, attempt.body, header, time.time())
            assert attempt.headers["X-Voicebridge-Event-Id"] == event_id
            assert attempt.path == "/events"
    stored = receiver.events[ids[3]]
    assert stored["type"] == "call.ended" and stored["data"] == {"n": 3}
    assert stored["call_sid"] == f"CA{3:032d}"
    assert counted("delivered") - delivered == 5
    assert logs.events("call_event_undelivered") == []


async def test_retry_after_is_honoured() -> None:
    with FakeEventReceiver(answers=["429"], retry_after="1") as receiver:
        events = sender(backoff_s=0.01)
        await events.start()
        events.send("call.started", "CA1", {}, (receiver.url,))
        await receiver.wait_for("call.started", 1, timeout=5)
        await events.aclose(time.monotonic() + 1)
    first, second = receiver.requests
    assert (first.answer, second.answer) == ("429", "200")
    assert second.time - first.time >= 0.95  # the receiver's 1 s, not the 10 ms back-off


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = time.time()
    assert retry_after_s("7", now) == 7.0
    later = datetime.fromtimestamp(now, UTC) + timedelta(seconds=30)
    assert retry_after_s(format_datetime(later, usegmt=True), now) == pytest.approx(30, abs=1)
    assert retry_after_s("soon", now) is None
    assert retry_after_s(None, now) is None


async def test_a_refusal_is_not_retried_and_is_logged_and_counted(logs: LogCapture) -> None:
    with FakeEventReceiver(answers=["400"]) as receiver:
        events = sender()
        await events.start()
        failed = counted("failed")
        with_key = receiver.url.replace("//", "//user:pw@") + "/events?key=abc"
        events.send("call.ended", "CA2", {}, (with_key,))
        await logs.wait_for("call_event_undelivered", 1, timeout=5)
        await events.aclose(time.monotonic() + 1)
    assert len(receiver.requests) == 1
    line = logs.events("call_event_undelivered")[0]
    assert line["call_event"] == "call.ended" and line["call_sid"] == "CA2"
    assert line["attempts"] == 1 and line["error"] == "HTTP 400"
    assert line["url"] == receiver.url + "/events"  # no key from the query or user info
    assert counted("failed") - failed == 1


async def test_attempts_run_out_against_a_refused_port(logs: LogCapture) -> None:
    events = sender(max_attempts=3, backoff_s=0.01)
    await events.start()
    events.send("call.started", "CA3", {}, ("http://127.0.0.1:9/events",))
    await logs.wait_for("call_event_undelivered", 1, timeout=5)
    await events.aclose(time.monotonic() + 1)
    line = logs.events("call_event_undelivered")[0]
    assert line["attempts"] == 3 and "Connect" in line["error"]


async def test_a_full_queue_drops_new_events_and_never_waits(logs: LogCapture) -> None:
    events = sender(queue_limit=2)  # not started: nothing leaves the queue
    dropped = counted("dropped")
    for n in range(5):
        events.send("call.started", f"CA{n}", {}, ("http://127.0.0.1:9/",))
    assert events.pending == 2
    assert counted("dropped") - dropped == 3
    assert [x["error"] for x in logs.events("call_event_undelivered")] == ["queue full"] * 3


async def test_aclose_gives_up_at_its_deadline_and_reports_what_was_left(
    logs: LogCapture,
) -> None:
    # A receiver that never answers in time: the process's end must not wait for it.
    with FakeEventReceiver(answers=["timeout"] * 10, hold_s=5.0) as receiver:
        events = sender(timeout_s=2.0)
        await events.start()
        dropped = counted("dropped")
        events.send("call.ended", "CA4", {}, (receiver.url,))
        await asyncio.sleep(0.2)
        closing = time.monotonic()
        await asyncio.wait_for(events.aclose(closing + 0.3), 3)
        assert time.monotonic() - closing < 2.0  # well before the request's own timeout
    assert counted("dropped") - dropped == 1
    (line,) = logs.events("call_event_undelivered")
    assert line["attempts"] == 1 and line["call_sid"] == "CA4"


def test_without_the_secret_no_event_has_anywhere_to_go() -> None:
    assert CallEvents(None, "https://crm.example.com/e").urls("https://x.example.com") == ()
    events = CallEvents(SECRET, "https://crm.example.com/e")
    assert events.urls(None) == ("https://crm.example.com/e",)
    assert events.urls("https://crm.example.com/e") == ("https://crm.example.com/e",)
    assert events.urls("https://b.example.com") == (
        "https://crm.example.com/e",
        "https://b.example.com",
    )


def test_call_webhook_url_needs_the_secret_and_https() -> None:
    with pytest.raises(SettingsError, match="WEBHOOK_SIGNING_SECRET is not"):
        load_settings(_env_file=None, CALL_WEBHOOK_URL="https://crm.example.com/events")
    with pytest.raises(SettingsError, match="must be https"):
        load_settings(
            _env_file=None,
            CALL_WEBHOOK_URL="http://crm.example.com/events",
            WEBHOOK_SIGNING_SECRET=SECRET,
        )
    settings = load_settings(
        _env_file=None,
        CALL_WEBHOOK_URL="http://127.0.0.1:8090/events",
        WEBHOOK_SIGNING_SECRET=SECRET,
    )
    assert CallEvents.from_settings(settings).urls(None) == ("http://127.0.0.1:8090/events",)


def test_a_persona_webhook_url_is_checked_where_it_is_written(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "instructions: Help.\ngreeting: Hi.\nwebhook_url: http://crm.example.com/x\n"
        "recording: sometimes\n"
    )
    with pytest.raises(PersonaError) as caught:
        load_personas(path)
    text = str(caught.value)
    assert f"{path}:3: webhook_url:" in text and "must be https" in text
    assert f"{path}:4: recording:" in text and "true" in text and "twilio" in text


def test_start_up_says_which_persona_integrations_cannot_work() -> None:
    book = PersonaBook(
        [
            DEFAULT_PERSONA.model_copy(
                update={"webhook_url": "https://crm.example.com/e", "recording": "twilio"}
            )
        ]
    )
    problems = unavailable_integrations(book, make_settings())
    assert [(p.persona, p.feature) for p in problems] == [
        ("default", "webhook_url"),
        ("default", "recording"),
    ]
    assert "WEBHOOK_SIGNING_SECRET" in problems[0].reason
