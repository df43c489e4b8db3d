"""The reporter the runtime calls for every violation: `report(violation)` / `shutdown()`.

Per violation: count it (always), then ask the aggregator whether it is a repeat to fold.
Only violations that are reported go on to build attributes and reach the sinks: the
`appshield` logger, the APPSHIELD_LOG line and OpenTelemetry. Each sink is fenced on its
own, so one that fails neither silences the others nor reaches the app.
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Callable
from typing import Any

from appshield._threadstate import appshield_io
from appshield.report import Violation
from appshield.telemetry.aggregate import Aggregator, Summary
from appshield.telemetry.formats import FORMATTERS
from appshield.telemetry.jsonlog import JsonLineSink
from appshield.telemetry.lifecycle import ExitHooks
from appshield.telemetry.logsink import drain as drain_log
from appshield.telemetry.logsink import warn
from appshield.telemetry.otel import OTelSink, Providers
from appshield.telemetry.record import AttributeValue, violation_attributes
from appshield.telemetry.redact import Redactor
from appshield.telemetry.settings import TelemetrySettings
from appshield.telemetry.stats import TelemetryStats

__all__ = ["TelemetryReporter"]

# Where a report stopped: (repeats folded into it, or None once it is out; the summary its
# admission evicted, or None), or _UNANSWERED before the aggregator answered.
_Step = tuple[int | None, Summary | None]
_UNANSWERED: _Step = (-1, None)


class TelemetryReporter:
    def __init__(self, settings: TelemetrySettings, *, providers: Providers | None = None) -> None:
        self.settings = settings
        self.redactor = Redactor(settings.redact)
        self.stats = TelemetryStats()
        self.aggregator = Aggregator(settings.interval_s, settings.max_keys)
        self.json = JsonLineSink(settings.log_path) if settings.log_path else None
        self._line = FORMATTERS[settings.log_format]  # APPSHIELD_LOG_FORMAT
        self.exit_hooks = ExitHooks(self.flush, settings.flush_timeout_s)
        self.otel = OTelSink(settings, self.stats, providers, self.exit_hooks.exit_deadline)
        # Reports an exception stopped half-way (a signal handler's, which can land between
        # any two calls): id(violation) -> (violation, the step it stopped at). The runtime
        # keeps such a violation queued and hands the same object back, which goes on from
        # that step instead of being counted and folded as a repeat of itself. Keyed per
        # violation, not one slot: another thread's report meanwhile must not erase it.
        self._unfinished: dict[int, tuple[Violation, _Step]] = {}
        # Summaries the exit flush took from the aggregator and has not emitted yet.
        self._summaries_due: list[Summary] = []
        _reset_in_forked_children(self)

    def report(self, violation: Violation) -> None:
        unfinished = self._unfinished
        stopped = unfinished.get(id(violation))
        if stopped is not None and stopped[0] is violation:
            step = stopped[1]
        else:
            decision = violation.decision
            self.stats.count_violation(
                violation.category,
                decision.action,
                decision.rule_id,
                decision.package,
                decision.package_version,
                violation.shadow,
            )
            # Set before `admit`: once admit has the key, asking again would fold this very
            # violation as a repeat of itself, and its first report would never be made.
            unfinished[id(violation)] = (violation, _UNANSWERED)
            admitted = self.aggregator.admit(violation, time.monotonic_ns())
            if admitted is None:
                del unfinished[id(violation)]
                return  # a repeat inside the interval: counted, folded, nothing else to do
            unfinished[id(violation)] = (violation, admitted)
            step = admitted
        if step is _UNANSWERED:
            # Stopped before admit answered: whether it took the key is unknown, so this is
            # reported in full. At worst a repeat is reported once more; none is lost.
            step = (0, None)
        suppressed, evicted = step
        if suppressed is not None:
            self._emit(violation, suppressed)
            # Out; what is left is the summary this key's admission pushed out of the map.
            unfinished[id(violation)] = (violation, (None, evicted))
        if evicted is not None:
            self._emit(evicted.violation, evicted.suppressed_count, summary=True)
        unfinished.pop(id(violation), None)
        # Cheap once settled; until then it retries (a SIGTERM handler can only be set
        # from the main thread, and OpenTelemetry output may appear later).
        self.exit_hooks.arm(with_signal=self.otel.has_targets)

    def fold(
        self,
        operation: Any,
        decision: Any,
        api: str,
        function: str | None,
        file: str | None,
        line: int | None,
        shadow: bool = False,
    ) -> bool:
        """The runtime's shortcut for a repeat, asked before it builds a `Violation`: True
        when this violation (its aggregation key: rule, api, operation and code location,
        and whether it is the shadow candidate's) is a repeat inside the interval, now
        counted and folded exactly as `report` would have; False when it must go through
        `report` (counted there)."""
        rule_id = decision.rule_id
        package = getattr(decision, "package", None)
        key: tuple[object, ...] = (
            rule_id if package is None else (rule_id, package),
            api,
            operation,
            file,
            line,
            function,
        )
        if shadow:  # as `violation_key` builds it
            key = (*key, True)
        if not self.aggregator.fold(key, time.monotonic_ns(), time.time_ns()):
            return False
        self.stats.count_violation(
            operation.category,
            decision.action,
            rule_id,
            package,
            getattr(decision, "package_version", None),
            shadow,
        )
        return True

    def _emit(self, violation: Violation, suppressed: int, summary: bool = False) -> None:
        attrs = violation_attributes(violation, self.redactor, suppressed)
        if summary:
            attrs["appshield.summary"] = True
        _fenced(self._warn, violation, attrs)
        if self.json is not None:
            record = self._line(violation, self.redactor, suppressed, summary)
            # Not fenced here: JsonLineSink.write never raises for its own reasons (it retries,
            # then gives up quietly), and an exception a signal handler raises on the way in
            # must reach `report`, which then emits this violation again.
            self.json.write(record)
        _fenced(self.otel.emit, violation, attrs, not summary)

    @staticmethod
    def _warn(violation: Violation, attrs: dict[str, AttributeValue]) -> None:
        from appshield.telemetry.otel import message

        # Never a plain logger.warning: this thread may be inside the app's logging (a
        # handler's emit that opened its file), see telemetry/logsink.py.
        warn(
            "%s%s",
            message(violation, attrs),
            f" (+{attrs['appshield.suppressed_count']} repeats)"
            if "appshield.suppressed_count" in attrs
            else "",
            extra={"appshield_violation": attrs},
        )

    def flush(self, deadline: float) -> None:
        """Report what the aggregator still holds, then push every pipeline out, until
        `deadline` (time.monotonic())."""
        with appshield_io():
            self.stats.export_deadline = deadline
            try:
                # Taken out of the aggregator first, emitted one by one, and dropped from
                # the list only once out: a flush that an exception stops (a signal at
                # exit) leaves the rest for the next flush rather than losing them. Dropped
                # by identity: two flushes at once (an exit flush past its timeout, still
                # running) may emit one twice, never skip one.
                due = self._summaries_due
                due.extend(self.aggregator.drain())
                while due:
                    summary = due[0]
                    self._emit(summary.violation, summary.suppressed_count, summary=True)
                    if due and due[0] is summary:
                        del due[0]
                # Warnings handed to the log thread (made inside the app's logging).
                drain_log(deadline)
                self.otel.flush(deadline)
            finally:
                self.stats.export_deadline = None

    def flush_now(self) -> None:
        """`flush` within the flush timeout (the runtime's drain at exit)."""
        self.flush(time.monotonic() + self.settings.flush_timeout_s)

    def shutdown(self) -> None:
        """The shield is being uninstalled: flush, stop the private pipeline (both bounded by
        the flush timeout, on a helper thread) and give back the exit hooks."""
        self.exit_hooks.disarm()
        final = ExitHooks(self._flush_and_stop, self.settings.flush_timeout_s)
        final.run(wait=True)
        if self.json is not None:
            self.json.close()

    def _flush_and_stop(self, deadline: float) -> None:
        self.flush(deadline)
        with appshield_io():
            self.otel.shutdown_private()

    def reset_after_fork(self) -> None:
        self.exit_hooks.reset_after_fork()
        self.stats.reset_after_fork()
        self.aggregator.reset_after_fork()
        self._summaries_due = []  # the parent's repeats, which the parent reports
        self.otel.reset_after_fork()
        if self.json is not None:
            self.json.reset_after_fork()


def _fenced(call: Callable[..., Any], *args: Any) -> None:
    try:
        call(*args)
    except Exception:  # one failing sink must not silence the others
        pass


_live: weakref.WeakSet[TelemetryReporter] = weakref.WeakSet()


def _reset_in_forked_children(reporter: TelemetryReporter) -> None:
    _live.add(reporter)


def _after_fork_in_child() -> None:
    for reporter in list(_live):
        reporter.reset_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
