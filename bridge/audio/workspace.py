"""The kernels' working buffers: one set per thread, shared by every call on it.

A call's own audio state is small: the filter histories (22 and 3 × 23 float64), a few
integers and the framer's remainder. What a kernel call writes besides (the window of inputs
as float64, the 24 kHz samples, the decoded and the encoded bytes) is dead once the call has
returned and its result has been copied out. With a set per call, each call wrote about 12 KB
of its own buffers every 20 ms: at a few hundred calls more than a core's L2 cache, so every
tick of every call started with cache misses. One set per thread stays in cache.

Per thread, not per process: a kernel holds the GIL while it runs, but its result is copied
out after it returns, and another thread's kernel must not write the same buffers in between.
The buffers grow (never shrink) to the largest message seen on the thread, which the sockets'
size caps bound: a 64 KiB Twilio message needs 1 MB, a 4 MiB model delta 3 MB.
"""

from __future__ import annotations

import threading

import numpy as np

from bridge.audio._kernels import DOWN_WINDOW_SHAPE, UP_WINDOW_SHAPE
from bridge.audio.framer import FRAME_BYTES

__all__ = ["PER_THREAD", "Workspace", "workspace"]

#: What the buffers are first sized for: a Twilio frame of 160 μ-law bytes (with room for
#: 2 more) in, 20 ms of 24 kHz PCM16 as base64 (1280 characters) out.
INBOUND_BYTES = FRAME_BYTES + 2
OUTBOUND_CHARS = 4 * (6 * FRAME_BYTES) // 3


class Workspace:
    """One thread's buffers; see the module's docstring. Only `bridge.audio` uses them."""

    __slots__ = (
        "down_window",
        "inbound_chars",
        "outbound_chars",
        "pcm24k",
        "pcm24k_bytes",
        "pcm_work",
        "up_window",
        "work",
        "work_view",
    )

    def __init__(self) -> None:
        self.up_window = np.zeros(UP_WINDOW_SHAPE, dtype=np.float64)
        self.down_window = np.zeros(DOWN_WINDOW_SHAPE, dtype=np.float64)
        self.grow_inbound(INBOUND_BYTES)
        self.grow_outbound(OUTBOUND_CHARS)

    def grow_inbound(self, n_in: int) -> None:
        """Room for `n_in` μ-law bytes in: their 24 kHz samples (`pcm24k`) and the upsampling
        kernel's work buffer (text, PCM bytes and μ-law: `_kernels.build_kernels`)."""
        self.inbound_chars = n_in // 3 * 4
        self.pcm24k = np.empty(3 * n_in, dtype=np.int16)
        self.pcm24k_bytes = memoryview(self.pcm24k).cast("B")
        self.work = np.empty(15 * n_in, dtype=np.uint8)
        self.work_view = memoryview(self.work)

    def grow_outbound(self, chars: int) -> None:
        """Room for a delta of `chars` base64 characters: its decoded bytes (`pcm_work`)."""
        self.outbound_chars = chars
        self.pcm_work = np.empty(chars // 4 * 3, dtype=np.uint8)


class _PerThread(threading.local):
    def __init__(self) -> None:
        self.workspace = Workspace()


#: `PER_THREAD.workspace` is the calling thread's `Workspace` (made on first use).
PER_THREAD = _PerThread()


def workspace() -> Workspace:
    """The calling thread's buffers."""
    return PER_THREAD.workspace
