"""The outcome of checking one operation against a policy."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Literal, NamedTuple, TypeAlias
else:  # typing's own costs ~0.7 M instructions per class at start-up (appshield/_records.py)
    from appshield._records import NamedTuple

__all__ = ["Action", "Decision", "Mode"]

Action: TypeAlias = 'Literal["allow", "deny", "alert"]'
Mode: TypeAlias = 'Literal["enforce", "monitor"]'


class Decision(NamedTuple):
    """action: the winning action. rule_id: the deciding rule (`default:<category>` or
    `implicit:<protection>` when no written rule decided). blocked: the operation must not
    happen (a matching deny, or a default deny, that enforces). mode: the policy's effective
    mode. package, package_version: the installed distribution whose missing grant decided
    (the `packages` section, docs/packages.md); None when the ordinary rules decided."""

    action: Action
    rule_id: str
    blocked: bool
    mode: Mode
    package: str | None = None
    package_version: str | None = None

    @property
    def is_violation(self) -> bool:
        """Reported operations: a deny (blocked or not) or an alert."""
        return self.action != "allow"
