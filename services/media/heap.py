"""Keep the C allocator from handing a stream's buffers back to the kernel between chunks.

Every byte of a download passes through a few buffers of a few hundred KB (uvloop's read,
the HTTP parser's body chunk, the chunk joined for the client), a few MB in flight at most.
glibc's malloc serves a block above its mmap threshold with a fresh mapping, and gives the
top of its heap back once more than its trim threshold is free; both thresholds follow the
largest block freed so far, so they stay just around the stream's own buffer sizes. The
process then keeps unmapping those pages and faulting them in again, zeroed, on the next
chunk or the next download: 10 to 150 page faults per MB streamed, measured as a fifth of
the process's CPU per MB (more for small files, whose downloads start cold).

Fixed thresholds a little above the in-flight set keep those pages in the heap: the peak
resident memory is the same (it is what a stream holds), it only no longer falls back
between downloads. Set only where the C library is glibc and the operator has not tuned
malloc already (``GLIBC_TUNABLES``, ``MALLOC_*_``).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping

import structlog

log = structlog.get_logger(__name__)

MB = 1024 * 1024
MMAP_THRESHOLD = 4 * MB
"""Blocks up to this size come from the heap (a stream's buffers are well under it)."""
TRIM_THRESHOLD = 16 * MB
"""Free memory at the heap's top kept for the next chunks (a few concurrent streams' worth)."""

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_OPERATOR_TUNING = ("GLIBC_TUNABLES", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")


def keep_stream_buffers(environ: Mapping[str, str] = os.environ) -> bool:
    """Fix glibc's mmap and trim thresholds for this process; True if they were set."""
    if not is_glibc():
        return False
    if any(name in environ for name in _OPERATOR_TUNING):
        log.info("media.heap_left_to_operator")
        return False
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    if not done:
        log.warning("media.heap_tuning_refused")
    return done


def is_glibc() -> bool:
    try:
        version = os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError):  # not a GNU C library (musl, macOS, Windows)
        return False
    return version is not None and version.startswith("glibc")
