"""Keeping the server's memory near its caches' bounds (glibc's malloc; a no-op elsewhere).

By default glibc gives each request thread its own malloc arena (up to 8 per core), and raises
its mmap threshold as large blocks are freed, so the hundreds of MB of temporaries of each
encoder run stay in the process, spread over arenas and slowly fragmenting: a busy server grows
far beyond its caches. `tune_malloc` caps the arenas at two at start-up, and `trim` hands the
free memory back to the system after each encoder run.
"""
import ctypes
import os
from typing import Optional

_libc: Optional[ctypes.CDLL] = None


def _glibc() -> Optional[ctypes.CDLL]:
    global _libc
    if _libc is None:
        try:
            libc = ctypes.CDLL("libc.so.6")
            libc.mallopt, libc.malloc_trim  # noqa: B018 - both must exist (glibc)
        except (OSError, AttributeError):
            return None
        _libc = libc
    return _libc


def tune_malloc(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas as MALLOC_ARENA_MAX=2 would, unless that variable is set.

    Call before the server starts its threads. Returns whether the cap was set.
    """
    libc = _glibc()
    if libc is None or "MALLOC_ARENA_MAX" in os.environ:
        return False
    return bool(libc.mallopt(-8, arenas))  # -8: M_ARENA_MAX


def trim() -> None:
    """Return free heap memory to the system (malloc_trim(0)); a few ms after an encoder run of seconds."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
