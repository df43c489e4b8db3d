"""The two exceptions of the public API.

`PolicyError` is an invalid policy (a `ValueError`); `PolicyViolation` is a denied operation
(a `PermissionError` with errno EACCES, so code that already copes with an OS-level denial
degrades the same way). Both carry structured fields and are picklable, so they cross process
boundaries (multiprocessing, pytest-xdist) intact. Constructors have no side effects: reporting
belongs to the telemetry sinks, not here.
"""

from __future__ import annotations

import errno

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import NamedTuple
else:  # typing's own costs ~0.7 M instructions per class at start-up (appshield/_records.py)
    from appshield._records import NamedTuple

__all__ = ["PolicyError", "PolicyProblem", "PolicyViolation"]


class PolicyProblem(NamedTuple):
    """One problem found in a policy, with its place when it has one."""

    message: str
    file: str | None = None
    line: int | None = None  # 1-based
    column: int | None = None  # 1-based

    def __str__(self) -> str:
        if self.file is not None and self.line is not None:
            return f"{self.file}:{self.line}:{self.column or 1}: {self.message}"
        if self.file is not None:
            return f"{self.file}: {self.message}"
        return self.message


class PolicyError(ValueError):
    """An invalid policy. `problems` lists every problem found, not just the first.

    The message is the problems, one per line, each `FILE:LINE:COL: message` when it has a place.
    """

    def __init__(self, problems: Sequence[PolicyProblem] | str) -> None:
        if isinstance(problems, str):
            problems = [PolicyProblem(problems)]
        self.problems: tuple[PolicyProblem, ...] = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    def __reduce__(self) -> tuple[type[PolicyError], tuple[tuple[PolicyProblem, ...]]]:
        return (PolicyError, (self.problems,))


class PolicyViolation(PermissionError):
    """A denied operation, raised before it takes effect (enforce mode)."""

    def __init__(
        self,
        rule_id: str,
        category: str,
        api: str,
        target: str,
        action: str = "deny",
        policy: str = "",
        during: str = "",
        package: str = "",
        package_version: str = "",
    ) -> None:
        self.rule_id = rule_id
        self.category = category
        self.api = api
        self.target = target
        self.action = action
        self.policy = policy
        self.during = during
        # The installed distribution whose missing grant decided (docs/packages.md), or "".
        self.package = package
        self.package_version = package_version
        where = f" of policy {policy!r}" if policy else ""
        message = f"appshield: {api} {target!r} blocked by rule {rule_id!r}{where}"
        if package:
            message += f" (distribution {package} {package_version})".replace(" )", ")")
        if during:
            message += f", while attempting {during}"
        super().__init__(errno.EACCES, message)

    def __str__(self) -> str:
        return str(self.strerror)

    def __reduce__(
        self,
    ) -> tuple[type[PolicyViolation], tuple[str, str, str, str, str, str, str, str, str]]:
        return (
            PolicyViolation,
            (
                self.rule_id,
                self.category,
                self.api,
                self.target,
                self.action,
                self.policy,
                self.during,
                self.package,
                self.package_version,
            ),
        )
