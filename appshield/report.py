"""What the runtime hands to the telemetry sinks for each violation."""

from __future__ import annotations

from appshield.decision import Decision
from appshield.operations import Operation, UndescribedOp

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NamedTuple
else:  # typing's own costs ~0.7 M instructions per class at start-up (appshield/_records.py)
    from appshield._records import NamedTuple

__all__ = ["CallSite", "Violation"]


class CallSite(NamedTuple):
    """The calling code: the modules on the stack (innermost first) and the first frame
    outside appshield and the standard library (the code to blame)."""

    modules: tuple[str, ...] = ()
    function: str | None = None
    file: str | None = None
    line: int | None = None


class Violation(NamedTuple):
    operation: Operation | UndescribedOp
    decision: Decision
    api: str  # e.g. "subprocess.Popen", "os.system", "open", "socket.connect", "import"
    policy_name: str
    callsite: CallSite
    time_ns: int
    pid: int
    # Why it was denied when no rule decided it (`undescribable`); None for a rule's decision.
    reason: str | None = None
    # The operation being attempted when this one happened inside it: an import the network
    # call's own C code made (`socket.getaddrinfo '127.0.0.1:9999'`); None otherwise.
    during: str | None = None
    # Reported for the shadow candidate (appshield.shadow): it would deny or alert; nothing
    # was blocked, and `policy_name` is the candidate's.
    shadow: bool = False

    @property
    def category(self) -> str:
        return self.operation.category

    @property
    def target(self) -> str:
        return self.operation.target

    @property
    def blocked(self) -> bool:
        return self.decision.blocked
