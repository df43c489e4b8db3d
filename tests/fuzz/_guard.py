"""Shared settings for the fuzz tests: example counts, and a hard time limit per call.

Hypothesis' `deadline` only reports slow examples after they finish; a call that never
returns would hang the suite. `time_limit` turns one into a failure with a traceback.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from hypothesis import HealthCheck, settings

__all__ = ["FAST", "FAST_COSTLY", "SLOW", "SLOW_COSTLY", "time_limit"]


class Hang(Exception):
    """A call under test ran past its time limit."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise `Hang` inside the block when it runs longer than `seconds` (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: FrameType | None) -> None:
        raise Hang(f"still running after {seconds}s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


_SAMPLE = os.environ.get("APPSHIELD_SLOW_SAMPLE", "") not in ("", "0")
_COMMON = {
    "deadline": 2000,  # ms; a slow machine (2 shared cores) must not flake
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    "database": None,  # nothing written into the tree
}
FAST = settings(max_examples=150, **_COMMON)  # the normal suite
FAST_COSTLY = settings(max_examples=40, **_COMMON)  # each example compiles a policy (~20 ms)
SLOW = settings(max_examples=500 if _SAMPLE else 5000, **_COMMON)  # @pytest.mark.slow
SLOW_COSTLY = settings(max_examples=200 if _SAMPLE else 1000, **_COMMON)
