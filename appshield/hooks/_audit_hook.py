"""The code of appshield's one PEP 578 audit hook: the first lines of every audit event.

Every audit event of the process calls this hook: the few appshield decides (`open`,
`socket.connect`, `subprocess.Popen`, ...; the `handled` mapping) and the many it does not
(`exec`, `compile`, `sys._getframe`, `object.__getattr__`, `builtins.id`, ...). Those are
answered by the hook's first two tests (one str comparison, one dict lookup) and must cost
about what an empty hook costs; `open`, the most frequent handled event, takes its fast path
without that lookup. Everything after the lookup is the gate's business (`hooks/_gate.py`).

How it runs: `_gate.make_audit_hook` makes a function of `appshield_audit_hook`'s code with a
namespace of its own as globals (`types.FunctionType(code, namespace)`), holding the values
declared below (this module defines none of them: never call the function here directly).

- Not a closure: a closure copies every one of its cells into the frame of each call and
  releases them at its end, about 18 instructions per name on every audit event of the
  process, handled or not (issue 17: benchmarks/bench_unhandled_events.py). A global read
  costs what a cell read costs, and nothing per call.
- Not this module's globals, nor any module's: the interpreter clears module dicts at
  shutdown while audit hooks still run, and the hook must keep working then. The namespace
  belongs to the hook alone, builtins included (its `__builtins__` holds just the four the
  code reads, `BUILTINS`; tests/hooks check that every name read is bound).
- Its `__name__` is this module's: frame walkers (hooks/file, hooks/process) know
  appshield's own frames by their globals' `__name__`, and the hook's frame is one.
"""

# The names below are declared, not assigned: for ruff they are undefined (F821). mypy checks
# every read against the declarations, and tests/hooks checks that each one is bound.
# ruff: noqa: F821

from __future__ import annotations

from types import ModuleType

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

__all__ = ["BOUND_NAMES", "BUILTINS", "appshield_audit_hook"]

# -- bound by _gate.make_audit_hook (declared for the type checker only) ---------------------
handled: Mapping[str, Any]  # audit event -> its handler: the events appshield decides
get_handler: Callable[[str], Any]  # handled.get
get_fast: Callable[[str], Callable[[tuple[Any, ...]], bool] | None]
category_of: Callable[[str, str], str]
judge_event: Callable[..., None]  # _gate.judge_event
still_running: Callable[[Any], bool]  # _threadstate.still_running
state: Any  # _threadstate.thread_state
gate: ModuleType  # hooks/_gate (its `_shield` is the active shield, or None)
file_cache: ModuleType  # hooks/_file_cache (its `_memory` holds the allowed opens)
stat: Callable[[bytes], Any]  # posix.stat
getcwd: Callable[[], str]  # posix.getcwd
getframe: Callable[[int], Any]  # sys._getframe
code_key: Callable[[object], int]  # _callers.identity
exact_type: type[type]  # type

BOUND_NAMES = tuple(__annotations__)  # every name above, in order

# The builtins the code reads: the hook's namespace has a `__builtins__` of its own, with
# these alone, so that nothing it reads lives in a module's dict at shutdown.
BUILTINS = ("len", "str", "bytes", "int", "OSError", "ValueError")


def appshield_audit_hook(event: str, args: tuple[Any, ...]) -> None:
    # Written so that each comparison's jump is short: CPython 3.11 specializes a
    # `==`/`!=` of two str only when the jump that follows needs no EXTENDED_ARG.
    if event != "open" or len(args) != 3:
        if event not in handled:
            return  # an event appshield does not decide: one lookup (the str is new: hashed)
    else:
        # The hot path of every open(): an open the active policy allowed before (see
        # hooks/_file_cache) is let through here, before any per-thread bookkeeping. It
        # builds nothing and runs no code of the caller's: only an exact str or bytes path
        # is looked up (a subclass could lie in __hash__/__eq__; `type()`, because
        # `io.FileIO(obj)` hands the caller's own object here, and `obj.__class__` can be
        # faked).
        path = args[0]
        flags = args[2]  # always an exact int: CPython computes it from the mode
        kind = exact_type(path)
        if kind is str or kind is bytes:
            active = gate._shield
            opened = file_cache._memory
            if active is not None and opened.owner is active.compiled:
                allowed = opened.plain.get(path)
                if allowed is not None and flags in allowed:
                    return
                # Symlinks matter to this policy: allowed again only while the path
                # leads to the same file (one stat; _file_cache.same_file, inlined). A
                # relative path, only for open() and io.FileIO (a str mode): os.open's
                # event (mode None) may be relative to a dir_fd it does not carry.
                seen = opened.checked.get(path)
                if seen is None and args[1] is not None:
                    seen = opened.relative.get(path)
                    if seen is not None:
                        # Decided in this very folder? (_file_cache._in_this_folder)
                        try:
                            if getcwd() != seen[4]:
                                seen = None
                        except OSError:
                            seen = None
                if seen is not None and flags in seen[2]:
                    try:
                        found = stat(seen[3])
                    except OSError:
                        found = None  # gone: decided in full below
                    if found is not None and found[1] == seen[0] and found[2] == seen[1]:
                        return
            elif active is not None and opened.key is active.compiled:
                # Per-distribution grants (`owner` is None then): the same memories, in
                # `granted` and `granted_checked`, reused only when the app's own code
                # asks: its code object proven first-party, one lookup (hooks/_callers.py).
                granting: Any = opened.granting  # not None: `key` is set only with it
                allowed = opened.granted.get(path)
                seen = opened.granted_checked.get(path) if allowed is None else None
                if (allowed is not None and flags in allowed) or (
                    seen is not None and flags in seen[2]
                ):
                    try:
                        caller = getframe(1)
                    except ValueError:  # no Python caller: the interpreter's own open
                        caller = None
                    if caller is not None and (
                        granting.proven.get(code_key(code := caller.f_code)) is code
                        or granting.walk(caller)
                    ):
                        if seen is None:
                            return
                        try:
                            found = stat(seen[3])
                        except OSError:
                            found = None
                        if found is not None and found[1] == seen[0] and found[2] == seen[1]:
                            return
        elif kind is int:
            # An already-open descriptor (`open(fd)`, `io.FileIO(fd)`, `os.fdopen`): its own
            # open was decided, and the handler lets it through too (hooks/file `_on_open`).
            # Tested after the paths, so that an open of a path pays nothing for it.
            return
    handler = get_handler(event)
    if handler is None:
        return
    active = gate._shield
    if active is None:
        return
    # A repeat the active policy allowed (exact types only) is let through before the
    # per-thread bookkeeping: both end in `return`, and the thread-local reads below cost
    # more than most repeat checks (`busy` alone, about 600 instructions).
    fast = get_fast(event)
    if fast is not None and fast(args):
        return
    busy = state.busy
    if busy and still_running(busy):
        return
    first = args[0] if args else None
    expected = state.expect
    if expected is not None and first is expected[1] and expected[0] == event:
        state.expect = None  # the wrapper already decided this very call
        return
    own = state.own
    if own is not None and first is own[1] and own[0] == event:
        state.own = None  # appshield's own system call, made with its own object
        return
    if state.own_imports and event == "import" and exact_type(first) is str:
        if first in state.own_imports:
            return
    judge_event(active, handler, category_of(event, "unknown"), event, args)
