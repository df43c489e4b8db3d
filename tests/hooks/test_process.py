"""In-process tests of the process hooks: refused before the program starts, transparent when
allowed, judged by the resolved program, decided once per start, threads, asyncio and fork.
Real processes and files in tmp_path; each test installs its own shield and removes it."""

from __future__ import annotations

import _posixsubprocess
import asyncio
import errno
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from appshield import activation as _activate
from appshield import runtime
from appshield.errors import PolicyViolation
from appshield.operations import ProcessOp
from appshield.policy import Policy
from appshield.report import Violation

TOUCH = os.path.realpath(shutil.which("touch") or "/usr/bin/touch")
SHELL = os.path.realpath("/bin/sh")
ALLOW_ALL = {"process": "allow", "file": "allow", "network": "allow", "import": "allow"}
RULES = [
    {"id": "no-touch", "category": "process", "action": "deny", "match": {"executable": "touch"}},
    {"id": "no-shell", "category": "process", "action": "deny", "match": {"shell": True}},
]


@dataclass
class World:
    root: Path
    canary: Path
    violations: list[Violation] = field(default_factory=list)

    @property
    def ops(self) -> list[ProcessOp]:
        return [v.operation for v in self.violations]  # type: ignore[misc]


def _install(tmp_path: Path, mode: str, rules: list[dict[str, Any]] | None = None) -> World:
    root = Path(os.path.realpath(tmp_path))
    world = World(root, root / "canary")
    policy = {"version": 1, "mode": mode, "defaults": ALLOW_ALL, "rules": rules or RULES}
    handle = runtime.install(Policy.from_mapping(policy))
    handle._shield.add_listener(world.violations.append)
    return world


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    try:
        yield _install(tmp_path, "enforce")
    finally:
        runtime.uninstall()


@pytest.fixture
def monitored(tmp_path: Path) -> Iterator[World]:
    try:
        yield _install(tmp_path, "monitor")
    finally:
        runtime.uninstall()


def refused(call: Callable[[], Any]) -> PolicyViolation:
    with pytest.raises(PolicyViolation) as info:
        call()
    assert info.value.errno == errno.EACCES
    return info.value


STARTS: dict[str, Callable[[World], Any]] = {
    "run": lambda w: subprocess.run(["touch", w.canary]),
    "run-bytes": lambda w: subprocess.run([b"touch", os.fsencode(w.canary)]),
    "run-pathlike": lambda w: subprocess.run([Path(TOUCH), w.canary]),
    "run-executable": lambda w: subprocess.run(["ls", w.canary], executable=TOUCH),
    "run-env-path": lambda w: subprocess.run(["touch", w.canary], env={"PATH": "/usr/bin"}),
    "run-shell": lambda w: subprocess.run(f"true; touch {w.canary}", shell=True),
    "run-sh-c": lambda w: subprocess.run(["sh", "-c", f"touch {w.canary}"]),
    "run-close-fds-false": lambda w: subprocess.run([TOUCH, w.canary], close_fds=False),
    "os.system": lambda w: os.system(f"touch {w.canary}"),
    "os.popen": lambda w: os.popen(f"touch {w.canary}").read(),
    "os.spawnlp": lambda w: os.spawnlp(os.P_WAIT, "touch", "touch", str(w.canary)),
    "os.spawnv": lambda w: os.spawnv(os.P_WAIT, TOUCH, ["touch", str(w.canary)]),
    "os.posix_spawn": lambda w: os.posix_spawn(TOUCH, ["touch", str(w.canary)], {}),
    "os.posix_spawnp": lambda w: os.posix_spawnp("touch", ["touch", str(w.canary)], os.environ),
}


@pytest.mark.parametrize("route", sorted(STARTS))
def test_denied_start_is_refused_before_it_happens(world: World, route: str) -> None:
    refused(lambda: STARTS[route](world))
    assert not world.canary.exists()


def test_the_operation_names_the_resolved_program(world: World) -> None:
    refused(lambda: subprocess.run(["ls", world.canary], executable=TOUCH))
    op = world.ops[0]
    assert op.executable == TOUCH and op.argv == ("ls", str(world.canary))
    assert op.trusted_location and not op.shell and op.cwd == os.getcwd()
    refused(lambda: subprocess.run("true", shell=True, cwd=world.root))
    op = world.ops[1]
    assert op.executable == SHELL and op.argv == ("/bin/sh", "-c", "true") and op.shell
    assert op.cwd == str(world.root)


def test_a_copy_under_an_allowed_name_is_not_trusted(tmp_path: Path) -> None:
    root = Path(os.path.realpath(tmp_path))
    shutil.copy(TOUCH, root / "git")
    only_git = [
        {"id": "only-git", "category": "process", "action": "deny", "match": {}}
        | {"unless": {"executable": "git"}}
    ]
    try:
        world = _install(tmp_path, "enforce", only_git)
        refused(lambda: subprocess.run(["git", world.canary], env={"PATH": str(root)}))
        refused(lambda: subprocess.run(["./git", world.canary], cwd=root))
        assert world.ops[0].executable == str(root / "git")
        assert not world.ops[0].trusted_location
    finally:
        runtime.uninstall()
    assert not (root / "canary").exists()


def test_a_symlink_is_judged_as_its_target(world: World) -> None:
    os.symlink(TOUCH, world.root / "ls")
    refused(lambda: subprocess.run([world.root / "ls", world.canary]))
    assert world.ops[0].executable == TOUCH


# -- transparent when allowed ---------------------------------------------------------------


def test_allowed_starts_behave_as_usual(world: World) -> None:
    done = subprocess.run(["echo", "hi"], capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (0, "hi\n")
    assert subprocess.check_output([sys.executable, "-c", "print(6*7)"]) == b"42\n"
    assert subprocess.call(["false"]) == 1
    assert os.spawnlp(os.P_WAIT, "true", "true") == 0
    pid = os.posix_spawnp("true", ["true"], os.environ)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    assert not world.violations


def test_a_missing_program_raises_the_usual_error(world: World) -> None:
    def error() -> tuple[type, int | None, Any]:
        with pytest.raises(OSError) as info:
            subprocess.run(["no-such-program-xyz"])
        return type(info.value), info.value.errno, info.value.filename

    shielded = error()
    runtime.uninstall()
    try:
        bare = error()
    finally:
        runtime.install(Policy.from_mapping({"version": 1, "defaults": ALLOW_ALL, "rules": RULES}))
    assert shielded == bare


def test_each_start_is_reported_once(monitored: World) -> None:
    subprocess.run(["touch", monitored.canary])  # Popen event, then fork_exec
    subprocess.run([TOUCH, monitored.canary], close_fds=False)  # Popen event, then posix_spawn
    os.spawnv(os.P_WAIT, TOUCH, ["touch", str(monitored.canary)])  # wrapper, then child exec
    pid = os.posix_spawn(TOUCH, ["touch", str(monitored.canary)], {})
    os.waitpid(pid, 0)
    assert monitored.canary.exists()
    assert [v.api for v in monitored.violations] == [
        "subprocess.Popen",
        "subprocess.Popen",
        "os.spawn",
        "os.posix_spawn",
    ]


def test_multiprocessing_start_is_checked(tmp_path: Path) -> None:
    import multiprocessing

    rules = [
        {
            "id": "no-mp",
            "category": "process",
            "action": "deny",
            "match": {"command_line": "*spawn_main*"},
        }
    ]
    try:
        world = _install(tmp_path, "enforce", rules)
        process = multiprocessing.get_context("spawn").Process(target=print)
        refused(process.start)
        assert world.ops[0].executable == os.path.realpath(sys.executable)
    finally:
        runtime.uninstall()


def test_asyncio_subprocess_is_checked(world: World) -> None:
    async def start() -> None:
        process = await asyncio.create_subprocess_exec("touch", str(world.canary))
        await process.wait()

    refused(lambda: asyncio.run(start()))
    assert not world.canary.exists()


def test_threads_are_checked(world: World) -> None:
    errors: list[BaseException] = []

    def work() -> None:
        try:
            subprocess.run(["true"], check=True)
            subprocess.run(["touch", world.canary])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 3 and all(isinstance(e, PolicyViolation) for e in errors)


def test_a_forked_child_keeps_the_shield(world: World) -> None:
    pid = os.fork()
    if pid == 0:
        try:
            os.execv(TOUCH, ["touch", str(world.canary)])
        except PolicyViolation:
            os._exit(0)
        finally:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert not world.canary.exists()


def test_unshielded_python_child_when_started_through_the_environment(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    activation = _activate.Activation("bootstrap", "/p.yaml", None, "/p.yaml")
    monkeypatch.setattr(_activate, "_activation", activation)
    env = {"APPSHIELD_POLICY": "/p.yaml", "PYTHONPATH": _activate.BOOTSTRAP_DIR}
    refused(lambda: subprocess.run([sys.executable, "-I", "-c", "pass"], env=env))
    refused(lambda: subprocess.run([sys.executable, "-c", "pass"], env={**env, "PYTHONPATH": ""}))
    # The child reads the first of a name given twice: here the one without the bootstrap
    shadowed = {"PYTHONPATH": "", **{k.encode(): v.encode() for k, v in env.items()}}
    refused(lambda: subprocess.run([sys.executable, "-c", "pass"], env=shadowed))
    assert all(op.unshielded for op in world.ops)
    assert [v.decision.rule_id for v in world.violations] == ["implicit:unshielded_children"] * 3
    # The control: a later empty PYTHONPATH leaves the bootstrap in front, so the start goes
    # ahead (the child then stops itself: /p.yaml does not exist)
    kept = {**env, b"PYTHONPATH": b""}
    subprocess.run([sys.executable, "-c", "pass"], env=kept, capture_output=True, check=False)
    assert len(world.violations) == 3


def test_installed_from_code_children_are_not_unshielded(world: World) -> None:
    subprocess.run([sys.executable, "-I", "-c", "pass"], check=True)
    assert not world.violations


def test_uninstall_restores_the_identical_objects(tmp_path: Path) -> None:
    names = [
        (_posixsubprocess, "fork_exec"),
        (os, "posix_spawn"),
        (os, "posix_spawnp"),
        (os, "spawnv"),
        (os, "spawnvpe"),
    ]
    if hasattr(subprocess, "_fork_exec"):  # bound at import from 3.11 on
        names.append((subprocess, "_fork_exec"))
    before = [getattr(m, n) for m, n in names]
    try:
        _install(tmp_path, "enforce")
        assert all(getattr(m, n) is not b for (m, n), b in zip(names, before, strict=True))
    finally:
        runtime.uninstall()
    assert all(getattr(m, n) is b for (m, n), b in zip(names, before, strict=True))


def test_keyword_arguments_still_work(world: World) -> None:
    assert os.spawnv(mode=os.P_WAIT, file="/usr/bin/true", args=["true"]) == 0
    refused(lambda: os.spawnv(mode=os.P_WAIT, file=TOUCH, args=["touch", str(world.canary)]))
    pid = os.posix_spawn("/usr/bin/true", ["true"], {}, setsid=True)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


# -- what the wrappers hand the OS is what was judged ----------------------------------------

NO_CANARY_ARGS = {
    "id": "no-canary-args",
    "category": "process",
    "action": "deny",
    "match": {"command_line": "*CANARY*"},
}


# (the subprocess function that holds the program, its local, the value to put there)
SWAPS = {
    # a bare name: fork_exec on every version, handed the PATH candidates
    "fork_exec": ("_execute_child", "executable_list", (os.fsencode(TOUCH),)),
    # close_fds=False: posix_spawn on every version, handed the program
    "posix_spawn": ("_posix_spawn", "executable", TOUCH),
}


@pytest.mark.parametrize("route", sorted(SWAPS))
def test_a_tracer_that_swaps_the_program_after_the_popen_event_is_refused(
    world: World, route: str
) -> None:
    # The event judged `true`; a tracer then rebinds what subprocess hands the C function.
    function, name, value = SWAPS[route]
    swapped: list[int] = []

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        if frame.f_code.co_name != function:
            return None

        def swap(frame: Any, event: str, arg: Any) -> Any:
            if name in frame.f_locals and frame.f_locals[name] != value:
                frame.f_locals[name] = value
                swapped.append(frame.f_lineno)
            return swap

        return swap

    if route == "fork_exec":
        start = lambda: subprocess.run(["true", world.canary])  # noqa: E731
    else:
        start = lambda: subprocess.run(["/usr/bin/true", world.canary], close_fds=False)  # noqa: E731
    sys.settrace(tracer)
    try:
        refused(start)
    finally:
        sys.settrace(None)
    assert swapped, "the tracer never found what it swaps: the test proves nothing"
    assert not world.canary.exists()
    assert world.ops[-1].executable == TOUCH


def _with_audit_hook(edit: Callable[[tuple[Any, ...]], None]) -> Callable[[], None]:
    """An audit hook added after the shield's, active until the returned function is called:
    it runs after appshield decided the event, and edits the objects the event carried."""
    active = [True]

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if active[0] and event == "subprocess.Popen":
            edit(args)

    sys.addaudithook(hook)
    return lambda: active.__setitem__(0, False)


def test_an_environment_changed_after_the_popen_event_is_judged_again(world: World) -> None:
    evil = world.root / "evil"
    evil.mkdir()
    (evil / "true").symlink_to(TOUCH)

    def repoint(args: tuple[Any, ...]) -> None:
        if type(args[3]) is dict and args[3].get("MARKER") == "1":
            args[3]["PATH"] = str(evil)

    stop = _with_audit_hook(repoint)
    try:
        refused(
            lambda: subprocess.run(["true", world.canary], env={"PATH": "/usr/bin", "MARKER": "1"})
        )
    finally:
        stop()
    assert not world.canary.exists()


def test_argv_edited_after_the_popen_event_is_judged_again(tmp_path: Path) -> None:
    mkdir = os.path.realpath(shutil.which("mkdir") or "/bin/mkdir")
    try:
        world = _install(tmp_path, "enforce", [*RULES, NO_CANARY_ARGS])
        target = world.root / "CANARY"

        def edit(args: tuple[Any, ...]) -> None:
            if args[1][:1] == [mkdir]:
                args[1][1] = str(target)

        stop = _with_audit_hook(edit)
        try:
            refused(lambda: subprocess.run([mkdir, str(world.root / "harmless")]))
        finally:
            stop()
        assert not target.exists()
    finally:
        runtime.uninstall()


def test_a_one_item_argv_edited_after_the_popen_event_is_judged_again(tmp_path: Path) -> None:
    # The fork_exec wrapper compares a one-item argv inline (its only item by identity): the
    # item swapped after the event, for touch's path (a deny also checks argv[0]), must send
    # the call through the gate, which refuses it. `true` still runs if it is let through,
    # so the refusal and the reported argv are the proof.
    try:
        world = _install(tmp_path, "enforce", [*RULES, NO_CANARY_ARGS])
        true = os.path.realpath(shutil.which("true") or "/bin/true")
        assert subprocess.run([true], check=False).returncode == 0  # remembered, then repeated
        assert subprocess.run([true], check=False).returncode == 0

        def edit(args: tuple[Any, ...]) -> None:
            if args[1] == [true]:
                args[1][0] = TOUCH

        stop = _with_audit_hook(edit)
        try:
            refused(lambda: subprocess.run([true]))
        finally:
            stop()
        assert world.ops[-1].argv == (TOUCH,)
        assert world.violations[-1].decision.rule_id == "no-touch"
    finally:
        runtime.uninstall()


def test_dot_dot_after_a_symlink_is_walked_as_the_kernel_walks_it(world: World) -> None:
    # `a/link/../bin/touch` with `link` -> /usr/bin: the kernel follows the link before the
    # `..` and lands on /usr/bin/touch; folded as text first, it would name a/bin/touch (here
    # a harmless copy of true).
    folder = Path(TOUCH).parent
    (world.root / "a" / "bin").mkdir(parents=True)
    shutil.copy("/usr/bin/true", world.root / "a" / "bin" / Path(TOUCH).name)
    (world.root / "a" / "link").symlink_to(folder)
    program = f"{world.root}/a/link/../{folder.name}/{Path(TOUCH).name}"
    assert os.path.realpath(program) == TOUCH
    refused(lambda: subprocess.run(["prog", world.canary], executable=program))
    assert world.ops[0].executable == TOUCH
    assert not world.canary.exists()


def test_only_the_judged_path_candidate_is_run(tmp_path: Path) -> None:
    # An executable that execve refuses (no #!, not a binary) earlier on PATH: fork_exec's
    # child would go on to the next candidate, which was never judged.
    junk = Path(os.path.realpath(tmp_path)) / "junk"
    junk.mkdir()
    (junk / "touch").write_bytes(b"\x00\x01not a program\n")
    (junk / "touch").chmod(0o755)
    by_path = [
        {"id": "no-touch", "category": "process", "action": "deny", "match": {"executable": TOUCH}}
    ]
    try:
        world = _install(tmp_path, "enforce", by_path)
        env = {"PATH": f"{junk}:{os.path.dirname(TOUCH)}"}
        with pytest.raises(OSError) as info:
            subprocess.run(["touch", world.canary], env=env)
        assert info.value.errno == errno.ENOEXEC
        assert not world.canary.exists()
        assert not world.violations  # the junk file was judged (allowed), and only it ran
    finally:
        runtime.uninstall()


def test_posix_spawnp_runs_the_program_it_judged(world: World) -> None:
    # os.putenv changes the C library's PATH but not os.environ's: posix_spawnp's own search
    # would find another program than the one judged. It is handed the judged file.
    evil = world.root / "evil"
    evil.mkdir()
    (evil / "true").symlink_to(TOUCH)
    os.putenv("PATH", str(evil))
    try:
        pid = os.posix_spawnp("true", ["true", str(world.canary)], os.environ)
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    finally:
        os.putenv("PATH", os.environ["PATH"])
    assert not world.canary.exists()
    assert not world.violations


def test_a_nested_start_cannot_borrow_the_wrappers_pass(tmp_path: Path) -> None:
    # A posix_spawn option whose __bool__ starts another program through the unwrapped
    # original, with the very path object of the outer call: its own event must be judged.
    mkdir = os.path.realpath(shutil.which("mkdir") or "/bin/mkdir")
    try:
        world = _install(tmp_path, "enforce", [*RULES, NO_CANARY_ARGS])
        target = world.root / "CANARY"
        original = os.posix_spawn.__wrapped__  # type: ignore[attr-defined]

        class Sneaky:
            def __bool__(self) -> bool:
                pid = original(mkdir, ["mkdir", str(target)], {})
                os.waitpid(pid, 0)
                return False

        with pytest.raises(PolicyViolation):
            pid = os.posix_spawn(
                mkdir, ["mkdir", str(world.root / "harmless")], {}, setsid=Sneaky()
            )
            os.waitpid(pid, 0)
        assert not target.exists()
    finally:
        runtime.uninstall()


def test_exec_wrappers_convert_pathlike_arguments(world: World) -> None:
    pid = os.fork()
    if pid == 0:
        try:
            os.execv(Path(TOUCH), ["prog", Path(world.canary)])
        except PolicyViolation:
            os._exit(0)
        finally:
            os._exit(2)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    assert not world.canary.exists()


BAD_CALLS: dict[str, Callable[[], Any]] = {
    "fork_exec str candidate": lambda: _posixsubprocess.fork_exec(
        [b"true"], ["/usr/bin/true"], True, (), None, None, *(-1,) * 8, False, False
    ),
    "posix_spawn argv not a list": lambda: os.posix_spawn("/usr/bin/true", "true", {}),
    "posix_spawn env not a mapping": lambda: os.posix_spawn("/usr/bin/true", ["true"], [1]),
    "posix_spawn int argv item": lambda: os.posix_spawn("/usr/bin/true", ["true", 1], {}),
    "posix_spawn bad file action": lambda: os.posix_spawn(
        "/usr/bin/true", ["true"], {}, file_actions=[("x",)]
    ),
    "posix_spawn unknown option": lambda: os.posix_spawn("/usr/bin/true", ["true"], {}, nope=1),
    "execv keyword": lambda: os.execv(path="/nonexistent", argv=["x"]),  # type: ignore[call-arg]
    "execv missing program": lambda: os.execv("/nonexistent/x", ["x"]),
    "execv NUL": lambda: os.execv("/usr/bin/tr\x00ue", ["true"]),
    "spawnv not a list": lambda: os.spawnv(os.P_WAIT, "/usr/bin/true", "true"),
    "run int argv item": lambda: subprocess.run(["true", 1]),
    "run NUL": lambda: subprocess.run(["true\x00x"]),
}


@pytest.mark.parametrize("name", sorted(BAD_CALLS))
def test_bad_arguments_fail_as_without_the_shield(tmp_path: Path, name: str) -> None:
    def error() -> type[BaseException]:
        with pytest.raises(BaseException) as info:  # the type is compared below
            BAD_CALLS[name]()
        return info.type

    bare = error()
    _install(tmp_path, "enforce")
    try:
        shielded = error()
    finally:
        runtime.uninstall()
    assert issubclass(shielded, bare) or issubclass(bare, shielded)
