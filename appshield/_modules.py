"""Reading `sys.modules` safely while other threads import.

An import puts the module in `sys.modules` *before* running its body, so for a while another
thread finds a module that is still half empty: reading `opentelemetry.context.get_current`
from it raises AttributeError. appshield looks modules up without importing them in several
places (to learn whether the app uses OpenTelemetry, to reuse a stdlib helper), and the
first violation is also what makes appshield import the OpenTelemetry SDK on a thread of its
own. A lookup racing that import once lost the second violation's span and log record.
CPython's own import system tells the two states apart with `__spec__._initializing`
(importlib._bootstrap sets it around the module body): the same flag is read here.
"""

from __future__ import annotations

import _imp
import _thread
import sys
import time
from types import ModuleType

TYPE_CHECKING = False  # typing's own constant, without importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["in_an_import", "loaded", "set_stdlib_loader", "stdlib", "wait_for_helper"]


def loaded(name: str) -> ModuleType | None:
    """`sys.modules[name]` once its body has run to the end; None while it is absent or an
    import (on any thread) is still running it. Imports nothing."""
    module = sys.modules.get(name)
    if module is None:
        return None
    # Read from the namespace: a module class's attribute hooks are the module's business.
    namespace = getattr(module, "__dict__", None)
    spec = namespace.get("__spec__") if type(namespace) is dict else None
    if spec is not None and getattr(spec, "_initializing", False) is True:
        return None
    return module  # type: ignore[return-value]


def _plain_import(name: str) -> ModuleType:
    __import__(name)
    return sys.modules[name]  # type: ignore[no-any-return]


# How `stdlib` imports a module that is not loaded yet. The patching layer replaces it when it
# is loaded (`hooks._deferred`): an import it makes is then appshield's own, never the app's.
_stdlib_loader: Callable[[str], ModuleType] = _plain_import


def stdlib(name: str) -> ModuleType:
    """The standard-library module `name`, for the engine's first use of one it keeps off
    start-up (`re` for a glob's regex, `ipaddress` for an address).

    A plain `import re` inside a decision is an import like the app's, judged by the app's
    policy: a policy that does not allow `re` (an import allow-list learned from an app that
    never imports it) would then refuse the app's allowed `open()` once the policy cache
    spared the start its own `import re`. Through here, the shielded process loads it as
    appshield's own import, on appshield's own thread."""
    module = loaded(name)
    if module is not None:
        return module
    return _stdlib_loader(name)


def set_stdlib_loader(loader: Callable[[str], ModuleType]) -> None:
    """Make `loader` the way `stdlib` imports."""
    global _stdlib_loader
    _stdlib_loader = loader


def in_an_import() -> bool:
    """Is this thread in the middle of importing a module (holding its import lock)? A
    helper thread that imported the same module would then wait for this one for ever.

    The import system's global lock is not looked at: `_imp.lock_held()` cannot say which
    thread holds it, and a wait for a helper that it blocks is bounded (`wait_for_helper`)."""
    locks = getattr(sys.modules.get("_frozen_importlib"), "_module_locks", None)
    if not locks:
        return False
    me = _thread.get_ident()
    for reference in list(locks.values()):
        lock = reference()
        if lock is not None and getattr(lock, "owner", None) == me:
            return True
    return False


# What a thread runs while it waits for the import system's global lock: importlib takes it
# to look up or drop a module's own lock, and around each finder's `find_spec` lookup
# (`_ImportLockContext.__enter__`), 3.10 to 3.13. No other importlib function lingers with
# `__enter__` or these names on top of the stack.
_TAKES_THE_GLOBAL_LOCK = frozenset({"_get_module_lock", "cb", "__enter__"})
_IMPORTLIB = "<frozen importlib._bootstrap>"
# How long a helper may be seen waiting for that lock, without a break, before it counts as
# stuck: importlib holds it for a few microseconds at a time, so half a second of waiting
# means a holder that will never give it back.
_STUCK_AFTER = 0.5
_SLICE = 0.01
# Helper threads already found stuck: a later wait for one of them gives up at once.
_stuck: set[int] = set()


def _waits_for_the_global_lock(helper: int) -> bool:
    frame = sys._current_frames().get(helper)
    return (
        frame is not None
        and frame.f_code.co_filename == _IMPORTLIB
        and frame.f_code.co_name in _TAKES_THE_GLOBAL_LOCK
    )


def wait_for_helper(done: _thread.LockType, helper: Callable[[], int]) -> bool:
    """Wait until appshield's helper thread (ident: `helper()`) releases `done`: its import
    work is over. False when it never can: it waits for the import system's global lock,
    which another thread left held for ever (a raising signal handler interrupted that
    thread's import between `_imp.acquire_lock()` and its `try`; docs/limits.md), or the
    interpreter is shutting down and the helper has not finished. Waiting on would hang the
    app; the caller fails closed instead.

    When the thread holding that lock is this one (the common case: the app's main thread,
    where signal handlers run), it lends the lock to the helper for the rest of the wait and
    takes it back as many times as it held it: the app's state is as it was, and the helper's
    imports (appshield's own, on appshield's own thread) can finish."""
    lent = 0
    try:
        # Polled, never taken: a raising signal handler could land between a successful
        # `acquire` and its `release`, and the lock would stay held for every later wait.
        waited = 0.0
        pause = 0.0005
        while done.locked():
            time.sleep(pause)
            pause = min(pause * 2, _SLICE)
            ident = helper()  # read each time: the starting thread sets it once it runs
            if not _waits_for_the_global_lock(ident):
                if not sys.is_finalizing():
                    waited = 0.0
                    continue
                # At shutdown 3.10 and 3.11 never give the GIL back to a thread of
                # appshield's own: after the same half second, the exit goes on without it.
                waited += pause
                if waited < _STUCK_AFTER:
                    continue
                return False
            if ident not in _stuck:
                waited += pause
                if waited < _STUCK_AFTER:
                    continue
            if not lent:
                lent = _lend_the_global_lock()
                if lent:
                    _stuck.discard(ident)
                    waited = 0.0
                    continue
            _stuck.add(ident)
            return False
        return True
    finally:
        for _ in range(lent):
            _imp.acquire_lock()


def _lend_the_global_lock() -> int:
    """Release the import system's global lock as often as this thread holds it (it is
    reentrant); how many times. 0 when another thread holds it. If a signal handler's
    exception lands in here, the count is lost and the lock stays released: for a lock left
    held by an interrupted import, the better outcome."""
    count = 0
    while True:
        try:
            _imp.release_lock()
        except RuntimeError:  # not (or no longer) held by this thread
            return count
        count += 1
