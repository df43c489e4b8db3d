"""Who may reuse a remembered allow under a policy with per-distribution grants.

Without grants, an allowed open or connect is remembered and let through again for any
caller (when no scoped rule is a candidate). With grants the same operation can be allowed
for the app and denied for a distribution, so a remembered allow is reused only when the
nearest caller outside appshield and the standard library is proven first-party
(`GrantingDecider.first_party_caller`), and remembered only when such a caller made it.

The usual repeat comes straight from the app's code: the frame right above the hook runs a
code object the decider has already proven first-party. That is one dict lookup on the code
object's identity (`proven`), done inline by the audit hook's hot paths; anything else takes
the decider's walk.
"""

from __future__ import annotations

from types import FrameType

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["GrantedCallers", "granted_callers", "identity"]

identity = object.__hash__  # the key GrantingDecider files code objects under


class GrantedCallers:
    __slots__ = ("_inner", "proven", "walk")

    def __init__(self, decider: Any) -> None:
        proven = getattr(decider, "proven_first_party", None)
        self.proven: dict[int, Any] = proven if type(proven) is dict else {}
        self.walk = getattr(decider, "first_party_caller", None) or _nobody
        # the ordinary rules' decider: whether a scoped rule could judge another caller
        self._inner = getattr(decider, "inner", None)

    def first_party(self, frame: FrameType) -> bool:
        """The app's own code is asking (at `frame`, or above it past appshield's frames and
        the standard library's)."""
        code = frame.f_code
        return self.proven.get(identity(code)) is code or bool(self.walk(frame))

    def may_remember(self, ops: Any, frame: FrameType) -> bool:
        """An allow of `ops` made at `frame` may be remembered: the app's own code asked (so
        the ordinary rules alone decided) and no scoped rule is a candidate."""
        inner = self._inner
        if inner is None or not self.first_party(frame):
            return False
        return not any(inner.stack_matters(op) for op in ops)


def _nobody(frame: Any) -> bool:
    return False  # a decider that cannot tell: no remembered allow is ever reused


def granted_callers(compiled: Any) -> GrantedCallers | None:
    """The check for `compiled`, or None for a policy without grants (any caller may reuse)."""
    if compiled is None or not getattr(compiled, "attributes_packages", False):
        return None
    return GrantedCallers(compiled)
