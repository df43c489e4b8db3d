"""Replaying recordings: every recorded decision decided again against another policy.

    loaded = load_recordings(["run.jsonl"])
    result = replay(loaded, "new.yaml")
    result.newly_denied   # groups (rule, call site) of operations NEW denies, the run did not

The engine is pure: a recorded operation (its fields after normalisation, a file's resolved
path included) is decided against NEW exactly as a hook would have asked, with the modules
recorded on its stack for scoped rules. What differs from the live process:
- `scope` is judged on the module names the frames had (the live shield trusts only code
  the import system compiled): a recording cannot tell a forged `__name__` apart;
- the policy variables are expanded in this process, in the folder each recorded process
  ran in (`{cwd}`), with this machine's `{tmp}`, `{home}` and interpreter folders;
- decisions a process made after its limit of distinct entries are only counted (an
  overflow): they cannot be replayed, and the result says how many there were.

"Denied" means the action `deny`, whatever the mode that would enforce it: the question is
what NEW would block once enforced. A recorded denial that NEW still denies is not new.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from appshield.decision import Decision
from appshield.policy import Policy
from appshield.record.format import Entry, Site, read_lines

__all__ = [
    "Change",
    "Group",
    "Loaded",
    "RecordingError",
    "ReplayResult",
    "load_recordings",
    "replay",
]


class RecordingError(ValueError):
    """A recording that cannot be read (missing, or holding no recorded line at all)."""


@dataclass
class Loaded:
    """Recordings read and folded: one entry per distinct decision (counts added up, pids
    dropped), each with the folder its process ran in."""

    entries: list[tuple[Entry, str | None]] = field(default_factory=list)
    headers: dict[int, Mapping[str, Any]] = field(default_factory=dict)
    overflow: dict[str, int] = field(default_factory=dict)
    torn: int = 0
    files: int = 0

    @property
    def operations(self) -> int:
        return sum(entry.times for entry, _ in self.entries)


def load_recordings(paths: Sequence[str]) -> Loaded:
    """Read and fold recordings; RecordingError for a file that is missing, unreadable or
    holds no recording line."""
    loaded = Loaded()
    folded: dict[tuple[Any, ...], tuple[Entry, str | None]] = {}
    overflow_by_pid: dict[tuple[str, int | None], dict[str, int]] = {}
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as handle:
                text = handle.read()
        except OSError as exc:
            raise RecordingError(f"{path}: cannot read: {exc.strerror or exc}") from exc
        torn = [0]
        cwd_of: dict[int | None, str | None] = {}
        found = 0
        for line in read_lines(text, torn):
            found += 1
            if line.header is not None:
                pid = line.header.get("pid")
                cwd = line.header.get("cwd")
                cwd_of[pid if isinstance(pid, int) else None] = (
                    cwd if isinstance(cwd, str) else None
                )
                if isinstance(pid, int):
                    loaded.headers[pid] = line.header
            elif line.overflow is not None:
                # Each overflow line holds a process's running totals: the last one counts.
                pid = line.raw.get("pid")
                overflow_by_pid[(path, pid if isinstance(pid, int) else None)] = dict(line.overflow)
            elif line.entry is not None:
                entry = line.entry
                cwd = cwd_of.get(entry.pid)
                key = (*entry.key, cwd)
                held = folded.get(key)
                if held is None:
                    folded[key] = (entry._replace(pid=None), cwd)
                else:
                    folded[key] = (held[0]._replace(times=held[0].times + entry.times), cwd)
        if found == 0:
            raise RecordingError(f"{path}: not an appshield recording (no line could be read)")
        loaded.torn += torn[0]
        loaded.files += 1
    loaded.entries = list(folded.values())
    for counts in overflow_by_pid.values():
        for name, count in counts.items():
            loaded.overflow[name] = loaded.overflow.get(name, 0) + count
    return loaded


@dataclass(frozen=True)
class Change:
    """One distinct recorded decision that NEW decides otherwise."""

    entry: Entry
    before: Decision | None  # None: a learning record (everything was allowed)
    after: Decision


@dataclass
class Group:
    """Changes with the same deciding rule at the same call site."""

    rule: str
    site: Site
    changes: list[Change] = field(default_factory=list)

    @property
    def operations(self) -> int:
        return sum(change.entry.times for change in self.changes)


@dataclass
class ReplayResult:
    newly_denied: list[Group]
    newly_allowed: list[Group]
    decisions: int  # distinct recorded decisions decided again
    operations: int  # the operations they stand for (their counts added up)
    seconds: float  # spent deciding
    overflow: dict[str, int]

    @property
    def per_second(self) -> float:
        return self.decisions / self.seconds if self.seconds > 0 else float("inf")

    @property
    def operations_per_second(self) -> float:
        return self.operations / self.seconds if self.seconds > 0 else float("inf")


def _policy_in(path: str, cwd: str | None) -> Policy:
    """NEW as the recorded process would have loaded it: `{cwd}` is the folder it ran in
    (when that folder exists here). Loaded without the policy cache, which replaying must
    neither trust nor write."""
    from appshield.policy.loader import load_file_inputs

    here = os.getcwd()
    moved = cwd is not None and cwd != here and os.path.isdir(cwd)
    if moved:
        os.chdir(cwd)  # type: ignore[arg-type]
    try:
        document, _ = load_file_inputs(os.path.abspath(os.path.join(here, path)))
    finally:
        if moved:
            os.chdir(here)
    return Policy(document)


def replay(loaded: Loaded, policy_path: str) -> ReplayResult:
    """Decide every recorded decision against the policy file at `policy_path` (PolicyError
    when it is invalid, OSError when it cannot be read)."""
    policies: dict[str | None, Any] = {}
    for _, cwd in loaded.entries:
        if cwd not in policies:
            policies[cwd] = _policy_in(policy_path, cwd).compiled
    denied: dict[tuple[str, Site], Group] = {}
    allowed: dict[tuple[str, Site], Group] = {}
    started = time.perf_counter()
    after_all = [
        policies[cwd].decide(entry.operation, entry.stack) for entry, cwd in loaded.entries
    ]
    seconds = time.perf_counter() - started
    for (entry, _), after in zip(loaded.entries, after_all, strict=True):
        before = entry.decision
        was_denied = before is not None and before.action == "deny"
        if (after.action == "deny") == was_denied:
            continue
        if after.action == "deny":
            rule, into = after.rule_id, denied
        else:
            rule, into = before.rule_id if before is not None else after.rule_id, allowed
        group = into.get((rule, entry.site))
        if group is None:
            group = into[(rule, entry.site)] = Group(rule, entry.site)
        group.changes.append(Change(entry, before, after))
    return ReplayResult(
        _ordered(denied.values()),
        _ordered(allowed.values()),
        len(loaded.entries),
        loaded.operations,
        seconds,
        dict(loaded.overflow),
    )


def _ordered(groups: Iterable[Group]) -> list[Group]:
    return sorted(groups, key=lambda g: (g.rule, str(g.site)))
