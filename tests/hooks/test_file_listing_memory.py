"""Remembered allowed folder listings (hooks/_file_cache.py, `LISTING`).

`os.listdir` and `os.scandir` used to be decided in full on every call (about 50,000
instructions above bare under 1,000 rules), as apps that scan a folder of plugins, uploads
or templates on each request make them. An allowed listing is now remembered in the memories
of allowed opens, under flags of its own (a str no open's flags can equal), and a repeat is
let through by the audit hook while the name still leads to the same folder (one `os.stat`),
from the same current folder for a relative name or `"."`.

Every way of making a remembered name list a denied folder must reach a full decision:
another current folder, a symlink swapped under the name (str, bytes, relative), a str
subclass that lies about its hash and equality. Each attack runs first without the shield
(control: the same steps list the secret names, so a refusal is the shield's), then with it,
after the name was remembered (refused). A remembered listing never lets an open through.
Real folders in tmp dirs.
"""

from __future__ import annotations

import os
import posix
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from appshield import runtime
from appshield.errors import PolicyViolation
from appshield.hooks import _file_cache
from appshield.hooks.file.describe import listing_repeat
from appshield.policy import Policy
from tests.hooks._lying import lying_name

ALLOW_ALL = {"process": "allow", "file": "allow", "network": "allow", "import": "allow"}
SECRET_NAME = "plans-for-2027.txt"
# posix.open as the app could have captured it before the shield wrapped it.
RAW_OPEN = posix.open


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = Path(os.path.realpath(tmp_path))
    (root / "work" / "plugins").mkdir(parents=True)
    (root / "work" / "plugins" / "one.py").write_text("")
    (root / "work" / "notes.txt").write_text("notes\n")
    (root / "vault").mkdir()
    (root / "vault" / SECRET_NAME).write_text("secret\n")
    (root / "work" / "link").symlink_to(root / "work" / "plugins")
    monkeypatch.chdir(root / "work")
    return root


def _policy(root: Path, mode: str = "enforce", **extra: Any) -> dict[str, Any]:
    rules = [
        {
            "id": "no-vault",
            "category": "file",
            "action": "deny",
            "match": {"path": [f"{root}/vault", f"{root}/vault/**"], "access": "read"},
        },
        {
            "id": "notes-read-only",
            "category": "file",
            "action": "deny",
            "match": {"path": f"{root}/work/notes.txt", "access": "write"},
        },
    ]
    return {"version": 1, "mode": mode, "defaults": ALLOW_ALL, "rules": rules, **extra}


def _install(root: Path, mode: str = "enforce", **extra: Any) -> None:
    runtime.install(Policy.from_mapping(_policy(root, mode, **extra)))


@pytest.fixture
def shielded(root: Path) -> Iterator[Path]:
    _install(root)
    try:
        yield root
    finally:
        runtime.uninstall()


def _remembered(name: str | bytes) -> bool:
    memory = _file_cache._memory
    for kept in (memory.plain.get(name), memory.checked.get(name), memory.relative.get(name)):  # type: ignore[call-overload]
        if kept is not None and _file_cache.LISTING in (kept if isinstance(kept, set) else kept[2]):
            return True
    return False


def _scan(name: str | bytes | None = None) -> list[str]:
    with os.scandir(name) as entries:
        return sorted(os.fsdecode(entry.name) for entry in entries)


def test_a_listing_is_remembered_and_lists_the_same(shielded: Path) -> None:
    root = shielded
    plugins = str(root / "work" / "plugins")
    for name in (plugins, os.fsencode(plugins), "plugins", "link", "."):
        first = os.listdir(name)
        assert _remembered(name), name
        assert listing_repeat((name,))  # the audit hook lets the next one through
        assert [sorted(os.listdir(name)) for _ in range(3)] == [sorted(first)] * 3
    # os.listdir() and os.scandir() list the current folder: remembered as ".".
    assert sorted(os.listdir()) == _scan() == ["link", "notes.txt", "plugins"]
    assert listing_repeat((None,))
    # Unclean names and descriptors are decided every time, never remembered.
    for name in ("./plugins", "plugins/", "../work/plugins", plugins + "/"):
        assert os.listdir(name) == ["one.py"]
        assert not _remembered(name)
    fd = os.open(plugins, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert os.listdir(fd) == ["one.py"]
        assert not listing_repeat((fd,))
    finally:
        os.close(fd)


def _from_another_folder(root: Path, name: str | bytes | None) -> list[str]:
    # Started in work (a relative name) or work/x (the current folder itself): the same
    # name from the vault's own folder of that shape.
    os.chdir(root / "vault" / Path.cwd().relative_to(root / "work"))
    return _scan(name)


def _by_symlink(root: Path, name: str | bytes | None) -> list[str]:
    (root / "work" / "link").unlink()
    (root / "work" / "link").symlink_to(root / "vault")
    return [os.fsdecode(entry) for entry in os.listdir(name)]


def _by_lying_name(root: Path, name: str | bytes | None) -> list[str]:
    return os.listdir(lying_name(str(root / "vault"), str(name)))


class Attack(NamedTuple):
    name: Callable[[Path], str | bytes | None]  # the name remembered first
    start: str  # the current folder it is listed from, under work
    steps: Callable[[Path, str | bytes | None], list[str]]  # then list the vault's names


ATTACKS = {
    "another current folder, os.listdir()": Attack(lambda root: None, "x", _from_another_folder),
    "another current folder, '.'": Attack(lambda root: ".", "x", _from_another_folder),
    "another current folder, a relative name": Attack(lambda root: "x", "", _from_another_folder),
    "a symlink swapped, absolute str": Attack(
        lambda root: str(root / "work" / "link"), "", _by_symlink
    ),
    "a symlink swapped, absolute bytes": Attack(
        lambda root: os.fsencode(root / "work" / "link"), "", _by_symlink
    ),
    "a symlink swapped, relative": Attack(lambda root: "link", "", _by_symlink),
    "a str subclass that lies": Attack(
        lambda root: str(root / "work" / "plugins"), "", _by_lying_name
    ),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_a_remembered_name_never_lists_a_denied_folder(root: Path, attack: str) -> None:
    # "x": a folder of the same name in both places, as `plugins` could be.
    (root / "work" / "x").mkdir()
    (root / "vault" / "x").mkdir()
    (root / "vault" / "x" / SECRET_NAME).write_text("secret\n")
    chosen = ATTACKS[attack]
    name = chosen.name(root)
    start = root / "work" / chosen.start
    # Control: no shield, the same steps list the secret.
    os.chdir(start)
    os.listdir(name)
    assert SECRET_NAME in chosen.steps(root, name)
    # Put the world back, then the same with the shield, after the name was remembered.
    os.chdir(start)
    (root / "work" / "link").unlink()
    (root / "work" / "link").symlink_to(root / "work" / "plugins")
    _install(root)
    try:
        os.listdir(name)
        os.listdir(name)
        assert _remembered("." if name is None else name)
        with pytest.raises(PolicyViolation):
            chosen.steps(root, name)
    finally:
        runtime.uninstall()


@pytest.mark.parametrize(("name", "start"), [(None, "x"), (".", "x"), ("x", "")])
def test_the_current_folder_moved_into_a_denied_folder_is_decided(
    root: Path, name: str | None, start: str
) -> None:
    # The same folder (the same inode) under another path: the current folder (or the one
    # holding the relative name) moved into the vault. Its identity alone proves nothing;
    # the folder the name was decided in must be the current one again.
    (root / "work" / "x").mkdir()
    (root / "work" / "x" / SECRET_NAME).write_text("secret\n")
    moved_from = root / "work" / start if start else root / "work"
    moved_to = root / "vault" / "moved"

    def attack() -> list[str]:
        os.rename(moved_from, moved_to)
        return os.listdir(name)

    def put_back() -> None:
        os.rename(moved_to, moved_from)
        os.chdir(moved_from)

    # Control: no shield, the moved folder is listed.
    os.chdir(moved_from)
    os.listdir(name)
    assert SECRET_NAME in attack()
    put_back()
    _install(root)
    try:
        os.listdir(name)
        assert _remembered("." if name is None else name)
        with pytest.raises(PolicyViolation):
            attack()
    finally:
        runtime.uninstall()
        put_back()


def test_a_remembered_listing_never_lets_an_open_through(shielded: Path) -> None:
    # A listing of a file fails (not a folder) after the shield allowed it, and is
    # remembered under LISTING: no open of that path, with any flags, is answered by it.
    notes = str(shielded / "work" / "notes.txt")
    for name in (notes, "notes.txt"):
        for _ in range(2):
            with pytest.raises(NotADirectoryError):
                os.listdir(name)
        assert _remembered(name)
        # Remembered under flags no open can carry (its flags are always an exact int).
        memory = _file_cache._memory
        kept = memory.checked.get(name) or memory.relative.get(name)
        assert kept is not None and not any(type(flags) is int for flags in kept[2])
        with pytest.raises(PolicyViolation):
            open(name, "a")
        for flags in (os.O_WRONLY, os.O_RDWR | os.O_CREAT, -1):
            with pytest.raises(PolicyViolation):
                RAW_OPEN(name, flags)
    assert Path(notes).read_text() == "notes\n"


def test_denied_and_alerted_listings_are_never_remembered(root: Path) -> None:
    vault = str(root / "vault")
    for mode in ("enforce", "monitor"):
        _install(root, mode)
        try:
            shield = runtime.active_shield()
            assert shield is not None
            for _ in range(3):
                if mode == "enforce":
                    with pytest.raises(PolicyViolation):
                        os.listdir(vault)
                else:
                    assert os.listdir(vault) == [SECRET_NAME]
                assert not _remembered(vault)
                assert not listing_repeat((vault,))
        finally:
            runtime.uninstall()


def test_under_a_default_deny_only_what_a_rule_allows_is_remembered(root: Path) -> None:
    allow = {"path": [f"{root}/work", f"{root}/work/**"], "access": "read"}
    rules = [{"id": "work", "category": "file", "action": "allow", "match": allow}]
    policy = {"version": 1, "defaults": {**ALLOW_ALL, "file": "deny"}, "rules": rules}
    runtime.install(Policy.from_mapping(policy))
    try:
        assert os.listdir("plugins") == ["one.py"]
        assert _remembered("plugins")
        os.chdir(root / "vault")
        for _ in range(2):
            with pytest.raises(PolicyViolation):
                os.listdir()
    finally:
        os.chdir(root / "work")
        runtime.uninstall()


def test_a_new_policy_forgets_what_the_old_one_allowed(root: Path) -> None:
    plugins = str(root / "work" / "plugins")
    runtime.install(Policy.from_mapping(_policy(root)))
    try:
        os.listdir(plugins)
        assert _remembered(plugins)
    finally:
        runtime.uninstall()
    strict = _policy(root)
    strict["rules"][0]["match"]["path"] = [plugins]
    runtime.install(Policy.from_mapping(strict))
    try:
        with pytest.raises(PolicyViolation):
            os.listdir(plugins)
    finally:
        runtime.uninstall()


def test_grants_keep_every_listing_in_the_gate(root: Path) -> None:
    # Under per-distribution grants a decision depends on the caller: nothing is remembered,
    # and the audit hook's check never answers.
    _install(root, packages={"default": "allow"})
    try:
        plugins = str(root / "work" / "plugins")
        for _ in range(2):
            assert os.listdir(plugins) == ["one.py"]
        assert not _remembered(plugins)
        assert not listing_repeat((plugins,))
    finally:
        runtime.uninstall()


def test_a_scoped_rule_keeps_every_listing_in_the_gate(root: Path) -> None:
    policy = _policy(root)
    policy["rules"].append(
        {
            "id": "scoped",
            "category": "file",
            "action": "deny",
            "scope": ["somebody_else"],
            "match": {"path": f"{root}/work/**", "access": "read"},
        }
    )
    runtime.install(Policy.from_mapping(policy))
    try:
        for _ in range(2):
            assert os.listdir("plugins") == ["one.py"]
        assert not _remembered("plugins")
    finally:
        runtime.uninstall()
