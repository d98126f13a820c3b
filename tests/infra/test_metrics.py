"""The metrics that ``GET /metrics`` exposes: names, labels and buckets operators rely on."""

from __future__ import annotations

import itertools

import prometheus_client
from prometheus_client.parser import text_string_to_metric_families

from bridge import metrics

# name → (type, label names) as exposed; dashboards, alerts and the HPA depend on these.
EXPECTED = {
    "voicebridge_active_calls": ("gauge", ()),
    "voicebridge_calls": ("counter", ("outcome",)),
    "voicebridge_call_duration_seconds": ("histogram", ()),
    "voicebridge_time_to_first_audio_seconds": ("histogram", ()),
    "voicebridge_turn_latency_seconds": ("histogram", ()),
    "voicebridge_barge_ins": ("counter", ()),
    "voicebridge_tool_latency_seconds": ("histogram", ("tool", "outcome")),
    "voicebridge_upstream_errors": ("counter", ("code",)),
    "voicebridge_frames_in": ("counter", ()),
    "voicebridge_frames_out": ("counter", ()),
    "voicebridge_frames_dropped": ("counter", ("direction", "reason")),
    "voicebridge_queue_depth": ("histogram", ("queue",)),
    "voicebridge_event_loop_lag_seconds": ("histogram", ()),
    "voicebridge_http_refused": ("counter", ("reason",)),
    "voicebridge_rate_limit_remaining": ("gauge", ("limit",)),
    "voicebridge_call_events": ("counter", ("outcome",)),
    "voicebridge_shared_state_fallbacks": ("counter", ("operation",)),
}


def _families() -> dict[str, prometheus_client.Metric]:
    body, _ = metrics.render()
    return {family.name: family for family in text_string_to_metric_families(body.decode())}


def test_render_exposes_every_metric_with_help_and_type() -> None:
    body, _ = metrics.render()
    text = body.decode()
    families = _families()
    for name, (kind, _labels) in EXPECTED.items():
        assert name in families, f"{name} missing from /metrics"
        assert families[name].type == kind, name
        assert families[name].documentation.strip(), f"{name} has no help text"
        assert f"# HELP {name}" in text
    for name, (kind, labels) in EXPECTED.items():
        if kind == "counter" and not labels:
            assert f"\n{name}_total 0.0\n" in text or f"\n{name}_total " in text, name


def test_every_exposed_family_is_expected_and_prefixed() -> None:
    # prometheus-client adds a `<name>_created` timestamp family beside counters and histograms.
    exposed = {name for name in _families() if not name.endswith("_created")}
    assert exposed == set(EXPECTED)


def test_label_names_are_the_documented_ones() -> None:
    # prometheus-client keeps label names only on the metric objects (private attributes):
    # a labelled family with no samples yet shows none in the text.
    collectors = list(metrics.REGISTRY._collector_to_names)
    assert len(collectors) == len(EXPECTED)
    for collector in collectors:
        assert collector._labelnames == EXPECTED[collector._name][1], collector._name


def test_content_type_is_prometheus_text_format() -> None:
    _, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    assert "version=0.0.4" in content_type


def test_every_call_outcome_is_exported_at_zero_before_any_call() -> None:
    samples = {
        sample.labels["outcome"]: sample.value
        for sample in _families()["voicebridge_calls"].samples
        if sample.name == "voicebridge_calls_total"
    }
    assert set(samples) == set(metrics.CALL_OUTCOMES)
    assert len(metrics.CALL_OUTCOMES) == 9


def test_tool_outcomes_are_ok_error_timeout() -> None:
    assert metrics.TOOL_OUTCOMES == ("ok", "error", "timeout")


def test_turn_latency_buckets_are_fine_between_200_ms_and_3_s() -> None:
    bounds = [
        float(sample.labels["le"])
        for sample in _families()["voicebridge_turn_latency_seconds"].samples
        if sample.name.endswith("_bucket") and sample.labels["le"] != "+Inf"
    ]
    inside = [b for b in bounds if 0.2 <= b <= 3.0]
    assert len(inside) >= 12
    # No step inside the range wider than half a second.
    assert max(b - a for a, b in itertools.pairwise(inside)) <= 0.5


def test_metrics_stay_off_the_global_default_registry() -> None:
    default = prometheus_client.generate_latest(prometheus_client.REGISTRY).decode()
    assert "voicebridge_" not in default


def test_a_moved_counter_shows_in_the_rendered_body() -> None:
    before = _sample("voicebridge_barge_ins_total")
    metrics.BARGE_INS.inc()
    assert _sample("voicebridge_barge_ins_total") == before + 1


def _sample(sample_name: str) -> float:
    value = metrics.REGISTRY.get_sample_value(sample_name)
    assert value is not None, sample_name
    return value
