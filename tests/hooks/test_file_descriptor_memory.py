"""Remembered allowed changes through a descriptor (hooks/_file_cache.py, and the audit hook's
check of a repeat: hooks/file/describe.py `descriptor_repeat`).

gunicorn's sync worker touches its heartbeat file with `os.utime(fd)` once a request; an
allowed change through a descriptor is therefore remembered, and a repeat is let through
before the gate only while the kernel's path for the descriptor (/proc/self/fd/N, read again
each time) is the one allowed. Every way of making the same number name another file (close
and reopen, `dup2`, a rename by another process), a policy reload and a caller the policy
could judge otherwise must reach a full decision. Each attack runs twice: without the shield
(control: the same steps do change the target, so a refusal is the shield's) and with it
(refused, target untouched). Real files in tmp dirs, a real `mv` process."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from appshield import runtime
from appshield.errors import PolicyViolation
from appshield.hooks import _file_cache
from appshield.hooks.file.describe import descriptor_repeat
from appshield.policy import Policy
from appshield.report import Violation
from appshield.settings import STARTUP

ALLOW_ALL = {"process": "allow", "file": "allow", "network": "allow", "import": "allow"}


def _deny(name: str, paths: list[str], **extra: Any) -> dict[str, Any]:
    match = {"path": paths, "access": ["write", "delete"]}
    return {"id": name, "category": "file", "action": "deny", "match": match, **extra}


def _policy(root: Path, mode: str = "enforce", *more: dict[str, Any]) -> Policy:
    rules = [_deny("no-canary", [str(root / "canary"), f"{root}/locked/**"]), *more]
    return Policy.from_mapping({"version": 1, "mode": mode, "defaults": ALLOW_ALL, "rules": rules})


@dataclass
class World:
    root: Path
    canary: Path
    ok: Path  # a file the policy lets the app change
    violations: list[Violation] = field(default_factory=list)
    fds: list[int] = field(default_factory=list)

    def open(self, path: Path, flags: int = os.O_RDONLY) -> int:
        fd = os.open(path, flags)
        self.fds.append(fd)
        return fd


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    root = Path(os.path.realpath(tmp_path))
    (root / "locked").mkdir()
    (root / "ok").mkdir()
    canary = root / "canary"
    canary.write_text("canary\n")
    ok = root / "ok" / "heartbeat"
    ok.write_text("")
    os.chmod(canary, 0o644)
    os.chmod(ok, 0o644)
    made = World(root, canary, ok)
    try:
        yield made
    finally:
        runtime.uninstall()
        for fd in made.fds:
            try:
                os.close(fd)
            except OSError:
                pass  # closed by the scenario itself


def _install(world: World, policy: Policy, **options: Any) -> Any:
    handle = runtime.install(policy, **options)
    handle._shield.add_listener(world.violations.append)
    return handle


def _remembered(fd: int) -> bool:
    return fd in _file_cache._memory.changed


# A change through a descriptor (`attack` False: the allowed one made first, True: the one
# aimed at the protected file, another value so that the control run can see it), and how
# to see it in the file's status.
Change = tuple[Callable[[int, bool], Any], Callable[[os.stat_result], Any]]
CHANGES: dict[str, Change] = {
    "utime": (
        lambda fd, attack: os.utime(fd, (7, 7) if attack else (3, 3)),
        lambda st: st.st_mtime_ns,
    ),
    "chmod": (lambda fd, attack: os.chmod(fd, 0o600 if attack else 0o640), lambda st: st.st_mode),
}
WRITABLE_CHANGES: dict[str, Change] = {
    **CHANGES,
    "ftruncate": (lambda fd, attack: os.truncate(fd, 0 if attack else 3), lambda st: st.st_size),
}


def _attack(
    world: World,
    shielded: bool,
    change: Change,
    prepare: Callable[[World, bool, Callable[[int], Any]], tuple[int, Path]],
) -> None:
    """`prepare` makes an allowed change through a descriptor (twice: the second is the
    remembered repeat), then points the descriptor at a protected file and returns (the
    descriptor, that file). The change through it must then be refused when shielded, and
    must happen in the control run."""
    act, seen = change
    fd, target = prepare(world, shielded, lambda fd: act(fd, False))
    before = seen(os.stat(target))
    if shielded:
        with pytest.raises(PolicyViolation) as info:
            act(fd, True)
        assert info.value.errno == errno.EACCES
        assert seen(os.stat(target)) == before
        assert world.violations and world.violations[-1].decision.rule_id
    else:
        act(fd, True)
        assert seen(os.stat(target)) != before  # the control: the step is real


def _allowed_twice(world: World, shielded: bool, act: Callable[[int], Any], fd: int) -> None:
    for _ in range(2):
        act(fd)
    if shielded:
        assert _remembered(fd), "the allowed change was not remembered: the test proves nothing"
        assert not world.violations


def _reuse(world: World, shielded: bool, act: Callable[[int], Any]) -> tuple[int, Path]:
    if shielded:
        _install(world, _policy(world.root))
    fd = world.open(world.ok)
    _allowed_twice(world, shielded, act, fd)
    os.close(fd)
    again = world.open(world.canary)  # read-only: allowed; the lowest free number
    assert again == fd
    return again, world.canary


def _dup2(world: World, shielded: bool, act: Callable[[int], Any]) -> tuple[int, Path]:
    inherited = world.open(world.canary, os.O_RDWR)  # open before the shield, as if inherited
    if shielded:
        _install(world, _policy(world.root))
    fd = world.open(world.ok, os.O_RDWR)
    _allowed_twice(world, shielded, act, fd)
    os.dup2(inherited, fd)
    return fd, world.canary


def _renamed(world: World, shielded: bool, act: Callable[[int], Any]) -> tuple[int, Path]:
    if shielded:
        _install(world, _policy(world.root))
    moving = world.root / "ok" / "moving"
    moving.write_text("moving\n")
    fd = world.open(moving, os.O_RDWR)
    _allowed_twice(world, shielded, act, fd)
    # Another process moves the open file into the protected folder: this process never
    # renames anything, so only the kernel's path for the descriptor can tell.
    moved = world.root / "locked" / "moving"
    subprocess.run(["mv", str(moving), str(moved)], check=True, timeout=30)
    return fd, moved


def _reloaded(mode: str) -> Callable[[World, bool, Callable[[int], Any]], tuple[int, Path]]:
    def prepare(world: World, shielded: bool, act: Callable[[int], Any]) -> tuple[int, Path]:
        handle = _install(world, _policy(world.root, mode)) if shielded else None
        fd = world.open(world.ok, os.O_RDWR)
        _allowed_twice(world, shielded, act, fd)
        if handle is not None:
            # The reload protects the very file that was just changed, in enforce mode.
            stricter = _policy(world.root, "enforce", _deny("no-ok", [f"{world.root}/ok/**"]))
            handle._shield.swap_policy(stricter)
        return fd, world.ok

    return prepare


PREPARED = {
    "closed-and-reopened": (_reuse, CHANGES),
    "dup2": (_dup2, WRITABLE_CHANGES),
    "renamed-by-another-process": (_renamed, WRITABLE_CHANGES),
    "reload-from-enforce": (_reloaded("enforce"), WRITABLE_CHANGES),
    "reload-from-monitor": (_reloaded("monitor"), WRITABLE_CHANGES),
}
CASES = [
    pytest.param(prepare, change, id=f"{name}-{how}")
    for name, (prepare, changes) in PREPARED.items()
    for how, change in changes.items()
]


@pytest.mark.parametrize("shielded", [False, True], ids=["control", "shielded"])
@pytest.mark.parametrize(("prepare", "change"), CASES)
def test_a_descriptor_pointed_at_another_file_is_decided_again(
    world: World, shielded: bool, prepare: Any, change: Change
) -> None:
    _attack(world, shielded, change, prepare)


def test_the_heartbeat_is_remembered_and_still_works(world: World) -> None:
    # gunicorn's WorkerTmp: a temporary file, unlinked at once, touched through its
    # descriptor. Its kernel path is "<folder>/name (deleted)".
    _install(world, _policy(world.root))
    fd = world.open(world.ok, os.O_RDWR)
    os.unlink(world.ok)
    for stamp in range(1, 6):
        os.utime(fd, (stamp, stamp))
        assert os.stat(fd).st_mtime == stamp
    assert _file_cache._memory.changed[fd][1] == os.fsencode(f"{world.ok} (deleted)")
    assert descriptor_repeat((fd, (1, 1), None, None))
    assert not world.violations


def test_a_denied_change_is_never_remembered_and_always_refused(world: World) -> None:
    _install(world, _policy(world.root))
    fd = world.open(world.canary)
    before = os.stat(world.canary).st_mtime_ns
    for _ in range(3):
        with pytest.raises(PolicyViolation):
            os.utime(fd, (7, 7))
    assert os.stat(world.canary).st_mtime_ns == before
    assert not _remembered(fd)


def test_monitor_mode_lets_a_denied_change_happen_and_never_remembers_it(world: World) -> None:
    _install(world, _policy(world.root, "monitor"))
    fd = world.open(world.canary)
    for stamp in (7, 8, 9):
        os.utime(fd, (stamp, stamp))  # monitor: reported, not refused
        assert os.stat(world.canary).st_mtime == stamp
    assert not _remembered(fd)
    assert world.violations and world.violations[0].decision.rule_id == "no-canary"
    assert not descriptor_repeat((fd, (1, 1), None, None))


def test_a_scoped_rule_keeps_every_repeat_in_the_gate(world: World) -> None:
    # A deny scoped to a module this test is not: allowed here, but another caller would be
    # refused, so the allow is not remembered for everybody.
    scoped = _deny("scoped", [f"{world.root}/ok/**"], scope=["somebody_else"])
    _install(world, _policy(world.root, "enforce", scoped))
    fd = world.open(world.ok)
    for stamp in (1, 2):
        os.utime(fd, (stamp, stamp))
    assert not _remembered(fd)
    assert not world.violations


def test_grants_keep_every_repeat_in_the_gate(world: World) -> None:
    mapping = {"version": 1, "defaults": ALLOW_ALL, "packages": {"default": "allow"}}
    _install(world, Policy.from_mapping(mapping))
    fd = world.open(world.ok)
    for stamp in (1, 2):
        os.utime(fd, (stamp, stamp))
    assert not _remembered(fd)
    assert not descriptor_repeat((fd, (1, 1), None, None))


def test_a_shadow_candidate_that_objects_sees_every_repeat(world: World, tmp_path: Path) -> None:
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text(
        "version: 1\ndefaults: {process: allow, file: allow, network: allow, import: allow}\n"
        "rules:\n  - id: shadow-ok\n    category: file\n    action: deny\n"
        f"    match: {{path: '{world.root}/ok/**', access: write}}\n"
    )
    settings = STARTUP._replace(shadow_policy_path=str(candidate))
    _install(world, _policy(world.root), settings=settings)
    fd = world.open(world.ok)
    for stamp in (1, 2, 3):
        os.utime(fd, (stamp, stamp))  # enforced policy allows; the candidate objects
        assert os.stat(world.ok).st_mtime == stamp
    assert not _remembered(fd)


class _Liar(int):
    """An int subclass that claims to equal, and hash as, any number it is compared with."""

    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return hash(self.remembered)

    remembered = 0


def test_an_int_subclass_is_never_let_through_by_the_memory(world: World) -> None:
    _install(world, _policy(world.root))
    allowed = world.open(world.ok)
    os.utime(allowed, (1, 1))
    assert _remembered(allowed)
    canary = world.open(world.canary)
    _Liar.remembered = allowed
    liar = _Liar(canary)
    before = os.stat(world.canary).st_mtime_ns
    with pytest.raises(PolicyViolation):
        os.utime(liar, (7, 7))
    assert os.stat(world.canary).st_mtime_ns == before


@pytest.mark.parametrize("shielded", [False, True], ids=["control", "shielded"])
def test_a_closed_descriptor_fails_as_without_the_shield(world: World, shielded: bool) -> None:
    if shielded:
        _install(world, _policy(world.root))
    fd = world.open(world.ok)
    os.utime(fd, (1, 1))
    os.close(fd)
    with pytest.raises(OSError) as info:
        os.utime(fd, (2, 2))
    assert info.value.errno == errno.EBADF
    assert not isinstance(info.value, PolicyViolation)
