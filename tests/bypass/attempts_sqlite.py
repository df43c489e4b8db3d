"""SQLite bypass attempts: SQLite opens files by itself (ATTACH, VACUUM INTO) and reads URI
names its own way. Each tries to create CANARY (write denied).

The `load_extension` attempts load a real SQLite extension (tests/bypass/_sqlite_ext) whose
init function creates CANARY in C, so the canary proves the library was loaded. They run
under an interpreter whose SQLite loads extensions (Debian's /usr/bin/python3), skipped
where there is none; the library copied into the work folder is denied by an import rule.

A statement appshield's authorizer refuses fails with SQLite's own `sqlite3.DatabaseError`
("not authorized"), not a PolicyViolation, and a connection appshield refuses to make raises
the undescribable error: the attempts catch and print what they get, so the harness sees no
stray traceback. The canary is the evidence either way.
"""

from __future__ import annotations

from typing import Any

from tests.bypass import _sqlite_ext
from tests.bypass._harness import Attempt


def _s(id: str, code: str, before: str = "") -> Attempt:
    body = "import sqlite3\ntry:\n" + "".join(f"    {line}\n" for line in code.splitlines())
    body += "except Exception as exc:\n    print('refused:', type(exc).__name__, exc)\n"
    return Attempt(f"sqlite-{id}", body, "file", before=before)


def _extension_interpreter() -> tuple[str, dict[str, str]] | str:
    found = _sqlite_ext.loader()
    if isinstance(found, str):
        return found
    return found.python, {**found.env, "SQLITE_EXT": found.library}


# The built extension, copied into the work folder (and a symlink to it) before install.
EXT_BEFORE = """\
import shutil
shutil.copy(os.environ["SQLITE_EXT"], os.path.join(WORK, "canary_ext.so"))
os.symlink("canary_ext.so", os.path.join(WORK, "innocent.so"))
EXT = os.path.join(WORK, "canary_ext.so")
"""
# {cwd} is the work folder: only that copy is denied, so each attempt must be judged on
# the very file SQLite would load.
EXT_RULES = """\
- id: no-canary-extension
  category: import
  action: deny
  match: {library: "{cwd}/canary_ext.so"}
"""
ENABLED = "c = sqlite3.connect(':memory:')\nc.enable_load_extension(True)\n"


def _ext(id: str, code: str, **more: Any) -> Attempt:
    base = _s(f"load-extension-{id}", ENABLED + code)
    return Attempt(
        base.id,
        base.code,
        "import",
        before=EXT_BEFORE,
        rules=EXT_RULES,
        interpreter=_extension_interpreter,
        **more,
    )


# ATTACH opens the file; a table in it makes SQLite write it for sure.
ATTACH_CANARY = "c.execute(f\"ATTACH '{CANARY}' AS x\")\nc.execute('create table x.t(a)')"
MEMORY = "c = sqlite3.connect(':memory:')\n"

ATTEMPTS: list[Attempt] = [
    _s("attach", MEMORY + ATTACH_CANARY),
    _s(
        "attach-identifier",
        MEMORY + "c.execute(f'ATTACH \"{CANARY}\" AS x')\nc.execute('create table x.t(a)')",
    ),
    # A bound parameter: SQLite gives the authorizer no name, so it is refused unseen.
    _s(
        "attach-parameter",
        MEMORY + "c.execute('ATTACH ? AS x', (CANARY,))\nc.execute('create table x.t(a)')",
    ),
    _s(
        "attach-uri-repeated-mode",
        MEMORY + "c.execute(f\"ATTACH 'file:{CANARY}?mode=memory&mode=rwc' AS x\")\n"
        "c.execute('create table x.t(a)')",
    ),
    _s(
        "vacuum-into",
        MEMORY + "c.execute('create table t(a)')\nc.execute(f\"VACUUM INTO '{CANARY}'\")",
    ),
    # VACUUM INTO evaluates its target when it runs: the authorizer sees the bound value.
    _s(
        "vacuum-into-parameter",
        MEMORY + "c.execute('create table t(a)')\nc.execute('VACUUM INTO ?', (CANARY,))",
    ),
    # The case: the first `mode` says memory, SQLite uses the last.
    _s(
        "uri-repeated-mode",
        "c = sqlite3.connect(f'file:{CANARY}?mode=memory&mode=rwc', uri=True)\n"
        "c.execute('create table t(a)')",
    ),
    _s(
        "uri-localhost-percent-mode",
        "name = ''.join(chr(b) if b == 47 else '%%%02X' % b for b in CANARY.encode())\n"
        "c = sqlite3.connect(f'file://localhost{name}?mode=memory&mo%64e=rwc', uri=True)\n"
        "c.execute('create table t(a)')",
    ),
    # The app's own authorizer must not replace appshield's.
    _s(
        "set-authorizer-replaced",
        MEMORY + "c.set_authorizer(lambda *a: sqlite3.SQLITE_OK)\n" + ATTACH_CANARY,
    ),
    # (3.10 has no None: it calls None, and so denies everything.)
    _s(
        "set-authorizer-none",
        MEMORY + "if sys.version_info >= (3, 11):\n    c.set_authorizer(None)\n" + ATTACH_CANARY,
    ),
    _s(
        "factory-subclass-set-authorizer",
        "class Mine(sqlite3.Connection):\n    pass\n"
        "c = sqlite3.connect(':memory:', factory=Mine)\n"
        "c.set_authorizer(lambda *a: 0)\n" + ATTACH_CANARY,
    ),
    # A connection made without sqlite3.connect cannot be given the authorizer: refused.
    _s(
        "direct-connection",
        "c = sqlite3.Connection(':memory:')\n" + ATTACH_CANARY,
    ),
    # -- load_extension: a native library, like ctypes.CDLL --------------------------------
    _ext("method", "c.load_extension(EXT)"),
    # SQLite tries the name as given, then with ".so" appended: both files are judged.
    _ext("method-suffix", "c.load_extension(EXT[: -len('.so')])"),
    # A bare name: dlopen searches LD_LIBRARY_PATH ("." is the work folder here).
    _ext(
        "method-search-path", "c.load_extension('canary_ext')", extra_env={"LD_LIBRARY_PATH": "."}
    ),
    _ext("method-symlink", "c.load_extension(os.path.join(WORK, 'innocent.so'))"),
    # The SQL function: no audit event, and the authorizer sees no file name; refused unless
    # the policy allows every library.
    _ext("sql-function", "c.execute('select load_extension(?)', (EXT,)).fetchall()"),
    _ext(
        "sql-function-entry-point",
        "c.execute(\"SELECT LOAD_EXTENSION(?, 'sqlite3_extension_init')\", (EXT,)).fetchall()",
    ),
    _ext("sql-function-script", "c.executescript(f\"select (select load_extension('{EXT}'));\")"),
]
