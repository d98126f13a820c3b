"""Speech recognition with pocketsphinx 5 and its bundled en-US model, in worker processes.

Two passes per caller turn, both on the same audio:

- the **general** language model, for the transcript the protocol reports. On a phone line
  and espeak-ng's voice it gets about half of the words wrong, so nothing acts on it alone;
- a **phrase grammar** (JSGF) built from the intents the dialogue policy knows, which is
  what recognises intents: a closed set of phrases is matched far more reliably than free
  speech (bench/local_asr.py measures both).

pocketsphinx holds the GIL for the whole decode (about a second of CPU per utterance), so a
thread would stall every session's audio pacing; decoding runs in a small process pool,
shared by every engine in the process and started on first use. Workers are spawned (the
parent runs an event loop and threads, which fork would copy mid-flight), so a script that
starts an engine needs the usual ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import asyncio
import atexit
import multiprocessing
import signal
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from scipy.signal import resample_poly

from bridge.engine.codec import ENGINE_RATE, Pcm

ASR_RATE: Final = 16_000
"""The bundled acoustic model's sample rate."""

MAX_WORKERS: Final = 2
"""Decoder processes; the machine this runs on has two cores."""

DITHER_LSB: Final = 2.0
"""Peak of the deterministic noise added before decoding. Phone audio holds stretches of
digital silence, where log spectra go to minus infinity and the decoder's cepstral
normalisation skews; a little noise raised intent accuracy from 7 to 10 of 15 phrases."""

MIN_AUDIO_MS: Final = 200
"""Shorter turns are not worth decoding: clicks and breaths."""


@dataclass(frozen=True)
class Hearing:
    """What the recogniser made of one turn: the general model's ``transcript`` and the
    phrase grammar's best ``phrase`` (None when no phrase matched at all)."""

    transcript: str
    phrase: str | None


# --- the worker process ----------------------------------------------------------------------

_decoder: Any = None
_default_search: str = ""
_grammars: set[str] = set()


def _worker_init() -> None:
    """Load the model once per worker (idempotent: warm-up submits it again)."""
    global _decoder, _default_search
    if _decoder is not None:
        return
    from pocketsphinx import Decoder

    _decoder = Decoder(loglevel="FATAL")
    _default_search = _decoder.current_search()
    _grammars.clear()  # grammars belong to a decoder


def _worker_start() -> None:
    """A worker's initializer. Ctrl-C in a terminal signals the whole process group: the
    parent drains and shuts the pool down, so a worker must not die of it mid-decode (with a
    traceback each, and the pool's queues left for the resource tracker to complain about)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker_init()


def _decode(pcm16k: bytes, grammar_name: str | None, grammar: str | None) -> Hearing:
    """Both passes on one utterance (runs in a worker)."""
    if _decoder is None:
        _worker_init()
    dec = _decoder
    dec.activate_search(_default_search)
    dec.start_utt()
    dec.process_raw(pcm16k, full_utt=True)
    dec.end_utt()
    hyp = dec.hyp()
    transcript = hyp.hypstr.strip() if hyp is not None else ""
    phrase = None
    if grammar_name and grammar:
        if grammar_name not in _grammars:
            dec.add_jsgf_string(grammar_name, grammar)
            _grammars.add(grammar_name)
        dec.activate_search(grammar_name)
        dec.start_utt()
        dec.process_raw(pcm16k, full_utt=True)
        dec.end_utt()
        hyp = dec.hyp()
        if hyp is not None and hyp.hypstr.strip():
            phrase = hyp.hypstr.strip()
        dec.activate_search(_default_search)
    return Hearing(transcript, phrase)


def _dictionary_words() -> frozenset[str]:
    from pocketsphinx import get_model_path

    words = set()
    with open(f"{get_model_path()}/en-us/cmudict-en-us.dict", encoding="utf-8") as f:
        for line in f:
            word = line.split(" ", 1)[0]
            words.add(word.split("(", 1)[0])
    return frozenset(words)


# --- the parent side -------------------------------------------------------------------------

_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()
_words: frozenset[str] | None = None


def _shared_pool() -> ProcessPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            # spawn, not fork: the parent runs an event loop and threads.
            context = multiprocessing.get_context("spawn")
            _pool = ProcessPoolExecutor(
                max_workers=MAX_WORKERS, mp_context=context, initializer=_worker_start
            )
            atexit.register(_shutdown_pool)
        return _pool


def _discard_pool(pool: ProcessPoolExecutor) -> None:
    global _pool
    with _pool_lock:
        if _pool is pool:
            _pool = None
    pool.shutdown(wait=False, cancel_futures=True)


def _shutdown_pool() -> None:
    """At exit: drop queued work, let a decode in progress finish, and join the workers, so
    the pool's queues and semaphores are released before the process ends."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


def known_words() -> frozenset[str]:
    """Every word the pronunciation dictionary has: a grammar may only use these."""
    global _words
    if _words is None:
        _words = _dictionary_words()
    return _words


def to_asr_audio(pcm24k: Pcm, *, seed: int = 0) -> bytes:
    """24 kHz engine audio → 16 kHz PCM16 bytes for the decoder, lightly dithered."""
    pcm = resample_poly(pcm24k.astype(np.float64), 2, 3)
    rng = np.random.default_rng(seed)  # deterministic: the same audio decodes the same way
    pcm += rng.uniform(-DITHER_LSB, DITHER_LSB, len(pcm))
    return np.clip(np.rint(pcm), -32768, 32767).astype("<i2").tobytes()


class Recognizer:
    """Recognises caller turns off the event loop (see the module docstring)."""

    def __init__(self, *, sample_rate: int = ENGINE_RATE) -> None:
        if sample_rate != ENGINE_RATE:
            raise ValueError("the recogniser takes engine audio (24 kHz)")

    def warm_up(self) -> None:
        """Start the worker processes now (they take about a second to load the model), so
        the first caller is not the one who waits."""
        pool = _shared_pool()
        for _ in range(MAX_WORKERS):
            pool.submit(_worker_init)

    async def recognise(
        self, pcm24k: Pcm, grammar_name: str | None = None, grammar: str | None = None
    ) -> Hearing:
        """Transcript and phrase of one turn. ``grammar`` is JSGF text; ``grammar_name``
        must change whenever the text does (workers cache grammars by name)."""
        if len(pcm24k) * 1000 < MIN_AUDIO_MS * ENGINE_RATE:
            return Hearing("", None)
        audio = to_asr_audio(pcm24k)
        loop = asyncio.get_running_loop()
        pool = _shared_pool()
        try:
            return await loop.run_in_executor(pool, _decode, audio, grammar_name, grammar)
        except BrokenProcessPool:
            # A worker died (killed, out of memory): this turn fails, the next gets a new pool.
            _discard_pool(pool)
            raise
