"""One `AudioFormat` for settings, the session, the pipeline and the engine.

Its values are the settings values, so the one type can replace the three spellings without
changing what an operator writes in REALTIME_AUDIO or what goes on the wire.
"""

from __future__ import annotations

import orjson
import pytest

from bridge.audio import make_pipeline
from bridge.audio_format import AudioFormat
from bridge.realtime import events
from bridge.realtime.dialect import Dialect
from tests.conftest import make_settings


def test_values_sizes_and_rates() -> None:
    assert [f.value for f in AudioFormat] == ["pcm16", "pcmu"]
    assert (AudioFormat.PCM16.sample_rate, AudioFormat.PCM16.bytes_per_ms) == (24_000, 48)
    assert (AudioFormat.PCMU.sample_rate, AudioFormat.PCMU.bytes_per_ms) == (8_000, 8)
    assert AudioFormat.PCM16.duration_ms(960) == 20.0
    assert AudioFormat.PCMU.duration_ms(160) == 20.0


@pytest.mark.parametrize(("raw", "expected"), [("pcm16", "pcm16"), (" PCMU ", "pcmu")])
def test_the_settings_value_is_the_format(raw: str, expected: str) -> None:
    settings = make_settings(REALTIME_AUDIO=raw)
    assert settings.REALTIME_AUDIO is AudioFormat(expected)
    assert settings.REALTIME_AUDIO == expected
    # What the start-up and call_started log lines show: the bare value.
    assert orjson.dumps({"audio": settings.REALTIME_AUDIO}) == f'{{"audio":"{expected}"}}'.encode()


@pytest.mark.parametrize("fmt", list(AudioFormat))
def test_the_pipeline_and_the_session_agree_on_the_format(fmt: AudioFormat) -> None:
    pipeline = make_pipeline(fmt)
    assert pipeline.upstream_format is fmt
    assert pipeline.upstream_bytes_per_ms == fmt.bytes_per_ms
    assert events.SessionConfig(instructions="x").audio_format is AudioFormat.PCM16
    update = orjson.loads(
        Dialect("beta").session_update(events.SessionConfig(instructions="x", audio_format=fmt))
    )
    wire = {AudioFormat.PCM16: "pcm16", AudioFormat.PCMU: "g711_ulaw"}[fmt]
    assert update["session"]["input_audio_format"] == wire
