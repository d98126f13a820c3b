"""The browser softphone in headless Chromium: Chromium's fake microphone plays a WAV of a
caller's question; the page must show the caller's words and the agent's reply."""

from __future__ import annotations

import contextlib
import json
import os
import re
import wave
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import resample_poly

from bridge.engine.tts import CALLER_WPM, speak
from bridge.softphone import softphone_enabled
from tests.conftest import LogCapture, make_settings, running_bridge
from tests.local.conftest import SEARCH_PERSONA
from tests.local.test_call import search_settings

CHROMIUM = "/usr/bin/chromium"
# Flags that keep Chromium off the (closed) network, as machines/python.md lists them.
QUIET_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def caller_wav(path: Path, text: str, *, lead_s: float, tail_s: float) -> None:
    """A 16 kHz WAV: silence while the greeting plays, the question, then a long silence
    (Chromium loops the file; the tail keeps a second question out of the test)."""
    pcm = speak(text, wpm=CALLER_WPM)
    pcm16k = np.clip(np.rint(resample_poly(pcm.astype(float), 2, 3)), -32768, 32767)
    audio = np.concatenate(
        [np.zeros(int(lead_s * 16000)), pcm16k, np.zeros(int(tail_s * 16000))]
    ).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(16000)
        f.writeframes(audio.tobytes())


def test_the_page_is_on_in_local_mode_and_off_when_signed() -> None:
    signed = {"TWILIO_AUTH_TOKEN": "0123456789abcdef", "PUBLIC_URL": "https://voice.example.com"}
    assert softphone_enabled(make_settings()) is True
    assert softphone_enabled(make_settings(**signed)) is False
    assert softphone_enabled(make_settings(SOFTPHONE_ENABLED="true", **signed)) is True
    assert softphone_enabled(make_settings(SOFTPHONE_ENABLED="0")) is False


async def test_the_page_and_its_assets_are_read_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import threading

    import httpx

    import bridge.softphone as softphone

    readers: list[tuple[str, int]] = []
    original = softphone._asset

    def recording_asset(name: str) -> str:
        readers.append((name, threading.get_ident()))
        return original(name)

    monkeypatch.setattr(softphone, "_asset", recording_asset)
    async with running_bridge(make_settings()) as bridge:
        async with httpx.AsyncClient(base_url=bridge.base_url) as client:
            page = await client.get("/softphone")
            names = sorted(set(re.findall(r'src="/softphone/([\w.-]+)"', page.text)))
            assets = [await client.get(f"/softphone/{name}") for name in names]
    assert page.status_code == 200 and names
    assert [a.status_code for a in assets] == [200] * len(names)
    assert [name for name, _ in readers] == ["softphone.html", *names]
    assert threading.get_ident() not in {ident for _, ident in readers}


@pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason="Debian's chromium is not installed")
async def test_the_softphone_shows_the_callers_words_and_the_agents_reply(
    logs: LogCapture, tmp_path: Path
) -> None:
    from playwright.async_api import async_playwright

    wav = tmp_path / "caller.wav"
    caller_wav(wav, "what is the weather in Paris", lead_s=6.0, tail_s=40.0)
    with contextlib.ExitStack() as stack:
        settings = make_settings(**search_settings(stack))
        async with running_bridge(settings, SEARCH_PERSONA) as bridge, async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=CHROMIUM,
                args=[
                    *QUIET_FLAGS,
                    "--use-fake-ui-for-media-stream",
                    "--use-fake-device-for-media-stream",
                    f"--use-file-for-fake-audio-capture={wav}",
                    "--autoplay-policy=no-user-gesture-required",
                ],
            )
            try:
                page = await browser.new_page()
                await page.goto(f"{bridge.base_url}/softphone")
                await page.click("#call")
                # Greeting, the caller's question, then the agent's answer about the search.
                await page.wait_for_function(
                    "document.querySelectorAll('#transcript li[data-role]').length >= 3"
                    " && document.querySelector('#transcript li.caller')"
                    " && document.querySelectorAll('#transcript li.agent').length >= 2",
                    timeout=45_000,
                )
                items = await page.eval_on_selector_all(
                    "#transcript li[data-role]",  # the words said (the call's events aside)
                    "els => els.map(e => [e.dataset.role, e.querySelector('.text').textContent])",
                )
                tool_rows = await page.eval_on_selector_all(
                    "#transcript li[data-event='tool_call'] .text",
                    "els => els.map(e => e.textContent)",
                )
                await page.screenshot(path=str(tmp_path / "softphone.png"))
                await page.click("#hangup")
            finally:
                await browser.close()
    roles = [role for role, _ in items]
    assert roles[:3] == ["agent", "caller", "agent"], items
    assert items[0][1] == "Hello, thanks for calling. How can I help you today?"
    assert items[1][1] and items[1][1] != "(not understood)"
    assert items[2][1].startswith(("Here is what I found", "Sorry, I couldn't look that up")), items
    [tool] = logs.events("tool_call")
    assert tool["name"] == "web_search"
    # the page shows the search in place, with its arguments and outcome
    outcome = "ok" if tool["ok"] else f"failed: {tool['error']}"
    arguments = json.dumps(tool["arguments"], separators=(",", ":"), ensure_ascii=False)
    assert tool_rows == [f"Tool web_search({arguments}): {outcome}"], tool_rows
