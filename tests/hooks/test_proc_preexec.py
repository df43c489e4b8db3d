"""The program cannot change between the decision and the exec: `preexec_fn` (run in the
forked child before the exec) is followed by a check of the program in the child, and a
program that cannot be found is judged where code can still run before the exec.

Real processes, files in tmp_path and real symlinks; each test installs its own shield."""

from __future__ import annotations

import ast
import asyncio
import errno
import inspect
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appshield import runtime
from appshield.errors import PolicyViolation
from appshield.hooks.process import preexec as _proc_preexec
from appshield.operations import ProcessOp
from appshield.policy import Policy
from appshield.report import Violation

TOUCH = os.path.realpath(shutil.which("touch") or "/usr/bin/touch")
TRUE = os.path.realpath(shutil.which("true") or "/usr/bin/true")
ALLOW_ALL = {"process": "allow", "file": "allow", "network": "allow", "import": "allow"}
NO_TOUCH = [
    {"id": "no-touch", "category": "process", "action": "deny", "match": {"executable": TOUCH}}
]


class Shield:
    def __init__(self, root: Path, mode: str, defaults: dict[str, str], rules: Any) -> None:
        policy = {"version": 1, "mode": mode, "defaults": defaults, "rules": rules}
        handle = runtime.install(Policy.from_mapping(policy))
        self.violations: list[Violation] = []
        handle._shield.add_listener(self.violations.append)
        self.root = root
        self.canary = root / "canary"

    @property
    def apis(self) -> list[str]:
        return [v.api for v in self.violations]


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    real = Path(os.path.realpath(tmp_path))
    here = os.getcwd()
    os.chdir(real)
    try:
        yield real
    finally:
        os.chdir(here)
        runtime.uninstall()


def shield(root: Path, mode: str = "enforce", process: str = "allow", rules: Any = None) -> Shield:
    defaults = {**ALLOW_ALL, "process": process}
    return Shield(root, mode, defaults, NO_TOUCH if rules is None else rules)


def repoint(link: str, target: str) -> None:
    os.unlink(link)
    os.symlink(target, link)


@pytest.mark.parametrize("mode", ["enforce", "monitor"])
def test_a_link_repointed_by_preexec_fn_is_judged_again(root: Path, mode: str) -> None:
    os.symlink(TRUE, "prog")
    world = shield(root, mode)
    run = lambda: subprocess.run(  # noqa: E731
        ["./prog", str(world.canary)], preexec_fn=lambda: repoint("prog", TOUCH)
    )
    if mode == "enforce":
        with pytest.raises(PolicyViolation) as info:
            run()
        assert info.value.api == _proc_preexec.API and info.value.rule_id == "no-touch"
        assert not world.canary.exists()
    else:
        assert run().returncode == 0
        assert world.canary.exists()
    assert world.apis == [_proc_preexec.API]
    op = world.violations[0].operation
    assert isinstance(op, ProcessOp) and op.executable == TOUCH
    assert world.violations[0].decision.blocked is (mode == "enforce")


def test_an_unchanged_program_runs_as_without_the_shield(root: Path) -> None:
    shield(root)
    calls = []
    code = "import sys; sys.exit(7)"
    done = subprocess.run([sys.executable, "-c", code], preexec_fn=lambda: calls.append(1))
    assert done.returncode == 7
    assert calls == []  # it ran in the child
    # The app's function may close every descriptor: appshield's pipes go with them.
    closed = subprocess.run([TRUE], preexec_fn=lambda: os.closerange(3, 4096))
    assert closed.returncode == 0
    # What it returns is dropped, as subprocess drops it.
    assert subprocess.run([TRUE], preexec_fn=lambda: object()).returncode == 0


def test_an_exception_in_preexec_fn_is_reported_as_before(root: Path) -> None:
    shield(root)

    def fails() -> None:
        raise ValueError("no")

    with pytest.raises(subprocess.SubprocessError, match="preexec_fn"):
        subprocess.run([TRUE], preexec_fn=fails)
    with pytest.raises(subprocess.SubprocessError, match="preexec_fn"):
        subprocess.run([TRUE], preexec_fn="not callable")  # type: ignore[arg-type]


def test_no_appshield_descriptor_reaches_the_program(root: Path) -> None:
    listing = [sys.executable, "-c", "import os; print(sorted(os.listdir('/proc/self/fd')))"]
    bare = subprocess.run(listing, close_fds=False, preexec_fn=lambda: None, capture_output=True)
    shield(root)
    shielded = subprocess.run(
        listing, close_fds=False, preexec_fn=lambda: None, capture_output=True
    )
    assert shielded.stdout == bare.stdout


def test_a_preexec_fn_that_execs_is_judged_in_the_child(root: Path) -> None:
    world = shield(root)

    def execs() -> None:
        os.execv(TOUCH, ["touch", str(world.canary)])

    # The child's exec hook refuses it there; subprocess reports the child's exception.
    with pytest.raises(subprocess.SubprocessError, match="preexec_fn"):
        subprocess.run([TRUE], preexec_fn=execs)
    assert not world.canary.exists()


@pytest.mark.parametrize("mode", ["enforce", "monitor"])
def test_a_child_that_cannot_report_a_change_does_not_exec(root: Path, mode: str) -> None:
    os.symlink(TRUE, "prog")
    world = shield(root, mode)

    def silence_then_repoint() -> None:
        os.closerange(3, 4096)
        repoint("prog", TOUCH)

    done = subprocess.run(["./prog", str(world.canary)], preexec_fn=silence_then_repoint)
    assert done.returncode == 127
    assert not world.canary.exists()


@pytest.mark.parametrize("mode", ["enforce", "monitor"])
def test_a_forged_all_clear_does_not_let_a_change_through(root: Path, mode: str) -> None:
    os.symlink(TRUE, "prog")
    world = shield(root, mode)

    def fifos() -> set[int]:
        found = set()
        for name in os.listdir("/proc/self/fd"):
            try:
                if stat.S_ISFIFO(os.fstat(int(name)).st_mode):
                    found.add(int(name))
            except OSError:
                pass
        return found

    older = fifos()  # the test runner's own pipes: left alone

    def forge_then_repoint() -> None:
        for fd in fifos() - older:  # subprocess's error pipe and appshield's
            try:
                os.write(fd, b"=+")
            except OSError:
                pass
        repoint("prog", TOUCH)

    try:
        done = subprocess.run(
            ["./prog", str(world.canary)],
            preexec_fn=forge_then_repoint,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    except subprocess.SubprocessError:
        pass  # the bytes also reached subprocess's own error pipe
    else:
        assert done.returncode == 127
    assert not world.canary.exists()


def test_a_missing_program_is_denied_under_default_deny(root: Path) -> None:
    world = shield(root, process="deny", rules=[])
    for run in (
        lambda: subprocess.run(["./no-such-program"]),
        lambda: subprocess.run(["no-such-program-xyz"]),
        lambda: os.posix_spawn("./no-such-program", ["x"], os.environ),
        lambda: os.spawnv(os.P_WAIT, "./no-such-program", ["x"]),
    ):
        with pytest.raises(PolicyViolation) as info:
            run()
        assert info.value.rule_id == "default:process"
        assert info.value.errno == errno.EACCES
    ops = [v.operation for v in world.violations]
    first = os.path.realpath(os.path.join(os.get_exec_path()[0], "no-such-program-xyz"))
    assert [op.executable for op in ops] == [  # type: ignore[union-attr]
        f"{root}/no-such-program",
        first,
        f"{root}/no-such-program",
        f"{root}/no-such-program",
    ]


def test_a_missing_program_is_reported_once_in_monitor(root: Path) -> None:
    world = shield(root, "monitor", process="deny", rules=[])
    for argv in (["./no-such-program"], ["no-such-program-xyz"]):
        with pytest.raises(FileNotFoundError):
            subprocess.run(argv)  # the Popen event decides; fork_exec knows it was decided
    assert world.apis == ["subprocess.Popen", "subprocess.Popen"]


def test_a_missing_program_an_allow_rule_names_fails_as_usual(root: Path) -> None:
    allow = [
        {"id": "name", "category": "process", "action": "allow", "match": {"executable": "zz-x"}},
        {"id": "path", "category": "process", "action": "allow", "match": {"executable": "/x/y"}},
    ]
    shield(root, process="deny", rules=allow)
    for argv in (["zz-x"], ["/x/y"]):
        with pytest.raises(FileNotFoundError):
            subprocess.run(argv)
    # A copy under that name in a folder the app writes is not trusted, present or not.
    with pytest.raises(PolicyViolation):
        subprocess.run(["./zz-x"])


def test_the_exec_family_leaves_a_missing_program_to_the_kernel(root: Path) -> None:
    # An exec is the start itself: nothing runs between its decision and the system call.
    shield(root, process="deny", rules=[])
    pid = os.fork()
    if pid == 0:
        try:
            os.execv("./no-such-program", ["x"])
        except FileNotFoundError:
            os._exit(3)
        finally:
            os._exit(1)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 3


@pytest.mark.parametrize("mode", ["enforce", "monitor"])
def test_a_missing_program_made_runnable_by_preexec_fn(root: Path, mode: str) -> None:
    shutil.copy(TOUCH, "tool")
    os.chmod("tool", 0o644)
    world = shield(root, mode)  # the missing program is allowed; the copy of touch is too
    done = subprocess.run(["./tool", str(world.canary)], preexec_fn=lambda: os.chmod("tool", 0o755))
    assert done.returncode == 0 and world.canary.exists()
    assert world.violations == []
    # A link to touch made in its place is touch.
    os.unlink("tool")
    world.canary.unlink()
    make_link = lambda: os.symlink(TOUCH, "tool")  # noqa: E731
    if mode == "enforce":
        with pytest.raises(PolicyViolation):
            subprocess.run(["./tool", str(world.canary)], preexec_fn=make_link)
        assert not world.canary.exists()
    else:
        subprocess.run(["./tool", str(world.canary)], preexec_fn=make_link)
        assert world.canary.exists()
    assert world.apis == [_proc_preexec.API]


def test_a_missing_relative_program_is_not_found_from_another_folder(root: Path) -> None:
    # The child gets the candidates as absolute paths: a preexec_fn that changes folder
    # cannot make a missing relative program mean another file (a found one is handed on
    # by its absolute path already).
    (root / "elsewhere").mkdir()
    os.symlink(TOUCH, root / "elsewhere" / "tool")
    world = shield(root, "monitor")
    with pytest.raises(FileNotFoundError):
        subprocess.run(["./tool", str(world.canary)], preexec_fn=lambda: os.chdir("elsewhere"))
    assert not world.canary.exists()


def test_an_asyncio_subprocess_with_preexec_fn_is_checked(root: Path) -> None:
    os.symlink(TRUE, "prog")
    world = shield(root)

    async def main() -> None:
        proc = await asyncio.create_subprocess_exec(
            "./prog", str(world.canary), preexec_fn=lambda: repoint("prog", TOUCH)
        )
        await proc.wait()

    with pytest.raises(PolicyViolation):
        asyncio.run(main())
    assert not world.canary.exists()


def test_preexec_fn_position_matches_this_python() -> None:
    # fork_exec is positional-only; subprocess passes preexec_fn right where appshield looks.
    source = textwrap.dedent(inspect.getsource(subprocess.Popen._execute_child))
    calls = [
        node
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("fork_exec")
    ]
    assert len(calls) == 1
    argument = calls[0].args[_proc_preexec.PREEXEC_INDEX]
    assert isinstance(argument, ast.Name) and argument.id == "preexec_fn"
