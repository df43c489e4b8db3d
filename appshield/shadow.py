"""The shadow policy: a candidate decided beside the enforced policy, reported, never enforced.

    APPSHIELD_SHADOW_POLICY=candidate.yaml   (or `appshield run --shadow candidate.yaml`)

Like a Content-Security-Policy-Report-Only header next to the enforced CSP: every operation
the enforced policy decides is decided by the candidate too, and what the candidate would
deny or alert on is reported through the same sinks, marked `appshield.shadow = true`. The
enforced decision is the one returned, always: the candidate never blocks, never allows
what the enforced policy denies, and an error inside it never reaches the app.

`ShadowDecider` is a `Decider` (appshield.ports) wrapped around the enforced one, so the
hooks need not know a shadow exists. What they ask a decider for their caches is answered
for both policies at once (the union: more work, never another enforced decision):

- `stack_matters(op)` is also true when the candidate does not allow `op`. The hooks
  remember an allowed operation only when this is false, so an operation the candidate
  would report is never let through by a cache (file opens, socket actions) and is decided,
  and reported (folded as any repeat is), every time. Operations both policies allow stay
  cached: a shadow costs a second decision on the first occurrence of an operation and on
  every operation the candidate reports, nothing on a cached repeat.
- the import screen lets an import through unseen only when neither policy can name it;
- symlinks are resolved when either policy needs them; scopes are recorded for both.

Core layer: no sinks here. The shield hands in `report(operation, decision, api)`, which
sends the candidate's violation to its reporter.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from appshield.decision import Action, Decision
from appshield.engine.compiled import StackInput
from appshield.operations import Operation
from appshield.ports import Decider

__all__ = ["ShadowDecider", "shadow_decision"]

ShadowReport = Callable[[Operation, Decision, str], None]

_STRICTNESS = {"allow": 0, "alert": 1, "deny": 2}


def shadow_decision(candidate: Decision) -> Decision:
    """The candidate's decision as it is reported: what it would do (action, rule), never
    blocked, in monitor mode (a shadow never enforces)."""
    return Decision(candidate.action, candidate.rule_id, False, "monitor")


class _OnceStack:
    """The caller's stack, walked at most once for both policies' scoped rules."""

    __slots__ = ("_found", "_source")

    def __init__(self, source: Callable[[], Sequence[str]]) -> None:
        self._source = source
        self._found: Sequence[str] | None = None

    def __call__(self) -> Sequence[str]:
        if self._found is None:
            self._found = self._source()
        return self._found


class ShadowDecider:
    """The enforced decider with a candidate beside it (see the module docstring)."""

    def __init__(self, enforced: Decider, candidate: Decider, report: ShadowReport) -> None:
        self.enforced = enforced
        self.candidate = candidate
        self._report = report
        self.describes_callers = enforced.describes_callers
        # Per thread, the operation last reported. A hook that screens its operations first
        # (`_gate.screen`) hands the one the enforced policy objects to back to the gate,
        # which decides that very object again: one attempt, one report. A new attempt is
        # always a new object (the hooks describe each call afresh), so repeats still count.
        self._last = threading.local()

    def decide(self, op: Operation, stack: StackInput = None, api: str = "") -> Decision:
        if callable(stack):
            stack = _OnceStack(stack)
        decision = self.enforced.decide(op, stack, api)
        try:
            candidate = self.candidate.decide(op, stack, api)
            if candidate.action != "allow":
                last = self._last
                if getattr(last, "op", None) is not op:
                    last.op = op
                    self._report(op, shadow_decision(candidate), api)
        except RecursionError:
            raise  # the gate decides again with headroom, the candidate included
        except Exception:
            # The candidate is monitor only: whatever goes wrong in it (a failing sink
            # included) must not change what is enforced. The enforced decision was made
            # by the same engine on the same operation, so this is not a way around it.
            pass
        return decision

    def needs_stack(self, category: str) -> bool:
        return self.enforced.needs_stack(category) or self.candidate.needs_stack(category)

    def stack_matters(self, op: Operation) -> bool:
        if self.enforced.stack_matters(op) or self.candidate.stack_matters(op):
            return True
        # Not remembered as allowed when the candidate would report it: a cache hit would
        # skip the candidate (see the module docstring).
        try:
            return self.candidate.decide(op, None).action != "allow"
        except Exception:
            return True

    def file_needs_resolved_path(self, access: str) -> bool:
        return self.enforced.file_needs_resolved_path(
            access
        ) or self.candidate.file_needs_resolved_path(access)

    def has_rules(self, category: str) -> bool:
        return self.enforced.has_rules(category) or self.candidate.has_rules(category)

    def default(self, category: str) -> Action:
        # The stricter of the two: the hooks ask only to know whether work can be skipped
        # (nothing to report when no rule applies and the default allows).
        first, second = self.enforced.default(category), self.candidate.default(category)
        return first if _STRICTNESS[first] >= _STRICTNESS[second] else second

    def import_screen(self) -> Any:
        enforced, candidate = self.enforced.import_screen(), self.candidate.import_screen()
        if enforced is None or candidate is None:
            return None
        return _BothQuiet(enforced, candidate)

    def scope_matcher(self) -> Callable[[str], bool] | None:
        first, second = self.enforced.scope_matcher(), self.candidate.scope_matcher()
        if first is None or second is None:
            return first or second
        return lambda name: first(name) or second(name)

    def scope_tops(self) -> frozenset[str] | None:
        first, second = self.enforced.scope_matcher(), self.candidate.scope_matcher()
        if first is None:
            return self.candidate.scope_tops()
        if second is None:
            return self.enforced.scope_tops()
        tops, more = self.enforced.scope_tops(), self.candidate.scope_tops()
        return None if tops is None or more is None else tops | more

    def no_library_stricter(self, decision: Decision) -> bool:
        """The enforced policy's proof (SQLite's `load_extension()`, hooks/file/sqlite.py):
        the candidate never makes an enforced decision stricter or looser."""
        proves = getattr(self.enforced, "no_library_stricter", None)
        return proves is not None and bool(proves(decision))

    def __repr__(self) -> str:
        return f"<ShadowDecider enforced={self.enforced!r} candidate={self.candidate!r}>"


class _BothQuiet:
    """An import screen that lets an import through unseen only when neither policy could
    name it."""

    __slots__ = ("_candidate", "_enforced")

    def __init__(self, enforced: Any, candidate: Any) -> None:
        self._enforced = enforced
        self._candidate = candidate

    def quiet(self, *args: Any) -> bool:
        return bool(self._enforced.quiet(*args)) and bool(self._candidate.quiet(*args))
