"""What the process's environment said when appshield was first imported.

Read once: changing these variables later changes nothing (an attacker who can set
`APPSHIELD_DISABLE` after start-up gains nothing). A module of its own, below every layer, so
that the hooks can read it without importing the runtime.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = ["KILL_SWITCH", "STARTUP_ENVIRON"]

STARTUP_ENVIRON: Mapping[str, str] = {
    k: v for k, v in os.environ.items() if k.startswith(("APPSHIELD_", "OTEL_")) or k == "PATH"
}
KILL_SWITCH = STARTUP_ENVIRON.get("APPSHIELD_DISABLE", "") not in ("", "0")
