"""Telemetry sinks for violations.

For every violation the runtime calls `reporter.report(violation)` (with appshield's busy
flag set, before it raises). The reporter:

- counts it on `appshield.violations` (attributes `security_rule.category`,
  `appshield.action`, `security_rule.name`), repeats included;
- folds identical repeats (same rule, api, target and code location): the first is
  reported in full, then at most one per `APPSHIELD_AGGREGATION_INTERVAL` seconds (default
  10) per key, carrying `appshield.suppressed_count`;
- for each reported one: a span `appshield.violation` (child of the active span, status
  ERROR when blocked), an event of that name on the active span when it is recording, a log
  record with `event_name` `appshield.violation` through the OpenTelemetry Logs API, a
  warning on the `appshield` logger (NullHandler only), and, with `APPSHIELD_LOG` set, one
  JSON line to that file (or stderr for `-`).

Providers: the app's own, when it configured OpenTelemetry (looked up at each report, so a
late setup is picked up); otherwise a private pipeline built from the `OTEL_*` variables of
the start-up environment. With none of them set nothing leaves the process. Nothing from
`opentelemetry` is imported before a violation needs it.

Settings (environment, read at start-up): `APPSHIELD_LOG`, `APPSHIELD_REDACT` (`0`: keep
secrets in reports), `APPSHIELD_AGGREGATION_INTERVAL` (seconds), `APPSHIELD_FLUSH_TIMEOUT`
(seconds, default 2), `OTEL_TRACES_EXPORTER` / `OTEL_LOGS_EXPORTER` /
`OTEL_METRICS_EXPORTER` (`otlp`, `console`, `none`), `OTEL_EXPORTER_OTLP_ENDPOINT` (and the
per-signal variants), `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`,
`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_SDK_DISABLED`. See docs/telemetry.md.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

from appshield.report import Violation
from appshield.telemetry.otel import Providers
from appshield.telemetry.record import violation_attributes, violation_record
from appshield.telemetry.reporter import TelemetryReporter
from appshield.telemetry.settings import TelemetrySettings

__all__ = [
    "Providers",
    "Reporter",
    "TelemetryReporter",
    "TelemetrySettings",
    "make_reporter",
    "violation_attributes",
    "violation_record",
]

logger = logging.getLogger("appshield")
# A library's logger: a NullHandler and nothing else, so Python's last-resort handler never
# prints appshield's warnings on the app's stderr unless the app configures logging.
if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
    logger.addHandler(logging.NullHandler())


class Reporter(Protocol):
    def report(self, violation: Violation) -> None: ...

    def shutdown(self) -> None: ...


def make_reporter(
    config: Any, environ: Mapping[str, str], *, providers: Providers | None = None
) -> TelemetryReporter:
    """The reporter for one installed shield. `config.log_path` (if any) overrides
    `APPSHIELD_LOG`; `providers` overrides the provider lookup (tests, embedding)."""
    log_path = getattr(config, "log_path", None)
    settings = TelemetrySettings.from_environ(environ, log_path=log_path)
    return TelemetryReporter(settings, providers=providers)
