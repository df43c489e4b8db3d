"""Importing the OpenTelemetry SDK where no thread can be started.

Python 3.12.0-3.12.2 refuse new threads as soon as the main thread has returned (3.12.3
moved that to after the non-daemon threads are joined). A process that exits right after its
first violation is then still importing the SDK on appshield's loader thread, and importing
`opentelemetry.sdk._logs` calls `Resource.create()` at class-definition time, which runs the
resource detectors on a thread pool: the import fails with "can't create new thread at
interpreter shutdown", and the violation's span, log record and count were lost.

`detectors_inline()` is used only for that retry, only when the first import failed with that
error: for its duration the SDK's `get_aggregated_resources` runs the detectors one after the
other on the importing thread (the built-in ones read the environment and make a UUID; a
detector that raises is skipped as the SDK skips it, unless it asks to raise). It puts the
SDK's function back afterwards, unless something else replaced it meanwhile.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

__all__ = ["detectors_inline", "refused_at_exit"]


def refused_at_exit(exc: BaseException) -> bool:
    """ "can't create new thread at interpreter shutdown"; or, once threading has shut down,
    "can't register atexit after shutdown" (importing concurrent.futures.thread)."""
    return isinstance(exc, RuntimeError) and ("thread" in str(exc) or "shutdown" in str(exc))


@contextmanager
def detectors_inline() -> Iterator[None]:
    resources: Any = importlib.import_module("opentelemetry.sdk.resources")
    original = getattr(resources, "get_aggregated_resources", None)
    if original is None:  # another SDK version: nothing known to replace
        yield
        return

    def aggregated_inline(
        detectors: Sequence[Any], initial_resource: Any = None, timeout: int = 5
    ) -> Any:
        merged = initial_resource or resources.Resource({})
        for detector in detectors:
            try:
                detected = detector.detect()
            except Exception:
                if getattr(detector, "raise_on_error", False):
                    raise
                continue
            merged = merged.merge(detected)
        return merged

    resources.get_aggregated_resources = aggregated_inline
    try:
        yield
    finally:
        if resources.get_aggregated_resources is aggregated_inline:
            resources.get_aggregated_resources = original
