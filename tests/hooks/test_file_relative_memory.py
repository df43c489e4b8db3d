"""Remembered allowed opens of relative paths (hooks/_file_cache.py, `relative`).

`open("data/config.yaml")` used to be decided in full on every call (about 46,000
instructions above bare), because a relative path means another file in another folder. It
is now remembered by identity: a repeat is let through before the gate only while the
relative path, taken from the current folder by one `os.stat`, still leads to the file it
was decided for. Every way of making the same relative name reach a denied file must reach
a full decision: another current folder, a symlink swapped under the name, and an `os.open`
relative to a `dir_fd` (its event carries no `dir_fd`, so it is never answered from this
memory). Each attack runs first without the shield (control: the same steps do read the
secret, so a refusal is the shield's), then with it (refused). Real files in tmp dirs.
"""

from __future__ import annotations

import os
import posix
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from appshield import runtime
from appshield.errors import PolicyViolation
from appshield.hooks import _file_cache
from appshield.policy import Policy

ALLOW_ALL = {"process": "allow", "file": "allow", "network": "allow", "import": "allow"}
SECRET = "secret\n"
# posix.open as the app could have captured it before the shield wrapped it: its events
# reach only the audit hook, without the dir_fd.
RAW_OPEN = posix.open


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = Path(os.path.realpath(tmp_path))
    for folder in ("work", "vault"):
        (root / folder).mkdir()
        (root / folder / "data.txt").write_text(f"{folder}\n" if folder == "work" else SECRET)
    monkeypatch.chdir(root / "work")
    return root


def _install(root: Path, defaults: dict[str, str] = ALLOW_ALL) -> None:
    deny = {"path": f"{root}/vault/**", "access": "read"}
    rules = [{"id": "no-vault", "category": "file", "action": "deny", "match": deny}]
    policy = {"version": 1, "mode": "enforce", "defaults": defaults, "rules": rules}
    runtime.install(Policy.from_mapping(policy))


@pytest.fixture
def shielded(root: Path) -> Iterator[Path]:
    _install(root)
    try:
        yield root
    finally:
        runtime.uninstall()


def _read(name: str) -> str:
    with open(name) as f:
        return f.read()


def _remembered(name: str) -> bool:
    return name in _file_cache._memory.relative


def test_a_relative_open_is_remembered_and_reads_the_same(shielded: Path) -> None:
    assert _read("data.txt") == "work\n"
    assert _remembered("data.txt")
    assert [_read("data.txt") for _ in range(3)] == ["work\n"] * 3
    # Unclean names are never remembered (`..` means the parent of wherever the name leads).
    for name in ("./data.txt", "../work/data.txt", ".//data.txt"):
        assert _read(name) == "work\n"
        assert not _remembered(name)


def _attack_from_another_folder(root: Path) -> str:
    os.chdir(root / "vault")
    return _read("data.txt")


def _attack_by_symlink(root: Path) -> str:
    work = root / "work"
    os.rename(work / "data.txt", work / "old.txt")
    (work / "data.txt").symlink_to(root / "vault" / "data.txt")
    return _read("data.txt")


def _attack_through_dir_fd(root: Path) -> str:
    vault = os.open(root / "vault", os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd = RAW_OPEN("data.txt", os.O_RDONLY, dir_fd=vault)
    finally:
        os.close(vault)
    with os.fdopen(fd) as f:
        return f.read()


ATTACKS: dict[str, Callable[[Path], str]] = {
    "another current folder": _attack_from_another_folder,
    "a symlink swapped under the name": _attack_by_symlink,
    "os.open relative to a dir_fd": _attack_through_dir_fd,
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_the_same_relative_name_never_reaches_a_denied_file(
    root: Path, attack: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Control: no shield, the same steps read the secret.
    assert _read("data.txt") == "work\n"
    assert ATTACKS[attack](root) == SECRET
    # Put the world back, then the same with the shield, after the name was remembered.
    monkeypatch.chdir(root / "work")
    if (root / "work" / "old.txt").exists():
        (root / "work" / "data.txt").unlink()
        os.rename(root / "work" / "old.txt", root / "work" / "data.txt")
    _install(root)
    try:
        assert _read("data.txt") == "work\n" and _read("data.txt") == "work\n"
        assert _remembered("data.txt")
        with pytest.raises(PolicyViolation):
            ATTACKS[attack](root)
    finally:
        runtime.uninstall()


def test_an_os_open_is_never_answered_by_a_remembered_relative_name(shielded: Path) -> None:
    # os.open's event (mode None) may be relative to a dir_fd it does not carry: a name
    # remembered from open() is no answer for it, in the audit hook or in the handler.
    assert _read("data.txt") == "work\n"
    assert _remembered("data.txt")
    compiled = runtime.active_shield().compiled  # type: ignore[union-attr]
    assert _file_cache.lookup("data.txt", os.O_RDONLY | os.O_CLOEXEC, compiled, True)
    assert not _file_cache.lookup("data.txt", os.O_RDONLY | os.O_CLOEXEC, compiled)
    fd = RAW_OPEN("data.txt", os.O_RDONLY)  # relative to the current folder: allowed
    os.close(fd)


def test_under_a_default_deny_only_what_a_rule_allows_is_remembered(root: Path) -> None:
    # Under a default that denies reads, an allowed relative read is remembered like any
    # allow; the same name from a folder no rule allows is refused every time.
    defaults = {**ALLOW_ALL, "file": "deny"}
    allow = {"path": f"{root}/work/**", "access": "read"}
    rules = [{"id": "work", "category": "file", "action": "allow", "match": allow}]
    policy = {"version": 1, "mode": "enforce", "defaults": defaults, "rules": rules}
    runtime.install(Policy.from_mapping(policy))
    try:
        assert _read("data.txt") == "work\n"
        assert _remembered("data.txt")
        os.chdir(root / "vault")
        for _ in range(2):
            with pytest.raises(PolicyViolation):
                _read("data.txt")
    finally:
        os.chdir(root / "work")
        runtime.uninstall()


def test_a_hard_link_of_the_remembered_file_in_a_denied_folder_is_decided(
    shielded: Path,
) -> None:
    # The same relative name, the very same file (a hard link: same inode), but another
    # folder and so another absolute path, which the policy denies: a full decision, as
    # without the memory. The identity alone never allows anything.
    root = shielded
    assert _read("data.txt") == "work\n" and _remembered("data.txt")
    linked = root / "vault" / "linked"
    linked.mkdir()
    os.link(root / "work" / "data.txt", linked / "data.txt")
    os.chdir(linked)
    try:
        with pytest.raises(PolicyViolation):
            _read("data.txt")
    finally:
        os.chdir(root / "work")
    assert _read("data.txt") == "work\n"
