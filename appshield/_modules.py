"""Reading `sys.modules` safely while other threads import.

An import puts the module in `sys.modules` *before* running its body, so for a while another
thread finds a module that is still half empty: reading `opentelemetry.context.get_current`
from it raises AttributeError. appshield looks modules up without importing them in several
places (to learn whether the app uses OpenTelemetry, to reuse a stdlib helper), and the
first violation is also what makes appshield import the OpenTelemetry SDK on a thread of its
own. A lookup racing that import once lost the second violation's span and log record.
CPython's own import system tells the two states apart with `__spec__._initializing`
(importlib._bootstrap sets it around the module body): the same flag is read here.
"""

from __future__ import annotations

import sys
from types import ModuleType

__all__ = ["loaded"]


def loaded(name: str) -> ModuleType | None:
    """`sys.modules[name]` once its body has run to the end; None while it is absent or an
    import (on any thread) is still running it. Imports nothing."""
    module = sys.modules.get(name)
    if module is None:
        return None
    # Read from the namespace: a module class's attribute hooks are the module's business.
    namespace = getattr(module, "__dict__", None)
    spec = namespace.get("__spec__") if type(namespace) is dict else None
    if spec is not None and getattr(spec, "_initializing", False) is True:
        return None
    return module  # type: ignore[return-value]
