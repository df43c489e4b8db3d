"""Parent side of the hostile-argument suite: the world, the children, the judging.

`run_batch` runs one batch of cases in three fresh interpreters (`control` without appshield,
`enforce`, `monitor`), each in its own world (folders, fixtures, policy, violation log), all
three at once, and judges every case from the outside world:

- files: does the canary exist, is the protected file gone or emptied, is the new name a
  hard link to the protected file;
- processes: `touch` leaves a *file* at the case's marker (the allowed `mkdir` would leave a
  folder), or mkdir made its folder under `forbidden/`;
- network: the loopback `Listener` (127.0.0.1 only) records which case's payload reached the
  denied port;
- reads and lookups, whose effect is what the call returned: the child's own record.

A child that hangs or dies is killed by a watchdog; the case it was running is a finding,
and the rest of the batch runs in a new child.

Also a small command line for people fixing what the suite finds:

    python -m tests.hostile._harness replay '<case json>'   # one case, all modes, verbose
    python -m tests.hostile._harness survey --cases 3000    # a large random sample, grouped
"""

from __future__ import annotations

import argparse
import json
import os
import random
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.hostile._cases import (
    BEHAVIOURS,
    BY_LABEL,
    DUNDERS,
    EXCEPTIONS,
    POSITIONS,
    plan,
)

__all__ = [
    "FIGURES",
    "Figures",
    "Finding",
    "Listener",
    "format_findings",
    "run_batch",
]

HERE = Path(__file__).resolve().parent
CHILD = HERE / "_child.py"
MODES = ("control", "enforce", "monitor")
# Report lines must carry these (the contract of APPSHIELD_LOG).
REPORT_FIELDS = ("rule", "api", "target", "blocked")
# Resolve lookups are judged by port; no listener is needed for them.
LOOKUP_DENIED, LOOKUP_ALLOWED = 24681, 24682


# -- the loopback listener --------------------------------------------------------------------


class Listener:
    """TCP and UDP sockets on 127.0.0.1 (a denied and an allowed port each) that record the
    payload every connection or datagram brings: "<mode>:<case key>"."""

    NAMES = ("tcp_denied", "tcp_allowed", "udp_denied", "udp_allowed")

    def __init__(self) -> None:
        self.ports: dict[str, int] = {}
        self.received: dict[str, list[str]] = {name: [] for name in self.NAMES}
        self._selector = selectors.DefaultSelector()
        self._sockets: list[socket.socket] = []
        self._busy = threading.Lock()
        for name in self.NAMES:
            kind = socket.SOCK_STREAM if name.startswith("tcp") else socket.SOCK_DGRAM
            sock = socket.socket(socket.AF_INET, kind)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 0))
            if kind == socket.SOCK_STREAM:
                sock.listen(128)
            sock.setblocking(False)
            self.ports[name] = sock.getsockname()[1]
            self._selector.register(sock, selectors.EVENT_READ, name)
            self._sockets.append(sock)
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                events = self._selector.select(timeout=0.2)
            except (OSError, ValueError):
                return
            with self._busy:
                for selected, _ in events:
                    self._take(selected.fileobj, selected.data)  # type: ignore[arg-type]

    def _take(self, sock: socket.socket, name: str) -> None:
        try:
            if name.startswith("udp"):
                data, _ = sock.recvfrom(512)
                self.received[name].append(data.decode("utf-8", "replace"))
                return
            conn, _ = sock.accept()
        except (BlockingIOError, OSError):
            return
        with conn:
            conn.settimeout(2)
            chunks = []
            try:
                while sum(len(c) for c in chunks) < 512:
                    chunk = conn.recv(512)
                    if not chunk:
                        break
                    chunks.append(chunk)
            except OSError:
                pass
        # A connection without a payload is still a connection: recorded as such.
        self.received[name].append(b"".join(chunks).decode("utf-8", "replace") or "?")

    def settle(self) -> None:
        """Wait until every connection and datagram queued so far has been recorded (the
        child has exited, so nothing new arrives; loopback connects are queued when they
        return)."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with self._busy:
                ready = selectors.DefaultSelector()
                for sock in self._sockets:
                    ready.register(sock, selectors.EVENT_READ)
                pending = ready.select(timeout=0)
                ready.close()
            if not pending:
                return
            time.sleep(0.02)

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=2)
        for sock in self._sockets:
            sock.close()
        self._selector.close()


# -- worlds -----------------------------------------------------------------------------------


def _program(name: str) -> str:
    found = shutil.which(name, path="/usr/bin:/bin")
    if found is None:
        raise RuntimeError(f"{name} not found")
    return found


def make_world(base: Path, listener: Listener) -> dict[str, Any]:
    """Folders, shared fixtures and programs of one mode's run (the ports are shared)."""
    base.mkdir(parents=True, exist_ok=True)
    world: dict[str, Any] = {
        "root": str(base),
        "forbidden": str(base / "forbidden"),
        "allowed": str(base / "allowed"),
        "secret": str(base / "secret"),
        "home": str(base / "home"),
        "modules": str(base / "modules"),
        "deny_cwd": str(base / "dcwd"),
        "allow_cwd": str(base / "acwd"),
        "touch": _program("touch"),
        "mkdir": _program("mkdir"),
        "true": _program("true"),
        "lookup_denied": LOOKUP_DENIED,
        "lookup_allowed": LOOKUP_ALLOWED,
        **listener.ports,
    }
    for name in ("forbidden", "allowed", "secret", "home", "deny_cwd", "allow_cwd", "modules"):
        Path(world[name]).mkdir(exist_ok=True)
    (base / "modules" / "hostile_ok.py").write_text("")
    public = base / "public.txt"
    public.write_text("PUBLIC")
    world["public_file"] = str(public)
    protected = base / "forbidden" / "protected"
    protected.write_text("protected")
    world["protected"] = str(protected)
    source = base / "allowed" / "hlsrc"
    source.write_text("link me")
    world["link_source"] = str(source)
    # `./run` in the working folder: touch in the denied folder, mkdir in the allowed one.
    for folder, program in (("deny_cwd", "touch"), ("allow_cwd", "mkdir")):
        run = Path(world[folder]) / "run"
        if not run.is_symlink():
            run.symlink_to(world[program])
    return world


def policy_text(world: dict[str, Any]) -> str:
    touch, mkdir = world["touch"], world["mkdir"]
    executables = lambda name, path: sorted({name, path, os.path.realpath(path)})  # noqa: E731
    return textwrap.dedent(
        f"""\
        version: 1
        name: hostile-suite
        mode: enforce
        defaults: {{process: allow, file: allow, network: allow, import: allow}}
        rules:
          - id: no-forbidden
            category: file
            action: deny
            match: {{path: "{world["forbidden"]}/**", access: [write, delete]}}
          - id: no-secret
            category: file
            action: deny
            match: {{path: "{world["secret"]}/**", access: read}}
          - id: no-touch
            category: process
            action: deny
            match: {{executable: {json.dumps(executables("touch", touch))}}}
          - id: no-forbidden-mkdir
            category: process
            action: deny
            match:
              executable: {json.dumps(executables("mkdir", mkdir))}
              args: ["*/forbidden/*"]
          - id: no-listener
            category: network
            action: deny
            match: {{cidr: 127.0.0.1/32, port: [{world["tcp_denied"]}, {world["udp_denied"]}]}}
          - id: no-evil-import
            category: import
            action: deny
            match: {{module: "hostile_evil*"}}
          - id: no-lookup
            category: network
            action: deny
            match: {{host: localhost, port: {world["lookup_denied"]}, operation: resolve}}
        """
    )


def _keys(case: dict[str, Any]) -> tuple[str, ...]:
    """The keys of a case's runs: the stand-in, the plain value, the plain value again."""
    return (case["id"], case["id"] + "p", case["id"] + "s")


def _expected_entries(world: dict[str, Any], cases: Sequence[dict[str, Any]]) -> set[str]:
    """Every path that may exist after the batch without being a finding."""
    expected = {
        world["protected"],
        world["link_source"],
        world["public_file"],
        f"{world['deny_cwd']}/run",
        f"{world['allow_cwd']}/run",
    }
    for case in cases:
        for key in _keys(case):
            p = plan(case["api"], case["position"], key, world)
            expected.update(path for path, _ in p["fixtures"])
            expected.update(p["expected"])
            evidence = p["evidence"]
            if evidence[0] in ("exists", "file", "hardlink", "symlink"):
                expected.add(evidence[1])
            allowed = p["allowed"]
            if isinstance(allowed, str) and allowed.startswith("/"):
                expected.add(allowed)
            expected.add(f"{world['forbidden']}/sentinel{case['id']}")
    return expected


# -- running the children ---------------------------------------------------------------------


@dataclass
class ChildRun:
    mode: str
    records: list[dict[str, Any]] = field(default_factory=list)
    # case id -> what happened to the child while it ran that case (hang, crash)
    lost: dict[str, str] = field(default_factory=dict)
    stderr: str = ""
    seconds: float = 0.0


def _child_env(world: dict[str, Any], log: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("APPSHIELD_", "OTEL_", "PYTEST_", "COV_", "HYPOTHESIS"))
    }
    env.update(
        APPSHIELD_LOG=str(log),
        # Every violation in full: identical ones must not be folded into a later summary,
        # or a case's report would land in another case's slice of the log.
        APPSHIELD_AGGREGATION_INTERVAL="0",
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONFAULTHANDLER="1",
    )
    return env


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    # The child runs in its own session: its group is the child and what it started.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def run_child(
    mode: str,
    cases: Sequence[dict[str, Any]],
    base: Path,
    world: dict[str, Any],
    *,
    case_timeout: float = 20.0,
) -> ChildRun:
    """Run `cases` in fresh interpreters until every case has an outcome: a child that
    dies or hangs loses the case it was running, and a new child takes the rest."""
    log = base / "violations.jsonl"
    policy = base / "policy.yaml"
    policy.write_text(policy_text(world))
    run = ChildRun(mode)
    remaining = list(cases)
    started_at = time.monotonic()
    attempt = 0
    while remaining:
        results = base / f"results{attempt}.jsonl"
        spec = {
            "mode": mode,
            "world": world,
            "policy": str(policy),
            "log": str(log),
            "results": str(results),
            "cases": remaining,
            "case_timeout": case_timeout,
        }
        spec_path = base / f"spec{attempt}.json"
        spec_path.write_text(json.dumps(spec))
        stderr_path = base / f"stderr{attempt}.txt"
        with open(stderr_path, "wb") as err, open(base / f"stdout{attempt}.txt", "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, str(CHILD), str(spec_path)],
                cwd=world["home"],
                env=_child_env(world, log),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
            try:
                proc.wait(timeout=30 + case_timeout + 2.0 * len(remaining))
                outcome = f"exit {proc.returncode}"
            except subprocess.TimeoutExpired:
                outcome = "killed by the watchdog"
            # Also after a normal exit: a program a case started may outlive the child.
            _kill_group(proc)
        stderr = stderr_path.read_text(errors="replace")
        run.stderr += stderr
        records = []
        if results.exists():
            for line in results.read_text().splitlines():
                try:
                    records.append(json.loads(line))
                except ValueError:
                    pass  # a line cut short by a crash
        run.records.extend(records)
        if any(r.get("finished") for r in records):
            break
        started = [r["start"] for r in records if "start" in r]
        done = {r["done"] for r in records if "done" in r}
        stuck = [case_id for case_id in started if case_id not in done]
        if not started:
            raise RuntimeError(f"the {mode} child ran no case ({outcome}):\n{stderr[-3000:]}")
        if stuck:
            run.lost[stuck[0]] = f"{outcome}; stderr tail:\n{stderr[-1500:]}"
        remaining = [c for c in remaining if c["id"] not in done and c["id"] not in run.lost]
        attempt += 1
    run.seconds = time.monotonic() - started_at
    return run


# -- judging ----------------------------------------------------------------------------------


@dataclass
class Finding:
    mode: str
    check: str  # through, unreported, control, plain-through, sentinel, hang, wrong-effect, ...
    case: dict[str, Any]
    detail: str

    def family(self) -> tuple[str, ...]:
        c = self.case
        return (self.check, self.mode, c.get("api", "?"), c.get("position", "?"))


def _log_lines(log: Path) -> bytes:
    return log.read_bytes() if log.exists() else b""


def _slice(log: bytes, bounds: Sequence[int]) -> list[dict[str, Any]]:
    lines = []
    for line in log[bounds[0] : bounds[1]].splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            lines.append({"unparsable": line.decode("utf-8", "replace")})
    return lines


def effect(
    evidence: list[Any], p: dict[str, Any], mode: str, record: dict[str, Any], listener: Listener
) -> str:
    """What the outside world shows: "denied" (the plain value's effect happened), "allowed"
    (its harmless counterpart's did), "none", or "other" (something neither would do)."""
    kind = evidence[0]
    if kind == "exists":
        return "denied" if os.path.lexists(evidence[1]) else "none"
    if kind == "gone":
        return "none" if os.path.lexists(evidence[1]) else "denied"
    if kind == "emptied":
        if not os.path.lexists(evidence[1]):
            return "other"
        return "denied" if os.path.getsize(evidence[1]) == 0 else "none"
    if kind == "file":
        path = evidence[1]
        if os.path.islink(path):
            return "other"
        if os.path.isfile(path):
            return "denied"
        return "allowed" if os.path.isdir(path) else "none"
    if kind == "hardlink":
        path, protected = evidence[1], evidence[2]
        if not os.path.lexists(path):
            return "none"
        if os.path.samefile(path, protected):
            return "denied"
        return "allowed" if os.path.samefile(path, p["allowed"]) else "other"
    if kind == "symlink":
        path = evidence[1]
        if not os.path.islink(path):
            return "none" if not os.path.lexists(path) else "other"
        target = os.readlink(path)
        if target == p["denied"]:
            return "denied"
        return "allowed" if target == p["allowed"] else "other"
    if kind in ("tcp", "udp"):
        payload = f"{mode}:{evidence[1]}"
        if payload in listener.received[f"{kind}_denied"]:
            return "denied"
        if payload in listener.received[f"{kind}_allowed"]:
            return "allowed"
        return "none"
    if kind == "data":
        return "denied" if evidence[1] in str(record.get("data", "")) else "none"
    raise ValueError(kind)


def _shield_denied(record: dict[str, Any]) -> bool:
    """Did the call end in an exception from appshield, or in the stand-in's own exception
    (which only appshield's frames can trigger)?"""
    for exc in (record.get("exc"), record.get("child_exc")):
        if exc and (exc.get("appshield") or exc.get("hostile")):
            return True
    return False


def _exc_text(record: dict[str, Any]) -> str:
    parts = []
    for name in ("exc", "child_exc"):
        exc = record.get(name)
        if exc:
            where = " < ".join(reversed(exc.get("where", [])))
            parts.append(f"{name}={exc['module']}.{exc['type']}: {exc['text'][:160]} at {where}")
    return "; ".join(parts) or "no exception"


def judge_mode(
    run: ChildRun,
    cases: Sequence[dict[str, Any]],
    world: dict[str, Any],
    log: bytes,
    listener: Listener,
) -> tuple[list[Finding], Counter[str]]:
    mode = run.mode
    findings: list[Finding] = []
    counts: Counter[str] = Counter()
    by_case: dict[tuple[str, str], dict[str, Any]] = {}
    for record in run.records:
        if "variant" in record:
            by_case[(record["id"], record["variant"])] = record
    for case in cases:
        position = BY_LABEL[f"{case['api']}({case['position']})"]
        if case["id"] in run.lost:
            findings.append(Finding(mode, "hang", case, run.lost[case["id"]]))
            counts["lost"] += 1
            continue
        for variant, key in (
            ("plain", case["id"] + "p"),
            ("hostile", case["id"]),
            ("again", case["id"] + "s"),
        ):
            record = by_case.get((case["id"], variant))
            if record is None:
                continue
            if variant == "again":
                findings.extend(_judge_again(mode, case, record, world, log, listener))
                continue
            p = plan(case["api"], case["position"], key, world)
            seen = effect(p["evidence"], p, mode, record, listener)
            lines = _slice(log, record["log"])
            detail = f"effect={seen}; {_exc_text(record)}; reports={len(lines)}"
            if variant == "hostile":
                counts["cases"] += 1
            for line in lines:
                missing = [f for f in REPORT_FIELDS if f not in line]
                if line.get("rule") == "implicit:undescribable" and "reason" not in line:
                    missing.append("reason")
                if missing:
                    findings.append(
                        Finding(mode, "malformed-report", case, f"{variant}: {missing}: {line}")
                    )
            if seen == "other":
                findings.append(Finding(mode, "wrong-effect", case, f"{variant}: {detail}"))
            if mode == "control":
                if seen != "denied":
                    findings.append(Finding(mode, "control", case, f"{variant}: {detail}"))
                elif variant == "hostile":
                    counts["reproduced"] += 1
                continue
            if mode == "enforce" and seen == "denied" and not position.passive:
                check = "through" if variant == "hostile" else "plain-through"
                findings.append(Finding(mode, check, case, f"{variant}: {detail}"))
                if variant == "hostile":
                    counts["through"] += 1
            if mode == "monitor":
                must_report = (seen == "denied" and not position.passive) or _shield_denied(record)
                if must_report and not lines:
                    check = "unreported" if variant == "hostile" else "plain-unreported"
                    findings.append(Finding(mode, check, case, f"{variant}: {detail}"))
                    if variant == "hostile":
                        counts["through"] += 1
            if variant == "hostile" and _shield_denied(record):
                counts["denied"] += 1
        sentinel = by_case.get((case["id"], "sentinel"))
        if sentinel is not None:
            findings.extend(_judge_sentinel(mode, case, sentinel, world, log))
    return findings, counts


def _judge_again(
    mode: str,
    case: dict[str, Any],
    record: dict[str, Any],
    world: dict[str, Any],
    log: bytes,
    listener: Listener,
) -> list[Finding]:
    """The plain denied value once more, after the stand-in: it must be refused (enforce)
    or reported (monitor) exactly like the first time. If not, the case poisoned something
    (a cache of allowed operations, a token) that lets the same operation through later."""
    p = plan(case["api"], case["position"], case["id"] + "s", world)
    seen = effect(p["evidence"], p, mode, record, listener)
    lines = _slice(log, record["log"])
    detail = f"the plain value again, after the case: effect={seen}; {_exc_text(record)}"
    found = []
    if mode == "enforce" and seen == "denied":
        found.append(Finding(mode, "sentinel", case, detail))
    if mode == "monitor" and (seen == "denied" or _shield_denied(record)) and not lines:
        found.append(Finding(mode, "sentinel", case, f"{detail}; unreported"))
    for name in ("exc", "child_exc"):
        if (record.get(name) or {}).get("hostile"):
            found.append(Finding(mode, "poisoned", case, detail))
    return found


def _judge_sentinel(
    mode: str, case: dict[str, Any], sentinel: dict[str, Any], world: dict[str, Any], log: bytes
) -> list[Finding]:
    """After each case a plain denied open must still be refused (enforce) or reported
    (monitor) as usual. "sentinel": it got through, so the case broke the shield for what
    follows; "poisoned": it ended some other way (appshield kept a piece of the case, such as
    the stand-in itself, and trips over it on later operations)."""
    path = f"{world['forbidden']}/sentinel{case['id']}"
    lines = _slice(log, sentinel["log"])
    exc = sentinel["exc"] or {}
    text = _exc_text(sentinel)
    if mode == "enforce":
        if os.path.lexists(path):
            return [Finding(mode, "sentinel", case, f"a later denied open got through: {text}")]
        if not exc.get("appshield"):
            return [Finding(mode, "poisoned", case, f"a later denied open ended in {text}")]
        return []
    found = []
    if not lines:
        found.append(Finding(mode, "sentinel", case, f"a later denied open was unreported: {text}"))
    if exc:
        found.append(Finding(mode, "poisoned", case, f"a later denied open ended in {text}"))
    return found


def _scan(world: dict[str, Any], expected: set[str]) -> list[str]:
    """Paths in the world that no case could legitimately have made (the warm-up's allowed
    counterparts all have "warm" in their names)."""
    unexpected = []
    for folder in ("forbidden", "allowed", "secret", "home", "deny_cwd", "allow_cwd"):
        for entry in sorted(Path(world[folder]).iterdir()):
            if str(entry) not in expected and "warm" not in entry.name:
                unexpected.append(str(entry))
    return unexpected


# -- batches and figures ----------------------------------------------------------------------


@dataclass
class BatchResult:
    findings: list[Finding]
    counts: dict[str, Counter[str]]
    labels: set[str]
    seconds: float


@dataclass
class Figures:
    """What the issue's "Must show" asks for, accumulated over the session."""

    labels: set[str] = field(default_factory=set)
    counts: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    batches: int = 0
    findings: int = 0
    seconds: float = 0.0
    path: Path | None = None  # where `write` put them last

    def add(self, result: BatchResult) -> None:
        self.labels |= result.labels
        for mode, counts in result.counts.items():
            self.counts[mode].update(counts)
        self.batches += 1
        self.findings += len(result.findings)
        self.seconds += result.seconds

    def as_dict(self) -> dict[str, Any]:
        apis = sorted({BY_LABEL[label].api for label in self.labels})
        return {
            "positions_covered": len(self.labels),
            "positions_total": len(POSITIONS),
            "apis_covered": len(apis),
            "apis": apis,
            "batches": self.batches,
            "cases_run": {mode: self.counts[mode]["cases"] for mode in MODES},
            "control_reproduced": self.counts["control"]["reproduced"],
            "got_through": {
                "enforce": self.counts["enforce"]["through"],
                "monitor_unreported": self.counts["monitor"]["through"],
            },
            "denied_by_shield": {m: self.counts[m]["denied"] for m in ("enforce", "monitor")},
            "lost_to_hang_or_crash": {m: self.counts[m]["lost"] for m in MODES},
            "findings": self.findings,
            "child_seconds": round(self.seconds, 1),
        }

    def summary(self) -> str:
        d = self.as_dict()
        return (
            f"hostile arguments: {d['positions_covered']}/{d['positions_total']} API x argument "
            f"positions ({d['apis_covered']} APIs), cases run: control "
            f"{d['cases_run']['control']}, enforce {d['cases_run']['enforce']}, monitor "
            f"{d['cases_run']['monitor']}; got through: enforce {d['got_through']['enforce']}, "
            f"monitor (unreported) {d['got_through']['monitor_unreported']}; control reproduced "
            f"{d['control_reproduced']}; findings {d['findings']}"
        )

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.as_dict(), indent=2) + "\n")
        self.path = path


# The session's figures, printed by conftest.pytest_terminal_summary.
FIGURES = Figures()


def run_batch(
    cases: Sequence[dict[str, Any]],
    base: Path,
    listener: Listener,
    *,
    case_timeout: float = 20.0,
    modes: Sequence[str] = MODES,
) -> BatchResult:
    """Run one batch in every mode (at once: the interpreters' start-up is the cost) and
    judge it. Case ids must be unique and filename-safe."""
    started = time.monotonic()
    # Only what arrives during this batch is this batch's.
    marks = {name: len(payloads) for name, payloads in listener.received.items()}
    worlds = {mode: make_world(base / mode, listener) for mode in modes}
    for world in worlds.values():
        for case in cases:
            for key in _keys(case):
                for path, content in plan(case["api"], case["position"], key, world)["fixtures"]:
                    Path(path).write_text(content)
    with ThreadPoolExecutor(len(modes)) as pool:
        futures = {
            mode: pool.submit(
                run_child, mode, cases, base / mode, worlds[mode], case_timeout=case_timeout
            )
            for mode in modes
        }
        runs = {mode: future.result() for mode, future in futures.items()}
    listener.settle()
    findings: list[Finding] = []
    counts: dict[str, Counter[str]] = {}
    for mode in modes:
        world = worlds[mode]
        log = _log_lines(base / mode / "violations.jsonl")
        found, counted = judge_mode(runs[mode], cases, world, log, listener)
        findings.extend(found)
        counts[mode] = counted
        for path in _scan(world, _expected_entries(world, cases)):
            owner = next((c for c in cases if c["id"] in Path(path).name), {})
            findings.append(Finding(mode, "unexpected-effect", owner, path))
    # Connections that carry no case's payload cannot be judged; say so.
    known = {f"{m}:{k}" for m in modes for c in cases for k in _keys(c)}
    for name, payloads in listener.received.items():
        for payload in payloads[marks[name] :]:
            if payload.split(":")[-1].startswith("warm") or payload in known:
                continue
            findings.append(Finding("?", "unattributed-connection", {}, f"{name}: {payload!r}"))
    labels = {f"{c['api']}({c['position']})" for c in cases}
    return BatchResult(findings, counts, labels, time.monotonic() - started)


# -- reading findings -------------------------------------------------------------------------


def case_text(case: dict[str, Any]) -> str:
    if not case:
        return "(no case)"
    parts = [case["kind"], case["behaviour"]]
    if case["dunders"]:
        parts.append("+".join(case["dunders"]))
    if case["exception"]:
        parts.append(case["exception"])
    return f"{case['api']}({case['position']}) " + " ".join(parts)


def format_findings(findings: Iterable[Finding], *, limit: int = 60) -> str:
    """Findings grouped by (check, mode, API, position), each group with its cases."""
    groups: dict[tuple[str, ...], list[Finding]] = defaultdict(list)
    for finding in findings:
        groups[finding.family()].append(finding)
    out = []
    for family in sorted(groups):
        members = groups[family]
        check, mode, api, position = family
        out.append(f"[{check}] {mode}: {api}({position}): {len(members)} case(s)")
        for finding in members[:4]:
            case = {k: v for k, v in finding.case.items() if k != "id"}
            out.append(f"    {case_text(finding.case)}")
            out.append(f"      {finding.detail.splitlines()[0][:300] if finding.detail else ''}")
            if case:
                out.append(
                    f"      replay: python -m tests.hostile._harness replay '{json.dumps(case)}'"
                )
        if len(members) > 4:
            out.append(f"    ... and {len(members) - 4} more")
        if len(out) > limit * 4:
            out.append("... (more groups left out)")
            break
    return "\n".join(out)


# -- command line -----------------------------------------------------------------------------


def _numbered(cases: Iterable[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    return [{**case, "id": f"{prefix}c{i}"} for i, case in enumerate(cases)]


def random_cases(count: int, rng: random.Random) -> Iterator[dict[str, Any]]:
    for _ in range(count):
        position = rng.choice(POSITIONS)
        kind = rng.choice(position.kinds)
        behaviour = rng.choice(BEHAVIOURS)
        dunders = [] if behaviour == "honest" else rng.choice(DUNDERS[kind]).split("+")
        exception = rng.choice(EXCEPTIONS) if behaviour.startswith("raise") else None
        yield {
            "api": position.api,
            "position": position.name,
            "kind": kind,
            "dunders": dunders,
            "behaviour": behaviour,
            "exception": exception,
        }


def all_cases(api: str | None = None) -> Iterator[dict[str, Any]]:
    """Every (position, kind, dunder, behaviour), the exception rotating through the five."""
    turn = 0
    for position in POSITIONS:
        if api is not None and position.api != api:
            continue
        for kind in position.kinds:
            yield {
                "api": position.api,
                "position": position.name,
                "kind": kind,
                "dunders": [],
                "behaviour": "honest",
                "exception": None,
            }
            for dunder in DUNDERS[kind]:
                for behaviour in BEHAVIOURS:
                    if behaviour == "honest":
                        continue
                    exception = None
                    if behaviour.startswith("raise"):
                        exception = EXCEPTIONS[turn % len(EXCEPTIONS)]
                        turn += 1
                    yield {
                        "api": position.api,
                        "position": position.name,
                        "kind": kind,
                        "dunders": dunder.split("+"),
                        "behaviour": behaviour,
                        "exception": exception,
                    }


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.hostile._harness")
    sub = parser.add_subparsers(dest="command", required=True)
    replay = sub.add_parser("replay", help="run one case in every mode and show everything")
    replay.add_argument("case", help="a case as JSON (the id is optional)")
    survey = sub.add_parser("survey", help="run many cases and group what fails")
    survey.add_argument("--cases", type=int, default=1000)
    survey.add_argument("--all", action="store_true", help="every combination")
    survey.add_argument("--api", default=None)
    survey.add_argument("--batch", type=int, default=150)
    survey.add_argument("--seed", type=int, default=0)
    survey.add_argument("--json", default=None, help="write every finding here")
    args = parser.parse_args(argv)
    listener = Listener()
    try:
        with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
            if args.command == "replay":
                case = {**json.loads(args.case), "id": "r0"}
                result = run_batch([case], Path(tmp), listener)
                for mode in MODES:
                    for name in sorted(Path(tmp, mode).glob("results*.jsonl")):
                        print(f"--- {mode} {name.name}\n{name.read_text()}")
                    log = Path(tmp, mode, "violations.jsonl")
                    if log.exists():
                        print(f"--- {mode} violations\n{log.read_text()}")
                    for name in sorted(Path(tmp, mode).glob("stderr*.txt")):
                        text = name.read_text()
                        if text.strip():
                            print(f"--- {mode} {name.name}\n{text[-4000:]}")
                print(format_findings(result.findings) or "no finding")
                return 1 if result.findings else 0
            if args.all:
                cases = list(all_cases(args.api))
            else:
                rng = random.Random(args.seed)
                cases = [
                    c
                    for c in random_cases(args.cases * 4, rng)
                    if args.api is None or c["api"] == args.api
                ][: args.cases]
            figures = Figures()
            findings: list[Finding] = []
            for start in range(0, len(cases), args.batch):
                chunk = _numbered(cases[start : start + args.batch], f"s{start}")
                for attempt in range(3):
                    try:
                        result = run_batch(chunk, Path(tmp) / f"b{start}-{attempt}", listener)
                        break
                    except RuntimeError as exc:  # a child that could not start at all
                        print(f"batch {start}: {str(exc)[:2000]}", flush=True)
                        time.sleep(5)
                else:
                    continue
                figures.add(result)
                findings.extend(result.findings)
                print(f"{start + len(chunk)}/{len(cases)}: {len(findings)} findings", flush=True)
            print(format_findings(findings, limit=400))
            print(figures.summary())
            if args.json:
                Path(args.json).write_text(
                    json.dumps([f.__dict__ for f in findings], indent=1) + "\n"
                )
            return 1 if findings else 0
    finally:
        listener.close()


if __name__ == "__main__":
    sys.exit(_main())
