"""The recording's lines: one JSON object per line, shared by `appshield run --record` and
`appshield learn` (whose `ops-<pid>.jsonl` files are recordings too).

Three kinds of line, told apart by their keys:

    {"header": 1, "pid": 41, "ppid": 40, "argv": [...], "cwd": "/srv", "roots": {...},
     "policy": "/srv/appshield.yaml", "policy_name": "svc", "mode": "enforce", "limit": 10000}
    {"op": {"category": "file", "path": "/srv/notes.txt", "access": "read", ...},
     "api": "open", "module": "svc.views", "stack": ["svc.views", "flask.app", ...],
     "site": {"function": "index", "file": "/srv/svc/views.py", "line": 12},
     "action": "allow", "rule": "default:file", "blocked": false, "packages": [],
     "count": 3, "pid": 41}
    {"overflow": {"file allow": 1200, "import deny": 3}, "pid": 41}

- A *header* starts each process's lines (written before its first entry): its pid and
  parent, its command line and folder, the folders behind the policy variables (`roots`)
  and the policy it enforced.
- An *entry* is one distinct decision: the operation as the engine saw it (its fields after
  normalisation; a file's `resolved` path is filled in when the hook had no need of it), the
  API, the call site and the modules on the stack, the verdict (`action`, `rule`, `blocked`)
  and `packages`, the distributions responsible (reserved: empty until per-package grants
  exist). `count` is how many times it happened; the same entry can appear on several lines
  (the first sighting at once, repeats flushed later) and readers add the counts up.
  `pid` names the header it belongs to; a line without one belongs to the header above it
  (learn's per-process files). Learning records have no verdict keys.
- An *overflow* line counts, per category and action, the decisions a process made after it
  had recorded its limit of distinct entries (see `appshield.record.writer`).

Readers skip a line they cannot parse (a process killed mid-write leaves a torn last line)
and count it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple

from appshield.decision import Decision
from appshield.operations import FileOp, ImportOp, NetworkOp, Operation, ProcessOp

__all__ = [
    "Entry",
    "Site",
    "current_roots",
    "entry_json",
    "header_json",
    "op_from_json",
    "op_to_json",
    "read_lines",
]

_OP_TYPES: Mapping[str, type] = {
    "process": ProcessOp,
    "file": FileOp,
    "network": NetworkOp,
    "import": ImportOp,
}


def current_roots() -> dict[str, Any]:
    """The folders behind the policy variables as this interpreter sees them (the header's
    `roots`; `appshield.learn.records.Roots` reads them), asked so that the program recorded
    does not notice: `{tmp}` comes from `tempfile.gettempdir()`, which caches its answer in
    `tempfile.tempdir`, and the program's own first call (gunicorn's worker file, any
    `mkstemp`) would then skip the trial file tempfile writes in the temp folder. Under
    `appshield run` with a cached policy nothing asks first, so that trial file is the
    program's own write, and learning must see it. Only looked at: what children inherit
    stays what the policy was built with."""
    from appshield.policy.variables import values

    loaded = sys.modules.get("tempfile")
    cached = getattr(loaded, "tempdir", None)
    found = values(os.getcwd(), built_with=False)
    tempfile_now = sys.modules.get("tempfile")
    if tempfile_now is not None and getattr(tempfile_now, "tempdir", None) != cached:
        setattr(tempfile_now, "tempdir", cached)  # noqa: B010 (a module's attribute)
    return {
        "prefix": list(found["prefix"]),
        "stdlib": list(found["stdlib"]),
        "site_packages": list(found["site_packages"]),
        "stdlib_modules": list(found["stdlib_modules"]),
        "tmp": found["tmp"][0],
        "home": found["home"][0],
        "executable": os.path.realpath(sys.executable) if sys.executable else "",
        "python": list(found["python"]),
    }


class Site(NamedTuple):
    """The code to blame for an operation (the first frame outside appshield and the
    standard library)."""

    function: str | None = None
    file: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        if self.file is None:
            return "<unknown>"
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where} ({self.function})" if self.function else where


class Entry(NamedTuple):
    """One distinct recorded decision (see the module docstring for its line)."""

    operation: Operation
    api: str
    module: str | None
    stack: tuple[str, ...]
    site: Site
    decision: Decision | None  # None in learning records
    packages: tuple[str, ...]
    times: int  # how many times it happened (`count` in the line)
    pid: int | None

    @property
    def key(self) -> tuple[Any, ...]:
        """What makes two lines the same decision (counts and pids aside)."""
        return (self.operation, self.api, self.stack, self.site, self.decision, self.packages)


def op_to_json(op: Operation) -> dict[str, Any]:
    data: dict[str, Any] = {"category": op.category}
    defaults = type(op)._field_defaults  # operations are named tuples
    for name in op._fields:
        value = getattr(op, name)
        if name not in defaults or value != defaults[name]:
            data[name] = list(value) if isinstance(value, tuple) else value
    return data


def op_from_json(data: Mapping[str, Any]) -> Operation:
    kind = _OP_TYPES[data["category"]]
    names = set(getattr(kind, "_fields", ()))
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names}
    return kind(**values)  # type: ignore[no-any-return]


def header_json(roots: Any, argv: Iterable[str] = (), **extra: Any) -> str:
    """A header line; `roots`: `current_roots()`'s mapping, or an object with `as_json()`
    (learn's `Roots`)."""
    as_json = getattr(roots, "as_json", None)
    record: dict[str, Any] = {
        "header": 1,
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "roots": as_json() if as_json is not None else dict(roots),
        "argv": list(argv),
    }
    record.update(extra)
    return json.dumps(record, separators=(",", ":"))


def entry_json(entry: Entry) -> str:
    record: dict[str, Any] = {
        "op": op_to_json(entry.operation),
        "api": entry.api,
        "module": entry.module,
        "stack": list(entry.stack),
    }
    if entry.site != Site():
        record["site"] = entry.site._asdict()
    decision = entry.decision
    if decision is not None:
        record["action"] = decision.action
        record["rule"] = decision.rule_id
        record["blocked"] = decision.blocked
        record["mode"] = decision.mode
        record["packages"] = list(entry.packages)
    record["count"] = entry.times
    if entry.pid is not None:
        record["pid"] = entry.pid
    return json.dumps(record, separators=(",", ":"))


def entry_from_json(data: Mapping[str, Any]) -> Entry:
    """An entry from a parsed entry line (KeyError, TypeError or ValueError if malformed)."""
    site = data.get("site") or {}
    line = site.get("line")
    decision = None
    if "action" in data:
        action = str(data["action"])
        if action not in ("allow", "deny", "alert"):
            raise ValueError(f"unknown action {action!r}")
        mode = str(data.get("mode", "enforce"))
        decision = Decision(action, str(data["rule"]), bool(data["blocked"]), mode)  # type: ignore[arg-type]
    pid = data.get("pid")
    return Entry(
        op_from_json(data["op"]),
        str(data.get("api", "")),
        data.get("module"),
        tuple(str(m) for m in data.get("stack", ())),
        Site(site.get("function"), site.get("file"), int(line) if line is not None else None),
        decision,
        tuple(str(p) for p in data.get("packages", ())),
        int(data.get("count", 1)),
        int(pid) if pid is not None else None,
    )


class Line(NamedTuple):
    """One parsed line: exactly one of `header`, `entry` and `overflow` is set; `raw` is the
    parsed object (learn reads its own keys from it)."""

    header: Mapping[str, Any] | None
    entry: Entry | None
    overflow: Mapping[str, int] | None
    raw: Mapping[str, Any]


def read_lines(text: str, torn: list[int] | None = None) -> Iterator[Line]:
    """The lines of a recording; each that cannot be parsed is skipped (and counted into
    `torn[0]` when given). An entry line without a `pid` gets the pid of the last header."""
    last_pid: int | None = None
    for raw_line in text.splitlines():
        if not raw_line.strip():
            continue
        try:
            data = json.loads(raw_line)
            if not isinstance(data, dict):
                raise ValueError("not an object")
            if "header" in data:
                found = data.get("pid")
                last_pid = int(found) if isinstance(found, int) else None
                yield Line(data, None, None, data)
            elif "overflow" in data:
                counts = {str(k): int(v) for k, v in dict(data["overflow"]).items()}
                yield Line(None, None, counts, data)
            else:
                entry = entry_from_json(data)
                if entry.pid is None and last_pid is not None:
                    entry = entry._replace(pid=last_pid)
                yield Line(None, entry, None, data)
        except (ValueError, KeyError, TypeError, AttributeError):
            # A process killed mid-write leaves a torn last line; the rest is still good.
            if torn is not None:
                torn[0] += 1
