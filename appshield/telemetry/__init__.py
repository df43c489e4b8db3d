"""Telemetry sinks for violations.

Placeholder until the OpenTelemetry sinks land: a warning on the `appshield` logger (which
has only a NullHandler of its own) and, when `APPSHIELD_LOG` names a path (or `-` for
stderr), one JSON object per violation.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

from appshield.report import Violation

logger = logging.getLogger("appshield")
logger.addHandler(logging.NullHandler())


def violation_record(violation: Violation) -> dict[str, Any]:
    decision = violation.decision
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(violation.time_ns / 1e9))
        + f".{violation.time_ns % 1_000_000_000 // 1000:06d}Z",
        "rule": decision.rule_id,
        "category": violation.category,
        "api": violation.api,
        "target": violation.target,
        "action": decision.action,
        "blocked": decision.blocked,
        "mode": decision.mode,
        "policy": violation.policy_name,
        "pid": violation.pid,
        "code": {
            "function": violation.callsite.function,
            "file": violation.callsite.file,
            "line": violation.callsite.line,
        },
    }


class LoggerReporter:
    def __init__(self, log_path: str | None) -> None:
        self.count = 0
        self.log_path = log_path
        self._lock = threading.Lock()

    def report(self, violation: Violation) -> None:
        self.count += 1
        logger.warning(
            "appshield violation: rule=%s api=%s target=%r blocked=%s",
            violation.decision.rule_id,
            violation.api,
            violation.target,
            violation.blocked,
        )
        if self.log_path:
            line = json.dumps(violation_record(violation)) + "\n"
            with self._lock:
                if self.log_path == "-":
                    sys.stderr.write(line)
                else:
                    fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                    try:
                        os.write(fd, line.encode())
                    finally:
                        os.close(fd)

    def shutdown(self) -> None:
        pass


def make_reporter(config: Any, environ: Mapping[str, str]) -> Any:
    return LoggerReporter(environ.get("APPSHIELD_LOG"))
