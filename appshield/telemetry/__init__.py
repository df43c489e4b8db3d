"""Telemetry sinks for violations. Placeholder reporter until the OpenTelemetry sinks land:
a warning on the `appshield` logger (which has only a NullHandler of its own)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from appshield.report import Violation

logger = logging.getLogger("appshield")
logger.addHandler(logging.NullHandler())


class LoggerReporter:
    def __init__(self) -> None:
        self.count = 0

    def report(self, violation: Violation) -> None:
        self.count += 1
        logger.warning(
            "appshield violation: rule=%s api=%s target=%r blocked=%s",
            violation.decision.rule_id,
            violation.api,
            violation.target,
            violation.blocked,
        )

    def shutdown(self) -> None:
        pass


def make_reporter(config: Any, environ: Mapping[str, str]) -> Any:
    return LoggerReporter()
