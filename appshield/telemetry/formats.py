"""The `APPSHIELD_LOG` line formats (`APPSHIELD_LOG_FORMAT`): one JSON object per line each.

- `json` (the default): appshield's own record, `record.violation_record`.
- `ocsf`: an OCSF 1.1.0 Detection Finding (class_uid 2004, category Findings). The operation
  it detected is named as a related event of the OCSF activity class it belongs to (File
  System Activity 1001, Process Activity 1007, Network Activity 4001, DNS Activity 4003 for a
  name lookup, Module Activity 1005 for an import), with its object as evidence (`file`,
  `process`, `dst_endpoint`); the rule is the finding's analytic; appshield's own fields
  (api, policy, code location, shadow, suppressed_count) go under `unmapped.appshield`.
  `count` is how many occurrences the line stands for.
- `falco`: the alert JSON Falco writes with `json_output: true` (`output`, `priority`,
  `rule`, `time`, `output_fields`, `tags`, plus `source` and `hostname`), so pipelines that
  take Falco alerts (Falcosidekick, SIEM parsers) take these lines.

Every format carries the same aggregation as `json`: one line per reported violation, with
the number of repeats folded into it (`suppressed_count`), and a summary line for repeats
still held at exit. Values that may hold secrets are redacted as in `json`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

from appshield.operations import FileOp, ImportOp, NetworkOp, ProcessOp
from appshield.report import Violation
from appshield.telemetry.record import iso_time, redacted_target, violation_record
from appshield.telemetry.redact import Redactor

__all__ = ["FORMATTERS", "OCSF_VERSION", "falco_alert", "json_line", "ocsf_finding"]

OCSF_VERSION = "1.1.0"

Formatter = Callable[[Violation, Redactor, int, bool], dict[str, Any]]


def json_line(
    violation: Violation, redactor: Redactor, suppressed: int, summary: bool
) -> dict[str, Any]:
    record = violation_record(violation, redactor, suppressed)
    if summary:
        record["summary"] = True
    return record


# -- OCSF -------------------------------------------------------------------------------------

# (activity class uid, its name, activity_id, activity name) per appshield operation.
_FILE_ACTIVITY = {"read": (2, "Read"), "write": (3, "Update"), "delete": (4, "Delete")}
_NETWORK_ACTIVITY = {"connect": (1, "Open"), "send": (6, "Traffic"), "bind": (7, "Listen")}
_SEVERITY = {4: "High", 3: "Medium", 2: "Low", 1: "Informational"}


def _activity(violation: Violation) -> tuple[int, str, int, str] | None:
    op = violation.operation
    if isinstance(op, FileOp):
        found = _FILE_ACTIVITY.get(op.access)
        return None if found is None else (1001, "File System Activity", *found)
    if isinstance(op, ProcessOp):
        return 1007, "Process Activity", 1, "Launch"
    if isinstance(op, NetworkOp):
        if op.operation == "resolve":
            return 4003, "DNS Activity", 1, "Query"
        found = _NETWORK_ACTIVITY.get(op.operation)
        return None if found is None else (4001, "Network Activity", *found)
    if isinstance(op, ImportOp):
        return 1005, "Module Activity", 1, "Load"
    return None  # an operation appshield could not describe


def _severity(violation: Violation) -> int:
    decision = violation.decision
    if violation.shadow:
        return 1  # a candidate's opinion: nothing happened because of it
    if decision.blocked:
        return 4
    return 3 if decision.action == "deny" else 2


# OCSF's hostname_t: a name that does not fit it (a `_` in it, say) is reported as the
# endpoint's `name` instead.
_HOSTNAME = re.compile(
    r"^(([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9\-]*[a-zA-Z0-9])\.)*"
    r"([A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9\-]*[A-Za-z0-9])$"
)


def _file_object(path: str, redactor: Redactor) -> dict[str, Any]:
    shown = redactor.text(path)
    return {"name": os.path.basename(shown) or shown, "path": shown, "type_id": 0}


def _evidence(violation: Violation, redactor: Redactor) -> dict[str, Any]:
    op = violation.operation
    evidence: dict[str, Any] = {"actor": {"process": {"pid": violation.pid}}}
    if isinstance(op, FileOp):
        evidence["file"] = _file_object(op.path, redactor)
    elif isinstance(op, ProcessOp):
        evidence["process"] = {
            # The start was judged before it happened: no pid yet, so the producer's id of
            # the attempt (OCSF asks for a pid or a uid).
            "uid": f"{violation.pid}-{violation.time_ns}",
            "name": os.path.basename(op.executable),
            "cmd_line": redactor.command_line(op.argv, op.executable),
            "file": _file_object(op.executable, redactor),
        }
    elif isinstance(op, NetworkOp):
        endpoint: dict[str, Any] = {}
        if op.host is not None:
            endpoint["hostname" if _HOSTNAME.match(op.host) else "name"] = op.host
        if op.address is not None:
            endpoint["ip"] = op.address
        if op.port is not None:
            endpoint["port"] = op.port
        if op.transport == "unix" and op.path is not None:
            endpoint["name"] = op.path
        if endpoint.keys() - {"port"}:
            evidence["dst_endpoint"] = endpoint
        else:
            evidence["data"] = {"target": redacted_target(violation, redactor)}
    elif isinstance(op, ImportOp):
        file = op.library or op.origin
        if file is not None:
            evidence["file"] = _file_object(file, redactor)
        evidence["data"] = {"module": op.module, "library": op.library}
    else:
        evidence["data"] = {"target": redacted_target(violation, redactor)}
    return evidence


def ocsf_finding(
    violation: Violation, redactor: Redactor, suppressed: int, summary: bool
) -> dict[str, Any]:
    from appshield import __version__
    from appshield.telemetry.otel import message

    decision = violation.decision
    ms = violation.time_ns // 1_000_000
    severity = _severity(violation)
    own = json_line(violation, redactor, suppressed, summary)
    uid = f"{violation.pid}-{violation.time_ns}-{decision.rule_id}"
    info: dict[str, Any] = {
        "uid": uid,
        "title": f"appshield {decision.action}: {violation.category} {violation.api}",
        "desc": f"rule {decision.rule_id} of policy {violation.policy_name}",
        "types": [violation.category],
        "analytic": {
            "name": decision.rule_id,
            "uid": decision.rule_id,
            "type_id": 1,
            "type": "Rule",
            "category": violation.category,
        },
        "product_uid": "appshield",
    }
    activity = _activity(violation)
    if activity is not None:
        class_uid, class_name, activity_id, activity_name = activity
        info["related_events"] = [
            {
                "uid": uid,
                "type_uid": class_uid * 100 + activity_id,
                "type": f"{class_name}: {activity_name}",
                "product_uid": "appshield",
            }
        ]
    finding: dict[str, Any] = {
        "activity_id": 1,
        "activity_name": "Create",
        "category_uid": 2,
        "category_name": "Findings",
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "type_uid": 200401,
        "type_name": "Detection Finding: Create",
        "time": ms,
        "severity_id": severity,
        "severity": _SEVERITY[severity],
        "status_id": 1,
        "status": "New",
        # How many occurrences this line stands for: itself and the repeats folded into it
        # (a summary line stands only for the repeats).
        "count": suppressed if summary else suppressed + 1,
        "message": message(violation, {"appshield.target": own["target"]}),
        "action_id": 2 if decision.blocked else 1,
        "action": "Denied" if decision.blocked else "Allowed",
        "metadata": {
            "version": OCSF_VERSION,
            "product": {"name": "appshield", "vendor_name": "appshield", "version": __version__},
            "profiles": ["security_control"],
            "log_name": "APPSHIELD_LOG",
            "labels": ["shadow"] if violation.shadow else [],
        },
        "finding_info": info,
        "evidences": [_evidence(violation, redactor)],
        "unmapped": {"appshield": own},
    }
    return finding


# -- Falco ------------------------------------------------------------------------------------


def _priority(violation: Violation) -> str:
    decision = violation.decision
    if violation.shadow:
        return "Informational"
    if decision.blocked:
        return "Critical"
    return "Warning" if decision.action == "deny" else "Notice"


def _scalar(value: Any) -> Any:
    # Falco's output fields are strings, numbers, booleans or null: a list (argv, the names
    # of an address) becomes one string.
    return " ".join(value) if isinstance(value, list | tuple) else value


def _falco_time(time_ns: int) -> str:
    """RFC 3339 with nanoseconds, as Falco writes `time`."""
    seconds, rest = divmod(time_ns, 1_000_000_000)
    return iso_time(seconds * 1_000_000_000)[:-8] + f".{rest:09d}Z"


def falco_alert(
    violation: Violation, redactor: Redactor, suppressed: int, summary: bool
) -> dict[str, Any]:
    from appshield.telemetry.otel import message
    from appshield.telemetry.record import violation_attributes

    attrs = violation_attributes(violation, redactor, suppressed)
    if summary:
        attrs["appshield.summary"] = True
    decision = violation.decision
    fields: dict[str, Any] = {"evt.time": violation.time_ns, "proc.pid": violation.pid}
    fields.update((name, _scalar(value)) for name, value in attrs.items())
    tags = ["appshield", violation.category, decision.action]
    if violation.shadow:
        tags.append("shadow")
    stamp = _falco_time(violation.time_ns)
    priority = _priority(violation)
    return {
        "hostname": os.uname().nodename,
        # Falco's own output line: the time of day, the priority, the message.
        "output": f"{stamp[11:-1]}: {priority} {message(violation, attrs)}",
        "priority": priority,
        "rule": decision.rule_id,
        "source": "appshield",
        "tags": tags,
        "time": stamp,
        "output_fields": fields,
    }


FORMATTERS: dict[str, Formatter] = {"json": json_line, "ocsf": ocsf_finding, "falco": falco_alert}
