"""appshield: an in-process security agent for Python.

It checks every process start, file access, network action and import against a YAML
policy *before* it happens, blocks it (enforce) or only reports it (monitor), and reports
every violation through OpenTelemetry. See README.md and docs/.

PYTEST_DONT_REWRITE: pytest marks this package for assertion rewriting because it ships a
pytest plugin (entry point `pytest11: appshield`). Under `appshield run -- pytest` the
shield imports it before pytest starts, and without this marker pytest would warn
"Module already imported so cannot be rewritten; appshield", which `-W error` or
`filterwarnings = error` turns into an abort. pytest skips that warning, and the rewrite,
for a module whose docstring holds the marker.
"""

from __future__ import annotations

import os
import sys

# The modules loaded before appshield's own: taken first, before this package imports any of
# its modules. `appshield learn` must see the app import any module that appshield, not the
# interpreter or the app, had already loaded: while learning such an import is a
# `sys.modules` hit that no import hook sees, yet under `appshield run` it may be a first
# import, judged against the learned policy (`appshield.learn.observer`). Kept here rather
# than in a module of its own: each module a start loads costs it about 0.3 M instructions
# of finding and loading alone (docs/performance.md, "Start-up, seventh round").
MODULES_BEFORE_APPSHIELD = frozenset(sys.modules)

# The environment's settings are read now, when appshield is first imported, and never again.
from appshield.settings import STARTUP as _STARTUP  # noqa: E402, F401

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from appshield.decision import Decision, Mode
    from appshield.errors import PolicyError, PolicyViolation
    from appshield.operations import FileOp, ImportOp, NetworkOp, ProcessOp
    from appshield.policy import Policy, load_policy
    from appshield.runtime import ShieldHandle

# Imported on first use (PEP 562): `appshield run`'s own process, which only checks the
# policy and execs the command, never needs them, and every shielded start pays for it. The
# two exceptions too (that process loads `appshield.errors` only to report a bad policy);
# a shielded start has loaded them before install (the runtime and the gate import them),
# so their first use there is a lookup, never an import the policy judges.
_ON_FIRST_USE = {
    "Decision": "appshield.decision",
    "PolicyError": "appshield.errors",
    "PolicyViolation": "appshield.errors",
    "FileOp": "appshield.operations",
    "ImportOp": "appshield.operations",
    "NetworkOp": "appshield.operations",
    "ProcessOp": "appshield.operations",
    "Policy": "appshield.policy",
    "load_policy": "appshield.policy",
}


def __getattr__(name: str) -> Any:
    module = _ON_FIRST_USE.get(name)
    if module is None:
        raise AttributeError(f"module 'appshield' has no attribute {name!r}")
    value = getattr(__import__(module, fromlist=[name]), name)
    globals()[name] = value
    return value


__version__ = "0.1.0"

__all__ = [
    "Decision",
    "FileOp",
    "ImportOp",
    "NetworkOp",
    "Policy",
    "PolicyError",
    "PolicyViolation",
    "ProcessOp",
    "__version__",
    "install",
    "load_policy",
    "uninstall",
]


def install(
    policy: Policy | str | os.PathLike[str] | Mapping[str, Any] | None = None,
    *,
    mode: Mode | None = None,
    locked: bool = False,
) -> ShieldHandle:
    """Load the policy and start checking. See appshield.runtime.install.

    The runtime (and with it wrapt and the hooks) is imported only here, so that
    `import appshield` for `Policy.decide` or `explain` patches and loads nothing."""
    from appshield.runtime import install as _install

    return _install(policy, mode=mode, locked=locked)


def uninstall() -> None:
    """Stop checking and restore every patched attribute. See appshield.runtime.uninstall."""
    from appshield.runtime import uninstall as _uninstall

    _uninstall()
