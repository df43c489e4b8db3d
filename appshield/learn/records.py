"""Observations: what one learning run saw, and their JSON-lines form on disk.

Each recorded process writes `ops-<pid>.jsonl` into the learning folder. The first line is a
header with its pid and parent pid and its *roots* (the folders behind the policy variables
`{prefix}`, `{stdlib}`, `{stdlib_modules}`, `{site_packages}`, `{tmp}`, `{home}`, `{python}` as
that interpreter sees them); every other line is one distinct operation with the API that
performed it, the modules on the call stack, a count and, for a name `tempfile` made, its
random part. The same operation may appear on several lines (first sighting written at once,
later sightings flushed at exit); readers add the counts up.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from appshield.operations import FileOp, ImportOp, NetworkOp, Operation, ProcessOp

__all__ = [
    "Observation",
    "Roots",
    "aggregate",
    "observation_from_json",
    "observation_to_json",
    "read_records",
]

_OP_TYPES: Mapping[str, type] = {
    "process": ProcessOp,
    "file": FileOp,
    "network": NetworkOp,
    "import": ImportOp,
}


@dataclass(frozen=True)
class Roots:
    """The folders behind the policy variables, as one interpreter saw them (the same values
    `appshield.policy.variables` expands them to in that interpreter)."""

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
        """The folders as this interpreter sees them, asked so that the program being
        learned does not notice: `{tmp}` comes from `tempfile.gettempdir()`, which caches
        its answer in `tempfile.tempdir`, and the program's own first call (gunicorn's worker
        file, any `mkstemp`) would then skip the trial file tempfile writes in the temp
        folder. Under `appshield run` with a cached policy nothing asks first, so that trial
        file is the program's own write, and learning must see it."""
        from appshield.policy.variables import values

        loaded = sys.modules.get("tempfile")
        cached = getattr(loaded, "tempdir", None)
        found = values(os.getcwd())
        tempfile_now = sys.modules.get("tempfile")
        if tempfile_now is not None and getattr(tempfile_now, "tempdir", None) != cached:
            tempfile_now.tempdir = cached
        return cls(
            prefix=found["prefix"],
            stdlib=found["stdlib"],
            stdlib_modules=found["stdlib_modules"],
            site_packages=found["site_packages"],
            tmp=found["tmp"][0],
            home=found["home"][0],
            executable=os.path.realpath(sys.executable) if sys.executable else "",
            python=found["python"],
        )

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
    roots: Roots = Roots()
    pids: tuple[int, ...] = field(default=(), compare=False)
    volatile: tuple[str, ...] = field(default=(), compare=False)
    argvs: tuple[tuple[str, ...], ...] = field(default=(), compare=False)
    # The installed distributions answerable for it, innermost first, as (name, version)
    # (docs/packages.md): what `learn` writes grants from. ("?", "") for unattributed code.
    packages: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.operation, self.api, self.module, self.stack, self.roots, self.packages)


def _op_to_json(op: Operation) -> dict[str, Any]:
    data: dict[str, Any] = {"category": op.category}
    defaults = type(op)._field_defaults  # operations are named tuples
    for name in op._fields:
        value = getattr(op, name)
        if name not in defaults or value != defaults[name]:
            data[name] = list(value) if isinstance(value, tuple) else value
    return data


def _op_from_json(data: Mapping[str, Any]) -> Operation:
    kind = _OP_TYPES[data["category"]]
    names = set(kind._fields)
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names}
    return kind(**values)  # type: ignore[no-any-return]


def observation_to_json(obs: Observation) -> str:
    record = {
        "op": _op_to_json(obs.operation),
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
    line: str,
    roots: Roots = Roots(),
    pids: tuple[int, ...] = (),
    argv: tuple[str, ...] | None = None,
) -> Observation:
    data = json.loads(line)
    return Observation(
        _op_from_json(data["op"]),
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


def header_json(roots: Roots, argv: Iterable[str] = ()) -> str:
    return json.dumps(
        {
            "header": 1,
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "roots": roots.as_json(),
            "argv": list(argv),
        },
        separators=(",", ":"),
    )


def _read_file(path: Path) -> Iterator[Observation]:
    roots = Roots()
    pids: tuple[int, ...] = ()
    argv: tuple[str, ...] | None = None
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if "header" in data:
                roots = Roots.from_json(data.get("roots", {}))
                pids = tuple(int(data[k]) for k in ("pid", "ppid") if isinstance(data.get(k), int))
                found = data.get("argv")
                argv = tuple(str(a) for a in found) if isinstance(found, list) else None
                continue
            yield observation_from_json(line, roots, pids, argv)
        except (ValueError, KeyError, TypeError):
            # A process killed mid-write leaves a torn last line; the rest is still good.
            continue


def read_records(folder: str | os.PathLike[str]) -> list[Observation]:
    """Every observation in a learning folder, repeats added up."""
    found: list[Observation] = []
    for path in sorted(Path(folder).glob("ops-*.jsonl")):
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
