"""Remembered allowed changes by path (hooks/_file_cache.py; `PATH_CHANGE_EVENTS`).

`os.utime(path)` (Path.touch, gunicorn's worker heartbeat on some versions), `os.chmod`,
`os.chown`, `os.truncate`, the xattr calls and `os.mkdir` (`os.makedirs(...,
exist_ok=True)` on every request) used to be decided in full on every call: about 60,000
instructions each. An allowed one, on a clean absolute path, is now remembered under its
event's name and let through by the audit hook while the path leads to the same file (one
`os.stat`).

Each way of making a remembered path reach a protected file runs first without the shield
(control: the protected file or folder is changed, so a refusal is the shield's), then with
it, after the path was remembered (refused, and the protected file unchanged): a symlink
swapped under the path (str and bytes), a str subclass that lies about its hash and
equality, and for `os.mkdir`, the remembered folder removed. Real files in tmp dirs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from appshield import runtime
from appshield.errors import PolicyViolation
from appshield.hooks import _file_cache
from appshield.hooks.file.describe import PATH_CHANGE_EVENTS, change_repeat
from appshield.policy import Policy
from tests.hooks._lying import lying_name

ALLOW_ALL = {"process": "allow", "file": "allow", "network": "allow", "import": "allow"}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = Path(os.path.realpath(tmp_path))
    for folder in ("work", "vault"):
        (root / folder / "made").mkdir(parents=True)
        (root / folder / "data.txt").write_text(f"{folder}\n")
        os.utime(root / folder / "data.txt", (1000, 1000))
        os.chmod(root / folder / "data.txt", 0o644)
    (root / "link").symlink_to(root / "work")
    return root


def _install(root: Path, **extra: Any) -> None:
    rules = [
        {
            "id": "vault-read-only",
            "category": "file",
            "action": "deny",
            "match": {"path": [f"{root}/vault", f"{root}/vault/**"], "access": "write"},
        }
    ]
    policy = {"version": 1, "defaults": ALLOW_ALL, "rules": rules, **extra}
    runtime.install(Policy.from_mapping(policy))


@pytest.fixture
def shielded(root: Path) -> Iterator[Path]:
    _install(root)
    try:
        yield root
    finally:
        runtime.uninstall()


def _remembered(path: str | bytes, event: str) -> bool:
    memory = _file_cache._memory
    if event in memory.plain.get(path, ()):
        return True
    kept = memory.checked.get(path)
    return kept is not None and event in kept[2]


def _mode(path: Path) -> int:
    return os.stat(path).st_mode & 0o777


class Change(NamedTuple):
    event: str
    call: Callable[[str | bytes], object]  # the change, to the path given
    changed: Callable[[Path], bool]  # whether a file (at this real path) shows it


def _mkdir(path: str | bytes) -> None:
    os.makedirs(path, exist_ok=True)


CHANGES = {
    "os.utime": Change("os.utime", lambda p: os.utime(p, (5, 5)), lambda f: f.stat().st_mtime == 5),
    "os.chmod": Change("os.chmod", lambda p: os.chmod(p, 0o600), lambda f: _mode(f) == 0o600),
    "os.truncate": Change(
        "os.truncate", lambda p: os.truncate(p, 1), lambda f: f.stat().st_size == 1
    ),
}


@pytest.mark.parametrize("spelling", ["str", "bytes"])
@pytest.mark.parametrize("name", sorted(CHANGES))
def test_a_symlink_swapped_under_a_remembered_path_is_decided(
    root: Path, name: str, spelling: str
) -> None:
    change = CHANGES[name]
    through_link = str(root / "link" / "data.txt")
    path: str | bytes = through_link if spelling == "str" else os.fsencode(through_link)
    vault_file = root / "vault" / "data.txt"

    def swap(to: str) -> None:
        (root / "link").unlink()
        (root / "link").symlink_to(root / to)

    # Control: no shield, the change lands on the vault's file once the link is swapped.
    change.call(path)
    swap("vault")
    change.call(path)
    assert change.changed(vault_file)
    # Put the world back, then the same with the shield, after the path was remembered.
    vault_file.write_text("vault\n")
    os.utime(vault_file, (1000, 1000))
    os.chmod(vault_file, 0o644)
    swap("work")
    _install(root)
    try:
        change.call(path)
        change.call(path)
        assert _remembered(path, change.event)
        assert change_repeat(change.event)((path,))  # the audit hook lets it through
        swap("vault")
        assert not change_repeat(change.event)((path,))
        with pytest.raises(PolicyViolation):
            change.call(path)
    finally:
        runtime.uninstall()
    assert not change.changed(vault_file)


def test_a_lying_str_subclass_is_decided_in_full(root: Path) -> None:
    work_file, vault_file = str(root / "work" / "data.txt"), root / "vault" / "data.txt"
    lying = lying_name(str(vault_file), work_file)
    os.chmod(lying, 0o600)  # control: the vault's file changes
    assert _mode(vault_file) == 0o600
    os.chmod(vault_file, 0o644)
    _install(root)
    try:
        for _ in range(2):
            os.chmod(work_file, 0o640)
        assert _remembered(work_file, "os.chmod")
        assert not change_repeat("os.chmod")((lying,))
        with pytest.raises(PolicyViolation):
            os.chmod(lying, 0o600)
    finally:
        runtime.uninstall()
    assert _mode(vault_file) == 0o644


def test_a_remembered_mkdir_never_makes_a_protected_folder(root: Path) -> None:
    through_link = str(root / "link" / "made" / "sub")
    made_in_vault = root / "vault" / "made" / "sub"

    def swap(to: str) -> None:
        (root / "link").unlink()
        (root / "link").symlink_to(root / to)

    # Control: no shield, the folder is made in the vault once the link is swapped.
    _mkdir(through_link)
    swap("vault")
    _mkdir(through_link)
    assert made_in_vault.is_dir()
    made_in_vault.rmdir()
    swap("work")
    _install(root)
    try:
        for _ in range(2):
            _mkdir(through_link)  # the second one finds it there, and is remembered
        assert _remembered(through_link, "os.mkdir")
        assert change_repeat("os.mkdir")((through_link,))
        # The folder removed (a hit would now make one): decided in full.
        os.rmdir(through_link)
        assert not change_repeat("os.mkdir")((through_link,))
        _mkdir(through_link)
        # Swapped to the vault: refused.
        swap("vault")
        with pytest.raises(PolicyViolation):
            _mkdir(through_link)
    finally:
        runtime.uninstall()
    assert not made_in_vault.exists()


def test_a_remembered_change_answers_no_other_call(shielded: Path) -> None:
    # Each event has its own key: a remembered chmod is no answer for a utime, an open, a
    # listing or a deletion of the same path; relative paths are never remembered.
    work_file = str(shielded / "work" / "data.txt")
    for _ in range(2):
        os.chmod(work_file, 0o640)
    memory = _file_cache._memory
    kept = memory.checked.get(work_file) or ()
    assert kept and kept[2] == {"os.chmod"}
    assert not change_repeat("os.utime")((work_file,))
    compiled = runtime.active_shield().compiled  # type: ignore[union-attr]
    assert not _file_cache.lookup(work_file, os.O_WRONLY, compiled)
    assert not _file_cache.lookup(work_file, _file_cache.LISTING, compiled)
    os.chdir(shielded / "work")
    for _ in range(2):
        os.chmod("data.txt", 0o640)
    assert not _remembered("data.txt", "os.chmod")
    assert not change_repeat("os.chmod")(("data.txt",))


def test_deletions_are_never_remembered(shielded: Path) -> None:
    # A deletion takes away a name: the same file (a hard link) can have another name in a
    # protected folder, so its identity proves nothing. Every one is decided.
    assert "os.remove" not in PATH_CHANGE_EVENTS and "os.rmdir" not in PATH_CHANGE_EVENTS
    target = shielded / "work" / "lock"
    for _ in range(3):
        target.write_text("")
        os.remove(target)
        assert not _remembered(str(target), "os.remove")


def test_grants_and_scoped_rules_keep_every_change_in_the_gate(root: Path) -> None:
    work_file = str(root / "work" / "data.txt")
    _install(root, packages={"default": "allow"})
    try:
        for _ in range(2):
            os.chmod(work_file, 0o640)
        assert not _remembered(work_file, "os.chmod")
        assert not change_repeat("os.chmod")((work_file,))
    finally:
        runtime.uninstall()
    scoped = {
        "id": "scoped",
        "category": "file",
        "action": "deny",
        "scope": ["somebody_else"],
        "match": {"path": f"{root}/work/**", "access": "write"},
    }
    policy = {"version": 1, "defaults": ALLOW_ALL, "rules": [scoped]}
    runtime.install(Policy.from_mapping(policy))
    try:
        for _ in range(2):
            os.chmod(work_file, 0o640)
        assert not _remembered(work_file, "os.chmod")
    finally:
        runtime.uninstall()


def test_a_denied_change_is_refused_every_time(shielded: Path) -> None:
    vault_file = shielded / "vault" / "data.txt"
    for _ in range(3):
        with pytest.raises(PolicyViolation):
            os.chmod(vault_file, 0o600)
        assert not _remembered(str(vault_file), "os.chmod")
    assert _mode(vault_file) == 0o644
