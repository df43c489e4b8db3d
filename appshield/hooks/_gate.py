"""The one enforcement gate: every hook hands its raw arguments here.

    audit event / wrapper -> describe (convert once) -> decide -> report -> enforce

Whatever a hook is, the gate runs its describing and deciding the same way, and fails closed:

- **Any exception while describing or deciding is a denial.** An argument object that raises
  in a dunder, a tracer or a signal handler that raises inside appshield, a `RecursionError`
  or `MemoryError`: the operation is reported as its own kind of violation (rule
  `implicit:undescribable`, `appshield.reason = "undescribable"`, with the exception type) and
  the exception is raised again where Python would have delivered it, so the operation never
  happens, in enforce and in monitor alike. Nothing that decides catches and carries on.
- **Describing runs no tracer.** A `sys.settrace`/`sys.setprofile` function of the thread is
  set aside while appshield describes and decides, so no tracer sees (or changes the locals
  of) appshield's frames, and put back afterwards.
- **Headroom at the recursion limit.** Code can call an operation a frame or two below the
  recursion limit; appshield's own frames would then raise `RecursionError` half-way. Such a
  decision is made again with the limit raised by `_HEADROOM` frames (set back after), so the
  decision and its report complete; the common path pays nothing for it.
- **The shield is handed over at install** (`bind`): hooks ask this module, never a private
  global of the runtime.

The audit hook's own code, its first lines (events appshield does not decide, and the hot
path: an `open` the policy allowed before), is `hooks/_audit_hook.py`, and touches none of
this.
"""

from __future__ import annotations

import builtins
import sys
from types import FunctionType

from appshield._modules import loaded
from appshield._threadstate import still_running, thread_state
from appshield.decision import Decision
from appshield.errors import PolicyViolation
from appshield.hooks._convert import Unreadable
from appshield.operations import Operation, UndescribedOp

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any, TypeVar

    T = TypeVar("T")

__all__ = [
    "bind",
    "first_violation",
    "for_wrapper",
    "judge_call",
    "judge_decided",
    "judge_event",
    "lower_limit",
    "make_audit_hook",
    "own_call",
    "own_import",
    "plain_text",
    "raise_limit",
    "screen",
    "shield",
    "unbind",
]

Described = tuple[Operation, str]

_state = thread_state
_HEADROOM = 200

# The active shield, set by `bind` at install and cleared by `unbind`. A module global (not
# an attribute of an object) because the audit hook's first lines read it on every event.
_shield: Any = None


def bind(active: Any) -> None:
    global _shield
    _shield = active


def unbind() -> None:
    global _shield
    _shield = None


def shield() -> Any:
    """The active shield, or None."""
    return _shield


def for_wrapper() -> Any:
    """The shield a wrapper should consult: None when there is none, or when this thread is
    inside a block of appshield's own non-deciding work (`appshield_io`)."""
    busy = _state.busy
    if busy and still_running(busy):
        return None
    return _shield


# -- running appshield's own code safely ---------------------------------------------------

_gettrace = sys.gettrace
_settrace = sys.settrace
_getprofile = sys.getprofile
_setprofile = sys.setprofile
_getlimit = sys.getrecursionlimit
_setlimit = sys.setrecursionlimit


def _hide_tracers() -> tuple[Any, Any] | None:
    """Set this thread's tracer and profiler aside (None when there are none: the common
    case costs two C calls)."""
    tracer = _gettrace()
    profiler = _getprofile()
    if tracer is None and profiler is None:
        return None
    # Only a callable can be put back with `sys.settrace`/`sys.setprofile`. Anything else was
    # installed from C (cProfile's profiler on 3.10/3.11 is the object itself): setting it
    # back from Python would install a "function" that raises TypeError on every call of the
    # app. Such a C tracer stays on; what it calls cannot change a decision, and an error in
    # appshield's frames is a denial anyway.
    if not callable(tracer):
        tracer = None
    if not callable(profiler):
        profiler = None
    if tracer is None and profiler is None:
        return None
    if tracer is not None:
        _settrace(None)
    if profiler is not None:
        _setprofile(None)
    return tracer, profiler


def _restore_tracers(saved: tuple[Any, Any]) -> None:
    tracer, profiler = saved
    if profiler is not None:
        _setprofile(profiler)
    if tracer is not None:
        _settrace(tracer)


# A recursion limit that could not be put back (a decision that ran right at the limit, where
# lowering it again raises): put back by the next decision that needed headroom.
_limit_to_restore: int | None = None


def raise_limit() -> int:
    global _limit_to_restore
    limit = _getlimit()
    if _limit_to_restore is not None:
        limit, _limit_to_restore = _limit_to_restore, None
    _setlimit(limit + _HEADROOM)
    return limit


def lower_limit(limit: int) -> None:
    global _limit_to_restore
    try:
        _setlimit(limit)
    except RecursionError:
        _limit_to_restore = limit


def plain_text(value: object) -> str:
    """A name for a report, read without running any code the object defines."""
    kind = type(value)
    if kind is str:
        return value  # type: ignore[return-value]
    if issubclass(kind, str):
        return str.__getitem__(value, slice(None))  # type: ignore[index]  # a str subclass
    return "?"


def _error_name(exc: BaseException) -> str:
    kind = type(exc)
    return plain_text(type.__dict__["__qualname__"].__get__(kind, type))


def fail_closed(active: Any, category: str, api: str, exc: BaseException) -> None:
    """Report an operation that could not be described or decided, then raise `exc` again:
    the operation does not happen, and the exception reaches the app where Python would have
    delivered it.

    In monitor mode too. What raises there is, nearly always, either the argument itself
    (the C function converts it the same way, and would have raised the same exception) or a
    signal handler (whose exception Python would have delivered to the app around this very
    call): raising it again is what bare Python does. Letting the operation through instead
    would run it unjudged, and swallow a `KeyboardInterrupt` or a timeout."""
    try:
        operation = UndescribedOp(category, api, _error_name(exc))
        decision = Decision("deny", "implicit:undescribable", True, active.policy.mode)
        active.report_undescribable(operation, decision, api)
    finally:
        raise exc


def report_doubt(active: Any, category: str, api: str, exc: BaseException) -> None:
    """Report an operation appshield could not describe, and let it proceed (monitor mode)."""
    operation = UndescribedOp(category, api, _error_name(exc))
    decision = Decision("deny", "implicit:undescribable", False, active.policy.mode)
    active.report_undescribable(operation, decision, api)


def own_call(event: str, token: Any, function: Callable[..., T], *args: Any) -> T:
    """Call `function(*args)` as appshield's own system call: the audit event `event` whose
    first argument is `token` (by identity) is let through once. `token` must be an object
    appshield made for this call (a fresh bytes, say), never one it was handed."""
    previous = _state.own
    _state.own = (event, token)
    try:
        return function(*args)
    finally:
        _state.own = previous


def own_import(name: str) -> Any:
    """Import a module appshield needs while deciding (a stdlib helper kept out of start-up)."""
    found = loaded(name)  # not one another thread is still importing: that one is waited for
    if found is not None:
        return found
    previous = _state.own_imports
    _state.own_imports = (*previous, name)
    try:
        __import__(name)
    finally:
        _state.own_imports = previous
    return sys.modules[name]


# -- deciding --------------------------------------------------------------------------------


def screen(described: Iterable[Described]) -> tuple[Operation, str, Decision] | None:
    """The first described operation whose decision is a violation, with that decision;
    None when every one is allowed. Pure: no report. Called inside a gate, so an error here
    is the gate's to handle."""
    active = _shield
    if active is None:
        return None
    for operation, api in described:
        decision = active.decide(operation, api)
        if decision.action != "allow":
            return operation, api, decision
    return None


def first_violation(described: Iterable[Described]) -> Described | None:
    """For an audit handler with several operations: the one to report, or None."""
    found = screen(described)
    return None if found is None else (found[0], found[1])


def judge_event(
    active: Any,
    handler: Callable[[tuple[Any, ...]], Described | None],
    category: str,
    event: str,
    args: tuple[Any, ...],
) -> None:
    """An audit event: describe it with `handler`, decide, report, refuse if blocked.

    Run once as it is; if it meets the recursion limit (code can call an operation a frame
    below it), run again with `_HEADROOM` more frames, so the decision and its report
    complete: the headroom costs nothing on the common path."""
    saved = _hide_tracers()
    try:
        try:
            _event_once(active, handler, category, event, args, False)
        except RecursionError:
            limit = raise_limit()
            try:
                _event_once(active, handler, category, event, args, True)
            finally:
                lower_limit(limit)
    finally:
        if saved is not None:
            _restore_tracers(saved)


def _event_once(
    active: Any,
    handler: Callable[[tuple[Any, ...]], Described | None],
    category: str,
    event: str,
    args: tuple[Any, ...],
    with_headroom: bool,
) -> None:
    try:
        described = handler(args)
        if described is None:
            return
        operation, api = described
        decision = active.decide(operation, api)
    except RecursionError as exc:
        if not with_headroom:
            raise  # tried again with headroom
        fail_closed(active, category, event, exc)
        raise  # not reached: fail_closed raises
    except Unreadable as exc:
        if active.policy.mode != "monitor":
            fail_closed(active, category, event, exc)
        # Monitor mode, and the doubt is appshield's own (an argument it will not read, not
        # an exception the app's code raised): report it, and let the call do what it does
        # without appshield. (A wrapper cannot: it has no converted arguments to call with.)
        report_doubt(active, category, event, exc)
        return
    except PolicyViolation:
        # A handler that decides itself (`judge_decided`, e.g. SQLite's extension switch)
        # reported and refused already. (One a hostile argument forged still refuses the call:
        # nothing happened that a report could miss.)
        raise
    except BaseException as exc:
        fail_closed(active, category, event, exc)
        raise  # not reached
    if decision.action != "allow":
        active.act(operation, decision, api)


def judge_decided(
    active: Any,
    category: str,
    api: str,
    decide: Callable[[], tuple[Operation, Decision] | None],
) -> None:
    """A hook that reaches its decision itself (`decide()` asks `active.decide` and may
    make it stricter with what the policy can or cannot prove): report and refuse as
    `judge_event` does, with the same tracer hiding, recursion headroom and fail-closed
    handling of anything `decide` raises."""
    saved = _hide_tracers()
    try:
        try:
            _decided_once(active, category, api, decide, False)
        except RecursionError:
            limit = raise_limit()
            try:
                _decided_once(active, category, api, decide, True)
            finally:
                lower_limit(limit)
    finally:
        if saved is not None:
            _restore_tracers(saved)


def _decided_once(
    active: Any,
    category: str,
    api: str,
    decide: Callable[[], tuple[Operation, Decision] | None],
    with_headroom: bool,
) -> None:
    try:
        found = decide()
    except RecursionError as exc:
        if not with_headroom:
            raise  # tried again with headroom
        fail_closed(active, category, api, exc)
        raise  # not reached: fail_closed raises
    except BaseException as exc:
        fail_closed(active, category, api, exc)
        raise  # not reached
    if found is not None and found[1].action != "allow":
        active.act(found[0], found[1], api)


def judge_call(
    active: Any,
    category: str,
    api: str,
    prepare: Callable[..., tuple[Iterable[Described], T]],
    *args: Any,
) -> T:
    """A wrapper's call: `prepare(*args)` converts the call's arguments once, the way the C
    function would, and returns (the operations they describe, the converted arguments). Each
    operation is decided and acted on in order; the converted arguments come back for the
    wrapper to call the original with, so the OS acts on exactly what was judged (after a
    retry at the recursion limit, the values of the retry: decided and passed on alike)."""
    saved = _hide_tracers()
    try:
        try:
            return _call_once(active, category, api, prepare, args, False)
        except RecursionError:
            limit = raise_limit()
            try:
                return _call_once(active, category, api, prepare, args, True)
            finally:
                lower_limit(limit)
    finally:
        if saved is not None:
            _restore_tracers(saved)


def _call_once(
    active: Any,
    category: str,
    api: str,
    prepare: Callable[..., tuple[Iterable[Described], T]],
    args: tuple[Any, ...],
    with_headroom: bool,
) -> T:
    try:
        described, converted = prepare(*args)
        decided = [(op, op_api, active.decide(op, op_api)) for op, op_api in described]
    except RecursionError as exc:
        if not with_headroom:
            raise
        fail_closed(active, category, api, exc)
        raise  # not reached
    except BaseException as exc:
        fail_closed(active, category, api, exc)
        raise  # not reached
    for operation, op_api, decision in decided:
        if decision.action != "allow":
            active.act(operation, decision, op_api)
    return converted


# -- the audit hook --------------------------------------------------------------------------


def make_audit_hook(
    handlers: Mapping[str, Callable[[tuple[Any, ...]], Any]],
    categories: Mapping[str, str],
    fast_paths: Mapping[str, Callable[[tuple[Any, ...]], bool]] | None = None,
) -> Callable[[str, tuple[Any, ...]], None]:
    """The audit hook: `hooks/_audit_hook.py`'s code, run with a namespace of its own.

    Everything the hook uses is bound here, in that namespace (no closure cells, which every
    call would copy; no module's globals, which the interpreter clears at shutdown while the
    hook still runs): see that module's notes."""
    from appshield.hooks import _audit_hook, _callers, _file_cache

    handled = dict(handlers)  # one lookup answers "handled at all?", and then "by whom?"
    namespace: dict[str, Any] = {
        "handled": handled,
        "get_handler": handled.get,
        "get_fast": dict(fast_paths or {}).get,
        "category_of": dict(categories).get,
        "judge_event": judge_event,
        "still_running": still_running,
        "state": thread_state,
        "gate": sys.modules[__name__],
        "file_cache": _file_cache,
        "stat": __import__("posix").stat,
        "getcwd": __import__("posix").getcwd,
        "getframe": sys._getframe,
        "code_key": _callers.identity,
        "exact_type": type,
    }
    if sorted(namespace) != sorted(_audit_hook.BOUND_NAMES):
        raise RuntimeError("the audit hook's namespace does not bind what it declares")
    namespace["__builtins__"] = {name: getattr(builtins, name) for name in _audit_hook.BUILTINS}
    # appshield's frame walkers know its own frames by their globals' `__name__` (hooks/file,
    # hooks/process): the hook's frame is one of them.
    namespace["__name__"] = _audit_hook.__name__
    template = _audit_hook.appshield_audit_hook
    hook = FunctionType(template.__code__, namespace, template.__name__)
    return hook
