"""The two ports of a shield: what decides, and where violations go.

    Shield(config, reporter, decider_for=...)
      decider  = decider_for(policy.compiled)   # CompiledPolicy itself, or a stand-in
      reporter = the telemetry sinks, or learn's recorder

The runtime and the hooks talk to the policy only through `Decider` and to the sinks only
through `Reporter`. The engine's `CompiledPolicy` is the usual decider; `appshield learn`
hands in a recording decider (every operation recorded and allowed) and a recording reporter,
as arguments at install, instead of replacing the shield's attributes afterwards. Nothing
else needs to tell them apart: a decider says what it needs (`describes_callers`,
`import_screen`).
"""

from __future__ import annotations

from appshield.decision import Action, Decision
from appshield.engine.compiled import StackInput
from appshield.operations import Operation

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Protocol

    from appshield.report import Violation
else:
    Protocol = object  # read only by type checkers: no `typing` at run time


__all__ = ["Decider", "Reporter", "StackInput", "WatchingDecider"]


class Decider(Protocol):
    """Turns an operation into a decision; the hooks also ask it what their caches may
    assume."""

    # True for a decider that wants the names the caller's frames claim (to describe who
    # asked: learn), False for one that decides scopes from code it can prove (the engine).
    describes_callers: bool

    def decide(self, op: Operation, stack: StackInput = None, api: str = "") -> Decision:
        """The decision for `op`, made through the API `api` (`open`, `socket.connect`...)."""
        ...

    def needs_stack(self, category: str) -> bool:
        """Could the call stack change a decision of this category (no caching if so)?"""
        ...

    def stack_matters(self, op: Operation) -> bool:
        """Could the call stack change whether `op` is allowed, or, when it is not, its
        decision (no hook remembers an allow of it if so)?"""
        ...

    def file_needs_resolved_path(self, access: str) -> bool: ...

    def has_rules(self, category: str) -> bool: ...

    def default(self, category: str) -> Action: ...

    def import_screen(self) -> Any:
        """An index whose `quiet(...)` tells an import no rule can name (allowed without an
        operation), or None when every import must reach `decide`."""
        ...

    def scope_matcher(self) -> Callable[[str], bool] | None: ...

    def scope_tops(self) -> frozenset[str] | None: ...


class Reporter(Protocol):
    """Where violations go (the telemetry sinks; learn's recorder)."""

    def report(self, violation: Violation) -> None: ...

    def fold(
        self,
        operation: Any,
        decision: Any,
        api: str,
        function: str | None,
        file: str | None,
        line: int | None,
        shadow: bool = False,
    ) -> bool:
        """Count a repeat of a violation already reported (True: folded, nothing more to
        report). `shadow`: a violation of the shadow candidate (appshield.shadow), folded
        apart from the enforced policy's. A reporter that aggregates nothing returns
        False."""
        ...

    def flush_now(self) -> None:
        """Push out what is held (at exit)."""
        ...

    def shutdown(self) -> None: ...


class WatchingDecider:
    """Base of a decider that wraps another and must be asked about every operation (the
    recording, learning): the questions about the policy go to the wrapped decider, and the
    hooks' memories of allowed operations are off, so every repeat reaches `decide`."""

    def __init__(self, inner: Decider) -> None:
        self._inner = inner

    def needs_stack(self, category: str) -> bool:
        return self._inner.needs_stack(category)

    def stack_matters(self, op: Operation) -> bool:
        return True  # no hook remembers an allowed operation: every repeat is seen

    # The same under a policy with grants (hooks/_callers.py): no caller may reuse an allow.
    def first_party_caller(self, frame: Any) -> bool:
        return False

    @property
    def proven_first_party(self) -> dict[int, Any]:
        return {}

    def import_screen(self) -> None:
        return None  # no import is let through unseen

    def file_needs_resolved_path(self, access: str) -> bool:
        return self._inner.file_needs_resolved_path(access)

    def has_rules(self, category: str) -> bool:
        return self._inner.has_rules(category)

    def default(self, category: str) -> Action:
        return self._inner.default(category)

    def scope_matcher(self) -> Callable[[str], bool] | None:
        return self._inner.scope_matcher()

    def scope_tops(self) -> frozenset[str] | None:
        return self._inner.scope_tops()
