"""Counters that live outside OpenTelemetry, so they work before (and without) the SDK.

`violations`: every violation, by (category, action, rule): what `appshield.violations`
reports. `dropped`: telemetry records that never left, by signal. `in_flight`: records
handed to a private batch processor and not yet taken by its exporter; the reporter drops
(and counts) instead of overfilling the processor's queue, which would log a warning from
the SDK on the app's thread for every record.
"""

from __future__ import annotations

import threading

__all__ = ["TelemetryStats"]


class TelemetryStats:
    def __init__(self, queue_limit: int = 2048) -> None:
        self.queue_limit = queue_limit
        # (category, action, rule), or with the distribution's (name, version) appended for
        # a denial the `packages` grants decided
        self.violations: dict[tuple[str, ...], int] = {}
        self.shadow_violations: dict[tuple[str, ...], int] = {}
        self.dropped: dict[str, int] = {}
        self._submitted: dict[str, int] = {}
        self._taken: dict[str, int] = {}
        self._lock = threading.Lock()
        self._warned = False
        # While a flush on the way out runs: exporters give up (and count) after this
        # time.monotonic() value instead of starting another request.
        self.export_deadline: float | None = None

    def count_violation(
        self,
        category: str,
        action: str,
        rule: str,
        package: str | None = None,
        package_version: str | None = None,
        shadow: bool = False,
    ) -> None:
        key: tuple[str, ...] = (category, action, rule)
        if package is not None:
            key = (*key, package, package_version or "")
        with self._lock:
            counts = self.shadow_violations if shadow else self.violations
            counts[key] = counts.get(key, 0) + 1

    def total_violations(self) -> int:
        """The enforced policy's violations (the shadow candidate's are counted apart)."""
        with self._lock:
            return sum(self.violations.values())

    def shadow_snapshot(self) -> dict[tuple[str, ...], int]:
        """The shadow candidate's violations, by (category, action, rule)."""
        with self._lock:
            return dict(self.shadow_violations)

    def admit(self, signal: str) -> bool:
        """Room in the private processor's queue for one more record of `signal`?"""
        with self._lock:
            submitted = self._submitted.get(signal, 0)
            if submitted - self._taken.get(signal, 0) >= self.queue_limit:
                room = False
            else:
                self._submitted[signal] = submitted + 1
                return True
        if not room:
            self.drop(signal, 1)
        return False

    def taken(self, signal: str, count: int) -> None:
        with self._lock:
            self._taken[signal] = self._taken.get(signal, 0) + count

    def drop(self, signal: str, count: int) -> None:
        with self._lock:
            self.dropped[signal] = self.dropped.get(signal, 0) + count
            first = not self._warned
            self._warned = True
        if first:
            from appshield.telemetry.logsink import warn

            warn(
                "appshield: telemetry is being dropped (exporter failing, slow or queue full);"
                " violations are still enforced and counted, see appshield.telemetry.dropped"
            )

    def snapshot(self) -> tuple[dict[tuple[str, ...], int], dict[str, int]]:
        with self._lock:
            return dict(self.violations), dict(self.dropped)

    def reset_after_fork(self) -> None:
        self._lock = threading.Lock()
        self.violations = {}
        self.shadow_violations = {}
        self.dropped = {}
        self._submitted = {}
        self._taken = {}
        self._warned = False
