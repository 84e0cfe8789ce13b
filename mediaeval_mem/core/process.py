"""Process-wide settings. Importing the package changes nothing; entry points (`mem`, the benches)
call these at start-up."""

from __future__ import annotations

import ctypes
import signal


def one_malloc_arena() -> None:
    """Have glibc's malloc use one arena for all threads (M_ARENA_MAX = 1). Entry points (`mem`, the
    benches) call it at start-up, before torch starts its thread pool (threads created earlier keep
    arenas of their own); importing the package changes nothing.

    With an arena per decoding thread, freed video buffers linger in each arena and peak memory creeps
    up with the number of videos (measured, CLIP B/32 on 2 cores: 1,163 MB for 8 videos, 1,232 MB for
    32); with one arena it stays flat (1,147 / 1,151 MB). Few, large allocations: no lock contention
    to speak of. No effect off glibc.
    """
    try:
        ctypes.CDLL("libc.so.6").mallopt(-8, 1)  # -8: M_ARENA_MAX
    except (OSError, AttributeError):
        pass


def sigterm_as_interrupt():
    """SIGTERM (kill, a scheduler's stop) unwinds like Ctrl-C: what finished is saved, the run marked KILLED.

    Returns the previous handler, or None where signals cannot be set (not the main thread)."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, interrupt)
    except ValueError:
        return None
