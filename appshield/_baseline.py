"""The modules loaded before appshield's own (imported first, by `appshield/__init__.py`).

`appshield learn` must see the app import any module that appshield, not the interpreter or
the app, had already loaded: while learning such an import is a `sys.modules` hit that no
import hook sees, yet under `appshield run` it may be a first import, judged against the
learned policy (see `appshield.learn.recorder`).
"""

from __future__ import annotations

import sys

MODULES_BEFORE_APPSHIELD = frozenset(sys.modules)
