"""Deciding from inside a hook, shared by the process and file hooks: the gate's helpers under
the names these hooks have always used (see `appshield.hooks._gate`).

- one call that is several operations (a rename deletes its source and writes its target; an
  `open(..., "r+")` reads and writes; `posix_spawn` starts a program and opens files). An audit
  handler may return only one operation, so `screen` decides them all (pure, no report) and
  hands back the first that is a violation: that one the gate then reports and, if it is
  blocked, refuses. One call, one report.
"""

from __future__ import annotations

from appshield.hooks._gate import first_violation, for_wrapper, screen
from appshield.operations import Operation

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

__all__ = ["active", "enforce_all", "first_violation", "screen"]

Described = tuple[Operation, str]

active = for_wrapper


def enforce_all(shield: Any, described: Iterable[Described]) -> None:
    """Decide, report and (if blocked) refuse each operation, in order."""
    for operation, api in described:
        shield.enforce(operation, api)
