"""The hook parts loaded on their first operation (appshield/hooks/_deferred.py).

A plain shielded start loads none of them, and still has every patch point and the audit
hook in place; the first operation of their kind loads them as appshield's own imports (a
policy refusing `appshield.*` imports does not refuse them); and a part that cannot be
loaded, because of the recursion limit or a `sys.modules` entry someone else put there, is a
refused operation that is reported, never one let through. Real children, real programs,
the violation log as the listener, a canary file as the proof that nothing ran.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import wrapt

import appshield
from tests.activation._helpers import PY, clean_env, policy_file, run

REPO = Path(appshield.__file__).resolve().parent.parent
TYPICAL = REPO / "examples" / "web-service.yaml"

# The modules the parts hold: none is loaded by a start.
DEFERRED = (
    "appshield._proc_describe",
    "appshield.hooks.process.convert",
    "appshield.hooks.process.preexec",
    "appshield.hooks.file.sqlite",
    "appshield.hooks.imports.library",
    "appshield.hooks.network.describe",
    "appshield.telemetry.denied_exporters",
    "appshield.report",
)

POLICY = """\
version: 1
name: deferred-parts
defaults: {process: deny, file: allow, network: allow, import: allow}
rules:
  - id: sh-allowed
    category: process
    action: allow
    match: {executable: [sh, dash, bash]}
  - id: no-appshield-imports
    category: import
    action: deny
    match: {module: ["appshield", "appshield.*", "_socket", "_weakrefset"]}
"""


def _env(tmp_path: Path, policy: Path) -> dict[str, str]:
    # This checkout and wrapt's folder, without site (an editable install's finder imports
    # modules of its own), with bytecode and the policy cache written as in production.
    path = os.pathsep.join([str(REPO), str(Path(wrapt.__file__).resolve().parent.parent)])
    env = clean_env(
        APPSHIELD_POLICY=str(policy),
        APPSHIELD_LOG=str(tmp_path / "violations.log"),
        PYTHONPATH=path,
    )
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _reports(tmp_path: Path) -> list[dict[str, object]]:
    log = tmp_path / "violations.log"
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line]


def test_a_start_loads_no_part_and_each_part_brings_only_what_it_names(tmp_path: Path) -> None:
    policy = tmp_path / "web-service.yaml"
    shutil.copyfile(TYPICAL, policy)
    env = _env(tmp_path, policy)
    code = f"""
import appshield.auto, json, sys
from appshield import runtime
from appshield.hooks import _deferred
assert runtime.active_shield() is not None
loaded = [name for name in {DEFERRED!r} if name in sys.modules]
extra = {{}}
for part in _deferred.PARTS:
    before = set(sys.modules)
    _deferred.load_part(part)
    extra[part.name] = sorted(set(sys.modules) - before - set(part.brings))
print(json.dumps({{"loaded": loaded, "extra": extra, "parts": [p.name for p in _deferred.PARTS]}}))
"""
    assert run([PY, "-S", "-c", "import appshield.auto"], env=env, cwd=tmp_path).returncode == 0
    done = run([PY, "-S", "-c", code], env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["loaded"] == []
    assert sorted(found["parts"]) == [
        "denied exporters",
        "native library",
        "network",
        "process",
        "report",
        "sqlite",
    ]
    assert found["extra"] == {name: [] for name in found["parts"]}


def test_stand_ins_give_way_to_the_real_functions(tmp_path: Path) -> None:
    """After the first start, the hook module's globals hold the part's own functions: later
    calls pay no stand-in and no `sys.modules` lookup."""
    policy = policy_file(tmp_path, POLICY)
    code = """
import appshield.auto, subprocess, sqlite3
from appshield.hooks import process, file
before = process.describe_start
subprocess.run(["sh", "-c", "exit 0"], check=True)
sqlite3.connect(":memory:").close()
import socket
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen()
socket.create_connection(server.getsockname()).close()
server.close()
# Loaded by the calls above, as appshield's own: the policy refuses these imports to the
# app, and here they are only looked up.
from appshield import _proc_describe
from appshield.hooks.file import sqlite
from appshield.hooks.process import convert, preexec
assert before is not _proc_describe.describe_start
assert process.describe_start is _proc_describe.describe_start
assert process.token is convert.token and process.run_checked is preexec.run_checked
assert file._sqlite is sqlite
from appshield.hooks import network
from appshield.hooks.network import describe as network_describe
assert network.describe is network_describe
print("ok")
"""
    done = run([PY, "-S", "-c", code], env=_env(tmp_path, policy), cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
    # appshield's own imports are not judged: nothing refused, no deferred module reported
    # (the modules imported before install are reported as such, not blocked: they ran).
    reports = _reports(tmp_path)
    assert [r for r in reports if r["blocked"]] == []
    assert [r["target"] for r in reports if r["target"] in DEFERRED] == []


def test_a_poisoned_part_refuses_an_allowed_start(tmp_path: Path) -> None:
    """A `sys.modules` entry for the process part that is not appshield's file (None, or a
    module of someone else's making that describes nothing): the allowed start is refused
    and reported as undescribable; the program never runs."""
    policy = policy_file(tmp_path, POLICY)
    canary = tmp_path / "canary"
    code = f"""
import appshield.auto, subprocess, sys, types
fake = types.ModuleType("appshield._proc_describe")
fake.__file__ = "/elsewhere/appshield/_proc_describe.py"
for name in ("absolute_candidates", "describe_first", "describe_start", "shell_command",
             "unshielded"):
    setattr(fake, name, lambda *args, **kwargs: None)
outcomes = []
for poison in (None, fake):
    sys.modules["appshield._proc_describe"] = poison
    try:
        subprocess.run(["sh", "-c", "touch {canary}"], check=True)
        outcomes.append("ran")
    except BaseException as exc:
        outcomes.append(type(exc).__name__)
del sys.modules["appshield._proc_describe"]
subprocess.run(["sh", "-c", "exit 0"], check=True)  # the real part loads: allowed again
print(outcomes)
"""
    done = run([PY, "-S", "-c", code], env=_env(tmp_path, policy), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['ModuleNotFoundError', 'ImportError']"
    assert not canary.exists()
    refused = [r for r in _reports(tmp_path) if r["blocked"]]
    assert [(r["rule"], r["category"]) for r in refused] == [
        ("implicit:undescribable", "process")
    ] * 2


@pytest.mark.parametrize("api", ["os.system", "sqlite3.connect"])
def test_a_part_first_loaded_at_the_recursion_limit_still_denies(tmp_path: Path, api: str) -> None:
    """The first operation of a part's kind, made a few frames below the recursion limit,
    for each of several margins (fresh processes: a part loads once): the load and the
    decision complete with the gate's headroom, or fail; the denied operation never runs."""
    # No program may start (the shell `os.system` runs included), and one database is refused.
    body = POLICY.replace("action: allow", "action: deny") + (
        "  - id: no-db\n    category: file\n    action: deny\n"
        '    match: {path: "{cwd}/blocked.db"}\n'
    )
    policy = policy_file(tmp_path, body)
    canary = tmp_path / ("canary" if api == "os.system" else "blocked.db")
    call = (
        f"os.system('touch {canary}')"
        if api == "os.system"
        else f"sqlite3.connect({str(canary)!r}).execute('create table t (x)')"
    )
    code = f"""
import appshield.auto, os, sqlite3, sys

def depth():
    frame, n = sys._getframe(), 0
    while frame is not None:
        frame, n = frame.f_back, n + 1
    return n

def near(margin, level=0):
    if level < sys.getrecursionlimit() - depth() - margin:
        return near(margin, level + 1)
    try:
        {call}
        return "ran"
    except BaseException as exc:
        return type(exc).__name__

print(near(int(sys.argv[1])))
"""
    outcomes = []
    for margin in (3, 8, 15, 25, 40, 80, 150):
        done = run([PY, "-S", "-c", code, str(margin)], env=_env(tmp_path, policy), cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        outcomes.append(done.stdout.strip())
        assert not canary.exists(), (margin, outcomes)
    assert "ran" not in outcomes
    # The operation reached the gate (a report) for the wider margins at least.
    assert "PolicyViolation" in outcomes
    assert any(r["blocked"] and r["category"] in ("process", "file") for r in _reports(tmp_path))


def test_a_part_needed_while_it_loads_is_refused_not_loaded_again(tmp_path: Path) -> None:
    """An operation made by a part's own load (here: the import system opening the part's
    file, which an audit hook answers by calling a stand-in of that same part) does not load
    the part again inside its own load, without end: it gets ImportError, which in the gate
    is a refusal, and the outer load fails the same way."""
    code = """
import sys
from appshield.hooks import _deferred
namespace = {}
part = _deferred.Part("loop", ("appshield.hooks.process.convert",), ())
_deferred.defer(namespace, part, {"appshield.hooks.process.convert": ("text",)})
nested = []
def hook(event, args):
    if event == "open" and "convert" in str(args[0]) and not nested:
        try:
            namespace["text"]("x")
            nested.append("loaded")
        except ImportError as exc:
            nested.append(str(exc))
            raise
sys.addaudithook(hook)
try:
    namespace["text"]("x")
    print("outer: loaded", nested)
except ImportError:
    print("outer: ImportError", nested)
"""
    env = _env(tmp_path, tmp_path / "unused.yaml")
    done = run([PY, "-S", "-c", code], env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        'outer: ImportError ["appshield\'s loop part is needed while it loads"]'
    )


@pytest.mark.parametrize("when", ["at-exit", "no-threads"])
def test_a_part_first_needed_where_no_thread_can_start_still_decides(
    tmp_path: Path, when: str
) -> None:
    """Parts load on a thread of appshield's own. Where none can start (an `atexit`
    handler's first program start: 3.12 and later refuse new threads at shutdown; a thread
    limit, here `start_new_thread` raising as it then does) the part loads on the
    operation's own thread and decides as usual: the allowed start runs, the denied one
    (`touch` is not in the policy) never does, and it is reported."""
    policy = policy_file(tmp_path, POLICY)
    canary = tmp_path / "canary"
    limit = (
        "import _thread\n"
        "def refuse(*args, **kwargs):\n"
        '    raise RuntimeError("can\'t start new thread")\n'
        "_thread.start_new_thread = refuse\n"
        if when == "no-threads"
        else ""
    )
    code = f"""
import appshield.auto, atexit, os, subprocess
{limit}
def first_starts():
    subprocess.run(["sh", "-c", "exit 0"], check=True)
    os.write(1, b"allowed ran\\n")
    try:
        subprocess.run(["touch", "{canary}"])
    except PermissionError:
        os.write(1, b"denied\\n")
atexit.register(first_starts)
"""
    done = run([PY, "-S", "-c", code], env=_env(tmp_path, policy), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["allowed", "ran", "denied"], done.stdout + done.stderr
    assert not canary.exists()
    refused = [r for r in _reports(tmp_path) if r["blocked"]]
    assert [(r["rule"], r["category"]) for r in refused] == [("default:process", "process")]


EXPORTERS_POLICY = POLICY + (
    "  - id: no-second-loopback\n"
    "    category: network\n"
    "    action: deny\n"
    "    match: {host: 127.0.0.2, operation: connect}\n"
)

# A listener on 127.0.0.2 that says whether anything reached it; then a blocked connection.
_BLOCKED_CONNECT = """
import socket
server = socket.socket()
server.bind(("127.0.0.2", 0))
server.listen()
server.settimeout(0.3)
def attempt():
    try:
        socket.create_connection(server.getsockname(), timeout=2).close()
        return "connected"
    except BaseException as exc:
        return type(exc).__name__
def reached():
    try:
        server.accept()[0].close()
        return True
    except OSError:
        return False
"""


def test_the_denied_exporters_part_loads_on_the_first_blocked_connection(tmp_path: Path) -> None:
    """Stopping the app's exporters whose connection was refused is needed only once one is:
    the first blocked connection loads it as appshield's own import (the policy refuses
    `appshield.*` imports to the app), and the connection is refused by its rule."""
    policy = policy_file(tmp_path, EXPORTERS_POLICY)
    code = f"""
import appshield.auto, sys
name = "appshield.telemetry.denied_exporters"
before = name in sys.modules
{_BLOCKED_CONNECT}
outcome = attempt()
print(before, name in sys.modules, outcome, reached())
"""
    done = run([PY, "-S", "-c", code], env=_env(tmp_path, policy), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True", "PolicyViolation", "False"]
    refused = [(r["rule"], r["target"]) for r in _reports(tmp_path) if r["blocked"]]
    assert len(refused) == 1 and refused[0][0] == "no-second-loopback", refused


def test_a_poisoned_denied_exporters_part_still_refuses_and_reports(tmp_path: Path) -> None:
    """A `sys.modules` entry for the part that is not appshield's file (None, or a stand-in of
    someone else's making that would see every exporter as not involved): the connection is
    refused all the same, by its rule, with the app's usual PolicyViolation, and reported;
    only the exit-time stop of the exporter is lost. The real part loads once the entry is
    gone."""
    policy = policy_file(tmp_path, EXPORTERS_POLICY)
    code = f"""
import appshield.auto, sys, types
name = "appshield.telemetry.denied_exporters"
fake = types.ModuleType(name)
fake.__file__ = "/elsewhere/appshield/telemetry/denied_exporters.py"
fake.note_denied_connection = lambda frame: False
{_BLOCKED_CONNECT}
outcomes = []
for poison in (None, fake):
    sys.modules[name] = poison
    outcomes.append(attempt())
    outcomes.append(reached())
del sys.modules[name]
outcomes.append(attempt())
from appshield import runtime
outcomes.append(type(runtime.denied_exporters).__name__)
print(outcomes)
"""
    done = run([PY, "-S", "-c", code], env=_env(tmp_path, policy), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "['PolicyViolation', False, 'PolicyViolation', False, 'PolicyViolation', 'module']"
    )
    refused = [r["rule"] for r in _reports(tmp_path) if r["blocked"]]
    # Three refusals, each by its rule (repeats of one call site are folded in the log).
    assert refused and set(refused) == {"no-second-loopback"}, refused


# The report's module refused to the app: not all of `appshield.*`, whose modules imported
# before install would be reported, and so load the part, at install.
REPORT_POLICY = EXPORTERS_POLICY.replace(
    '["appshield", "appshield.*", "_socket", "_weakrefset"]', '["appshield.report"]'
)


def test_the_report_part_loads_on_the_first_violation(tmp_path: Path) -> None:
    """The report's records are loaded by the first violation, as appshield's own import
    (the policy refuses that module to the app), and the violation is reported."""
    policy = policy_file(tmp_path, REPORT_POLICY)
    code = f"""
import appshield.auto, sys
before = "appshield.report" in sys.modules
{_BLOCKED_CONNECT}
print(before, attempt(), reached(), "appshield.report" in sys.modules)
"""
    done = run([PY, "-S", "-c", code], env=_env(tmp_path, policy), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "PolicyViolation", "False", "True"]
    refused = [r["rule"] for r in _reports(tmp_path) if r["blocked"]]
    assert refused == ["no-second-loopback"], refused


@pytest.mark.parametrize("mode", ["enforce", "monitor"])
def test_a_report_part_that_cannot_load_keeps_the_decision_and_says_so(
    tmp_path: Path, mode: str
) -> None:
    """A `sys.modules` entry for the report's module that is not appshield's file: the
    violation cannot be made into a report. The decision stands (refused with the usual
    PolicyViolation in enforce mode, let through in monitor mode, which never blocks) and
    stderr says what could not be reported. Once the entry is gone, the next violation is
    reported as usual."""
    policy = policy_file(tmp_path, REPORT_POLICY.replace("version: 1", f"version: 1\nmode: {mode}"))
    code = f"""
import appshield.auto, sys, types
fake = types.ModuleType("appshield.report")
fake.__file__ = "/elsewhere/appshield/report.py"
fake.CallSite = fake.Violation = lambda *args, **kwargs: None
{_BLOCKED_CONNECT}
outcomes = []
for poison in (None, fake):
    sys.modules["appshield.report"] = poison
    outcomes.append(attempt())
    outcomes.append(reached())
del sys.modules["appshield.report"]
outcomes.append(attempt())
print(outcomes)
"""
    done = run([PY, "-S", "-c", code], env=_env(tmp_path, policy), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    if mode == "enforce":
        expected = "['PolicyViolation', False, 'PolicyViolation', False, 'PolicyViolation']"
    else:
        expected = "['connected', True, 'connected', True, 'connected']"
    assert done.stdout.strip() == expected, done.stdout + done.stderr
    assert done.stderr.count("1 violation(s) could not be reported") == 2, done.stderr
    reports = [(r["rule"], r["blocked"]) for r in _reports(tmp_path)]
    assert reports == [("no-second-loopback", mode == "enforce")], reports
