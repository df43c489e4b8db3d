"""OpenTelemetry auto-instrumentation: `opentelemetry-instrument python app.py` switches
appshield on when APPSHIELD_POLICY is set.

Registered under the entry-point group `opentelemetry_instrumentor` (name `appshield`), which
`opentelemetry-instrument` loads at start-up through its own sitecustomize. Without
APPSHIELD_POLICY (and without APPSHIELD_DISABLE) the instrumentor does nothing: having appshield
installed next to OpenTelemetry must not change an app that did not ask for a shield.

Once asked for, the shield fails closed like every other way in (exit 2, one line), even
though the auto-instrumentation loader logs and swallows instrumentor errors. The shield is
locked, so `uninstrument()` leaves it on. Combined with `appshield run` it installs once.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

__all__ = ["AppshieldInstrumentor"]


def _wanted() -> bool:
    from appshield.settings import STARTUP

    return bool(STARTUP.policy_path or STARTUP.environ.get("APPSHIELD_DISABLE"))


def _start() -> None:
    if _wanted():
        from appshield.activation import activate

        activate("opentelemetry")


try:
    from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
        BaseInstrumentor,
    )
except ImportError:  # opentelemetry-instrumentation is optional

    class AppshieldInstrumentor:  # type: ignore[no-redef]
        """Stand-in with the same calls when opentelemetry-instrumentation is absent."""

        def instrumentation_dependencies(self) -> Collection[str]:
            return ()

        def instrument(self, **kwargs: Any) -> None:
            _start()

        def uninstrument(self, **kwargs: Any) -> None:
            pass

else:

    class AppshieldInstrumentor(BaseInstrumentor):  # type: ignore[no-redef,misc]
        """Switches the appshield shield on (locked) from APPSHIELD_POLICY."""

        def instrumentation_dependencies(self) -> Collection[str]:
            return ()

        def _instrument(self, **kwargs: Any) -> None:
            _start()

        def _uninstrument(self, **kwargs: Any) -> None:
            # A locked shield stays on: only the kill switch, before start-up, turns it off.
            pass
