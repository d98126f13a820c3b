"""What `voicebridge call` is asked to do, checked and prepared before it dials.

A phone call is expensive to get wrong halfway (the bridge opens a model session for it), so
every input is looked at first: the URL has a scheme and a host, the `--wav` file exists and
is 16-bit PCM, the `--record` folder exists, the keys are keypad keys, and each `--say` line
is synthesised up front. Each problem is one `InputError` naming the flag and the reason.
"""

from __future__ import annotations

import os
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from math import gcd
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import numpy as np
from scipy.signal import resample_poly

from bridge.audio import ulaw_encode
from bridge.sim.errors import SimError
from bridge.sim.media_stream import DTMF_DIGITS

LEAD_IN_SAMPLES: Final = 1600
"""200 ms of silence before each spoken caller line, as a person draws breath."""


class InputError(SimError):
    """A flag's value cannot work; found before the call is placed."""


@dataclass(frozen=True)
class CallerLine:
    """One thing the caller plays: its label in the transcript and its 8 kHz μ-law audio."""

    text: str
    audio: bytes


@dataclass(frozen=True)
class CallPlan:
    """A call's inputs, all checked: where to dial, what the caller says and presses."""

    url: str
    lines: tuple[CallerLine, ...]
    dtmf: str
    record: str | None
    sign_base: str
    """The base URL the webhook signature covers (the bridge's PUBLIC_URL)."""


def check_url(url: str, flag: str = "--url") -> str:
    """An http(s) base URL with a host, without a trailing slash."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(
            f"{flag} {url!r}: expected an http:// or https:// URL with a host, "
            "such as http://127.0.0.1:8080"
        )
    if parts.query or parts.fragment:
        raise InputError(f"{flag} {url!r}: no query or fragment allowed")
    return url.rstrip("/")


def sign_base(url: str, public_url: str | None) -> str:
    """What Twilio would sign: the bridge's public URL (`--public-url` or PUBLIC_URL), else
    `--url` itself. The bridge checks webhooks against its PUBLIC_URL's scheme and host
    only, so the path is dropped as it does."""
    base = check_url(public_url, "--public-url") if public_url else url
    parts = urlsplit(base)
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))


def read_wav_ulaw(path: str | Path) -> bytes:
    """A mono or stereo PCM16 WAV at any rate → 8 kHz μ-law (the first channel)."""
    name = str(path)
    if not os.path.isfile(name):
        raise InputError(f"--wav {name}: no such file")
    try:
        with wave.open(name, "rb") as f:
            if f.getsampwidth() != 2:
                raise InputError(
                    f"--wav {name}: {8 * f.getsampwidth()}-bit samples; only 16-bit PCM WAV "
                    "files are supported"
                )
            rate, channels = f.getframerate(), f.getnchannels()
            pcm = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2")[::channels]
    except (wave.Error, EOFError) as exc:
        detail = f" ({exc})" if str(exc) else ""
        raise InputError(f"--wav {name}: not a 16-bit PCM WAV file{detail}") from None
    except OSError as exc:
        raise InputError(f"--wav {name}: {exc.strerror or exc}") from None
    if not len(pcm):
        raise InputError(f"--wav {name}: the file holds no audio")
    if rate != 8000:
        g = gcd(8000, rate)
        pcm = np.clip(
            np.rint(resample_poly(pcm.astype(np.float64), 8000 // g, rate // g)), -32768, 32767
        )
    return ulaw_encode(pcm.astype(np.int16))


def tts_ulaw(text: str) -> bytes:
    """`text` as a caller says it: espeak-ng at 8 kHz, μ-law, with a short lead-in pause."""
    from bridge.engine.tts import CALLER_WPM, speak

    pcm = speak(text, rate=8000, wpm=CALLER_WPM)
    return ulaw_encode(np.concatenate([np.zeros(LEAD_IN_SAMPLES, np.int16), pcm]))


def check_record(path: str) -> str:
    """The recording can be written: its folder exists and is writable, it is no folder."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise InputError(f"--record {path}: is a folder; give a file name such as call.wav")
    if not folder.is_dir():
        raise InputError(f"--record {path}: the folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK):
        raise InputError(f"--record {path}: the folder {str(folder)!r} is not writable")
    return path


def check_dtmf(digits: str) -> str:
    for digit in digits:
        if digit not in DTMF_DIGITS:
            raise InputError(f"--dtmf takes 0-9, * and #, not {digit!r}")
    return digits


def plan_call(
    url: str,
    *,
    says: Sequence[str] = (),
    wav: str | None = None,
    dtmf: str = "",
    record: str | None = None,
    public_url: str | None = None,
) -> CallPlan:
    """Every input checked and the caller's audio made; raises `InputError` on the first
    problem, before anything is sent to the bridge."""
    url = check_url(url)
    base = sign_base(url, public_url)
    check_dtmf(dtmf)
    if record is not None:
        check_record(record)
    lines: list[CallerLine] = []
    for text in says:
        if not text.strip():
            raise InputError("--say needs some words, not an empty line")
        try:
            lines.append(CallerLine(text, tts_ulaw(text)))
        except Exception as exc:  # espeak-ng missing or refusing: say so before dialling
            raise InputError(f"--say {text!r}: speech synthesis failed: {exc}") from None
    if wav:
        lines.append(CallerLine(f"[{wav}]", read_wav_ulaw(wav)))
    return CallPlan(url, tuple(lines), dtmf, record, base)
