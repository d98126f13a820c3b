"""Speech synthesis with espeak-ng, loaded in-process from the `espeakng-loader` wheel.

The wheel ships the shared library and its voice data, so no system package is needed: a
fresh machine with only PyPI can speak. espeak-ng is a formant synthesizer: robotic, but it
renders a sentence in a few milliseconds of CPU and needs no model download.

The library keeps global state (one voice, one callback), so every synthesis holds one
process-wide lock. ctypes releases the GIL while the C code runs, so a thread is enough to
keep the event loop free.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import threading
from functools import lru_cache
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy.signal import resample_poly

from bridge.engine.codec import ENGINE_RATE, Pcm

ESPEAK_RATE: Final = 22_050
"""espeak-ng's output sample rate (fixed by the library)."""

DEFAULT_WPM: Final = 165
"""Speaking rate of the agent: a little slower than espeak's 175 so phone listeners keep up."""

CALLER_WPM: Final = 150
"""Speaking rate of simulated callers: slower speech is recognised markedly better (measured
with pocketsphinx on the phone path: bench/local_asr.py)."""

_AUDIO_OUTPUT_SYNCHRONOUS: Final = 2
_ESPEAK_CHARS_UTF8: Final = 1
_ESPEAK_RATE_PARAM: Final = 1
_ESPEAK_PITCH_PARAM: Final = 3

_Callback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)

# The Realtime API's voice names, mapped onto espeak-ng voice variants and pitches so that
# personas with different voices sound different here too.
_VOICES: Final[dict[str, tuple[str, int]]] = {
    "alloy": ("en-us", 50),
    "ash": ("en-us+m3", 40),
    "ballad": ("en-us+m2", 45),
    "cedar": ("en-us+m1", 40),
    "coral": ("en-us+f3", 55),
    "echo": ("en-us+m4", 50),
    "marin": ("en-us+f2", 55),
    "sage": ("en-us+f4", 50),
    "shimmer": ("en-us+f1", 60),
    "verse": ("en-us+m5", 50),
}


class TtsError(RuntimeError):
    """espeak-ng could not be loaded or refused to speak."""


class Espeak:
    """The espeak-ng library, initialised once per process."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as exc:  # pragma: no cover - a dependency of the package
            raise TtsError("espeakng-loader is not installed") from exc
        self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib = self._lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        # espeak_Initialize wants the folder that *contains* espeak-ng-data.
        data_parent = os.path.dirname(espeakng_loader.get_data_path())
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_parent.encode(), 0)
        if rate != ESPEAK_RATE:
            raise TtsError(f"espeak-ng failed to initialise (returned {rate})")
        self._chunks: list[npt.NDArray[np.int16]] = []
        self._callback = _Callback(self._collect)  # kept referenced: C holds the pointer
        lib.espeak_SetSynthCallback(self._callback)
        self._lock = threading.Lock()
        self._voice: str | None = None

    def _collect(self, wav: ctypes._Pointer, n: int, _events: int) -> int:  # type: ignore[type-arg]
        if n > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    def synthesize(
        self, text: str, *, voice: str = "en-us", wpm: int = DEFAULT_WPM, pitch: int = 50
    ) -> Pcm:
        """PCM16 at 22 050 Hz of `text` (empty for empty text)."""
        if not text.strip():
            return np.zeros(0, dtype=np.int16)
        data = text.encode("utf-8") + b"\0"
        with self._lock:
            if voice != self._voice:
                if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
                    raise TtsError(f"espeak-ng has no voice {voice!r}")
                self._voice = voice
            self._lib.espeak_SetParameter(_ESPEAK_RATE_PARAM, int(wpm), 0)
            self._lib.espeak_SetParameter(_ESPEAK_PITCH_PARAM, int(pitch), 0)
            self._chunks = []
            status = self._lib.espeak_Synth(
                data, len(data), 0, 0, 0, _ESPEAK_CHARS_UTF8, None, None
            )
            if status != 0:
                raise TtsError(f"espeak_Synth failed with status {status}")
            chunks, self._chunks = self._chunks, []
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)


@lru_cache(maxsize=1)
def espeak() -> Espeak:
    """The process's espeak-ng (loaded on first use: importing this module costs nothing)."""
    return Espeak()


def _resample(pcm: Pcm, up: int, down: int) -> Pcm:
    # A whole utterance at once, so a one-shot polyphase filter is exact (no chunk seams).
    out = resample_poly(pcm.astype(np.float64), up, down)
    return np.clip(np.rint(out), -32768, 32767).astype(np.int16)


def speak(
    text: str, *, rate: int = ENGINE_RATE, voice: str = "alloy", wpm: int = DEFAULT_WPM
) -> Pcm:
    """`text` spoken by espeak-ng as PCM16 at `rate` (24 000 or 8 000 Hz)."""
    name, pitch = _VOICES.get(voice, ("en-us", 50))
    pcm = espeak().synthesize(text, voice=name, wpm=wpm, pitch=pitch)
    if rate == ENGINE_RATE:
        return _resample(pcm, 160, 147)  # 22 050 · 160/147 = 24 000
    if rate == 8000:
        return _resample(pcm, 160, 441)  # 22 050 · 160/441 = 8 000
    raise ValueError(f"unsupported rate {rate}")


class EspeakVoice:
    """The engine's :class:`~bridge.engine.voice.Voice`: espeak-ng at 24 kHz, in a thread so
    the event loop keeps pacing other sessions' audio."""

    def __init__(self, *, wpm: int = DEFAULT_WPM) -> None:
        self.wpm = wpm

    async def synthesize(self, text: str, *, voice: str) -> Pcm:
        return await asyncio.to_thread(speak, text, voice=voice, wpm=self.wpm)
