"""SQLite's own file opens: database names read as SQLite reads them, and an authorizer on
every connection so that `ATTACH` and `VACUUM INTO` targets (and the temporary-files folder
pragma) are judged as file operations.

Why an authorizer: SQLite opens the files of `ATTACH DATABASE 'x' AS y` and `VACUUM INTO 'x'`
in C, through its VFS, with no audit event; `sqlite3.connect` is the only file access Python
reports. SQLite's authorizer (`sqlite3_set_authorizer`, Python's `Connection.set_authorizer`)
is asked while a statement is prepared, and SQLite asks it with the action `SQLITE_ATTACH` and
the file name for both (verified on SQLite 3.40, Python 3.10 to 3.13):

- `ATTACH 'x' AS y` (a literal, or a bare identifier, which SQLite reads as a string): the
  name is the literal. With a bound parameter or any other expression (`ATTACH ? AS y`,
  `ATTACH 'a' || 'b' AS y`) SQLite passes no name (None): the file is not known when the
  statement is prepared, so the attach is refused (`implicit:undescribable`; in monitor mode
  it is reported and let be).
- `VACUUM INTO x`: SQLite runs `ATTACH 'x' AS vacuum_db` itself when the statement runs, so
  the authorizer sees the evaluated name, bound parameters included.
- `PRAGMA temp_store_directory = 'dir'` (deprecated, still compiled in; SQLITE_PRAGMA with
  the pragma's name and value): SQLite creates its temporary files in `dir` from then on,
  for every connection of the process, so setting it is judged as a write to `dir` (api
  `sqlite3.pragma`); `data_store_directory` (Windows) likewise.

- `select load_extension('x')` (the SQL function, callable once the app ran
  `conn.enable_load_extension(True)`; it dlopens any file, native code like `ctypes.CDLL`):
  SQLite asks with SQLITE_FUNCTION and the function's name, never its argument, and raises
  no audit event. Since the file is unknown, it is judged as the import operation
  `library: SQL_LOAD_EXTENSION` (api `sqlite3.sql.load_extension`), and that decision
  stands only where no library file could be decided more strictly
  (`CompiledPolicy.no_library_stricter`): so it is allowed only where every library is (in
  practice an import allow rule `library: "/**"`, or an import default of allow, with no
  deny or alert rule naming `library`), and the baseline pack's alert on `/**` stays an
  alert unless a deny names a library. Otherwise it is denied by `implicit:undescribable`.
  The method `conn.load_extension(path)` has its own audit event, judged with the path in
  hooks/imports. What the authorizer does not see, a `load_extension()` call inside a
  `CHECK` constraint of a database file's schema (SQLite resolves schema expressions while
  the authorizer is off), is stopped by SQLite itself: `enable_load_extension(True)` leaves
  SQLite's switch off unless the SQL function would be allowed, and `load_extension(path)`
  turns it on around its own judged load only (`_enable_load_extension`; docs/limits.md).

The file named is judged as `read` and `write`, like `sqlite3.connect`: SQLite opens an
attached database read-write and creates it when it is missing (it opens read-only only for
a URI `mode=ro`, and judging read-only there too would not be simpler). Both readings of a
`file:` name are judged when it is not a memory database: the URI's path, and the name taken
literally (what SQLite opens where URI names are not enabled).

Which connections get it: `sqlite3.connect` makes its connections with a subclass of the
requested factory (same name, module and qualname; `isinstance` holds, `type(conn) is
sqlite3.Connection` does not) whose `__init__` installs the authorizer once the requested
class's own `__init__` has run. (At the `sqlite3.connect/handle` audit event the Python
object is not initialised yet, so the authorizer cannot be set there; and `sqlite3.Connection`
is an immutable C type whose methods cannot be patched.) A connection of any other class
(`sqlite3.Connection(...)` called directly, a factory that is not a plain subclass) is
refused at `sqlite3.connect/handle` (`Unreadable`: in monitor mode reported and let be).
The subclass's `set_authorizer` composes with the app's: appshield's check first, a deny
wins, otherwise the app's authorizer decides, and `set_authorizer(None)` (3.11+) leaves
appshield's alone. What it cannot cover (docs/limits.md): `sqlite3.Connection.set_authorizer(
conn, f)` called through the base class, and connections made before install.

Cost: the authorizer runs for every action of every statement SQLite prepares (not for a
statement Python's statement cache already holds). Anything but an attach, a pragma or a
function call returns at its first line, a function other than `load_extension` at its
second.

A denial is SQLite's: the statement fails with `sqlite3.DatabaseError: not authorized`
(Python turns any exception raised by an authorizer into SQLite's deny and raises that), not
a `PolicyViolation`; the violation is reported as usual, with api `sqlite3.attach`.

Database names (`sqlite_paths`): SQLite's URI reader (`sqlite3ParseUri`) is followed on the
file system bytes of the name: `file:` then an optional authority (`//` up to the next `/`;
only empty or `localhost`, anything else is an error), the path up to `?` or `#`, `%HH`
decoded everywhere (a `%00` drops the rest of the path, name or value it is in), `+` is not a
space, `#` ends it all, options are `name=value` split on `&`, an empty name is skipped, and
a repeated option is read in order, so the last `mode` wins. Only a final `mode=memory`, or a
path of `""` or `:memory:`, means no file; an option SQLite would refuse (an unknown `mode`,
a bad authority) makes no exception: the path is judged.
"""

from __future__ import annotations

import _thread
import os
import sys
from _weakrefset import WeakSet

from appshield._threadstate import thread_state
from appshield.decision import Decision
from appshield.hooks import _gate
from appshield.hooks._convert import Unreadable
from appshield.hooks.file.describe import file_op, plain_connection
from appshield.operations import FileAccess, ImportOp, Operation

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any
    from weakref import WeakKeyDictionary

__all__ = [
    "SQL_LOAD_EXTENSION",
    "check_new_connection",
    "described_paths",
    "shielded_factory",
    "sqlite_paths",
]

Described = tuple[Operation, str]

_SQLITE_OK = 0
_SQLITE_ATTACH = 24  # SQLite's action codes: part of its stable C API
_SQLITE_PRAGMA = 19
_SQLITE_FUNCTION = 31
_JUDGED = frozenset((_SQLITE_ATTACH, _SQLITE_PRAGMA, _SQLITE_FUNCTION))

# The library an import operation names for SQLite's SQL function `load_extension()`, whose
# file is not known: an absolute path, so that a `library: "/**"` allow rule matches it, and
# one that says what was called. `CompiledPolicy.no_library_stricter` says why matching it
# is not enough.
SQL_LOAD_EXTENSION = "/<any library: SQLite's SQL function load_extension()>"
_SQL_LOAD_API = "sqlite3.sql.load_extension"
_ENABLE_API = "sqlite3.enable_load_extension"
_DIRECTORY_PRAGMAS = ("temp_store_directory", "data_store_directory")

_HEX = b"0123456789abcdefABCDEF"
_MEMORY_NAMES = ("", ":memory:")
_uri_always: bool | None = None


def _uri_names_always() -> bool:
    """Whether this SQLite reads a `file:` name as a URI even when the connection did not ask
    for it (compiled with SQLITE_USE_URI=1): then a `file:` name is never a literal file."""
    global _uri_always
    if _uri_always is None:
        sqlite3 = _gate.own_import("sqlite3")
        # A memory database: no file, and its authorizer judges nothing here.
        probe = sqlite3.connect(":memory:")
        try:
            row = probe.execute("select sqlite_compileoption_used('USE_URI')").fetchone()
        finally:
            probe.close()
        _uri_always = bool(row[0])
    return _uri_always


def _decode(part: bytes, stops: bytes) -> tuple[bytes, int]:
    """SQLite's `%HH` decoding of one piece of a URI, up to (not past) a byte of `stops` or
    the end; a `%00` drops the rest of the piece. Returns (bytes, index where it stopped)."""
    out = bytearray()
    i, n = 0, len(part)
    while i < n:
        c = part[i]
        if c in stops:
            break
        if c == 0x25 and i + 2 < n and part[i + 1] in _HEX and part[i + 2] in _HEX:
            octet = int(part[i + 1 : i + 3], 16)
            i += 3
            if octet == 0:
                while i < n and part[i] not in stops:
                    i += 1
                continue
            out.append(octet)
            continue
        out.append(c)
        i += 1
    return bytes(out), i


def _parse_uri(name: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]] | None:
    """(path, options in order) of a `file:` URI as SQLite reads it; None where SQLite
    refuses the URI (an authority other than empty or `localhost`)."""
    start = 5
    if name[5:7] == b"//":
        # The authority runs to the next '/' (a '?' or '#' in it is part of it, as in SQLite)
        end = name.find(b"/", 7)
        end = len(name) if end < 0 else end
        if name[7:end] not in (b"", b"localhost"):
            return None
        start = end
    name = name.split(b"#", 1)[0]  # SQLite stops at '#': the fragment is ignored
    path, i = _decode(name[start:], b"?")
    options: list[tuple[bytes, bytes]] = []
    query = name[start + i + 1 :] if start + i < len(name) else b""
    while query:
        key, j = _decode(query, b"=&")
        value = b""
        rest = query[j:]
        if rest[:1] == b"=":
            value, k = _decode(rest[1:], b"&")
            rest = rest[1 + k :]
        query = rest[1:]  # past the '&' (or empty)
        if key:
            options.append((key, value))  # an empty name: SQLite skips the option
    return path, options


def sqlite_paths(database: str) -> list[str]:
    """The files a database name may open (exact str in, str paths out): none for a memory
    or temporary database. A `file:` name gives its URI path and, unless URIs are always on
    in this SQLite, the name itself taken literally."""
    if database in _MEMORY_NAMES:
        return []
    if not database.startswith("file:"):
        return [database]
    parsed = _parse_uri(os.fsencode(database))
    if parsed is None:
        return [database]  # SQLite refuses this URI; the literal reading still names a file
    path, options = parsed
    mode = b""
    for key, value in options:
        if key == b"mode":
            mode = value  # in order: the last one wins, as in SQLite
    memory = mode == b"memory" or path in (b"", b":memory:")
    uri_path = os.fsdecode(path)
    if memory:
        return [] if _uri_names_always() else [database]
    if uri_path == database:
        return [database]
    return [uri_path, database]


_READ_WRITE: tuple[FileAccess, ...] = ("read", "write")


def described_paths(paths: list[str], api: str) -> list[Described]:
    return [(file_op(p, access), api) for p in paths for access in _READ_WRITE]


# -- the authorizer --------------------------------------------------------------------------


def _on_attach(args: tuple[Any, ...]) -> Described | None:
    name = args[0]
    if type(name) is not str:
        # None: a bound parameter or an expression, the file is not known yet
        raise Unreadable("ATTACH names its file with an expression or a bound parameter")
    return _gate.first_violation(described_paths(sqlite_paths(name), "sqlite3.attach"))


def _on_pragma(args: tuple[Any, ...]) -> Described | None:
    # `PRAGMA temp_store_directory = 'dir'` (deprecated, still compiled in) makes SQLite
    # create its temporary files in `dir` from then on, for every connection: a write there.
    name, value = args
    if type(name) is not str or name.lower() not in _DIRECTORY_PRAGMAS or value is None:
        return None  # another pragma, or reading this one
    if type(value) is not str:
        raise Unreadable("a directory pragma with a value appshield cannot read")
    if value == "":
        return None  # back to SQLite's default folders
    return file_op(value, "write"), "sqlite3.pragma"


def _sql_load_extension(active: Any, api: str = _SQL_LOAD_API) -> tuple[ImportOp, Decision]:
    """The decision for a call of the SQL function `load_extension()`: the engine's for the
    stand-in library, made a denial unless the policy allows every library (see the module
    docstring)."""
    operation = ImportOp(None, None, SQL_LOAD_EXTENSION)
    decision = active.decide(operation, api)
    if not decision.blocked:
        # A decider other than the compiled policy cannot prove it: a doubt is a denial.
        proves = getattr(active.compiled, "no_library_stricter", None)
        if proves is None or not proves(decision):
            mode = active.policy.mode
            decision = Decision("deny", "implicit:undescribable", mode == "enforce", mode)
    return operation, decision


def _judge(action: int, arg1: object, arg2: object) -> None:
    if action == _SQLITE_FUNCTION:
        # SQLite passes the function's registered name (lower case, whatever the SQL said);
        # any other function returns here.
        if type(arg2) is not str or arg2.lower() != "load_extension":
            return
        active = _gate.for_wrapper()
        if active is not None:
            _gate.judge_decided(
                active, "import", _SQL_LOAD_API, lambda: _sql_load_extension(active)
            )
        return
    active = _gate.for_wrapper()
    if active is None:
        return
    # Raises in enforce mode when denied (or undescribable): the C caller turns any
    # exception from an authorizer into SQLite's deny.
    if action == _SQLITE_ATTACH:
        _gate.judge_event(active, _on_attach, "file", "sqlite3.attach", (arg1,))
    else:
        _gate.judge_event(active, _on_pragma, "file", "sqlite3.pragma", (arg1, arg2))


def _authorizer(action: int, arg1: Any, arg2: Any, dbname: Any, source: Any) -> int:
    if action in _JUDGED:
        _judge(action, arg1, arg2)
    return _SQLITE_OK


def _chained(app: Any) -> Any:
    """appshield's check, then the app's own authorizer: a deny (an exception here) wins,
    otherwise the app's result is returned unchanged."""

    def authorizer(action: int, arg1: Any, arg2: Any, dbname: Any, source: Any) -> Any:
        if action in _JUDGED:
            _judge(action, arg1, arg2)
        return app(action, arg1, arg2, dbname, source)

    return authorizer


_base_set_authorizer: Any = None
# `set_authorizer(None)` removes the authorizer from 3.11 on; 3.10 stores None and calls it.
_NONE_REMOVES = sys.version_info >= (3, 11)


def _base() -> Any:
    global _base_set_authorizer
    if _base_set_authorizer is None:
        _base_set_authorizer = _gate.own_import("sqlite3").Connection.set_authorizer
    return _base_set_authorizer


# Connections whose __init__ is running on this thread, each with whether the app's own
# __init__ set an authorizer (through `_set_authorizer`) on the way: [connection, bool].
_initializing = _thread._local()


def _init(self: Any, *args: Any, **kwargs: Any) -> None:
    """`__init__` of the connections `sqlite3.connect` makes: the requested class's own
    initialisation, then appshield's authorizer, unless that initialisation already set the
    app's authorizer (chained after appshield's)."""
    stack = getattr(_initializing, "stack", None)
    if stack is None:
        stack = _initializing.stack = []
    entry = [self, False]
    stack.append(entry)
    try:
        super(_own_class(type(self)), self).__init__(*args, **kwargs)
    finally:
        # By identity: list.remove would compare connections with their own __eq__.
        for index in range(len(stack) - 1, -1, -1):
            if stack[index] is entry:
                del stack[index]
                break
    if not entry[1]:
        _base()(self, _authorizer)


def _mark_chained(connection: Any) -> None:
    for entry in getattr(_initializing, "stack", ()):
        if entry[0] is connection:
            entry[1] = True


def _set_authorizer(self: Any, *args: Any, **kwargs: Any) -> None:
    """`set_authorizer` of the connections `sqlite3.connect` makes: the app's authorizer is
    chained after appshield's (`None` leaves appshield's alone). Called in the same shape
    (positional or keyword) as the app called it, so C accepts, warns and refuses alike."""
    base = _base()
    if len(args) + len(kwargs) != 1:
        base(self, *args, **kwargs)  # raises TypeError, as C would
        return
    if args:
        app = args[0]
        if (app is None and _NONE_REMOVES) or callable(app):
            base(self, _authorizer if app is None else _chained(app))
            _mark_chained(self)
            return
    else:
        ((key, app),) = kwargs.items()
        if type(key) is str and ((app is None and _NONE_REMOVES) or callable(app)):
            base(self, **{key: _authorizer if app is None else _chained(app)})
            _mark_chained(self)
            return
    # Not callable (on 3.10, None too: it is stored and called, so every statement is
    # denied), or an odd keyword: let C judge the call as it is, then put appshield's check
    # back in front of whatever C accepted (calling it fails as it would have).
    base(self, *args, **kwargs)
    base(self, _chained(app))
    _mark_chained(self)


# The slot that remembers that the app asked for extension loading (`enable_load_extension(
# True)`), which appshield turns on in SQLite only around a judged `load_extension(path)`
# call, or for good when the policy allows every library (see `_enable_load_extension`).
# (A connection supports no weak references: the flag lives on the connection itself.)
_WANTED = "_appshield_loading_wanted"


def _switch_may_stay_on(active: Any) -> bool:
    """May SQLite's extension-loading switch stay on (the SQL function `load_extension()`,
    any file, would not be blocked)? In monitor mode it may, but enabling is reported, since
    a `CHECK` constraint could then load a library no hook sees."""
    _operation, decision = _sql_load_extension(active, _ENABLE_API)
    if decision.action == "allow":
        return True
    if decision.blocked:
        return False
    _gate.judge_decided(active, "import", _ENABLE_API, lambda: (_operation, decision))
    return True


def _enable_load_extension(self: Any, enabled: Any) -> None:
    """`enable_load_extension` of the connections `sqlite3.connect` makes.

    Enabling it in SQLite enables the SQL function `load_extension()` for every statement the
    connection runs, a `CHECK` constraint of a database file's schema included, which SQLite
    evaluates with the authorizer off: any library, unseen. So SQLite's switch stays off and
    the wish is remembered; `load_extension(path)` turns it on around its own, judged load.
    Only where the policy allows every library (the SQL function would be allowed) is it
    turned on for good."""
    base = _base_class()
    if not enabled:
        setattr(self, _WANTED, False)
        base.enable_load_extension(self, False)
        return
    setattr(self, _WANTED, True)
    active = _gate.for_wrapper()
    if active is None or _switch_may_stay_on(active):
        _expect_enable(self)
        base.enable_load_extension(self, True)


def _load_extension(self: Any, *args: Any, **kwargs: Any) -> Any:
    """`load_extension(path, ...)`: judged by its own audit event (hooks/imports), with SQLite's
    switch on only for this call when the app enabled loading."""
    base = _base_class()
    if getattr(self, _WANTED, False) is not True:
        return base.load_extension(self, *args, **kwargs)  # SQLite refuses: not enabled
    _expect_enable(self)
    base.enable_load_extension(self, True)
    try:
        return base.load_extension(self, *args, **kwargs)
    finally:
        active = _gate.for_wrapper()
        if active is not None:
            _operation, decision = _sql_load_extension(active, _ENABLE_API)
            if decision.blocked:
                base.enable_load_extension(self, False)


def _expect_enable(connection: Any) -> None:
    # The audit hook consumes this (by identity) instead of judging appshield's own switch.
    thread_state.expect = ("sqlite3.enable_load_extension", connection)


def _base_class() -> Any:
    return _gate.own_import("sqlite3").Connection


def on_enable_load_extension(args: tuple[Any, ...]) -> None:
    """The `sqlite3.enable_load_extension` audit event that appshield did not expect: a
    connection switched on through the base class (`sqlite3.Connection.enable_load_extension(
    conn, True)`), which skips the override above. From then on any SQL of that connection can
    load any library: judged as the SQL function `load_extension()` is."""
    if args[1] is False:
        return
    active = _gate.for_wrapper()
    if active is not None:
        _gate.judge_decided(
            active,
            "import",
            _ENABLE_API,
            lambda: _sql_load_extension(active, _ENABLE_API),
        )


# Made at the first connection: `weakref` is not loaded at start-up (`WeakSet` is
# `_weakrefset`'s, which is).
_shielded: WeakKeyDictionary[type, type] | None = None
_ours: WeakSet[type] = WeakSet()
_mro_of = type.__dict__["__mro__"].__get__


def _own_class(kind: type) -> type[Any]:
    """appshield's class in the method resolution order of `kind` (a subclass of it may be
    what was made)."""
    for klass in _mro_of(kind):
        if klass in _ours:
            return klass  # type: ignore[no-any-return]
    raise Unreadable("not a connection class of appshield's")


def shielded_factory(factory: Any) -> Any:
    """The connection class `sqlite3.connect` should make in place of `factory`: a subclass
    whose `__init__` installs the authorizer and whose `set_authorizer` composes. Only for
    `sqlite3.Connection` and its subclasses made by `type` itself (no metaclass code runs
    here); anything else is returned as it is (and refused at `sqlite3.connect/handle`)."""
    global _shielded
    made = plain_connection  # the subclass of `sqlite3.Connection` itself, once made
    if made and factory is made[0].__bases__[0]:
        # Every connect that names no factory: found by identity, without the weak lookups
        # (the class lives as long as the process).
        return made[0]
    base = _gate.own_import("sqlite3").Connection
    if type(factory) is not type or not issubclass(factory, base):
        return factory
    if factory in _ours:
        return factory
    shielded = _shielded
    if shielded is None:
        shielded = _shielded = _gate.own_import("weakref").WeakKeyDictionary()
    found = shielded.get(factory)
    if found is None:
        namespace = {
            "__slots__": (_WANTED,) if hasattr(base, "enable_load_extension") else (),
            "__module__": factory.__module__,
            "__qualname__": factory.__qualname__,
            "__doc__": factory.__doc__,
            "__init__": _init,
            "set_authorizer": _set_authorizer,
        }
        if hasattr(base, "enable_load_extension"):  # only builds that can load extensions
            namespace["enable_load_extension"] = _enable_load_extension
            namespace["load_extension"] = _load_extension
        found = type(factory.__name__, (factory,), namespace)
        shielded[factory] = found
        _ours.add(found)
    if factory is base:
        plain_connection[:] = [found]  # also the audit hook's check of a new handle
    return found


def check_new_connection(connection: Any) -> None:
    """At `sqlite3.connect/handle` (SQLite's handle is open, Python's object is not yet
    initialised, so no authorizer can be set here): a connection that is not of a class
    `sqlite3.connect` made will never get the authorizer, so it is refused (`Unreadable`:
    in monitor mode, reported and let be). That is `sqlite3.Connection(...)` called directly,
    or a factory that is not a plain subclass of it."""
    _own_class(type(connection))
