"""Compiled kernels for the audio hot path: one call does one direction of one frame.

`upsample`: μ-law (or PCM16) bytes -> decode -> 8k→24k polyphase FIR -> round, saturate ->
int16. `downsample`: PCM16 bytes -> 24k→8k decimating FIR -> round, saturate -> μ-law codes
(or PCM16 bytes), written straight into the framer's buffer. Both keep their state (filter
history, an odd trailing byte, the 0–2 samples of an unfinished triplet) in small arrays
their caller allocated once, and convolve in a window the caller lends them, one per thread
(`bridge.audio.workspace`). The filter is designed once with `scipy.signal.remez`
(`resample.design_lowpass`); only the streaming convolution is compiled here. The taps and
the μ-law tables are compile-time constants of the kernels (closure variables, which numba
freezes and also hashes into the cache key, so a different design is never served stale).

Arithmetic: each output is a float64 sum of its taps in a fixed order, compiled without
fastmath (no reassociation, no fused multiply-add). So the output depends neither on the
chunking nor on the block size, SIMD width or machine: any chunking gives bit-identical
samples; and with float64 sums (error ~1e-12 of a step) each sample is the correctly rounded
filter output, where the float32 matmuls before were within 1 LSB of it. The loops run over
outputs with the 23 taps of a branch unrolled inside, so LLVM vectorizes across outputs and
keeps the sums in registers; upsampling reads each input once for all three phases.

Compilation happens at import, for explicit signatures, so the first frame of a call never
waits for the compiler. The machine code is cached on disk (numba ``cache=True``): a warm
start loads it instead of compiling for a second or two. Where the cache lives, in order:

1. numba's own choice: ``NUMBA_CACHE_DIR`` if set, else ``__pycache__`` next to this file if
   writable, else the user-wide cache (``$XDG_CACHE_HOME/numba`` or ``~/.cache/numba``).
2. If numba finds none of those (read-only site-packages and no writable home, as for a
   non-root user in a container), or reading or writing the cache fails: a private per-user
   directory under the system temp dir, created 0700 and used only if it is a directory we
   own that nobody else can write to (cache files are pickles, loaded as code).
3. If that fails too: no disk cache; every process compiles (slower start, same code).

Importing never fails because of the cache; `cache_status()` tells which case applied. To
ship a warm cache in an image, set ``NUMBA_CACHE_DIR`` to the same directory at build and at
run time and import `bridge.audio` once during the build: numba passes over an in-tree cache
it cannot write to, however complete.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from typing import Any, NamedTuple

import numba
import numpy as np
from numba import types
from numpy.typing import NDArray

__all__ = [
    "BLOCK",
    "DOWN_STATE_SHAPE",
    "DOWN_WINDOW_SHAPE",
    "HISTORY",
    "ISTATE_SIZE",
    "ODD_BYTE",
    "ODD_FLAG",
    "PENDING",
    "RATIO",
    "TAPS_PER_PHASE",
    "UP_STATE_SHAPE",
    "UP_WINDOW_SHAPE",
    "Kernels",
    "build_kernels",
    "cache_status",
    "compile_cached",
    "private_temp_cache_dir",
]

RATIO = 3
#: Taps per polyphase branch (69 / 3).
TAPS_PER_PHASE = 23
#: Past inputs one branch needs: 8 kHz samples up, 24 kHz triplets down.
HISTORY = TAPS_PER_PHASE - 1
#: New inputs per internal block: 8 kHz samples up, 24 kHz triplets down. Bounds the
#: window buffers for any chunk size; a 20 ms frame (160 samples, 160 triplets) is one block.
BLOCK = 256
#: A call's filter state (float64): the upsampler's input history, and the downsampler's
#: history plus the triplet being filled, by phase.
UP_STATE_SHAPE = (HISTORY,)
DOWN_STATE_SHAPE = (RATIO, HISTORY + 1)
#: The window a kernel works in (float64), one per thread (`bridge.audio.workspace`): the
#: state copied in, a block of new inputs after it; the downsampler's row 3 holds sums.
UP_WINDOW_SHAPE = (HISTORY + BLOCK,)
DOWN_WINDOW_SHAPE = (RATIO + 1, HISTORY + BLOCK + 1)

# The integer state, int64[ISTATE_SIZE]: whether half a sample (one byte) waits, that byte,
# and (downsampler) how many samples of the current triplet wait, 0–2.
ODD_FLAG, ODD_BYTE, PENDING = 0, 1, 2
ISTATE_SIZE = 3


# --- where the compiled code is cached ----------------------------------------------------

_status = "numba default"


def cache_status() -> str:
    """Where the kernels are cached: "numba default", "temp dir …" or "disabled (…)"."""
    return _status


def private_temp_cache_dir() -> str | None:
    """A per-user cache directory under the temp dir, or None if it is not safely ours."""
    uid = os.getuid() if hasattr(os, "getuid") else None
    name = f"voicebridge-numba-{uid if uid is not None else 'user'}"
    path = os.path.join(tempfile.gettempdir(), name)
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        info = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_mode & 0o022:
        return None
    if uid is not None and info.st_uid != uid:
        return None
    return path


def compile_cached(func: Callable[..., Any], signatures: list[Any]) -> Any:
    """`numba.njit(signatures)(func)`, disk-cached where possible; never fails for the cache.

    A fallback once taken (temp dir, then no cache) holds for every later kernel.
    """
    global _status
    failure = ""
    if not _status.startswith("disabled"):
        try:
            return numba.njit(signatures, cache=True)(func)
        except Exception as exc:  # no cache locator, or an unreadable or unwritable cache file
            failure = f"{type(exc).__name__}: {exc}"
        fallback = private_temp_cache_dir()
        if fallback is not None and numba.config.CACHE_DIR != fallback:
            numba.config.CACHE_DIR = fallback  # numba reads it per function, when decorated
            try:
                kernel = numba.njit(signatures, cache=True)(func)
            except Exception as exc:
                failure = f"{type(exc).__name__}: {exc}"
            else:
                _status = f"temp dir {fallback} (after {failure})"
                return kernel
        _status = f"disabled ({failure})"
    return numba.njit(signatures, cache=False)(func)


# --- kernels ------------------------------------------------------------------------------


@numba.njit(inline="always")
def _round_saturate(value: float) -> float:
    # rint rounds half to even, as np.rint did; saturating keeps filter overshoot from wrapping
    return min(max(np.rint(value), -32768.0), 32767.0)


@numba.njit(inline="always")
def _ulaw_code(sample: int) -> int:
    """G.711 μ-law code of one int16 sample, as `g711.ULAW_ENCODE_TABLE` (tested for all).

    Arithmetic rather than a lookup so that LLVM can vectorize it: reduce to 14 bits by an
    arithmetic shift, add the bias of 33 to the magnitude, count the segment ends below it.
    """
    pcm14 = sample >> 2
    negative = pcm14 < 0
    biased = (-pcm14 if negative else pcm14) + 33
    segment = (
        np.int64(biased > 0x3F)
        + np.int64(biased > 0x7F)
        + np.int64(biased > 0xFF)
        + np.int64(biased > 0x1FF)
        + np.int64(biased > 0x3FF)
        + np.int64(biased > 0x7FF)
        + np.int64(biased > 0xFFF)
        + np.int64(biased > 0x1FFF)
    )
    code = (segment << 4) | ((biased >> (segment + 1)) & 0x0F)
    if segment == 8:  # overload: the largest code
        code = 0x7F
    return code ^ (0x7F if negative else 0xFF)


# --- base64 (RFC 4648, the standard alphabet) ----------------------------------------------

_B64_DIGITS = np.frombuffer(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", np.uint8
).copy()
_B64_VALUES = np.full(256, 255, np.uint8)
_B64_VALUES[_B64_DIGITS] = np.arange(64, dtype=np.uint8)
_B64_DIGITS.flags.writeable = False
_B64_VALUES.flags.writeable = False
_PAD = 61  # "="


@numba.njit(inline="always")
def _b64_decode(text, out):  # type: ignore[no-untyped-def]
    """Canonically padded base64 `text` (uint8) -> bytes at out[0 …]; returns the count, or
    -1 for anything else.

    Accepts exactly: whole quads of the 64 digits, the last quad ending in "=" or "==". What
    `binascii.a2b_base64(strict_mode=True)` also accepts beyond that ("=" after a whole quad,
    say) is left to it: callers fall back to binascii on -1, which decodes or names the
    error, so together they accept what binascii accepts and decode it identically (the
    padding bits of the last digit are ignored, as binascii ignores them).
    """
    n = len(text)
    if n % 4:
        return -1
    if n == 0:
        return 0
    pads = 0
    if text[n - 1] == _PAD:
        pads = 2 if text[n - 2] == _PAD else 1
    # Every quad but the last, with the validity of all of them checked once at the end: a
    # loop without an exit vectorizes (1,280 characters: 0.65 → 0.21 µs). On -1 `out` holds
    # garbage, which no caller reads.
    bad = 0
    for j in range(n // 4 - 1):
        q = 4 * j
        a = _B64_VALUES[text[q]]
        b = _B64_VALUES[text[q + 1]]
        c = _B64_VALUES[text[q + 2]]
        d = _B64_VALUES[text[q + 3]]
        bad |= a | b | c | d
        out[3 * j] = (a << 2) | (b >> 4)
        out[3 * j + 1] = ((b & 0x0F) << 4) | (c >> 2)
        out[3 * j + 2] = ((c & 0x03) << 6) | d
    o = 3 * (n // 4 - 1)
    q = n - 4
    a = _B64_VALUES[text[q]]
    b = _B64_VALUES[text[q + 1]]
    c = _B64_VALUES[text[q + 2]] if pads < 2 else 0
    d = _B64_VALUES[text[q + 3]] if pads < 1 else 0
    if (bad | a | b | c | d) > 63:
        return -1
    out[o] = (a << 2) | (b >> 4)
    if pads < 2:
        out[o + 1] = ((b & 0x0F) << 4) | (c >> 2)
    if pads < 1:
        out[o + 2] = ((c & 0x03) << 6) | d
    return o + 3 - pads


@numba.njit(inline="always")
def _b64_encode(data, n, out):  # type: ignore[no-untyped-def]
    """data[:n] (uint8) -> base64 with padding at out[0 …]; returns the count, 4 ⌈n / 3⌉."""
    o = 0
    whole = n - n % 3
    for i in range(0, whole, 3):
        v = (np.int64(data[i]) << 16) | (np.int64(data[i + 1]) << 8) | np.int64(data[i + 2])
        out[o] = _B64_DIGITS[v >> 18]
        out[o + 1] = _B64_DIGITS[(v >> 12) & 63]
        out[o + 2] = _B64_DIGITS[(v >> 6) & 63]
        out[o + 3] = _B64_DIGITS[v & 63]
        o += 4
    rest = n - whole
    if rest:
        v = np.int64(data[whole]) << 16
        if rest == 2:
            v |= np.int64(data[whole + 1]) << 8
        out[o] = _B64_DIGITS[v >> 18]
        out[o + 1] = _B64_DIGITS[(v >> 12) & 63]
        out[o + 2] = _B64_DIGITS[(v >> 6) & 63] if rest == 2 else _PAD
        out[o + 3] = _PAD
        o += 4
    return o


@numba.njit(inline="always")
def _upsample(raw, nbytes, ulaw, h, x, istate, out, w_up, dec):  # type: ignore[no-untyped-def]
    """μ-law (`ulaw`) or little-endian PCM16 bytes raw[:nbytes] -> 3 int16 samples per input
    sample.

    Writes out[0 : 3n] for the n whole input samples and returns 3n. h is the call's input
    history (HISTORY samples), x the thread's window (history, then a block); PCM16 input
    may end in half a sample, which waits in istate. w_up and dec are the taps and the
    μ-law table (constants of the compiled kernels that call this).
    """
    for i in range(HISTORY):
        x[i] = h[i]
    b = 0  # next byte of data
    half = -1  # the sample completed by data[0], if half of it came last time
    if not ulaw and istate[ODD_FLAG] and nbytes:
        half = istate[ODD_BYTE] | (np.int64(raw[0]) << 8)
        istate[ODD_FLAG] = 0
        b = 1
    n = nbytes if ulaw else (nbytes - b) // 2 + (half >= 0)
    w0, w1, w2 = w_up[0], w_up[1], w_up[2]
    start = 0
    while start < n:
        m = min(BLOCK, n - start)
        if ulaw:
            src = raw[start : start + m]
            for i in range(m):
                x[HISTORY + i] = dec[src[i]]
        else:
            i = 0
            if half >= 0:
                x[HISTORY] = (half ^ 0x8000) - 0x8000  # sign-extend 16 bits
                half = -1
                i = 1
            src = raw[b : b + 2 * (m - i)]
            dst = x[HISTORY + i : HISTORY + m]
            for j in range(m - i):
                value = np.int64(src[2 * j]) | (np.int64(src[2 * j + 1]) << 8)
                dst[j] = (value ^ 0x8000) - 0x8000
            b += 2 * (m - i)
        o = out[RATIO * start : RATIO * (start + m)]  # a view: indexing from 0 vectorizes
        for i in range(m):
            s0 = 0.0
            s1 = 0.0
            s2 = 0.0
            for j in range(TAPS_PER_PHASE):
                v = x[i + j]
                s0 += w0[j] * v
                s1 += w1[j] * v
                s2 += w2[j] * v
            o[RATIO * i] = _round_saturate(s0)
            o[RATIO * i + 1] = _round_saturate(s1)
            o[RATIO * i + 2] = _round_saturate(s2)
        for i in range(HISTORY):
            x[i] = x[m + i]
        start += m
    for i in range(HISTORY):
        h[i] = x[i]
    if b < nbytes and not ulaw:
        istate[ODD_FLAG] = 1
        istate[ODD_BYTE] = raw[nbytes - 1]
    return RATIO * n


# x[r, c] is sample 3c + r of the downsampler's window, de-interleaved so that every tap's
# loop reads contiguous memory: columns 0 … HISTORY − 1 are history, then new triplets;
# the first istate[PENDING] rows of the last column are a triplet still being filled.
# Row 3 is scratch for one block's sums. Between calls, what is kept (the history and the
# column being filled) is h[r, 0 … HISTORY], the call's; x is the thread's.


@numba.njit(inline="always")
def _downsample(raw, nbytes, h, x, istate, ulaw, out, offset, w_down):  # type: ignore[no-untyped-def]
    """Little-endian PCM16 bytes raw[:nbytes] -> one output per completed triplet; returns
    how many.

    Writes μ-law codes (`ulaw`) or little-endian PCM16 bytes at out[offset …]. Output m
    is the 69-tap filter over the inputs up to the last of its triplet.
    """
    for phase in range(RATIO):
        for j in range(TAPS_PER_PHASE):
            x[phase, j] = h[phase, j]
    b = 0
    half = -1
    if istate[ODD_FLAG] and nbytes:
        half = istate[ODD_BYTE] | (np.int64(raw[0]) << 8)
        istate[ODD_FLAG] = 0
        b = 1
    n = (nbytes - b) // 2 + (half >= 0)
    y = x[RATIO]
    pos = istate[PENDING]
    done = 0
    start = 0
    while start < n:
        m = min(RATIO * BLOCK - pos, n - start)
        r = pos
        c = HISTORY
        todo = m
        if half >= 0:
            x[r, c] = (half ^ 0x8000) - 0x8000
            half = -1
            todo -= 1
            r += 1
            if r == RATIO:
                r = 0
                c += 1
        # The rest from the bytes, one row at a time so each loop is a plain strided
        # copy: sample s of them lands in row (r + s) % 3, column c + (r + s) // 3.
        src = raw[b : b + 2 * todo]
        for phase in range(RATIO):
            first = (phase - r) % RATIO
            dst = x[phase, c + (r + first) // RATIO :]
            for j in range((todo - first + RATIO - 1) // RATIO):
                s = 2 * (first + RATIO * j)
                value = np.int64(src[s]) | (np.int64(src[s + 1]) << 8)
                dst[j] = (value ^ 0x8000) - 0x8000
        b += 2 * todo
        c += (r + todo) // RATIO
        r = (r + todo) % RATIO
        k = c - HISTORY  # triplets completed, one output each
        # One pass per phase row (all three in one loop are too big for LLVM to unroll
        # and vectorize): y = (s0 + s1) + s2, each s a 23-tap sum in tap order.
        for phase in range(RATIO):
            w = w_down[phase]
            xp = x[phase]
            for i in range(k):
                s = 0.0
                for q in range(TAPS_PER_PHASE):
                    s += w[q] * xp[i + q]
                if phase == 0:
                    y[i] = s
                else:
                    y[i] += s
        if ulaw:
            o = out[offset + done : offset + done + k]
            for i in range(k):
                o[i] = _ulaw_code(np.int64(_round_saturate(y[i])))
        else:
            o = out[offset + 2 * done : offset + 2 * (done + k)]
            for i in range(k):
                value = np.int64(_round_saturate(y[i]))
                o[2 * i] = value & 0xFF
                o[2 * i + 1] = (value >> 8) & 0xFF
        for phase in range(RATIO):  # keep the history and the column being filled
            for j in range(TAPS_PER_PHASE):
                x[phase, j] = x[phase, k + j]
        done += k
        pos = r
        start += m
    for phase in range(RATIO):
        for j in range(TAPS_PER_PHASE):
            h[phase, j] = x[phase, j]
    istate[PENDING] = pos
    if b < nbytes:
        istate[ODD_FLAG] = 1
        istate[ODD_BYTE] = raw[nbytes - 1]
    return done


class Kernels(NamedTuple):
    """The compiled kernels for one filter design (see `build_kernels`)."""

    #: (data: bytes, ulaw: bool, h: float64[UP_STATE_SHAPE], x: float64[UP_WINDOW_SHAPE],
    #: istate: int64[ISTATE_SIZE], out: int16[≥ 3 × samples]) -> samples written.
    upsample: Callable[..., int]
    #: (data: bytes, h: float64[DOWN_STATE_SHAPE], x: float64[DOWN_WINDOW_SHAPE],
    #: istate: int64[ISTATE_SIZE], ulaw: bool, out: uint8[…], offset: int) -> samples written.
    downsample: Callable[..., int]
    #: (text: bytes, h, x, istate, pcm: int16[≥ 3 × bytes], work: uint8[≥ 15 × bytes]) ->
    #: base64 characters written at work[0 …], or -1 if `text` is not canonical base64.
    upsample_b64: Callable[..., int]
    #: (text: bytes, h, x, istate, work: uint8[≥ ¾ len(text)], out: uint8[…], offset: int) ->
    #: μ-law codes written, or -1 if `text` is not canonical base64.
    downsample_b64: Callable[..., int]


def build_kernels(
    up_weights: NDArray[np.float64],
    down_weights: NDArray[np.float64],
    decode_table: NDArray[np.int16],
    encode_table: NDArray[np.uint8],
) -> Kernels:
    """Compile (or load from the cache) both kernels with these taps and μ-law tables.

    up_weights[p, j]: phase p's tap for the j-th oldest of the 23 inputs in its window (the
    3× gain of zero-stuffing included). down_weights[r, q]: the tap for sample 3(m + q) + r
    of output m's window, i.e. for x[r, m + q] below.
    """
    w_up = np.array(up_weights, dtype=np.float64)  # private, read-only copies: constants
    w_down = np.array(down_weights, dtype=np.float64)
    dec = np.array(decode_table, dtype=np.int16)
    enc = np.array(encode_table, dtype=np.uint8)
    if w_up.shape != (RATIO, TAPS_PER_PHASE) or w_down.shape != (RATIO, TAPS_PER_PHASE):
        raise ValueError(f"weights must be ({RATIO}, {TAPS_PER_PHASE})")
    if dec.shape != (256,) or enc.shape != (65536,):
        raise ValueError("μ-law tables must have 256 and 65536 entries")
    for array in (w_up, w_down, dec, enc):
        array.flags.writeable = False

    def upsample(data, ulaw, h, x, istate, out):  # type: ignore[no-untyped-def]
        raw = np.frombuffer(data, np.uint8)
        return _upsample(raw, len(data), ulaw, h, x, istate, out, w_up, dec)

    def downsample(data, h, x, istate, ulaw, out, offset):  # type: ignore[no-untyped-def]
        raw = np.frombuffer(data, np.uint8)
        return _downsample(raw, len(data), h, x, istate, ulaw, out, offset, w_down)

    def upsample_b64(text, h, x, istate, pcm, work):  # type: ignore[no-untyped-def]
        """Base64 μ-law `text` -> 24 kHz PCM16 as base64 at work[0 : returned], or -1 when
        `text` is not canonical base64 (see `_b64_decode`). `work` must hold 15 bytes per
        μ-law byte (text, PCM bytes, μ-law) and `pcm` 3 samples per μ-law byte."""
        raw = np.frombuffer(text, np.uint8)
        cap = len(raw) // 4 * 3
        ulaw = work[14 * cap :]
        n = _b64_decode(raw, ulaw)
        if n < 0:
            return -1
        count = _upsample(ulaw, n, True, h, x, istate, pcm, w_up, dec)
        wire = work[8 * cap : 14 * cap]  # little-endian PCM16, as the Realtime API takes it
        for i in range(count):
            value = np.int64(pcm[i])
            wire[2 * i] = value & 0xFF
            wire[2 * i + 1] = (value >> 8) & 0xFF
        return _b64_encode(wire, 2 * count, work)

    def downsample_b64(text, h, x, istate, work, out, offset):  # type: ignore[no-untyped-def]
        """Base64 PCM16 `text` -> μ-law codes at out[offset …]; returns how many, or -1 when
        `text` is not canonical base64. `work` holds the decoded bytes (¾ of the text)."""
        n = _b64_decode(np.frombuffer(text, np.uint8), work)
        if n < 0:
            return -1
        return _downsample(work, n, h, x, istate, True, out, offset, w_down)

    data = types.Bytes(types.uint8, 1, "C", readonly=True)
    istate = types.Array(types.int64, 1, "C")
    f64_1d = types.Array(types.float64, 1, "C")  # a state h or a window x, upsampling
    f64_2d = types.Array(types.float64, 2, "C")  # the same, downsampling
    u8 = types.Array(types.uint8, 1, "C")
    i16 = types.Array(types.int16, 1, "C")

    def compiled(kernel: Callable[..., int], *args: Any) -> Any:
        return compile_cached(kernel, [types.int64(*args)])

    return Kernels(
        upsample=compiled(upsample, data, types.boolean, f64_1d, f64_1d, istate, i16),
        downsample=compiled(
            downsample, data, f64_2d, f64_2d, istate, types.boolean, u8, types.int64
        ),
        upsample_b64=compiled(upsample_b64, data, f64_1d, f64_1d, istate, i16, u8),
        downsample_b64=compiled(downsample_b64, data, f64_2d, f64_2d, istate, u8, u8, types.int64),
    )
