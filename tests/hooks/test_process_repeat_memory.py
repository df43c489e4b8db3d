"""The describer's memory of repeated starts (`appshield._proc_describe._repeated`) and the
audit hook's check before the gate for `subprocess.Popen` (`hooks/process._popen_allowed`).

A start of the same program with the same arguments, from the same working folder, under the
same PATH, is described from memory only after the PATH search has been proved again; the
decision is asked every time. Each test first lets an allowed start be remembered, then
changes the world the way an attacker would (a program dropped into an earlier PATH folder, a
file made executable there, the found file replaced, PATH changed, another working folder,
the child's environment changed), and checks with real processes and a canary file that the
next start is decided as it would be without the memory. Real processes and files in
tmp_path; each test installs its own shield and removes it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from appshield import _proc_describe, runtime
from appshield import activation as _activate
from appshield.errors import PolicyViolation
from appshield.policy import Policy
from appshield.report import Violation

TOUCH = os.path.realpath(shutil.which("touch") or "/usr/bin/touch")
TRUE = os.path.realpath(shutil.which("true") or "/usr/bin/true")
ALLOW_ALL = {"process": "allow", "file": "allow", "network": "allow", "import": "allow"}


@dataclass
class World:
    root: Path
    early: Path  # an earlier PATH folder, empty at first
    late: Path  # a later one, holding `prog` -> true
    canary: Path
    violations: list[Violation] = field(default_factory=list)

    def run(self) -> int:
        """`prog CANARY`, inheriting this environment and working folder: `true` ignores its
        argument, `touch` creates the canary."""
        return subprocess.run(["prog", str(self.canary)], check=False).returncode

    def remembered(self) -> bool:
        return any(key[0] == "prog" for key in _proc_describe._described)


def _install(rules: list[dict[str, Any]]) -> list[Violation]:
    policy = {"version": 1, "mode": "enforce", "defaults": ALLOW_ALL, "rules": rules}
    handle = runtime.install(Policy.from_mapping(policy))
    found: list[Violation] = []
    handle._shield.add_listener(found.append)
    return found


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    root = Path(os.path.realpath(tmp_path))
    early, late = root / "early", root / "late"
    early.mkdir()
    late.mkdir()
    (late / "prog").symlink_to(TRUE)
    monkeypatch.setenv("PATH", f"{early}:{late}:{os.environ.get('PATH', os.defpath)}")
    monkeypatch.chdir(root)
    no_touch = [
        {"id": "no-touch", "category": "process", "action": "deny", "match": {"executable": TOUCH}},
        {
            "id": "nothing-early",
            "category": "process",
            "action": "deny",
            "match": {"executable": f"{early}/*"},
        },
    ]
    try:
        found = _install(no_touch)
        w = World(root, early, late, root / "canary", found)
        assert w.run() == 0 and w.run() == 0  # the second start is described from memory
        assert w.remembered() and not w.violations
        yield w
    finally:
        runtime.uninstall()


def refused(w: World) -> PolicyViolation:
    with pytest.raises(PolicyViolation) as info:
        w.run()
    assert not w.canary.exists()
    return info.value


def test_a_repeat_runs_and_is_decided_each_time(world: World) -> None:
    for _ in range(3):
        assert world.run() == 0
    assert not world.violations and not world.canary.exists()


def test_a_program_dropped_into_an_earlier_path_folder_is_judged(world: World) -> None:
    (world.early / "prog").symlink_to(TOUCH)
    refused(world)
    assert world.violations[-1].operation.executable == TOUCH  # type: ignore[union-attr]


def test_a_file_made_executable_in_an_earlier_folder_is_judged(world: World) -> None:
    copy = world.early / "prog"
    shutil.copy(TOUCH, copy)
    copy.chmod(0o644)  # not runnable: the search still finds late/prog
    assert world.run() == 0 and world.run() == 0
    copy.chmod(0o755)
    refused(world)
    assert world.violations[-1].decision.rule_id == "nothing-early"


def test_the_found_file_replaced_is_judged(world: World) -> None:
    # The same path, re-pointed at another program: not the file the memory proved.
    (world.late / "next").symlink_to(TOUCH)
    os.replace(world.late / "next", world.late / "prog")
    refused(world)


def test_a_changed_path_is_a_new_search(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    evil = world.root / "evil"
    evil.mkdir()
    (evil / "prog").symlink_to(TOUCH)
    monkeypatch.setenv("PATH", f"{evil}:{os.environ['PATH']}")
    refused(world)
    monkeypatch.setenv("PATH", os.environ["PATH"].split(":", 1)[1])  # back: true again
    assert world.run() == 0


def test_another_working_folder_is_a_new_start(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `./prog`: the same arguments from another folder name another file.
    (world.root / "prog").symlink_to(TRUE)
    assert subprocess.run(["./prog", str(world.canary)], check=False).returncode == 0
    other = world.root / "other"
    other.mkdir()
    (other / "prog").symlink_to(TOUCH)
    monkeypatch.chdir(other)
    with pytest.raises(PolicyViolation):
        subprocess.run(["./prog", str(world.canary)], check=False)
    assert not world.canary.exists()


def test_the_audit_hooks_lookup_answers_only_a_start_proved_again(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `remembered_start`, what the audit hook's check before the gate asks first: the very
    # remembered start, handed back only for the same PATH entries object, start-up PATH and
    # working folder, and only while the search proves the same; None otherwise, and the
    # start is then described in full (and refused here, the canary never made).
    from appshield.hooks.process.convert import exec_path
    from appshield.settings import STARTUP

    argv = ("prog", str(world.canary))
    hit = _proc_describe.remembered_start("prog", argv, exec_path(), STARTUP.path)
    assert hit is not None
    assert hit is _proc_describe._described[("prog", argv, os.getcwd())][3]
    assert hit.op.executable == TRUE
    # An equal PATH in another tuple, another start-up PATH: not what was remembered.
    assert _proc_describe.remembered_start("prog", argv, (*exec_path(),), STARTUP.path) is None
    assert _proc_describe.remembered_start("prog", argv, exec_path(), STARTUP.path + ":") is None
    # Another working folder: another start.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert _proc_describe.remembered_start("prog", argv, exec_path(), STARTUP.path) is None
    monkeypatch.chdir(world.root)
    assert _proc_describe.remembered_start("prog", argv, exec_path(), STARTUP.path) is hit
    # A program dropped into an earlier PATH folder: the search no longer proves the same.
    (world.early / "prog").symlink_to(TOUCH)
    assert _proc_describe.remembered_start("prog", argv, exec_path(), STARTUP.path) is None
    refused(world)
    assert world.violations[-1].operation.executable == TOUCH  # type: ignore[union-attr]


def test_a_tracer_takes_the_gate_and_still_decides(world: World) -> None:
    def tracer(frame: Any, event: str, arg: Any) -> None:
        return None

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        assert world.run() == 0
        (world.early / "prog").symlink_to(TOUCH)
        with pytest.raises(PolicyViolation):
            world.run()
    finally:
        sys.settrace(previous)
    assert not world.canary.exists()


def test_only_exact_values_are_remembered(world: World) -> None:
    # A str subclass (whose __eq__/__hash__ could lie) is read once by the hooks' readers;
    # only their plain copies can reach the memory, never the caller's object.
    class Text(str):
        def __hash__(self) -> int:
            raise AssertionError("hashed")

        def __eq__(self, other: object) -> bool:
            raise AssertionError("compared")

    assert subprocess.run(["prog", Text("x")], check=False).returncode == 0
    assert subprocess.run([Text("prog"), "x"], check=False).returncode == 0
    for program, argv, here in _proc_describe._described:
        assert type(program) is str and type(here) is str and type(argv) is tuple
        assert all(type(arg) is str for arg in argv)
    assert not world.violations


def test_the_childs_environment_is_asked_again(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A shield that came in through the environment: a Python child is unshielded when the
    # environment it inherits drops the bootstrap from PYTHONPATH, even on a repeat.
    activation = _activate.Activation("bootstrap", "/p.yaml", None, "/p.yaml")
    monkeypatch.setattr(_activate, "_activation", activation)
    for name in ("APPSHIELD_MODE", "APPSHIELD_DISABLE", "APPSHIELD_IDENTITY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("APPSHIELD_POLICY", "/p.yaml")
    monkeypatch.setenv("PYTHONPATH", _activate.BOOTSTRAP_DIR)
    python = [sys.executable, "-c", "pass"]
    for _ in range(2):  # allowed (the child then stops itself: /p.yaml does not exist)
        subprocess.run(python, capture_output=True, check=False)
    assert not world.violations
    monkeypatch.setenv("PYTHONPATH", "")
    with pytest.raises(PolicyViolation):
        subprocess.run(python, capture_output=True, check=False)
    assert world.violations[-1].decision.rule_id == "implicit:unshielded_children"


def test_the_describer_asks_unshielded_again_on_a_repeat(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same check at the describer itself (the fork_exec wrapper asks again too, so the
    # test above would pass even if the memory did not).
    from appshield.hooks.process.convert import exec_path
    from appshield.settings import STARTUP

    activation = _activate.Activation("bootstrap", "/p.yaml", None, "/p.yaml")
    monkeypatch.setattr(_activate, "_activation", activation)
    for name in ("APPSHIELD_MODE", "APPSHIELD_DISABLE", "APPSHIELD_IDENTITY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("APPSHIELD_POLICY", "/p.yaml")
    monkeypatch.setenv("PYTHONPATH", _activate.BOOTSTRAP_DIR)
    argv = (sys.executable, "-c", "pass")

    def describe() -> Any:
        return _proc_describe.describe_start(
            sys.executable, argv, None, search=exec_path(), startup_path=STARTUP.path
        )

    first = describe()
    assert first is not None and not first.op.unshielded
    again = describe()
    assert again == first and again is not None and again.op is not first.op  # a fresh copy
    monkeypatch.setenv("PYTHONPATH", "")
    changed = describe()
    assert changed is not None and changed.op.unshielded


def _bootstrapped(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process as if its shield came in through the environment, and a child
    environment that drops the bootstrap: a Python child would be unshielded."""
    activation = _activate.Activation("bootstrap", "/p.yaml", None, "/p.yaml")
    monkeypatch.setattr(_activate, "_activation", activation)
    for name in ("APPSHIELD_MODE", "APPSHIELD_DISABLE", "APPSHIELD_IDENTITY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("APPSHIELD_POLICY", "/p.yaml")
    monkeypatch.setenv("PYTHONPATH", "")


def test_the_child_check_remembers_names_per_program_and_argv0(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `_proc_children` remembers whether (program, argv[0]) look like a Python interpreter's
    # names. `true` started as `true` is not Python; the same program started as `python3`
    # is judged as one (argv[0] counts), whatever was remembered for the first.
    from appshield import _proc_children

    _bootstrapped(monkeypatch)
    for _ in range(2):
        assert subprocess.run([TRUE], check=False).returncode == 0
    assert _proc_children._named.get((TRUE, TRUE)) is False
    with pytest.raises(PolicyViolation):
        subprocess.run(["python3", "-c", "pass"], executable=TRUE, check=False)
    assert world.violations[-1].decision.rule_id == "implicit:unshielded_children"
    assert _proc_children._named.get((TRUE, "python3")) is True


def test_a_program_replaced_by_this_interpreter_is_judged_as_python(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `tool` started as a program that is not Python (remembered so, with its names), then
    # re-pointed at this interpreter: the next start is a Python child, unshielded here.
    _bootstrapped(monkeypatch)
    tool = world.root / "tool"
    tool.symlink_to(TRUE)
    for _ in range(2):
        assert subprocess.run([str(tool)], check=False).returncode == 0
    os.remove(tool)
    tool.symlink_to(os.path.realpath(sys.executable))
    with pytest.raises(PolicyViolation):
        subprocess.run([str(tool), "-c", f"open({str(world.canary)!r}, 'w')"], check=False)
    assert not world.canary.exists()
    assert world.violations[-1].decision.rule_id == "implicit:unshielded_children"


def test_the_child_check_remembers_only_exact_names(monkeypatch: pytest.MonkeyPatch) -> None:
    from appshield import _proc_children

    class Text(str):
        pass

    activation = _activate.Activation("bootstrap", "/p.yaml", None, "/p.yaml")
    before = dict(_proc_children._named)
    assert not _proc_children.child_would_be_unshielded(
        [Text("true")], None, executable=Text(TRUE), parent=activation
    )
    assert _proc_children._named == before


def test_each_description_is_a_new_operation_unless_reuse_is_asked(world: World) -> None:
    # The shadow decider and the recorder know a second decision of one attempt by the
    # operation's identity: a remembered start is handed out as a copy, except to the audit
    # hook's check before the gate, which runs only for the policy's own decider.
    from appshield.hooks.process.convert import exec_path
    from appshield.settings import STARTUP

    def describe(reuse: bool) -> Any:
        return _proc_describe.describe_start(
            "prog", ("prog",), None, search=exec_path(), startup_path=STARTUP.path, reuse=reuse
        )

    first, second = describe(False), describe(False)
    assert first == second and first.op is not second.op
    assert describe(True) is describe(True)


SHADOW_APP = """\
import os, subprocess, appshield
appshield.install(os.environ["TEST_POLICY"], mode="enforce")
for _ in range(4):
    subprocess.run(["true"], check=True)
"""


def test_a_shadow_candidate_sees_every_repeated_start(tmp_path: Path) -> None:
    # Four starts in a row, nothing else decided in between: the deny-all candidate reports
    # the first and folds the other three into its summary (a start described from memory
    # is still a new attempt).
    from tests.telemetry.apps import clean_env

    (tmp_path / "policy.yaml").write_text(
        "version: 1\nname: allow-all\n"
        "defaults: {process: allow, file: allow, network: allow, import: allow}\n"
    )
    (tmp_path / "shadow.yaml").write_text(
        "version: 1\nname: deny-all\n"
        "defaults: {process: deny, file: deny, network: deny, import: deny}\n"
    )
    (tmp_path / "app.py").write_text(SHADOW_APP)
    log = tmp_path / "violations.jsonl"
    env = clean_env(
        TEST_POLICY=str(tmp_path / "policy.yaml"),
        APPSHIELD_SHADOW_POLICY=str(tmp_path / "shadow.yaml"),
        APPSHIELD_LOG=str(log),
    )
    done = subprocess.run(
        [sys.executable, str(tmp_path / "app.py")], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    starts = [x for x in lines if x["api"] == "subprocess.Popen"]
    assert all(x["shadow"] is True for x in starts)
    assert len([x for x in starts if not x.get("summary")]) == 1
    assert sum(x["suppressed_count"] for x in starts if x.get("summary")) == 3


def test_a_start_inside_appshields_own_work_is_left_to_the_hooks_busy_rule(world: World) -> None:
    # The audit hook asks `_popen_allowed` before it reads the thread's `busy` flag. Inside
    # appshield's own work (`appshield_io`), the check answers False and marks nothing: the
    # hook then lets the start through by its busy rule, as before, and no mark is left for
    # a later fork_exec to take as already decided.
    from appshield._threadstate import appshield_io
    from appshield.hooks import process as process_hooks

    args = ("prog", ["prog", str(world.canary)], None, None)
    assert process_hooks._popen_allowed(args)  # outside: a remembered, allowed start
    process_hooks._started.mark = None
    with appshield_io():
        assert not process_hooks._popen_allowed(args)
        assert process_hooks._started.mark is None
        assert world.run() == 0
    assert process_hooks._started.mark is None
    assert world.run() == 0 and not world.violations
