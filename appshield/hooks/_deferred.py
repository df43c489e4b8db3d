"""Parts of the hooks loaded on their first operation, not at start-up.

Install patches every patch point and adds the audit hook before the app's first line runs:
a category patched later would be a window. What a hook needs only once an operation of its
kind comes (the process describer and argument readers on the first program start, the
SQLite authorizer on the first `sqlite3.connect`, the native-library resolver on the first
`ctypes`/`cffi` load, the network describers on the first socket event or resolver call) is a
*part*: a few modules loaded together, the first time any of their functions is called. A
shielded start that never spawns a program never loads the process part. The runtime defers
two parts of its own the same way: the report's records (`CallSite`, `Violation`) until the
first violation, and the stop of denied exporters until the first blocked connection.

How a hook module defers a part (`defer`): the names it would import from the part's modules
are bound, in its own globals, to stand-ins. The first call of any stand-in loads the whole
part and writes the real objects over every stand-in of that part, so each later call is the
plain global lookup an eager import gives: no import statement, no `sys.modules` lookup on the
hot path. A module alias (`_sqlite.sqlite_paths(...)`) gets a stand-in object whose first
attribute read does the same.

Loading a part is appshield's own import (`thread_state.own_imports`, as `_gate.own_import`
does for a stdlib helper): the audit hook lets its `import` events through and the import hooks
do not judge them, so a policy that refuses imports of, say, `_socket` cannot refuse
appshield its own describer; the files the import system reads meanwhile are its own work
(`thread_state.importing`), not file operations. Each part names every module its load may
import (`brings`; tests/activation/test_deferred_parts.py checks the list). Where code has
undone the import hooks those reads are file operations, described by the file describer,
which is therefore not a part; an operation that needs the very part being loaded on its
thread gets ImportError (`_Loading`), never a second load inside the first.

A part that cannot be loaded (`ImportError`, `RecursionError`, `MemoryError`, a `sys.modules`
entry someone else put there) raises. Stand-ins are only called while the gate describes an
operation (an audit handler, a wrapper's `prepare`), so that is the gate's fail-closed path:
the operation is refused and reported as undescribable, never let through. At the recursion
limit the gate tries again with headroom, and the load with it. The next operation tries the
load again.
"""

from __future__ import annotations

import _thread
import os
import sys
from types import ModuleType

from appshield._modules import in_an_import, loaded, set_stdlib_loader, wait_for_helper
from appshield._threadstate import thread_state

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

__all__ = ["PARTS", "Part", "defer", "defer_module", "load_part"]

# appshield's own folder: a part's module must be a file in it.
_HOME = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
# The import system's own entry point, taken now: `builtins.__import__` is the app's to replace.
_import = sys.modules["_frozen_importlib"]._gcd_import


class Part:
    """Modules loaded together, and every module their load may import. `home`: the folder
    each of `modules` must come from (appshield's own, or the standard library's for the
    engine's stdlib helpers)."""

    __slots__ = ("brings", "home", "modules", "name")

    def __init__(
        self, name: str, modules: tuple[str, ...], brings: tuple[str, ...], home: str = _HOME
    ) -> None:
        self.name = name
        self.modules = modules
        self.brings = (*modules, *brings)
        self.home = home


# Every part any hook module deferred, for the tests.
PARTS: list[Part] = []


class _Loading(_thread._local):
    """The parts this thread is loading now. An operation that the load itself makes (the
    import system reading a part's file, seen as a file operation when the import hooks
    were undone) and that needs the same part cannot have it: it gets ImportError, which the
    gate turns into a refusal, instead of loading the part again inside its own load
    without end."""

    parts: tuple[Part, ...] = ()


_loading = _Loading()


def load_part(part: Part) -> dict[str, ModuleType]:
    """Import the part's modules as appshield's own imports: module name -> module. Raises
    when one cannot be loaded or is not appshield's own file.

    The imports run on a thread of appshield's own, as the telemetry build does: no Python
    signal handler runs there. On the app's thread, a handler that raises (a fast interval
    timer) can interrupt the import system between taking its global lock and the `try` that
    gives it back; that lock then stays held for ever, and every other thread's import (the
    telemetry build's among them) waits for ever. If the wait here is interrupted, the load
    still finishes and the next operation takes its result. A thread that is itself in an
    import loads here: a helper would wait for its module lock. A helper stuck on the global
    lock is never waited for for ever (`wait_for_helper`, docs/limits.md)."""
    if part in _loading.parts:
        raise ImportError(f"appshield's {part.name} part is needed while it loads")
    if part not in _loads and (in_an_import() or sys.is_finalizing()):
        # Never while a helper's load of the part is under way: this thread would wait for
        # the module locks that helper holds, while the helper may wait for this thread.
        return _load_here(part)
    load = _Load()
    running = _loads.setdefault(part, load)  # one step under the GIL: one load per part
    if running is load:
        try:
            load.helper = _thread.start_new_thread(_load_on_own_thread, (part, load))
        except BaseException as exc:
            load.done.release()
            del _loads[part]
            if isinstance(exc, RuntimeError):
                # No new thread: interpreter shutdown on 3.12+ (an atexit handler's first
                # program start), or a thread limit. Loaded here, as before the helpers.
                return _load_here(part)
            raise  # interrupted here: the next operation starts the load again
    if not wait_for_helper(running.done, lambda: running.helper):
        # It stays in `_loads`: a later operation gives up at once too.
        raise ImportError(
            f"appshield could not load its {part.name} part: the import system's lock is "
            "held for ever by an interrupted import"
        )
    if _loads.get(part) is running:
        del _loads[part]
    if running.found is None:
        # The loading thread's own exception, so a refusal reads as it would have here.
        if running.failure is not None:
            raise running.failure
        raise ImportError(f"appshield could not load its {part.name} part")
    return running.found


class _Load:
    """One load of a part on appshield's own thread."""

    __slots__ = ("done", "failure", "found", "helper")

    def __init__(self) -> None:
        self.done = _thread.allocate_lock()
        self.done.acquire()  # released by the loading thread when it is over
        self.found: dict[str, ModuleType] | None = None
        self.failure: BaseException | None = None
        self.helper = 0  # the loading thread's ident


# part -> its load in progress (or over, until a waiting thread takes the result).
_loads: dict[Part, _Load] = {}
# A fork's child has none of the loading threads: a load they had begun is started again.
os.register_at_fork(after_in_child=_loads.clear)


def _load_on_own_thread(part: Part, load: _Load) -> None:
    # appshield's own thread doing appshield's own work: the files its imports read are not
    # the app's operations. Not for a stdlib part: its modules are found on `sys.path`, where
    # a file planted under one of their names must still be judged (the import hooks let
    # through only the part's names from appshield's or the standard library's folder); the
    # import system's own reads are let through as on any thread (`thread_state.importing`).
    if part.home is _HOME:
        thread_state.busy = True
    try:
        load.found = _load_here(part)
    except BaseException as exc:  # handed to the waiting thread
        load.failure = exc
    finally:
        load.done.release()


def _load_here(part: Part) -> dict[str, ModuleType]:
    found: dict[str, ModuleType] = {}
    loading = _loading.parts
    _loading.parts = (*loading, part)
    state = thread_state
    previous = state.own_imports
    state.own_imports = (*previous, *part.brings)
    try:
        for name in part.modules:
            module = loaded(name)
            if module is None:
                _import(name)
                module = sys.modules.get(name)
            found[name] = _checked(name, module, part.home)
    finally:
        state.own_imports = previous
        _loading.parts = loading
    return found


def _checked(name: str, module: object, home: str = _HOME) -> ModuleType:
    """`module` when it is the module appshield ships as `name` (or, for a stdlib part, the
    standard library's); otherwise ImportError (a `sys.modules` entry replaced by other code
    is not trusted to describe anything)."""
    if type(module) is ModuleType:
        file = module.__dict__.get("__file__")
        if type(file) is str and file.startswith(home) and module.__dict__.get("__name__") == name:
            return module
    raise ImportError(f"appshield could not load its own module {name}")


def defer(namespace: dict[str, Any], part: Part, names: Mapping[str, tuple[str, ...]]) -> None:
    """Bind `names` (module -> the names a hook module would import from it) in `namespace`
    to stand-ins that load `part` on first call and put the real objects in their place."""
    if part not in PARTS:
        PARTS.append(part)

    def fill() -> None:
        modules = load_part(part)
        # Every value read before any is written: a part that lacks one changes nothing.
        values = {
            name: getattr(modules[module], name) for module in names for name in names[module]
        }
        namespace.update(values)

    for module in names:
        for name in names[module]:
            namespace[name] = _stand_in(fill, namespace, name)


def _stand_in(fill: Callable[[], None], namespace: dict[str, Any], name: str) -> Any:
    def stand_in(*args: Any, **kwargs: Any) -> Any:
        fill()
        return namespace[name](*args, **kwargs)

    stand_in.__name__ = stand_in.__qualname__ = name
    return stand_in


class _ModuleStandIn:
    """Stands for a module alias in a hook module's globals until the part is loaded."""

    __slots__ = ("_alias", "_module", "_namespace", "_part")

    def __init__(self, namespace: dict[str, Any], alias: str, part: Part, module: str) -> None:
        self._namespace = namespace
        self._alias = alias
        self._part = part
        self._module = module

    def __getattr__(self, attribute: str) -> Any:
        module = load_part(self._part)[self._module]
        self._namespace[self._alias] = module
        return getattr(module, attribute)


def defer_module(namespace: dict[str, Any], alias: str, part: Part, module: str) -> Any:
    """A stand-in for `import module as alias` in `namespace`: the first attribute read loads
    `part` and binds `alias` to the module itself."""
    if part not in PARTS:
        PARTS.append(part)
    return _ModuleStandIn(namespace, alias, part, module)


# -- the engine's standard-library helpers ------------------------------------------------------

# The standard library's own folder (`os` is one of its files, whatever the build), where the
# engine's helpers must come from: a `re.py` planted earlier on `sys.path` is not appshield's
# import, and is judged as any other (`STDLIB_HOME` in the import hooks' own-import check).
STDLIB_HOME = os.path.dirname(os.path.abspath(os.__file__)) + os.sep
# Where an import that appshield makes as its own may come from (`own_imports`): its own
# folder and the standard library's. A file elsewhere under one of those names is judged.
OWN_HOMES = (_HOME, STDLIB_HOME)

# What importing each may load, 3.10 to 3.13 (with `functools`, `operator`, `collections` and
# `types` already there from start-up; listed anyway, should an app have removed them).
_REGEX_BRINGS = (
    "_locale",
    "_sre",
    "copyreg",
    "enum",
    "functools",
    "operator",
    "re._casefix",
    "re._compiler",
    "re._constants",
    "re._parser",
    "sre_compile",
    "sre_constants",
    "sre_parse",
    "types",
)
STDLIB_PARTS = {
    "re": Part("stdlib re", ("re",), _REGEX_BRINGS, STDLIB_HOME),
    "ipaddress": Part("stdlib ipaddress", ("ipaddress",), ("functools",), STDLIB_HOME),
}


def _load_stdlib(name: str) -> ModuleType:
    """The engine's way to a stdlib helper once the patching layer is loaded: the part
    machinery's, so the import is appshield's own (not judged by the app's policy) and runs on
    appshield's own thread. Only the names of `STDLIB_PARTS` are asked for (the engine's)."""
    return load_part(STDLIB_PARTS[name])[name]


set_stdlib_loader(_load_stdlib)
