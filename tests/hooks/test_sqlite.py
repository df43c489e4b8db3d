"""SQLite: database names read as SQLite reads them (checked against SQLite itself), and the
authorizer that judges ATTACH / VACUUM INTO targets, composed with the app's own. Real files
in tmp_path; each shield test installs its own shield and removes it."""

from __future__ import annotations

import os
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appshield import runtime
from appshield.errors import PolicyViolation
from appshield.hooks.file.sqlite import _parse_uri, sqlite_paths
from appshield.policy import Policy
from appshield.report import Violation

ALLOW_ALL = {"process": "allow", "file": "allow", "network": "allow", "import": "allow"}

# -- reading names as SQLite does -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "paths"),
    [
        ("", []),
        (":memory:", []),
        ("plain.db", ["plain.db"]),
        ("FILE:x?mode=memory", ["FILE:x?mode=memory"]),  # "file:" is case-sensitive
        ("file::memory:?cache=shared", []),
        ("file:x?mode=memory", []),
        ("file:x?mode=memory&mode=rwc", ["x", "file:x?mode=memory&mode=rwc"]),
        ("file:x?mode=rwc&mode=memory", []),
        ("file:x?mo%64e=memory", []),
        ("file:x?mode=memory=x", ["x", "file:x?mode=memory=x"]),  # SQLite: no such mode
        ("file:x?mode=memory#&mode=rwc", []),  # '#' ends the URI
        ("file:x%3F.db?mode=rwc", ["x?.db", "file:x%3F.db?mode=rwc"]),
        ("file:x%00zz?mode=rwc", ["x", "file:x%00zz?mode=rwc"]),
        ("file:///tmp/a?mode=rwc", ["/tmp/a", "file:///tmp/a?mode=rwc"]),
        ("file://localhost/tmp/a", ["/tmp/a", "file://localhost/tmp/a"]),
        ("file://evil/tmp/a?mode=memory", ["file://evil/tmp/a?mode=memory"]),  # refused
        ("file:x?=memory&mode=rwc", ["x", "file:x?=memory&mode=rwc"]),
        ("file:x?vfs=memdb", ["x", "file:x?vfs=memdb"]),  # a VFS never makes it memory
    ],
)
def test_names_are_read_as_sqlite_reads_them(name: str, paths: list[str]) -> None:
    assert sqlite_paths(name) == paths


def test_percent_decoding_keeps_raw_bytes() -> None:
    parsed = _parse_uri(b"file:/tmp/x%ff%2fy")
    assert parsed == (b"/tmp/x\xff/y", [])
    assert sqlite_paths("file:/tmp/x%ff")[0] == os.fsdecode(b"/tmp/x\xff")


PIECES = st.sampled_from(
    [
        "mode=memory",
        "mode=rwc",
        "mode=rw",
        "mo%64e=memory",
        "mode=%6demory",
        "%00=x",
        "mode=memory%00x",
        "mode%00=memory",
        "cache=shared",
        "=memory",
        "mode",
        "",
        "#",
        "mode=memory#",
    ]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(query=st.lists(PIECES, max_size=5), authority=st.sampled_from(["", "//", "//localhost"]))
def test_every_file_sqlite_creates_is_judged(
    tmp_path_factory: pytest.TempPathFactory, query: list[str], authority: str
) -> None:
    """Differential: SQLite itself opens the URI; any file it leaves must be a judged path."""
    folder = Path(os.path.realpath(tmp_path_factory.mktemp("uri")))
    name = f"file:{authority}{folder}/db?{'&'.join(query)}"
    try:
        con = sqlite3.connect(name, uri=True)
        try:
            con.execute("create table t(a)")
        finally:
            con.close()
    except sqlite3.Error:
        pass  # SQLite refused the URI: nothing to compare when no file appears
    made = sorted(os.listdir(folder))
    judged = {os.path.abspath(p) for p in sqlite_paths(name)}
    for entry in made:
        if entry.endswith(("-journal", "-wal", "-shm")):
            continue
        assert str(folder / entry) in judged, (name, made, judged)


# -- the authorizer ---------------------------------------------------------------------------


class World:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.denied = root / "denied"
        self.denied.mkdir()
        self.violations: list[Violation] = []

    def created(self) -> list[str]:
        return sorted(os.listdir(self.denied))


def _install(tmp_path: Path, mode: str) -> Iterator[World]:
    world = World(Path(os.path.realpath(tmp_path)))
    rule = {
        "id": "no-denied",
        "category": "file",
        "action": "deny",
        "match": {"path": f"{world.denied}/**", "access": ["write"]},
    }
    policy = Policy.from_mapping(
        {"version": 1, "mode": mode, "defaults": ALLOW_ALL, "rules": [rule]}
    )
    handle = runtime.install(policy)
    remove = handle._shield.add_listener(world.violations.append)
    old = os.getcwd()
    os.chdir(world.root)
    try:
        yield world
    finally:
        os.chdir(old)
        remove()
        runtime.uninstall()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from _install(tmp_path, "enforce")


@pytest.fixture
def monitored(tmp_path: Path) -> Iterator[World]:
    yield from _install(tmp_path, "monitor")


def _not_authorized(con: sqlite3.Connection, sql: str, params: Any = ()) -> None:
    with pytest.raises(sqlite3.DatabaseError, match=r"not authorized|authorization denied"):
        con.execute(sql, params)


def test_attach_and_vacuum_into_a_denied_folder_are_refused(world: World) -> None:
    con = sqlite3.connect(":memory:")
    con.execute("create table t(a)")
    target = world.denied / "x.db"
    _not_authorized(con, f"ATTACH '{target}' AS x")
    _not_authorized(con, f"VACUUM INTO '{target}'")
    _not_authorized(con, "VACUUM INTO ?", (str(target),))
    _not_authorized(con, "ATTACH ? AS y", ("allowed.db",))  # unknown when prepared
    _not_authorized(con, f"ATTACH 'file:{target}?mode=memory&mode=rwc' AS z")
    assert world.created() == []
    rules = [v.decision.rule_id for v in world.violations]
    assert rules == ["no-denied"] * 3 + ["implicit:undescribable", "no-denied"]
    assert {v.api for v in world.violations} == {"sqlite3.attach"}


def test_allowed_attach_and_vacuum_behave_as_without_appshield(world: World) -> None:
    con = sqlite3.connect(":memory:")
    con.execute("create table t(a)")
    con.execute("insert into t values (1)")
    con.execute("ATTACH 'other.db' AS o")
    con.execute("ATTACH ':memory:' AS m")
    con.execute("ATTACH 'file:mem?mode=memory' AS n")
    con.execute("create table o.u(b)")
    con.commit()
    con.execute("VACUUM INTO 'copy.db'")
    assert sqlite3.connect("copy.db").execute("select a from t").fetchall() == [(1,)]
    assert (world.root / "other.db").exists()
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        con.execute("select * from missing_table")
    assert not world.violations
    assert isinstance(con, sqlite3.Connection)
    assert repr(con).startswith("<sqlite3.Connection object")


def test_monitor_reports_and_lets_attach_happen(monitored: World) -> None:
    con = sqlite3.connect(":memory:")
    con.execute(f"ATTACH '{monitored.denied / 'x.db'}' AS x")
    con.execute("create table x.t(a)")
    con.execute("ATTACH ? AS y", (str(monitored.denied / "y.db"),))
    con.execute("create table y.t(a)")
    assert monitored.created() == ["x.db", "y.db"]
    assert [v.decision.rule_id for v in monitored.violations] == [
        "no-denied",
        "implicit:undescribable",
    ]
    assert not any(v.blocked for v in monitored.violations)


def test_app_authorizer_is_chained_after_appshield(world: World) -> None:
    seen: list[int] = []

    def app(action: int, *rest: Any) -> int:
        seen.append(action)
        return sqlite3.SQLITE_DENY if action == sqlite3.SQLITE_CREATE_TABLE else sqlite3.SQLITE_OK

    con = sqlite3.connect(":memory:")
    con.set_authorizer(app)
    _not_authorized(con, "create table t(a)")  # the app's deny still works
    _not_authorized(con, f"ATTACH '{world.denied / 'x.db'}' AS x")  # appshield's too
    con.execute("ATTACH 'ok.db' AS ok")
    assert sqlite3.SQLITE_ATTACH in seen
    con.set_authorizer(None)
    if sys.version_info >= (3, 11):
        con.execute("create table t(a)")  # the app's authorizer is gone
    else:
        _not_authorized(con, "create table t(a)")  # 3.10: None is called, and so denies
    _not_authorized(con, f"ATTACH '{world.denied / 'x.db'}' AS x")  # appshield's is not
    if sys.version_info < (3, 13):
        con.set_authorizer(authorizer_callback=lambda *a: sqlite3.SQLITE_OK)
        _not_authorized(con, f"ATTACH '{world.denied / 'x.db'}' AS x")
    with pytest.raises(TypeError):
        con.set_authorizer()
    assert world.created() == []


def test_factory_subclass_keeps_its_init_and_authorizer(world: World) -> None:
    calls: list[str] = []

    class Mine(sqlite3.Connection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.set_authorizer(lambda action, *rest: calls.append("auth") or 0)
            calls.append("init")

    con = sqlite3.connect(":memory:", factory=Mine)
    assert isinstance(con, Mine) and type(con).__name__ == "Mine"
    con.execute("select 1")
    assert calls[0] == "init" and "auth" in calls  # its authorizer survived our __init__
    _not_authorized(con, f"ATTACH '{world.denied / 'x.db'}' AS x")


def test_connection_made_without_connect_is_refused(world: World) -> None:
    with pytest.raises(TypeError):
        sqlite3.Connection(":memory:")
    assert [v.decision.rule_id for v in world.violations] == ["implicit:undescribable"]


def test_repeated_mode_uri_connect_is_judged(world: World) -> None:
    with pytest.raises(PolicyViolation):
        sqlite3.connect(f"file:{world.denied / 'x.db'}?mode=memory&mode=rwc", uri=True)
    sqlite3.connect(f"file:{world.denied / 'x.db'}?mode=rwc&mode=memory", uri=True).close()
    assert world.created() == []


def test_temp_store_directory_pragma_is_judged_as_a_write(world: World) -> None:
    con = sqlite3.connect(":memory:")
    _not_authorized(con, f"PRAGMA temp_store_directory = '{world.denied}'")
    _not_authorized(con, f"pragma TEMP_STORE_DIRECTORY('{world.denied}')")
    con.execute("PRAGMA temp_store_directory")  # reading it is not a write
    con.execute(f"PRAGMA temp_store_directory = '{world.root}'")
    con.execute("PRAGMA temp_store_directory = ''")
    assert [v.api for v in world.violations] == ["sqlite3.pragma"] * 2
