"""Remembered allowed `sqlite3.connect` of a plain file name (hooks/file `_on_sqlite_connect`,
describe `sqlite_repeat`).

A connect used to be decided in full every time: two resolutions of the database's path and
two decisions, about 90,000 instructions, paid on every request by an app that opens its
connection per request (Django's default with SQLite). An allowed connect of a plain file
name is now remembered as an open is, and a repeat is let through by the audit hook while the
name leads to the same file (one `os.stat`), from the same current folder for a relative
name. A `file:` URI is never remembered (it has two readings).

Each attack runs first without the shield (control: the protected database's secret row is
read, so a refusal is the shield's), then with it, after the name was remembered (refused):
a symlink swapped under the name (absolute and relative), another current folder, a str
subclass that lies about its hash and equality. Real databases in tmp dirs.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from appshield import runtime
from appshield.errors import PolicyViolation
from appshield.hooks import _file_cache
from appshield.hooks.file.describe import SQLITE_CONNECT, sqlite_handle_ours, sqlite_repeat
from appshield.policy import Policy
from tests.hooks._lying import lying_name

ALLOW_ALL = {"process": "allow", "file": "allow", "network": "allow", "import": "allow"}
SECRET = "the vault's secret"


def _make_db(path: Path, value: str) -> None:
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE t (v TEXT)")
    connection.execute("INSERT INTO t VALUES (?)", (value,))
    connection.commit()
    connection.close()


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = Path(os.path.realpath(tmp_path))
    for folder in ("work", "vault"):
        (root / folder).mkdir()
        _make_db(root / folder / "app.db", SECRET if folder == "vault" else "work")
    (root / "link").symlink_to(root / "work")
    monkeypatch.chdir(root / "work")
    return root


def _install(root: Path, **extra: Any) -> None:
    rules = [
        {
            "id": "no-vault",
            "category": "file",
            "action": "deny",
            "match": {"path": f"{root}/vault/**", "access": "read"},
        }
    ]
    policy = {"version": 1, "defaults": ALLOW_ALL, "rules": rules, **extra}
    runtime.install(Policy.from_mapping(policy))


def _read(name: Any) -> str:
    connection = sqlite3.connect(name)
    try:
        return str(connection.execute("SELECT v FROM t").fetchone()[0])
    finally:
        connection.close()


def _remembered(name: str | bytes) -> bool:
    # Remembered under the name as text, whichever the event carries (bytes on 3.10).
    name = os.fsdecode(name)
    memory = _file_cache._memory
    for kept in (memory.checked.get(name), memory.relative.get(name)):  # type: ignore[call-overload]
        if kept is not None and SQLITE_CONNECT in kept[2]:
            return True
    return SQLITE_CONNECT in memory.plain.get(name, ())


def _swap_link(root: Path) -> None:
    (root / "link").unlink()
    (root / "link").symlink_to(root / "vault")


def _lying(root: Path) -> str:
    return lying_name(str(root / "vault" / "app.db"), str(root / "work" / "app.db"))


class Attack(NamedTuple):
    name: Callable[[Path], Any]  # the name remembered first
    start: str  # the current folder it is read from, under the root
    steps: Callable[[Path, Any], str]  # then read through it, or beside it


def _swapped(root: Path, name: Any) -> str:
    _swap_link(root)
    return _read(name)


def _from_the_vault(root: Path, name: Any) -> str:
    os.chdir(root / "vault")
    return _read(name)


ATTACKS = {
    "a symlink swapped, absolute": Attack(
        lambda root: str(root / "link" / "app.db"), "work", _swapped
    ),
    "a symlink swapped, bytes": Attack(
        lambda root: os.fsencode(root / "link" / "app.db"), "work", _swapped
    ),
    "a symlink swapped, relative": Attack(lambda root: "link/app.db", "", _swapped),
    "another current folder": Attack(lambda root: "app.db", "work", _from_the_vault),
    "a str subclass that lies": Attack(
        lambda root: str(root / "work" / "app.db"), "work", lambda root, name: _read(_lying(root))
    ),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_a_remembered_name_never_opens_a_denied_database(root: Path, attack: str) -> None:
    chosen = ATTACKS[attack]
    name = chosen.name(root)
    # Control: no shield, the same steps read the vault's secret.
    os.chdir(root / chosen.start)
    assert _read(name) == "work"
    assert chosen.steps(root, name) == SECRET
    # Put the world back, then the same with the shield, after the name was remembered.
    os.chdir(root / chosen.start)
    (root / "link").unlink()
    (root / "link").symlink_to(root / "work")
    _install(root)
    try:
        assert _read(name) == "work" and _read(name) == "work"
        assert _remembered(name)
        assert sqlite_repeat((name,))
        with pytest.raises(PolicyViolation):
            chosen.steps(root, name)
    finally:
        runtime.uninstall()


def test_the_current_folder_moved_into_a_denied_folder_is_decided(root: Path) -> None:
    # The same database (the same inode) under another path: the folder it was remembered
    # in moved into the vault. The folder, not only the identity, must match again.
    moved = root / "vault" / "moved"

    def attack() -> str:
        os.rename(root / "work", moved)
        return _read("app.db")

    assert attack() == "work"  # control: no shield, read from inside the vault
    os.rename(moved, root / "work")
    os.chdir(root / "work")
    _install(root)
    try:
        assert _read("app.db") == "work" and _remembered("app.db")
        with pytest.raises(PolicyViolation):
            attack()
    finally:
        runtime.uninstall()
        os.rename(moved, root / "work")
        os.chdir(root / "work")


def test_uris_and_memory_databases_are_never_remembered(root: Path) -> None:
    _install(root)
    try:
        uri = f"file:{root}/work/app.db?mode=ro"
        for _ in range(2):
            connection = sqlite3.connect(uri, uri=True)
            connection.close()
            sqlite3.connect(":memory:").close()
        assert not _remembered(uri)
        assert not sqlite_repeat((uri,))
        assert not _remembered(":memory:")
    finally:
        runtime.uninstall()


def test_a_remembered_connect_answers_no_open(root: Path) -> None:
    # Remembered under the event's name: no open of the same name, with any flags, is let
    # through by it; and the authorizer is still installed on every connection.
    _install(root)
    try:
        for _ in range(2):
            _read("app.db")
        assert _remembered("app.db")
        kept = _file_cache._memory.relative["app.db"]
        assert not any(type(flags) is int for flags in kept[2])
        connection = sqlite3.connect("app.db")
        try:
            with pytest.raises(sqlite3.DatabaseError):
                connection.execute(f"ATTACH DATABASE '{root}/vault/app.db' AS v")
        finally:
            connection.close()
    finally:
        runtime.uninstall()


def test_grants_keep_every_connect_in_the_gate(root: Path) -> None:
    _install(root, packages={"default": "allow"})
    try:
        for _ in range(2):
            assert _read("app.db") == "work"
        assert not _remembered("app.db")
        assert not sqlite_repeat(("app.db",))
    finally:
        runtime.uninstall()


def test_a_denied_connect_is_refused_every_time(root: Path) -> None:
    _install(root)
    try:
        vault = str(root / "vault" / "app.db")
        for _ in range(3):
            with pytest.raises(PolicyViolation):
                sqlite3.connect(vault)
            assert not _remembered(vault)
    finally:
        runtime.uninstall()


def test_only_the_default_connection_class_skips_the_gate_at_its_handle(root: Path) -> None:
    # `sqlite3.connect/handle`: the audit hook lets through a handle of exactly the class
    # sqlite3.connect makes for the default factory; anything else goes to the gate, which
    # still refuses a connection no authorizer will be set on.
    _install(root)
    try:
        made = sqlite3.connect("app.db")
        try:
            assert sqlite_handle_ours((made,))
            assert made.execute("SELECT v FROM t").fetchone() == ("work",)
            with pytest.raises(sqlite3.DatabaseError):  # its authorizer is there
                made.execute(f"ATTACH DATABASE '{root}/vault/app.db' AS v")
        finally:
            made.close()

        class Mine(sqlite3.Connection):
            pass

        mine = sqlite3.connect("app.db", factory=Mine)
        try:
            assert not sqlite_handle_ours((mine,))  # another class of appshield's: the gate
            with pytest.raises(sqlite3.DatabaseError):
                mine.execute(f"ATTACH DATABASE '{root}/vault/app.db' AS v")
        finally:
            mine.close()
        assert not sqlite_handle_ours(())
        with pytest.raises(TypeError):
            sqlite3.Connection(":memory:")  # no authorizer would ever be set: refused
    finally:
        runtime.uninstall()
