"""SQLite's `load_extension`: the method (audit event `sqlite3.load_extension`) judged as a
native library load of the file SQLite would dlopen, and the SQL function `load_extension()`
(no event, no file name) refused by the authorizer unless the policy allows every library.

Three layers: the engine's proof that an allow holds for every library (pure); the
authorizer's judgement in this process (SQLite asks about the function even where Python's
build cannot enable it); and real loads of a real extension in a Python whose SQLite loads
extensions (tests/bypass/_sqlite_ext; skipped with the reason where there is none). The
control, enforce and monitor runs of each attack are in the bypass corpus
(tests/bypass/attempts_sqlite.py).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appshield import runtime
from appshield.hooks.file.sqlite import SQL_LOAD_EXTENSION
from appshield.operations import ImportOp
from appshield.policy import Policy
from appshield.report import Violation
from tests.bypass import _sqlite_ext

ALLOW_ALL = {"process": "allow", "file": "allow", "network": "allow", "import": "allow"}
STAND_IN = ImportOp(None, None, SQL_LOAD_EXTENSION)


def _policy(
    rules: list[dict[str, Any]], import_default: str = "allow", mode: str = "enforce"
) -> Policy:
    defaults = {**ALLOW_ALL, "import": import_default}
    return Policy.from_mapping({"version": 1, "mode": mode, "defaults": defaults, "rules": rules})


def _lib(rule_id: str, action: str, globs: Any, **more: Any) -> dict[str, Any]:
    return {
        "id": rule_id,
        "category": "import",
        "action": action,
        "match": {"library": globs},
        **more,
    }


# -- the proof: no library file gets a stricter decision than the stand-in -------------------


@pytest.mark.parametrize(
    ("rules", "import_default", "stands"),
    [
        ([], "allow", True),  # nothing names a library: every load is allowed
        ([_lib("any", "allow", "/**")], "deny", True),
        ([_lib("any", "allow", "/**"), _lib("usr", "allow", "/usr/lib/**")], "deny", True),
        # module rules never match a library load
        (
            [{"id": "m", "category": "import", "action": "deny", "match": {"module": "ctypes"}}],
            "allow",
            True,
        ),
        # the baseline pack's alert on every library: an alert, like a ctypes load
        ([_lib("alert-all", "alert", "/**")], "allow", True),
        ([], "deny", True),  # a blocking deny: nothing is stricter
        # a deny elsewhere could catch the file the SQL names: a doubt is a denial
        ([_lib("tmp", "deny", "/tmp/**")], "allow", False),
        ([_lib("tmp", "alert", "/tmp/**")], "allow", False),
        ([_lib("any", "allow", "/**"), _lib("tmp", "deny", "/tmp/**")], "deny", False),
        ([_lib("alert-all", "alert", "/**"), _lib("tmp", "deny", "/tmp/**")], "allow", False),
        # matches the stand-in, not every path: a file it misses meets the default deny
        ([_lib("one", "allow", "/*")], "deny", False),
        ([_lib("one", "allow", "/*")], "allow", True),
        ([_lib("any", "allow", "/**", unless={"library": "/tmp/**"})], "deny", False),
    ],
)
def test_the_stand_in_decision_stands_only_when_no_file_is_stricter(
    rules: list[dict[str, Any]], import_default: str, stands: bool
) -> None:
    compiled = _policy(rules, import_default).compiled
    decision = compiled.decide(STAND_IN)
    assert compiled.no_library_stricter(decision) is stands


def test_in_monitor_mode_the_proof_still_compares_the_rules() -> None:
    compiled = _policy([_lib("tmp", "deny", "/tmp/**")], mode="monitor").compiled
    decision = compiled.decide(STAND_IN)
    assert decision.action == "allow"
    assert not compiled.no_library_stricter(decision)
    default_deny = _policy([_lib("tmp", "deny", "/tmp/**")], "deny", mode="monitor").compiled
    decision = default_deny.decide(STAND_IN)
    assert (decision.action, decision.blocked) == ("deny", False)
    assert default_deny.no_library_stricter(decision)


# -- the authorizer in this process ----------------------------------------------------------


def _installed(policy: Policy) -> Iterator[list[Violation]]:
    violations: list[Violation] = []
    handle = runtime.install(policy)
    remove = handle._shield.add_listener(violations.append)
    try:
        yield violations
    finally:
        remove()
        runtime.uninstall()


@pytest.mark.parametrize("mode", ["enforce", "monitor"])
def test_sql_function_is_judged_whatever_the_spelling(mode: str) -> None:
    policy = _policy([_lib("no-tmp", "deny", "/tmp/**")], mode=mode)
    for violations in _installed(policy):
        con = sqlite3.connect(":memory:")
        for sql in (
            "select load_extension('/tmp/x.so')",
            "SELECT Load_Extension(?, 'entry')",
            "select (select load_extension(x) from (select '/tmp/x' as x))",
        ):
            params = () if "?" not in sql else ("/tmp/x.so",)
            # This build may refuse the function itself ("not authorized" too): what matters
            # here is appshield's report.
            with (
                pytest.raises(sqlite3.DatabaseError, match="not authorized")
                if (mode == "enforce")
                else _maybe_refused()
            ):
                con.execute(sql, params).fetchall()
        assert [v.decision.rule_id for v in violations] == ["implicit:undescribable"] * 3
        assert {(v.operation.target, v.api) for v in violations} == {
            (SQL_LOAD_EXTENSION, "sqlite3.sql.load_extension")
        }
        assert all(v.decision.blocked is (mode == "enforce") for v in violations)
        # other functions are not judged
        assert con.execute("select lower('A'), length('ab')").fetchall() == [("a", 2)]
        assert len(violations) == 3


class _maybe_refused:
    """Monitor mode: the statement runs; SQLite may still refuse it where this build cannot
    load extensions."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> bool:
        return kind is None or issubclass(kind, sqlite3.DatabaseError)


def test_sql_function_under_a_default_deny_is_reported_with_the_default() -> None:
    rules = [{"id": "mods", "category": "import", "action": "allow", "match": {"module": "**"}}]
    for violations in _installed(_policy(rules, "deny")):
        con = sqlite3.connect(":memory:")
        with pytest.raises(sqlite3.DatabaseError, match="not authorized"):
            con.execute("select load_extension('x')")
        assert [v.decision.rule_id for v in violations] == ["default:import"]


def test_sql_function_is_not_judged_when_every_library_is_allowed() -> None:
    rules = [_lib("any-library", "allow", "/**")]
    for violations in _installed(_policy(rules)):
        con = sqlite3.connect(":memory:")
        try:
            con.execute("select load_extension('/nonexistent/x')")
        except sqlite3.DatabaseError as exc:
            # This build's own refusal, or the missing file: not appshield's
            assert (
                "not authorized" in str(exc) or "cannot open" in str(exc) or "No such" in str(exc)
            )
        assert violations == []


def test_sql_function_under_an_alert_on_every_library_is_an_alert() -> None:
    for violations in _installed(_policy([_lib("alert-all", "alert", "/**")])):
        con = sqlite3.connect(":memory:")
        with _maybe_refused():
            con.execute("select load_extension('/nonexistent/x')")
        assert [(v.decision.rule_id, v.decision.blocked) for v in violations] == [
            ("alert-all", False)
        ]


# -- real loads, in a Python whose SQLite loads extensions -----------------------------------


@pytest.fixture(scope="module")
def loader() -> _sqlite_ext.Loader:
    found = _sqlite_ext.loader()
    if isinstance(found, str):
        pytest.skip(found)
    return found


class Run:
    def __init__(self, canary: Path, stdout: str, violations: list[dict[str, Any]]) -> None:
        self.loaded = canary.exists()
        self.stdout = stdout
        self.violations = violations


def _run(
    loader: _sqlite_ext.Loader,
    tmp_path: Path,
    code: str,
    rules: str,
    *,
    mode: str | None = "enforce",
    import_default: str = "allow",
    fresh: bool = True,
) -> Run:
    """`code` in the extension-loading Python, with LIB (a copy of the extension in
    tmp_path/allowed) and FORBIDDEN (one in tmp_path/forbidden); mode None: no shield."""
    root = Path(os.path.realpath(tmp_path))
    for folder in ("allowed", "forbidden"):
        (root / folder).mkdir(parents=True, exist_ok=not fresh)
        (root / folder / "ext.so").write_bytes(Path(loader.library).read_bytes())
    policy = root / "policy.yaml"
    policy.write_text(
        textwrap.dedent(
            f"""\
            version: 1
            defaults: {{process: allow, file: allow, network: allow, import: {import_default}}}
            rules:
              - {{id: modules, category: import, action: allow, match: {{module: "**"}}}}
            """
        )
        + textwrap.indent(textwrap.dedent(rules), "  ")
    )
    log = root / "violations.jsonl"
    canary = root / "canary"
    script = root / "attempt.py"
    install = (
        ""
        if mode is None
        else f"import appshield\nappshield.install({str(policy)!r}, mode={mode!r})\n"
    )
    body = (
        "import os, sqlite3\n"
        f"LIB = {str(root / 'allowed' / 'ext.so')!r}\n"
        f"FORBIDDEN = {str(root / 'forbidden' / 'ext.so')!r}\n"
        + install
        + "c = sqlite3.connect(':memory:')\nc.enable_load_extension(True)\n"
        + "try:\n"
        + textwrap.indent(textwrap.dedent(code), "    ")
        + "\nexcept Exception as exc:\n    print('refused:', type(exc).__name__, exc)\n"
    )
    script.write_text(body)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPSHIELD_", "PYTEST_"))}
    env.update(loader.env, BYPASS_CANARY=str(canary), APPSHIELD_LOG=str(log))
    done = subprocess.run(
        [loader.python, str(script)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    violations = []
    if log.exists():
        violations = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return Run(canary, done.stdout, violations)


DENY_FORBIDDEN = """\
- id: no-forbidden-libraries
  category: import
  action: deny
  match: {library: "{cwd}/forbidden/**"}
"""


def test_control_both_forms_load_without_the_shield(
    loader: _sqlite_ext.Loader, tmp_path: Path
) -> None:
    assert _run(loader, tmp_path / "m", "c.load_extension(FORBIDDEN)", "", mode=None).loaded
    sql = "c.execute('select load_extension(?)', (FORBIDDEN,))"
    assert _run(loader, tmp_path / "s", sql, "", mode=None).loaded


def test_an_allowed_library_loads_through_the_method(
    loader: _sqlite_ext.Loader, tmp_path: Path
) -> None:
    allowed = _run(loader, tmp_path / "a", "c.load_extension(LIB)", DENY_FORBIDDEN)
    assert allowed.loaded, allowed.stdout
    assert allowed.violations == []
    # the same policy refuses the denied copy, named without its suffix
    denied = _run(loader, tmp_path / "d", "c.load_extension(FORBIDDEN[:-3])", DENY_FORBIDDEN)
    assert not denied.loaded
    assert [v["rule"] for v in denied.violations] == ["no-forbidden-libraries"]
    assert "PolicyViolation" in denied.stdout


def test_sql_function_loads_only_where_every_library_is_allowed(
    loader: _sqlite_ext.Loader, tmp_path: Path
) -> None:
    sql = "c.execute('select load_extension(?)', (LIB,)).fetchall()"
    # LIB itself is allowed, but a deny elsewhere means the SQL could name a denied file
    refused = _run(loader, tmp_path / "r", sql, DENY_FORBIDDEN)
    assert not refused.loaded
    assert [v["rule"] for v in refused.violations] == ["implicit:undescribable"]
    assert "not authorized" in refused.stdout
    every = '- {id: any-library, category: import, action: allow, match: {library: "/**"}}\n'
    allowed = _run(loader, tmp_path / "a", sql, every, import_default="deny")
    assert allowed.loaded, allowed.stdout
    assert allowed.violations == []
    # and the default deny, without that rule, refuses it by the default
    default = _run(loader, tmp_path / "d", sql, "", import_default="deny")
    assert not default.loaded
    assert [v["rule"] for v in default.violations] == ["default:import"]


def test_monitor_reports_both_forms_and_lets_them_load(
    loader: _sqlite_ext.Loader, tmp_path: Path
) -> None:
    method = _run(
        loader, tmp_path / "m", "c.load_extension(FORBIDDEN)", DENY_FORBIDDEN, mode="monitor"
    )
    assert method.loaded
    # Enabling is reported first: a CHECK constraint could now load a library unseen.
    assert [(v["rule"], v["api"], v["blocked"]) for v in method.violations] == [
        ("implicit:undescribable", "sqlite3.enable_load_extension", False),
        ("no-forbidden-libraries", "sqlite3.load_extension", False),
    ]
    sql = "c.execute('select load_extension(?)', (FORBIDDEN,)).fetchall()"
    function = _run(loader, tmp_path / "s", sql, DENY_FORBIDDEN, mode="monitor")
    assert function.loaded
    assert [(v["rule"], v["api"], v["blocked"]) for v in function.violations] == [
        ("implicit:undescribable", "sqlite3.enable_load_extension", False),
        ("implicit:undescribable", "sqlite3.sql.load_extension", False),
    ]


# A table whose CHECK constraint calls load_extension(): SQLite evaluates schema expressions
# with the authorizer off, so only SQLite's own switch can stop it.
MAKE_CHECKED_DB = """\
d = sqlite3.connect(os.path.join(os.path.dirname(FORBIDDEN), "checked.db"))
d.execute(f"create table t(x check (coalesce(load_extension('{FORBIDDEN}'), 1)))")
d.commit()
print("made")
"""
INSERT_CHECKED = """\
d = sqlite3.connect(os.path.join(os.path.dirname(FORBIDDEN), "checked.db"))
d.enable_load_extension(True)
d.execute("insert into t values (1)")
print("inserted")
"""


def test_a_check_constraint_cannot_load_a_library_unseen(
    loader: _sqlite_ext.Loader, tmp_path: Path
) -> None:
    made = _run(loader, tmp_path / "c", MAKE_CHECKED_DB, "", mode=None)
    assert "made" in made.stdout and not made.loaded, made.stdout
    # control: the insert loads the library (no shield)
    control = _run(loader, tmp_path / "c", INSERT_CHECKED, "", mode=None, fresh=False)
    assert control.loaded, control.stdout
    (tmp_path / "c" / "canary").unlink()
    # enforce: the app's enable_load_extension(True) leaves SQLite's switch off (the policy
    # denies a library), so the constraint's load is refused by SQLite
    shielded = _run(loader, tmp_path / "c", INSERT_CHECKED, DENY_FORBIDDEN, fresh=False)
    assert not shielded.loaded, shielded.stdout
    assert "inserted" not in shielded.stdout and "not authorized" in shielded.stdout


def test_switching_loading_on_through_the_base_class_is_judged(
    loader: _sqlite_ext.Loader, tmp_path: Path
) -> None:
    code = """\
d = sqlite3.connect(":memory:")
sqlite3.Connection.enable_load_extension(d, True)
d.execute("select load_extension(?)", (FORBIDDEN,)).fetchall()
"""
    run = _run(loader, tmp_path / "b", code, DENY_FORBIDDEN)
    assert not run.loaded and "PolicyViolation" in run.stdout, run.stdout
    assert [(v["rule"], v["api"]) for v in run.violations] == [
        ("implicit:undescribable", "sqlite3.enable_load_extension")
    ], run.violations
