"""Deciding from inside a hook, shared by the process and file hooks.

Two situations need more than "return one (operation, api) to the audit hook":

- one call that is several operations (a rename deletes its source and writes its target; an
  `open(..., "r+")` reads and writes; `posix_spawn` starts a program and opens files). An audit
  handler may return only one operation, so `screen` decides them all (pure, no report) and
  hands back the first that is a violation: that one the audit hook then reports and, if it
  is blocked, refuses. One call, one report.
- a wrapper that must decide before calling the original (`enforce_all`), with its own I/O
  (resolving paths, looking programs up) exempt from checks (`quietly`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from appshield.decision import Decision
from appshield.hooks._state import thread_state
from appshield.operations import Operation

__all__ = ["active", "enforce_all", "first_violation", "quietly", "screen"]

_state = thread_state
_runtime: Any = None
T = TypeVar("T")
Described = tuple[Operation, str]


def _rt() -> Any:
    # appshield.runtime imports this package (through hooks._state), so bind it lazily.
    global _runtime
    if _runtime is None:
        from appshield import runtime

        _runtime = runtime
    return _runtime


def active() -> Any:
    """The active shield, or None (not installed, or appshield's own work on this thread)."""
    if _state.busy:
        return None
    return _rt()._current


def _stack() -> Sequence[str]:
    return _rt().capture_callsite().modules  # type: ignore[no-any-return]


def screen(described: Iterable[Described]) -> tuple[Operation, str, Decision] | None:
    """The first described operation whose decision is a violation, with that decision;
    None when every one is allowed (or no shield is active)."""
    shield = _rt()._current
    if shield is None:
        return None
    decide = shield.compiled.decide
    for operation, api in described:
        decision = decide(operation, _stack)
        if decision.action != "allow":
            return operation, api, decision
    return None


def first_violation(described: Iterable[Described]) -> Described | None:
    """For an audit handler with several operations: the one to report, or None."""
    found = screen(described)
    return None if found is None else (found[0], found[1])


def enforce_all(shield: Any, described: Iterable[Described]) -> None:
    """Decide, report and (if blocked) refuse each operation, in order."""
    for operation, api in described:
        shield.enforce(operation, api)


def quietly(function: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """Run `function(*args, **kwargs)` as appshield's own work (its I/O is not checked).
    Any error means the call could not be described: None, and the original call then raises
    its own error."""
    previous = _state.busy
    _state.busy = True
    try:
        return function(*args, **kwargs)
    except Exception:
        return None
    finally:
        _state.busy = previous
