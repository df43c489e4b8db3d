"""Flood control: identical violations are reported once per interval, with a count.

Two violations are identical when they share rule, api, target and code location. The first
one is reported in full; later ones within the interval only bump a counter; the first one
after the interval is reported again, carrying `suppressed_count` (how many were folded into
it). Keys live in a bounded LRU map, so a flood of *distinct* violations cannot grow memory;
a key pushed out while it still holds a count hands that count back as a summary.

This path runs for every violation, so it is a tuple, a dict lookup and an integer add.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from appshield.report import Violation

__all__ = ["Aggregator", "Summary", "violation_key"]

Key = tuple[object, ...]


def violation_key(violation: Violation) -> Key:
    site = violation.callsite
    decision = violation.decision
    # Two distributions denied at the same place are two violations, not repeats.
    package = getattr(decision, "package", None)
    key: Key = (
        decision.rule_id if package is None else (decision.rule_id, package),
        violation.api,
        violation.operation,
        site.file,
        site.line,
        site.function,
    )
    # A shadow candidate's violation is its own key: its rule ids are often the enforced
    # policy's own (a candidate is usually an edited copy).
    return (*key, True) if violation.shadow else key


@dataclass(slots=True)
class _Entry:
    last_emit_ns: int
    suppressed: int
    last: Violation
    # time.time_ns() of the latest repeat when `fold` counted it without a Violation (None
    # when `last` is the latest): a summary carries the time of the latest repeat.
    folded_at: int | None = None

    def latest(self) -> Violation:
        last, at = self.last, self.folded_at
        if at is None or at <= last.time_ns:
            return last
        return last._replace(time_ns=at)


@dataclass(frozen=True, slots=True)
class Summary:
    """Repeats that were folded and never reported: emitted at exit or on eviction."""

    violation: Violation
    suppressed_count: int


class Aggregator:
    def __init__(self, interval_s: float = 10.0, max_keys: int = 4096) -> None:
        self.interval_ns = int(interval_s * 1_000_000_000)
        self.max_keys = max_keys
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def admit(self, violation: Violation, now_ns: int) -> tuple[int, Summary | None] | None:
        """None: a repeat to fold. Otherwise (suppressed_count, evicted summary or None):
        report this violation, with the count of repeats folded since the last report."""
        key = violation_key(violation)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                if now_ns - entry.last_emit_ns < self.interval_ns:
                    entry.suppressed += 1
                    entry.last, entry.folded_at = violation, None
                    return None
                folded = entry.suppressed
                entry.last_emit_ns, entry.suppressed, entry.last = now_ns, 0, violation
                entry.folded_at = None
                return folded, None
            self._entries[key] = _Entry(now_ns, 0, violation)
            if len(self._entries) <= self.max_keys:
                return 0, None
            # The oldest key's summary is built before the key leaves the map: an exception
            # landing in that Python code (a signal handler's) then loses nothing, and from
            # the removal to the return only C code runs.
            oldest = next(iter(self._entries.values()))
            evicted = Summary(oldest.latest(), oldest.suppressed) if oldest.suppressed else None
            self._entries.popitem(last=False)
            return 0, evicted

    def fold(self, key: Key, now_ns: int, time_ns: int) -> bool:
        """`admit` for a repeat known only by its key (`violation_key`'s fields), before any
        Violation is built: True when it falls inside its key's interval and is now folded
        (time_ns: its wall-clock time, for the summary); False when it must be reported,
        through `admit`, which then decides again under the lock."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or now_ns - entry.last_emit_ns >= self.interval_ns:
                return False
            self._entries.move_to_end(key)
            entry.suppressed += 1
            entry.folded_at = time_ns
            return True

    def drain(self) -> list[Summary]:
        """Every pending count, reset: for the flush on the way out."""
        with self._lock:
            out = [
                Summary(e.latest(), e.suppressed) for e in self._entries.values() if e.suppressed
            ]
            for entry in self._entries.values():
                entry.suppressed = 0
            return out

    def reset_after_fork(self) -> None:
        # The child is a new process: the parent's keys and counts are not its own, and
        # the lock may have been held by a thread that does not exist in the child.
        self._lock = threading.Lock()
        self._entries = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)
