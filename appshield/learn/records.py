"""Observations: what one learning run saw, and their JSON-lines form on disk.

Each recorded process writes `ops-<pid>.jsonl` into the learning folder. The first line is a
header with its pid and parent pid and its *roots* (the folders behind the policy variables
`{prefix}`, `{stdlib}`, `{stdlib_modules}`, `{site_packages}`, `{tmp}`, `{home}`, `{python}` as
that interpreter sees them); every other line is one distinct operation with the API that
performed it, the modules on the call stack, a count and, for a name `tempfile` made, its
random part. The same operation may appear on several lines (first sighting written at once,
later sightings flushed at exit); readers add the counts up.

The lines are those of a recording (`appshield.record.format`): a file that
`appshield run --record` wrote is read the same way (`read_records(FILE)`,
`appshield learn --from FILE`), each line matched with its process's header by pid.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from appshield.operations import Operation
from appshield.record.format import (
    current_roots,
    header_json,
    op_from_json,
    op_to_json,
    read_lines,
)

__all__ = [
    "Observation",
    "Roots",
    "aggregate",
    "header_json",
    "observation_from_json",
    "observation_to_json",
    "read_records",
]


@dataclass(frozen=True)
class Roots:
    """The folders behind the policy variables, as one interpreter saw them (the same values
    `appshield.policy.variables` expands them to in that interpreter): a header's `roots`."""

    prefix: tuple[str, ...] = ()
    stdlib: tuple[str, ...] = ()
    site_packages: tuple[str, ...] = ()
    stdlib_modules: tuple[str, ...] = ()  # empty in recordings made before it existed
    tmp: str = ""
    home: str = ""
    executable: str = ""
    python: tuple[str, ...] = ()

    @classmethod
    def current(cls) -> Roots:
        """The folders as this interpreter sees them (`appshield.record.format.current_roots`,
        which explains how tempfile is kept from noticing)."""
        return cls.from_json(current_roots())

    def as_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Roots:
        kinds = {f.name: f.default for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key in kinds:
                multi = isinstance(kinds[key], tuple)
                if multi:
                    values[key] = tuple(value) if isinstance(value, list) else (str(value),)
                else:
                    values[key] = str(value)
        return cls(**values)


# An observation whose interpreter's folders are not known (Roots is frozen: shared safely).
NO_ROOTS = Roots()


@dataclass(frozen=True)
class Observation:
    """One distinct operation seen while learning.

    module: the code to blame (the innermost module outside appshield and the standard
        library), for the comment on the rule; stack: every module on the call stack,
        innermost first (so `--merge` can ask a scoped policy the same question).
    pids: the process id of the process that saw it and of its parent (from its file's
        header); volatile: parts of the target known to be random (the random part of a
        name `tempfile` made); argvs: the `sys.argv` of the process(es) that saw it (from
        the header: a port given there is configuration). None is part of the identity
        (`key`): they are evidence for the generaliser, and folding repeats joins them.
    """

    operation: Operation
    api: str = ""
    module: str | None = None
    stack: tuple[str, ...] = ()
    count: int = 1
    roots: Roots = NO_ROOTS
    pids: tuple[int, ...] = field(default=(), compare=False)
    volatile: tuple[str, ...] = field(default=(), compare=False)
    argvs: tuple[tuple[str, ...], ...] = field(default=(), compare=False)
    # The installed distributions answerable for it, innermost first, as (name, version)
    # (docs/packages.md): what `learn` writes grants from. ("?", "") for unattributed code.
    packages: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.operation, self.api, self.module, self.stack, self.roots, self.packages)


def observation_to_json(obs: Observation) -> str:
    record = {
        "op": op_to_json(obs.operation),
        "api": obs.api,
        "module": obs.module,
        "stack": list(obs.stack),
        "count": obs.count,
    }
    if obs.volatile:
        record["volatile"] = list(obs.volatile)
    if obs.packages:
        record["packages"] = [list(p) for p in obs.packages]
    return json.dumps(record, separators=(",", ":"))


def observation_from_json(
    line: str | Mapping[str, Any],
    roots: Roots = NO_ROOTS,
    pids: tuple[int, ...] = (),
    argv: tuple[str, ...] | None = None,
) -> Observation:
    data = json.loads(line) if isinstance(line, str) else line
    return Observation(
        op_from_json(data["op"]),
        str(data.get("api", "")),
        data.get("module"),
        tuple(data.get("stack", ())),
        int(data.get("count", 1)),
        roots,
        pids,
        tuple(str(v) for v in data.get("volatile", ())),
        () if argv is None else (argv,),
        tuple((str(p[0]), str(p[1])) for p in data.get("packages", ())),
    )


def _read_file(path: Path) -> Iterator[Observation]:
    """The observations in one file: a learning folder's `ops-<pid>.jsonl`, or a recording
    (`appshield run --record`) where several processes' lines interleave, each naming its
    process's header by pid."""
    about: dict[int | None, tuple[Roots, tuple[int, ...], tuple[str, ...] | None]] = {}
    text = path.read_text(encoding="utf-8", errors="replace")
    for line in read_lines(text):
        if line.header is not None:
            data = line.header
            roots = Roots.from_json(data.get("roots", {}))
            pids = tuple(int(data[k]) for k in ("pid", "ppid") if isinstance(data.get(k), int))
            found = data.get("argv")
            argv = tuple(str(a) for a in found) if isinstance(found, list) else None
            about[pids[0] if pids else None] = (roots, pids, argv)
        elif line.entry is not None:
            roots, pids, argv = about.get(line.entry.pid, (Roots(), (), None))
            try:
                yield observation_from_json(line.raw, roots, pids, argv)
            except (ValueError, KeyError, TypeError):
                continue


def read_records(source: str | os.PathLike[str]) -> list[Observation]:
    """Every observation in a learning folder (its `ops-*.jsonl`) or in a recording file,
    repeats added up."""
    found: list[Observation] = []
    given = Path(source)
    paths = [given] if given.is_file() else sorted(given.glob("ops-*.jsonl"))
    for path in paths:
        found.extend(_read_file(path))
    return aggregate(found)


def aggregate(observations: Iterable[Observation]) -> list[Observation]:
    """Fold repeats of the same observation into one, adding their counts; keep first order."""
    totals: dict[tuple[Any, ...], Observation] = {}
    for obs in observations:
        seen = totals.get(obs.key)
        if seen is None:
            totals[obs.key] = obs
            continue
        totals[obs.key] = replace(
            seen,
            count=seen.count + obs.count,
            pids=_joined(seen.pids, obs.pids),
            volatile=_joined(seen.volatile, obs.volatile),
            argvs=_joined(seen.argvs, obs.argvs),
        )
    return list(totals.values())


def _joined(first: tuple[Any, ...], second: tuple[Any, ...]) -> tuple[Any, ...]:
    return first + tuple(v for v in second if v not in first) if second else first
