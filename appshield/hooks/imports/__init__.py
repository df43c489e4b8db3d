"""Interception of the import category: modules by every route, and native libraries.

Where an import is judged (all of these run only on a `sys.modules` miss, so a cached
`import json` runs no appshield code at all):

- `_bootstrap._load_unlocked(spec)`: every import the import system finds (the statement,
  `__import__`, `importlib.import_module`, zipimport, extension modules). The C import code
  looks `_find_and_load` up on the `_frozen_importlib` module at call time, and that calls
  `_load_unlocked` through the module globals, so a module-attribute patch reaches every
  route. The spec is known here, so `origin` is the real file, and nothing has run yet.
- `_bootstrap._exec(spec, module)`: `importlib.reload`.
- `module_from_spec` (in `_bootstrap` and the alias `importlib.util` took of it) and the
  loaders' own `create_module`/`exec_module`: the spec_from_file_location route, which has no
  find step. `spec_from_file_location("json", "/tmp/evil.py")` is judged with origin
  /tmp/evil.py. The loader wrappers take the origin from the loader's own path, so swapping
  a judged spec's loader does not smuggle another file in.
- the audit event `import`: with a file name it is `_imp.create_dynamic` (an extension module
  loaded outside the loaders); without, the C import statement, which is only judged here
  when the Python-level patches have been removed (tamper backstop).
- the audit event `ctypes.dlopen` (every ctypes load, `_ctypes.dlopen` aliases included) and
  `_cffi_backend.load_library` (cffi's dlopen raises no event): operation `library`.
- the audit event `sqlite3.load_extension` (`Connection.load_extension(path)`, on builds
  that have it): SQLite dlopens `path` and, when that fails, `path` with the platform's
  library suffix appended (`sqlite3LoadExtension`), so both files are judged as `library`
  loads. SQLite's SQL function `load_extension()` raises no event: the authorizer of
  hooks/file/sqlite judges it.

A judged spec is remembered (by identity, with the origin it was judged for), so the inner
layers of one import do not decide it again: the loader's exec_module compares it with the
last spec judged, one identity check. Before building an operation, the engine's import index
is asked whether any rule could name the module or its origin (`ImportIndex.quiet`); when
none can and the default allows, the import is allowed as the engine would allow it, with no
operation, decision or stack walk: a first import of a module that no rule names costs the
three wrapper calls and a few dict lookups (benchmarks/run.py, `import_first`).

`thread_state.importing` marks the import system's own file work in progress on this thread
(listing `sys.path` folders, reading a module's source or cached bytecode, writing that
cache); while a loader reads a module it names that module's files, the only ones whose opens
are that work. The file hooks let that through: reading modules is this category's business.
It is 0 while a module body runs, so a module's own code is checked like any other code.
"""

from __future__ import annotations

import _thread
import os
import sys
from _weakref import ref as weak_ref  # weakref.ref, without importing weakref
from types import ModuleType as _ModuleType

from appshield._threadstate import still_running, thread_state
from appshield.hooks import _convert, _deferred, _gate
from appshield.hooks.imports import names as _imp_names
from appshield.hooks.imports import scope_code as _scope_code
from appshield.normalize import is_normal_path
from appshield.operations import ImportOp, Operation
from appshield.patching import HookFamily, PatchPoint, _waiting, compiled_hook_module, loaded

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    from appshield.hooks.imports.library import resolve_library
else:
    # Where a native library name leads (with the policy's loader folders): loaded by the
    # first ctypes/cffi/SQLite-extension load (hooks/_deferred.py), from inside the gate.
    _deferred.defer(
        globals(),
        _deferred.Part(
            "native library",
            ("appshield.hooks.imports.library",),
            ("appshield.policy", "appshield.policy.variables"),
        ),
        {"appshield.hooks.imports.library": ("resolve_library",)},
    )

__all__ = ["AUDIT_HANDLERS", "FAMILY", "PATCHES", "compiled_hook_parts"]

_state = thread_state
_MODULE_SUFFIXES = (".py", ".pyc", ".pyw", ".so", ".zip", ".egg", ".whl", ".pyz")


def _shield() -> Any:
    """The shield a wrapper consults (None outside a shield, or in appshield's own work)."""
    return _gate.for_wrapper()


# -- which specs were judged ------------------------------------------------------------------


def _nothing() -> None:
    return None


# The identity key of a spec. Not id(): id() raises the `builtins.id` audit event, a call of
# every audit hook each time. object.__hash__ is a bijection of the address, so it is as
# unique as id() among live objects (and the weak reference confirms the identity).
_identity = object.__hash__


class _Judged:
    """Specs already decided: identity -> (weak reference, origin judged). ModuleSpec defines
    `__eq__` and so is unhashable; identity plus a weak reference is exact. Bounded.

    `last` is the most recent of them, (weak reference, origin): the inner layer of the same
    import (the loader's exec_module) recognises it with one identity check."""

    LIMIT = 2048

    def __init__(self) -> None:
        self._specs: dict[int, tuple[Any, str | None]] = {}
        self._names: dict[str, str | None] = {}
        self._lock = _thread.allocate_lock()
        self.last: tuple[Callable[[], Any], str | None] = (_nothing, None)

    def add(self, spec: Any, name: str | None, origin: str | None) -> None:
        try:
            ref = weak_ref(spec)
        except TypeError:
            return
        specs = self._specs
        if len(specs) >= self.LIMIT:
            with self._lock:
                specs.clear()
                self._names.clear()
        specs[_identity(spec)] = (ref, origin)
        if name is not None:
            self._names[name] = origin
        self.last = (ref, origin)

    def remember_last(self, spec: Any, origin: str | None) -> None:
        try:
            self.last = (weak_ref(spec), origin)
        except TypeError:
            pass

    def has(self, spec: Any, origin: str | None) -> bool:
        if origin is not None and type(origin) is not str:
            return False  # a str subclass could compare equal to the origin that was judged
        last = self.last
        if last[0]() is spec and last[1] == origin:
            return True
        found = self._specs.get(_identity(spec))
        return found is not None and found[0]() is spec and found[1] == origin

    def has_name(self, name: str, origin: str | None) -> bool:
        return name in self._names and self._names[name] == origin

    def clear(self) -> None:
        with self._lock:
            self._specs.clear()
            self._names.clear()
            self.last = (_nothing, None)

    def after_fork(self) -> None:
        self._lock = _thread.allocate_lock()


_judged = _Judged()


def _spec_origin(spec: Any) -> str | None:
    """The raw file a spec loads from (None for built-in, frozen, namespace modules)."""
    origin = getattr(spec, "origin", None)
    if not isinstance(origin, str) or not getattr(spec, "has_location", False):
        return None
    return origin


def _own_origin(origin: object) -> bool:
    """Is `origin` a file of appshield's own or of the standard library, where every module
    appshield imports as its own comes from? A module of the same name planted elsewhere on
    `sys.path` is judged like the app's."""
    return type(origin) is str and origin.startswith(_deferred.OWN_HOMES) and is_normal_path(origin)


def _judge(spec: Any, origin: str | None, api: str) -> None:
    """Decide the import of `spec` loaded from `origin` (raw, as the loader spells it),
    unless that very spec was already decided for that very file.

    Where the compiled hook is installed, `_load_unlocked`'s C front answers the commonest
    case before this is called (`quiet_import` in appshield/_c_audit_hook.c: the same tests,
    the same screen, the same `remember_last`); everything else comes here."""
    # `_gate.for_wrapper()`, inlined: this runs for every module a loader executes.
    shield = _gate._shield
    busy = _state.busy
    if shield is None or spec is None or (busy and still_running(busy)):
        return
    try:
        if _judged.has(spec, origin):
            return
        name = getattr(spec, "name", None)
        kind = type(name)
        if kind is not str:
            if issubclass(kind, str):
                # `__import__` hands a str subclass on as the spec's name, and the finders
                # work on it with its own methods (`rpartition`...): the file they found may
                # not be the module its characters name. Refused (the gate reports it).
                raise _convert.Unreadable(f"a module name of type {kind.__qualname__}")
            name = None
        elif (
            _state.own_imports
            and name in _state.own_imports
            and (origin is None or _own_origin(origin))
        ):
            return  # a helper module appshield itself imports while deciding
        if not origin:
            absolute = None
        elif (
            type(origin) is str
            and origin[:1] == "/"
            and "//" not in origin
            and "/./" not in origin
            and "/../" not in origin
            and not origin.endswith(("/.", "/..", "/"))
        ):
            # No `.`, `..` or empty part (`normalize.is_normal_path`, inlined): abspath would
            # return it unchanged. A hidden folder (`~/.local`, `~/.pyenv`) is no such part.
            absolute = origin
        else:
            absolute = os.path.abspath(_convert.event_text(origin))
        # The names its code has besides `name`, when the file disagrees (see _imp_names).
        home = init = None
        if name is not None and absolute is not None:
            # `a/b/c.py` or `a/b/c/__init__.py` for `a.b.c`, the usual case, tested here
            # (`names_of` tests it too): no call for a first import whose file agrees.
            tail = "/" + name.replace(".", "/")
            if not (absolute.endswith(tail + ".py") or absolute.endswith(tail + "/__init__.py")):
                home, init = _imp_names.names_of(name, absolute)
        # The engine's screen first: a module that no rule could name is allowed without a
        # report, so neither an operation nor a decision is needed (nor the call stack).
        compiled = shield.compiled
        screen = _screen
        if screen[0] is not compiled:
            screen = _screen_for(compiled)
        index = screen[1]
        if index is not None and name is not None and index.quiet(name, absolute, home, init):
            # Deciding it again would be as quiet: only the inner layer of this very import
            # needs to recognise it, so it is remembered as the last spec judged, no more.
            _judged.remember_last(spec, origin)
            return
    except BaseException as exc:  # not describable: the gate's denial
        _gate.fail_closed(shield, "import", api, exc)
    _gate.judge_call(shield, "import", api, _describe_import, name, absolute, home, init, api)
    _judged.add(spec, name, origin)


def _describe_import(
    name: str | None, absolute: str | None, home: str | None, init: str | None, api: str
) -> tuple[list[tuple[ImportOp, str]], None]:
    return [(ImportOp(name, absolute, None, home, init), api)], None


def _import_op(name: str, absolute: str | None) -> ImportOp:
    if absolute is None:
        return ImportOp(name, None)
    home, init = _imp_names.names_of(name, absolute)
    return ImportOp(name, absolute, None, home, init)


# (decider, its import screen) for `_judge`; a decider without a screen (the learning
# recorder) sees every import.
_screen: tuple[Any, Any] = (None, None)


def _screen_for(compiled: Any) -> tuple[Any, Any]:
    global _screen
    _screen = (compiled, compiled.import_screen())
    return _screen


# -- wrappers -----------------------------------------------------------------------------------


def _spec_first(api: str) -> Callable[..., Any]:
    """For `_load_unlocked(spec)`, `module_from_spec(spec)`, `_exec(spec, module)`."""

    def wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if args:
            _judge(args[0], _spec_origin(args[0]), api)
        return wrapped(*args, **kwargs)

    return wrapper


def _load_unlocked(
    wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """`_bootstrap._load_unlocked(spec)`: judged first; once the module has run, the patch
    points waiting for it are applied (see `appshield.patching.loaded`)."""
    if args:
        _judge(args[0], _spec_origin(args[0]), "import")
    module = wrapped(*args, **kwargs)
    if _waiting:
        _patch_loaded(args, module)
    return module


def _patch_loaded(args: tuple[Any, ...], module: Any) -> None:
    """The patch points waiting for the module `_load_unlocked(*args)` just loaded, applied.
    (The C front of `_load_unlocked` applies them itself for a plain module, and asks this
    for any other.)"""
    # `type(...) is not ModuleType` first: the usual module costs no call.
    if type(module) is not _ModuleType and _imp_names.is_lazy(module):
        # Nothing of it has run, so there is nothing to patch yet: its real loader's
        # exec_module (below) applies the points on first use. Only a module that
        # appshield patches is loaded now (reading an attribute runs it), so no patch
        # point can be left waiting on a loader that no wrapper sees (built-in, frozen).
        name = getattr(args[0], "name", None) if args else None
        if type(name) is str and name in _waiting:
            loaded(getattr(module, "__name__", None), module)
    else:
        # `loaded`'s own first tests, inlined: nearly every module has no point waiting.
        name = getattr(module, "__name__", None)
        if type(name) is str and name in _waiting:
            loaded(name, module)


def _loader_path(loader: Any, spec: Any) -> str | None:
    path = getattr(loader, "path", None)
    if isinstance(path, str) and path:
        return path
    return _spec_origin(spec)


def _loader_exec_module(
    wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    if args:
        module = args[0]
        spec = getattr(module, "__spec__", None)
        if spec is None:
            spec = _AdHocSpec(getattr(module, "__name__", None))
        path = getattr(instance, "path", None)  # `_loader_path`, inlined
        if not (isinstance(path, str) and path):
            path = _spec_origin(spec)
        last = _judged.last
        # The usual case: `_load_unlocked` judged this very spec for this very file just now.
        if last[0]() is not spec or type(path) is not str or last[1] != path:
            _judge(spec, path, "importlib.exec_module")
        result = wrapped(*args, **kwargs)
        # Patched as soon as its body has run: here for source and extension modules, by
        # hand or through the import system; `_load_unlocked` for the other loaders
        # (built-in, frozen) and for a module that replaced itself in sys.modules.
        if _waiting:
            name = getattr(spec, "name", None)
            if type(name) is str and name in _waiting:  # as above
                loaded(name, module)
        return result
    return wrapped(*args, **kwargs)


def _loader_create_module(
    wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    if args:
        spec = args[0]
        _judge(spec, _loader_path(instance, spec), "importlib.create_module")
    return wrapped(*args, **kwargs)


class _AdHocSpec:
    """Stands in for a module without `__spec__` handed straight to a loader."""

    has_location = False
    origin: str | None = None

    def __init__(self, name: Any) -> None:
        self.name = name


def _import_io(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The import system's own file work: mark it for the file hooks while it runs."""
    state = _state
    previous = state.importing
    state.importing = True
    try:
        return wrapped(*args, **kwargs)
    finally:
        state.importing = previous


def _module_code_io(
    wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """`get_code` of the source and bytecode loaders (and zipimport): reading the module's
    file, its cached bytecode, and writing that cache. Marked only when the loader's own
    file is a module file, so `SourceFileLoader(x, "/etc/shadow").get_code(x)` stays an
    ordinary, checked file read.

    The mark hands the file to the import category, so the file must be one whose import
    was judged: the usual case is the import just judged (`_load_unlocked`, then the
    loader's `exec_module`, then this), found by its origin, one comparison. Anything else
    (a direct `SourceFileLoader(x, "/vault/s.py").get_code(x)`, which hands back the
    module's code and its constants without running it) is judged here as an import of
    that file first: an import rule that denies the file denies reading its code."""
    own = getattr(instance, "path", None) or getattr(instance, "archive", None)
    if not isinstance(own, str) or not own.endswith(_MODULE_SUFFIXES):
        return wrapped(*args, **kwargs)
    fullname = args[0] if args else kwargs.get("fullname")
    judged = _judged.last[1]
    if not (
        type(own) is str
        and type(judged) is str
        # the file itself, or a module inside the zip archive `own`
        and (judged == own or judged.startswith(own + "/"))
    ):
        _judge(_AdHocSpec(fullname), own, "importlib.get_code")
    state = _state  # as `_import_io`, naming the module's files: the opens it may make
    previous = state.importing
    state.importing = _module_files(own)
    try:
        code = wrapped(*args, **kwargs)
    finally:
        state.importing = previous
    if _scope_code.recording:
        # A module that some `scope` names: its code objects are what makes a frame its own.
        # Most modules are turned away by their top name here, without a call.
        tops = _scope_code.wanted_tops
        if tops is None or (type(fullname) is str and fullname.partition(".")[0] in tops):
            # A zip archive's loader has no `path`: the code's own file name is the archive's.
            path = getattr(instance, "path", None)
            _scope_code.record_code(
                fullname, path if type(path) is str else getattr(code, "co_filename", None), code
            )
    if _scope_code.attributing:
        # Per-distribution grants: which file this code came from decides whose it is. A
        # zip archive's loader has no `path`: such code stays unattributed.
        path = getattr(instance, "path", None)
        if type(path) is str:
            _scope_code.record_origin(path, code)
    return code


def _module_files(own: str) -> tuple[str, str]:
    """The files a loader's `get_code` of the module file `own` may open as the import
    system's own work: `own` itself, and the names in its bytecode cache folder that start
    with its stem and a dot (`__pycache__/mod.cpython-311.pyc`, its `.opt-N` forms, and the
    temporary file of an atomic write, `...pyc.<id>`). A loader subclass whose `get_data`
    has importlib's own `get_data` read another file gets that read checked like any other.
    Spelled as importlib spells them (`cache_from_source`); a path spelled otherwise is
    simply checked."""
    head, _, tail = own.rpartition("/")
    stem = tail.rpartition(".")[0] or tail
    if sys.pycache_prefix is None:
        return own, f"{head}/__pycache__/{stem}."
    try:  # a cache folder elsewhere (PYTHONPYCACHEPREFIX): asked of importlib itself
        cache = sys.modules["_frozen_importlib_external"].cache_from_source(own)
    except Exception:
        return own, own + "\0"  # no cache for this name: `own` alone (no path holds a NUL)
    return own, f"{cache.rpartition('/')[0]}/{stem}."


def _runpy_details(
    wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """runpy finds a module and executes its code without a loader's exec_module: judge the
    spec it found before handing the code back."""
    details = wrapped(*args, **kwargs)
    try:
        spec = details[1]
    except (TypeError, IndexError):
        return details
    _judge(spec, _spec_origin(spec), "runpy.run_module")
    return details


def _zip_load_module(
    wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """`zipimporter.load_module(fullname)` (deprecated, still in 3.10-3.13) reads the module's
    code and runs it itself, with no spec, no `_load_unlocked`, no loader `exec_module` and
    no audit event. Judged here, with the file in the archive that the call will run."""
    fullname = args[0] if args else kwargs.get("fullname")
    shield = _gate._shield
    if shield is not None and not _state.busy and isinstance(fullname, str):
        origin: str | None = None
        if type(fullname) is str:
            # The module-level helper, as load_module itself calls it (a subclass's own
            # `get_filename` could name another file). It also reads the code, which
            # load_module reads again: this API is deprecated and rare. Not in the archive:
            # the ZipImportError that load_module would raise.
            origin = sys.modules["zipimport"]._get_module_code(instance, fullname)[2]
            if type(origin) is not str:
                _gate.fail_closed(
                    shield,
                    "import",
                    "zipimport.load_module",
                    _convert.Unreadable(f"an archive path of type {type(origin).__name__}"),
                )
        spec = _AdHocSpec(fullname)
        if origin is not None:
            spec.origin, spec.has_location = origin, True
        _judge(spec, origin, "zipimport.load_module")
    return wrapped(*args, **kwargs)


def _prepare_cffi(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
    # load_library(filename, flags=0): the name is read once (None is the main program).
    if args:
        name = args[0] if args[0] is None else _convert.fspath_once(args[0])
        args = (name, *args[1:])
    else:
        name = kwargs.get("filename")
        if name is not None:
            name = _convert.fspath_once(name)
            kwargs = {**kwargs, "filename": name}
    return [(ImportOp(None, None, resolve_library(name)), "cffi.dlopen")], (args, kwargs)


def _cffi_load_library(
    wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    shield = _shield()
    if shield is not None:
        args, kwargs = _gate.judge_call(
            shield, "import", "cffi.dlopen", _prepare_cffi, args, kwargs
        )
    return wrapped(*args, **kwargs)


_B = "_frozen_importlib"
_BX = "_frozen_importlib_external"


def _import_front(kind: str, wrapper: Callable[..., Any]) -> Any:
    """The wrapper patched in for one of the three layers every import of a source module
    passes: `wrapper`, or where the compiled audit hook was built, its C front
    (`import_front`), which takes the layer's usual case itself (importlib's own spec,
    module and file loader objects, the spec just judged) and calls `wrapper` for the rest.
    The front answers nothing until the compiled hook is installed with this module's parts
    (never under `APPSHIELD_PURE_PYTHON=1`): the three Python frames and their calls were
    about a third of what the shield added to a first import. `_load_unlocked`'s front also
    judges `_judge`'s commonest case itself (a file that agrees with its name, a normal
    absolute origin, the engine's screen `quiet`, asked in Python; `quiet_import`), and
    hands every other spec to `_judge`."""
    compiled = compiled_hook_module()
    return wrapper if compiled is None else compiled.import_front(kind, wrapper)


_LOAD_WRAPPER = _import_front("load", _load_unlocked)
_EXEC_WRAPPER = _import_front("exec", _loader_exec_module)
_CODE_WRAPPER = _import_front("code", _module_code_io)

# Each import of a source module passes three of these: `_load_unlocked` (judged),
# `_LoaderBasics.exec_module` (already judged: one lookup) and `SourceLoader.get_code`
# (marked). The others sit on routes that skip `_load_unlocked`, or run only when a folder's
# listing changed or a new `sys.path` entry is first seen.
PATCHES: tuple[PatchPoint, ...] = (
    PatchPoint(_B, "_load_unlocked", _LOAD_WRAPPER, "import"),
    PatchPoint(_B, "_exec", _spec_first("importlib.reload"), "import"),
    PatchPoint(
        "importlib.util", "module_from_spec", _spec_first("importlib.module_from_spec"), "import"
    ),
    PatchPoint(_BX, "_LoaderBasics.exec_module", _EXEC_WRAPPER, "import"),
    PatchPoint(_BX, "ExtensionFileLoader.create_module", _loader_create_module, "import"),
    PatchPoint(_BX, "ExtensionFileLoader.exec_module", _EXEC_WRAPPER, "import"),
    PatchPoint(_BX, "SourceLoader.get_code", _CODE_WRAPPER, "import"),
    PatchPoint(_BX, "SourcelessFileLoader.get_code", _CODE_WRAPPER, "import"),
    PatchPoint(_BX, "FileFinder._fill_cache", _import_io, "import"),
    PatchPoint(_BX, "PathFinder._path_hooks", _import_io, "import"),
    PatchPoint("zipimport", "zipimporter.get_code", _module_code_io, "import", optional=True),
    PatchPoint("zipimport", "zipimporter.load_module", _zip_load_module, "import", optional=True),
    PatchPoint("runpy", "_get_module_details", _runpy_details, "import", optional=True),
    PatchPoint("_cffi_backend", "load_library", _cffi_load_library, "import", optional=True),
)

# The patches whose presence makes the C statement's `import` event redundant.
_PRIMARY = (
    (_B, "_load_unlocked", None),
    (_BX, "_LoaderBasics", "exec_module"),
)


_intact: list[tuple[dict[str, Any], str, Any]] = []


def _remember_layer() -> None:
    """Note our primary proxies as installed, so `_layer_intact` is a few identity checks."""
    _intact.clear()
    for module_name, attribute, member in _PRIMARY:
        owner: Any = sys.modules[module_name].__dict__
        name = attribute
        if member is not None:
            owner, name = vars(owner[attribute]), member
        current = owner.get(name)
        if getattr(current, "_self_appshield_point", None) is not None:
            _intact.append((owner, name, current))


def _layer_intact() -> bool:
    # Runs on every C import statement that misses sys.modules: unrolled, no generator.
    intact = _intact
    if len(intact) != 2:  # the two of _PRIMARY
        return False
    (owner1, name1, proxy1), (owner2, name2, proxy2) = intact
    return owner1.get(name1) is proxy1 and owner2.get(name2) is proxy2


# -- audit events -------------------------------------------------------------------------------


def _on_import(args: tuple[Any, ...]) -> tuple[ImportOp, str] | None:
    name, filename = args[0], args[1]
    if type(name) is not str:
        # The import machinery always names modules with exact str: anything else is a
        # hand-made `sys.audit("import", ...)`, not an import.
        return None
    if filename is None:
        # The C import statement, before the find: the patched layer decides it later with
        # the spec in hand, unless someone restored the originals.
        if _layer_intact():
            return None
        return ImportOp(name, None), "import"
    origin = _convert.event_text(filename)
    if _judged.has_name(name, origin):
        return None
    # `_imp.create_dynamic`: CPython runs `PyInit_<last component>` from this very file.
    return _import_op(name, os.path.abspath(origin)), "import"


def _import_statement_fast(args: tuple[Any, ...]) -> bool:
    """The audit hook's check before the gate for `import`: True for the event of the C import
    statement (`import x`, `__import__`) before its find, while the patched layer that judges
    the import with its spec in hand is intact. `_on_import` lets exactly that through too;
    answered here, the event skips the gate's bookkeeping (about 10,000 instructions a first
    import). Anything else (a file name, a restored layer, a hand-made event) goes to the
    handler."""
    return len(args) > 1 and type(args[0]) is str and args[1] is None and _layer_intact()


def _on_dlopen(args: tuple[Any, ...]) -> tuple[ImportOp, str] | None:
    name = args[0]
    library = resolve_library(None if name is None else _convert.event_text(name))
    return ImportOp(None, None, library), "ctypes.dlopen"


# What `sqlite3LoadExtension` appends to a name it could not dlopen as given.
_SQLITE_SUFFIX = {"darwin": ".dylib", "win32": ".dll", "cygwin": ".dll"}.get(sys.platform, ".so")


def _on_sqlite_load_extension(args: tuple[Any, ...]) -> tuple[Operation, str] | None:
    # (connection, path). Either candidate may be the file dlopen maps: a doubt is a denial.
    name = _convert.event_text(args[1])
    candidates = (name, name + _SQLITE_SUFFIX)
    api = "sqlite3.load_extension"
    return _gate.first_violation(
        [(ImportOp(None, None, resolve_library(c)), api) for c in candidates]
    )


AUDIT_HANDLERS: Mapping[str, Callable[[tuple[Any, ...]], Any]] = {
    "import": _on_import,
    "ctypes.dlopen": _on_dlopen,
    "sqlite3.load_extension": _on_sqlite_load_extension,
}


# -- install ------------------------------------------------------------------------------------


def _on_install(shield: Any) -> None:
    """Report denied modules that the app imported before the shield started (never raising:
    they already ran). Modules that `install` itself loaded are appshield's, not the app's."""
    _judged.clear()
    _remember_layer()
    _imp_names.set_roots(list(sys.path))
    compiled = shield.compiled
    configure_scopes(compiled)
    if not compiled.has_rules("import") and compiled.default("import") == "allow":
        return
    report = getattr(shield, "report_existing", None)
    if report is None:
        return
    before = shield.modules_before_install
    screen = _screen_for(compiled)[1]
    # Only a non-allow decision is reported. When the policy's own compiled rules decide
    # (no grants, shadow candidate, recording or learning wraps them: those see every
    # decision), an import that no deny or alert rule can name is not decided at all:
    # deciding each of the ~100 modules loaded before install compiled the origin globs of
    # every allow rule naming the standard library (`implicit:telemetry_exporter`'s).
    policy = getattr(shield, "policy", None)
    alone = policy is not None and compiled is getattr(policy, "compiled", None)
    may_object = getattr(screen, "may_object", None) if alone else None
    if may_object is not None:
        # Then only a deny or alert rule can make a report: an import that none of them can
        # name is passed on their own screen, a few dict lookups, whatever allows name it.
        objecting = getattr(screen, "objecting", None)
        if objecting is not None:
            screen = objecting()
    # No rule names any module or origin (the usual policy has no import deny or alert): then
    # only a name with a `/` in it could be one the screen does not pass.
    names_nothing = getattr(screen, "names_nothing", None)
    silent = names_nothing is not None and names_nothing() is True
    for name, module in list(sys.modules.items()):
        if not isinstance(name, str) or module is None:
            continue
        if before is not None and name not in before:
            continue  # loaded by appshield's own install, not by the app
        if silent and type(name) is str and "/" not in name:
            continue
        if type(module) is not _ModuleType and _imp_names.is_lazy(module):
            # Imported lazily, not run yet: its spec, read without running it.
            spec = (_imp_names.namespace(module) or {}).get("__spec__")
        else:
            spec = getattr(module, "__spec__", None)
        origin = _spec_origin(spec) if spec is not None else None
        if not origin:
            absolute = None
        elif type(origin) is str and is_normal_path(origin):
            absolute = origin  # abspath would return it unchanged
        else:
            absolute = os.path.abspath(origin)
        home = init = None
        if absolute is not None:
            # `a/b/c.py` or `a/b/c/__init__.py` for `a.b.c`, tested here as in `_judge`.
            tail = "/" + name.replace(".", "/")
            if not (absolute.endswith(tail + ".py") or absolute.endswith(tail + "/__init__.py")):
                home, init = _imp_names.names_of(name, absolute)
        if screen is not None and screen.quiet(name, absolute, home, init):
            # No rule could name it (alone: no rule that could object): decided as the
            # default, an allow, or by an allow rule; either way silently.
            continue
        operation = ImportOp(name, absolute, None, home, init)
        if may_object is not None and not may_object(operation):
            continue  # an allow whichever rule matches: nothing to report
        report(operation, "import")


def _on_uninstall() -> None:
    global _screen
    _judged.clear()
    _intact.clear()
    _scope_code.configure(None)
    _scope_code.configure_origins(False)
    _imp_names.set_roots(None)
    _screen = (None, None)  # let go of the policy


def configure_scopes(compiled: Any) -> None:
    """Record the code of the modules the decider's scopes name (see `_scope_code`), and,
    for a policy that grants per distribution, which file every module's code came from."""
    _scope_code.configure(compiled.scope_matcher(), compiled.scope_tops())
    _scope_code.configure_origins(bool(getattr(compiled, "attributes_packages", False)))


def compiled_hook_parts() -> dict[str, Any]:
    """What the compiled audit hook reads to answer `_import_statement_fast` itself, and what
    the import layer's C fronts read (`_import_front`): this module's globals (`_intact`
    names the layer's proxies; `_judge`, `_judged`, `_waiting`, `loaded`, `_scope_code`,
    `_patch_loaded`), importlib's spec class and its own `has_location`, the file loader
    classes whose `path` the fronts read, the suffixes of the files `_module_code_io`
    marks, and sys's globals."""
    machinery = sys.modules[_BX]
    spec_type = sys.modules[_B].ModuleSpec
    return {
        "imports_globals": globals(),
        "module_spec_type": spec_type,
        "spec_has_location": vars(spec_type)["has_location"],
        "file_loader_types": (
            machinery.SourceFileLoader,
            machinery.SourcelessFileLoader,
            machinery.ExtensionFileLoader,
        ),
        "module_suffixes": _MODULE_SUFFIXES,
        "sys_globals": vars(sys),  # `sys.pycache_prefix`, read where `_module_files` reads it
    }


FAST_PATHS: Mapping[str, Callable[[tuple[Any, ...]], bool]] = {
    "import": _import_statement_fast,
}

FAMILY = HookFamily(
    "import",
    PATCHES,
    AUDIT_HANDLERS,
    FAST_PATHS,
    on_install=_on_install,
    on_uninstall=_on_uninstall,
    after_fork=(_judged.after_fork, _scope_code.after_fork),
)
