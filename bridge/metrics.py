"""Prometheus metrics of the bridge, served on ``GET /metrics``.

Every metric lives on :data:`REGISTRY`, a registry of our own rather than prometheus-client's
global default, so a test can read exactly these series and nothing a library registered.
This module only defines the metrics; the call code moves them. Names are part of the
operator's interface (dashboards, alerts, the HorizontalPodAutoscaler in ``infra/k8s``).

A worker of ``serve --workers N`` (N > 1) runs with ``PROMETHEUS_MULTIPROC_DIR`` set by its
supervisor: prometheus-client then keeps every value in a file of that folder per process, and
:func:`render` answers for the whole group (prometheus-client's multi-process mode): counters
and histograms summed over every worker that ever ran, ``voicebridge_active_calls`` summed over
the live ones, ``voicebridge_rate_limit_remaining`` the latest value any live worker saw.
Without it (one process) the answer is :data:`REGISTRY` itself, as always.
"""

from __future__ import annotations

import asyncio
import os

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

REGISTRY = CollectorRegistry()
"""The registry that ``/metrics`` renders; every metric below is registered on it."""

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The classic text format, labelled with the version every scraper knows. Our names are all
legacy-safe, so the body is exactly that format; recent prometheus-client releases would label
the same bytes 1.0.0, and the label should not change with a dependency bump."""

CALL_OUTCOMES = (
    "completed",
    "caller_hangup",
    "agent_hangup",
    "transferred",
    "upstream_failed",
    "rejected_busy",
    "rejected_auth",
    "error",
    "timeout",
)
"""Values of the ``outcome`` label of :data:`CALLS`; exactly one per call."""

TOOL_OUTCOMES = ("ok", "error", "timeout")
"""Values of the ``outcome`` label of :data:`TOOL_LATENCY`."""

FRAME_DIRECTIONS = ("inbound", "outbound")
"""Values of the ``direction`` label: inbound is caller → model, outbound is model → caller
(Twilio's own track names)."""

ACTIVE_CALLS = Gauge(
    "voicebridge_active_calls",
    "Calls in progress on this process (media stream open). The HorizontalPodAutoscaler "
    "scales on this.",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)

CALLS = Counter(
    "voicebridge_calls",
    "Calls ended, by outcome: " + ", ".join(CALL_OUTCOMES) + ".",
    ["outcome"],
    registry=REGISTRY,
)
# Every outcome is exported from the start (at 0), so rate() and alerts see a series
# before its first event instead of an absent one.
for _outcome in CALL_OUTCOMES:
    CALLS.labels(outcome=_outcome)

CALL_DURATION = Histogram(
    "voicebridge_call_duration_seconds",
    "Length of a call, from the media stream's start to its end.",
    buckets=(5, 10, 30, 60, 120, 180, 300, 600, 900, 1800, 3600),
    registry=REGISTRY,
)

TIME_TO_FIRST_AUDIO = Histogram(
    "voicebridge_time_to_first_audio_seconds",
    "From the voice webhook's arrival to the first agent audio frame sent to Twilio: what "
    "the caller waits before hearing the greeting.",
    buckets=(0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.5, 10.0),
    registry=REGISTRY,
)

TURN_LATENCY = Histogram(
    "voicebridge_turn_latency_seconds",
    "From the caller's speech stopping (VAD speech_stopped) to the first agent audio frame "
    "of the reply sent to Twilio.",
    # Fine steps over 0.2–3 s, where conversational turn-taking feels natural or sluggish.
    buckets=(
        0.1,
        0.2,
        0.3,
        0.4,
        0.5,
        0.6,
        0.7,
        0.8,
        0.9,
        1.0,
        1.25,
        1.5,
        1.75,
        2.0,
        2.5,
        3.0,
        4.0,
        6.0,
        10.0,
    ),
    registry=REGISTRY,
)

BARGE_INS = Counter(
    "voicebridge_barge_ins",
    "Times the caller spoke over agent audio and playback was cut.",
    registry=REGISTRY,
)

RATE_LIMIT_REMAINING = Gauge(
    "voicebridge_rate_limit_remaining",
    "What the Realtime service said is left of the account's rate limits (its "
    "rate_limits.updated event, after each response): requests and tokens.",
    ["limit"],
    registry=REGISTRY,
    multiprocess_mode="livemostrecent",
)

TOOL_LATENCY = Histogram(
    "voicebridge_tool_latency_seconds",
    "Duration of one tool call, by tool name and outcome (" + ", ".join(TOOL_OUTCOMES) + ").",
    ["tool", "outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0),
    registry=REGISTRY,
)

UPSTREAM_ERRORS = Counter(
    "voicebridge_upstream_errors",
    "Errors from the upstream Realtime service, by error code (the event's error.code, or "
    "the WebSocket close code / connect failure).",
    ["code"],
    registry=REGISTRY,
)

FRAMES_IN = Counter(
    "voicebridge_frames_in",
    "Caller audio frames received from Twilio (20 ms μ-law each).",
    registry=REGISTRY,
)

FRAMES_OUT = Counter(
    "voicebridge_frames_out",
    "Agent audio frames sent to Twilio (20 ms μ-law each).",
    registry=REGISTRY,
)

FRAMES_DROPPED = Counter(
    "voicebridge_frames_dropped",
    "Audio frames not delivered, by direction (inbound: caller → model, outbound: model → "
    "caller) and reason (e.g. barge_in, queue_full, upstream_closed).",
    ["direction", "reason"],
    registry=REGISTRY,
)

QUEUE_DEPTH = Histogram(
    "voicebridge_queue_depth",
    "Items waiting in a per-call queue, sampled at each put, by queue name. A histogram, "
    "not a gauge, because every call has its own queues.",
    ["queue"],
    buckets=(0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
    registry=REGISTRY,
)

EVENT_LOOP_LAG = Histogram(
    "voicebridge_event_loop_lag_seconds",
    "How late the event loop ran a timer due every half second: how long any ready callback "
    "(every call's audio, both ways) waited for the loop. A process near saturation shows it "
    "here before callers hear gaps (past ~20 ms).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=REGISTRY,
)


HTTP_REFUSAL_REASONS = (
    "header_too_large",
    "too_many_headers",
    "header_timeout",
    "idle_timeout",
    "evicted",
    "too_many_connections",
    "body_too_large",
    "body_timeout",
)
"""Values of the ``reason`` label of :data:`HTTP_REFUSED` (``bridge.edge`` says what each is)."""

HTTP_REFUSED = Counter(
    "voicebridge_http_refused",
    "HTTP requests or connections refused at the public port's limits, by reason: "
    + ", ".join(HTTP_REFUSAL_REASONS)
    + ". A rate well above zero is a flood or a misbehaving client.",
    ["reason"],
    registry=REGISTRY,
)
for _reason in HTTP_REFUSAL_REASONS:
    HTTP_REFUSED.labels(reason=_reason)


CALL_EVENT_OUTCOMES = ("delivered", "failed", "dropped")
"""Values of the ``outcome`` label of :data:`CALL_EVENTS` (``bridge.call_events``)."""

CALL_EVENTS = Counter(
    "voicebridge_call_events",
    "Call events (call.started, call.ended, call.recording) by outcome, one per event and "
    "receiver: delivered (a 2xx), failed (attempts used up or refused with a 4xx), dropped "
    "(the queue was full or the process ended first).",
    ["outcome"],
    registry=REGISTRY,
)
for _outcome in CALL_EVENT_OUTCOMES:
    CALL_EVENTS.labels(outcome=_outcome)


SHARED_STATE_OPERATIONS = ("claim", "put", "take", "join", "renew", "leave", "count")
"""Values of the ``operation`` label of :data:`SHARED_STATE_FALLBACKS` (``bridge.shared``)."""

SHARED_STATE_FALLBACKS = Counter(
    "voicebridge_shared_state_fallbacks",
    "Operations on the deployment's shared state (Redis, or the worker supervisor's table) "
    "that it could not do and this process did in its own memory instead, by operation: "
    + ", ".join(SHARED_STATE_OPERATIONS)
    + ". Above zero, replicas decide those without each other's facts.",
    ["operation"],
    registry=REGISTRY,
)
for _operation in SHARED_STATE_OPERATIONS:
    SHARED_STATE_FALLBACKS.labels(operation=_operation)


def multiprocess_dir() -> str | None:
    """The folder of the process group's metric files, when this process is a worker."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def render() -> tuple[bytes, str]:
    """The body and Content-Type of a ``GET /metrics`` answer (Prometheus text format): this
    process's metrics, or in a worker the whole group's."""
    folder = multiprocess_dir()
    if folder is None:
        return generate_latest(REGISTRY), CONTENT_TYPE
    group = CollectorRegistry()
    MultiProcessCollector(group, path=folder)
    return generate_latest(group), CONTENT_TYPE


async def render_off_loop() -> tuple[bytes, str]:
    """`render` for a route: in a worker it reads the group's metric files, so in a thread,
    never on the event loop; a single process renders from memory at once."""
    if multiprocess_dir() is None:
        return render()
    return await asyncio.to_thread(render)
