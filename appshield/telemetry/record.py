"""One violation as plain data: the OpenTelemetry attributes and the APPSHIELD_LOG object.

Both are built only for violations that are actually emitted (not for suppressed repeats),
and every value that may carry a secret goes through the `Redactor` first.
"""

from __future__ import annotations

import os
import time
from typing import Any

from appshield.operations import FileOp, ImportOp, NetworkOp, ProcessOp
from appshield.report import Violation
from appshield.telemetry.redact import Redactor

__all__ = ["EVENT_NAME", "violation_attributes", "violation_record"]

EVENT_NAME = "appshield.violation"
_DEFAULT_REDACTOR = Redactor(True)

AttributeValue = str | bool | int | float | list[str]


def iso_time(time_ns: int) -> str:
    seconds, rest = divmod(time_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{rest // 1000:06d}Z"


def redacted_target(violation: Violation, redactor: Redactor) -> str:
    op = violation.operation
    if isinstance(op, ProcessOp):
        return redactor.command_line(op.argv, op.executable)
    return redactor.text(op.target)


def violation_record(
    violation: Violation, redactor: Redactor | None = None, suppressed_count: int = 0
) -> dict[str, Any]:
    """The APPSHIELD_LOG object: the contract's fields first, then the code location."""
    redactor = redactor or _DEFAULT_REDACTOR
    decision = violation.decision
    record: dict[str, Any] = {
        "time": iso_time(violation.time_ns),
        "rule": decision.rule_id,
        "category": violation.category,
        "api": violation.api,
        "target": redacted_target(violation, redactor),
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
    if violation.reason is not None:
        record["reason"] = violation.reason
    if violation.during is not None:
        record["during"] = redactor.text(violation.during)
    if violation.shadow:
        record["shadow"] = True
    package = getattr(decision, "package", None)
    if package is not None:  # the distribution a `packages` grant did not cover
        record["package"] = package
        record["package_version"] = decision.package_version
    if suppressed_count:
        record["suppressed_count"] = suppressed_count
    return record


def violation_attributes(
    violation: Violation, redactor: Redactor, suppressed_count: int = 0
) -> dict[str, AttributeValue]:
    """Span, event and log attributes: `security_rule.*`, `appshield.*`, and the
    semantic-convention attributes of the target and of the calling code."""
    decision = violation.decision
    attrs: dict[str, AttributeValue] = {
        "security_rule.name": decision.rule_id,
        "security_rule.ruleset.name": violation.policy_name,
        "security_rule.category": violation.category,
        "appshield.action": decision.action,
        "appshield.blocked": decision.blocked,
        "appshield.mode": decision.mode,
        "appshield.api": violation.api,
        "appshield.target": redacted_target(violation, redactor),
    }
    if violation.reason is not None:
        attrs["appshield.reason"] = violation.reason
    if violation.during is not None:
        attrs["appshield.during"] = redactor.text(violation.during)
    if violation.shadow:
        attrs["appshield.shadow"] = True
    package = getattr(decision, "package", None)
    if package is not None:  # the distribution a `packages` grant did not cover
        attrs["appshield.package.name"] = package
        attrs["appshield.package.version"] = decision.package_version or ""
    _target_attributes(violation.operation, redactor, attrs)
    site = violation.callsite
    if site.function is not None:
        attrs["code.function.name"] = site.function
    if site.file is not None:
        attrs["code.file.path"] = site.file
    if site.line is not None:
        attrs["code.line.number"] = site.line
    if suppressed_count:
        attrs["appshield.suppressed_count"] = suppressed_count
    return attrs


def _target_attributes(op: object, redactor: Redactor, attrs: dict[str, AttributeValue]) -> None:
    if isinstance(op, ProcessOp):
        attrs["process.executable.path"] = op.executable
        attrs["process.executable.name"] = os.path.basename(op.executable)
        if op.argv:
            attrs["process.command_args"] = redactor.argv(op.argv)
        attrs["appshield.process.shell"] = op.shell
    elif isinstance(op, FileOp):
        attrs["file.path"] = redactor.text(op.path)
        attrs["appshield.file.access"] = op.access
        if op.resolved is not None and op.resolved != op.path:
            attrs["appshield.file.resolved_path"] = redactor.text(op.resolved)
    elif isinstance(op, NetworkOp):
        _network_attributes(op, attrs)
    elif isinstance(op, ImportOp):
        if op.module is not None:
            attrs["appshield.module"] = op.module
        if op.origin is not None:
            attrs["appshield.module.origin"] = op.origin
        if op.library is not None:
            attrs["appshield.library"] = op.library
        if op.home is not None:
            attrs["appshield.module.home"] = op.home
        if op.init is not None:
            attrs["appshield.module.init"] = op.init


def _network_attributes(op: NetworkOp, attrs: dict[str, AttributeValue]) -> None:
    attrs["appshield.network.operation"] = op.operation
    attrs["network.transport"] = op.transport
    if op.transport == "unix":
        if op.path is not None:
            attrs["server.address"] = op.path
        return
    server = op.host or op.address
    if server is not None:
        attrs["server.address"] = server
    if op.address is not None:
        attrs["network.peer.address"] = op.address
        attrs["network.type"] = "ipv6" if ":" in op.address else "ipv4"
    if op.port is not None:
        attrs["server.port"] = op.port
        if op.address is not None:
            attrs["network.peer.port"] = op.port
    if op.names:
        attrs["appshield.network.names"] = list(op.names)
    if op.requested is not None:  # 0.0.0.0 or :: as written; `address` is where it goes
        attrs["appshield.network.requested_address"] = op.requested
    if op.transport == "raw" and op.path is not None:  # a packet socket's interface
        attrs["network.interface.name"] = op.path
