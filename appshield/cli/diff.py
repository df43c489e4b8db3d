"""`appshield diff OLD NEW [--format text|json|sarif]`: the capability diff of two policies.

Exit 0 when NEW widens nothing, 1 when it widens something, 2 when a policy is invalid (its
problems printed as `FILE:LINE:COL: message`, as `check` prints them). The comparison is
`appshield.policy.diff`; this module loads, prints and picks the exit code.

SARIF: version 2.1.0, one run whose `tool.driver.rules` are the four kinds of change; each
change is a result located at the line of NEW that is responsible (the deciding rule, else
the NEW rule with the id of the OLD rule that lost, else the changed setting, else line 1),
with the OLD rule as a related location. GitHub code scanning takes it as it is
(`github/codeql-action/upload-sarif`), see docs/lifecycle.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from typing import TYPE_CHECKING, Any

from appshield import __version__
from appshield.errors import PolicyError

if TYPE_CHECKING:
    import argparse

    from appshield.document import PolicyDocument, SourceRef
    from appshield.policy.diff import Change, DiffResult

__all__ = ["register", "render"]

EXIT_SAME, EXIT_WIDENED, EXIT_INVALID = 0, 1, 2

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"

# (direction, kind) -> SARIF rule id, name, level, short text
_KINDS: dict[tuple[str, str], tuple[str, str, str, str]] = {
    ("widened", "allowed"): (
        "appshield.diff.widened",
        "PolicyWidened",
        "error",
        "The new policy allows operations the old one blocked.",
    ),
    ("widened", "unreported"): (
        "appshield.diff.unreported",
        "PolicyReportsLess",
        "warning",
        "The new policy no longer reports (or no longer blocks) operations the old one did.",
    ),
    ("narrowed", "blocked"): (
        "appshield.diff.narrowed",
        "PolicyNarrowed",
        "note",
        "The new policy blocks operations the old one allowed.",
    ),
    ("narrowed", "reported"): (
        "appshield.diff.reported",
        "PolicyReportsMore",
        "note",
        "The new policy reports operations the old one let through silently.",
    ),
}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "diff",
        help="compare two policies by capability (what NEW allows that OLD did not)",
        description="Compare two policies by what they allow, not by their text: the"
        " operations NEW allows that OLD did not (widened) and those it no longer allows"
        " (narrowed), per category, with the responsible rules. Exit 0 when NEW widens"
        " nothing, 1 when it widens, 2 when a policy is invalid.",
    )
    parser.add_argument("old", metavar="OLD", help="the policy in force")
    parser.add_argument("new", metavar="NEW", help="the proposed policy")
    parser.add_argument(
        "--format",
        choices=("text", "json", "sarif"),
        default="text",
        help="text (a table, the default), json, or sarif (SARIF 2.1.0 for code scanning)",
    )
    parser.add_argument("--output", "-o", metavar="FILE", help="write here instead of stdout")
    parser.set_defaults(func=_diff)


def _diff(args: argparse.Namespace) -> int:
    from appshield.policy.diff import diff_documents
    from appshield.policy.loader import load_file

    documents = []
    failed = False
    for path in (args.old, args.new):
        try:
            documents.append(load_file(path))
        except PolicyError as exc:
            failed = True
            for problem in exc.problems:
                print(problem, file=sys.stderr)
    if failed:
        return EXIT_INVALID
    old, new = documents
    result = diff_documents(old, new)
    text = render(result, old, new, args.old, args.new, args.format)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text)
    else:
        sys.stdout.write(text)
    return EXIT_WIDENED if result.widens else EXIT_SAME


def render(
    result: DiffResult,
    old: PolicyDocument,
    new: PolicyDocument,
    old_name: str,
    new_name: str,
    form: str,
) -> str:
    """The report in `form` (text, json or sarif), ending with a newline."""
    if form == "json":
        return json.dumps(_as_json(result, old, new, old_name, new_name), indent=2) + "\n"
    if form == "sarif":
        return json.dumps(_as_sarif(result, old, new), indent=2) + "\n"
    return _as_text(result, old, new, old_name, new_name)


# --- where a change is written -------------------------------------------------------------


def _place(change: Change, new: PolicyDocument) -> SourceRef | None:
    """The line of NEW to point at (see the module docstring)."""
    from appshield.document import SourceRef
    from appshield.policy.diff import rule_places, setting_place

    if change.new_source is not None:
        return change.new_source
    places = rule_places(new)
    if change.old_rule in places:
        return places[change.old_rule]
    if change.category in ("mode", "defaults", "protections"):
        return setting_place(new, change)
    if change.new_rule and change.new_rule.startswith("default:"):
        category = change.new_rule.partition(":")[2]
        probe = change._replace(category="defaults", summary=f"defaults.{category}:")
        return setting_place(new, probe)
    return SourceRef(new.files[0], 1, 1) if new.files else None


def _where(source: SourceRef | None) -> str:
    from appshield.policy.diff import shown_path

    if source is None:
        return ""
    return f"{shown_path(source.file or '<policy>')}:{source.line}"


# --- text ----------------------------------------------------------------------------------


def _as_text(
    result: DiffResult, old: PolicyDocument, new: PolicyDocument, old_name: str, new_name: str
) -> str:
    from appshield.policy.diff import brief

    lines = [f"appshield diff: {old_name} -> {new_name}", ""]
    for direction, changes, what in (
        ("widened", result.widened, "NEW allows or hides what OLD did not"),
        ("narrowed", result.narrowed, "NEW denies or reports what OLD did not"),
    ):
        lines.append(f"{direction} ({what}): {len(changes) or 'none'}")
        if changes:
            rows = [("KIND", "CATEGORY", "NEW", "OLD", "OPS", "EXAMPLE")]
            for change in changes:
                new_where = _where(_place(change, new))
                old_where = _where(change.old_source)
                rows.append(
                    (
                        change.kind,
                        change.category,
                        f"{change.new_rule or '-'}" + (f" ({new_where})" if new_where else ""),
                        f"{change.old_rule or '-'}" + (f" ({old_where})" if old_where else ""),
                        str(change.op_count) if change.op_count else "-",
                        brief(change.examples[0]) if change.examples else change.summary,
                    )
                )
            widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
            for row in rows:
                cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
                lines.append("  " + "  ".join([*cells, row[-1]]).rstrip())
        lines.append("")
    verdict = "NEW widens OLD" if result.widens else "NEW widens nothing"
    lines.append(f"{verdict} ({result.checked} witness operations decided under both)")
    if result.truncated:
        lines.append(f"witnesses cut at the limit for: {', '.join(result.truncated)}")
    return "\n".join(lines) + "\n"


# --- json ----------------------------------------------------------------------------------


def _change_json(change: Change, new: PolicyDocument) -> dict[str, Any]:
    from appshield.policy.diff import describe, shown_path

    def source(ref: SourceRef | None) -> str | None:
        if ref is None:
            return None
        return f"{shown_path(ref.file or '<policy>')}:{ref.line}:{ref.column}"

    return {
        "direction": change.direction,
        "kind": change.kind,
        "category": change.category,
        "summary": change.summary,
        "old_rule": change.old_rule,
        "old_source": source(change.old_source),
        "new_rule": change.new_rule,
        "new_source": source(change.new_source),
        "location": source(_place(change, new)),
        "old_outcome": change.old_outcome,
        "new_outcome": change.new_outcome,
        "count": change.op_count,
        "examples": [describe(w) for w in change.examples],
    }


def _as_json(
    result: DiffResult, old: PolicyDocument, new: PolicyDocument, old_name: str, new_name: str
) -> dict[str, Any]:
    return {
        "old": old_name,
        "new": new_name,
        "widens": result.widens,
        "widened": [_change_json(c, new) for c in result.widened],
        "narrowed": [_change_json(c, new) for c in result.narrowed],
        "checked": result.checked,
        "truncated": list(result.truncated),
    }


# --- sarif ---------------------------------------------------------------------------------


def _uri(path: str) -> str:
    """Relative to the current folder (the repository root in CI) with `/`, as code scanning
    expects; a file outside it as an absolute file URI."""
    from pathlib import Path

    relative = os.path.relpath(path)
    if relative.startswith(".."):
        return Path(os.path.abspath(path)).as_uri()
    return Path(relative).as_posix()


def _in_repository(place: SourceRef | None, new: PolicyDocument) -> SourceRef | None:
    """Code scanning shows only files of the repository: a rule of a built-in pack (or of a
    file outside the current folder) is reported at NEW's `extends` line instead."""
    from appshield.document import SourceRef
    from appshield.policy.diff import key_place

    if place is None or not new.files or not _uri(place.file or "").startswith("file:"):
        return place
    top = new.files[0]
    return key_place(top, ("extends",)) or SourceRef(top, 1, 1)


def _location(source: SourceRef, message: str | None = None, ident: int | None = None) -> Any:
    location: dict[str, Any] = {}
    if ident is not None:
        location["id"] = ident
    location["physicalLocation"] = {
        "artifactLocation": {"uri": _uri(source.file or "policy.yaml")},
        "region": {"startLine": source.line, "startColumn": max(1, source.column)},
    }
    if message:
        location["message"] = {"text": message}
    return location


def _message(change: Change) -> str:
    from appshield.policy.diff import brief

    text = change.summary
    if change.old_rule or change.new_rule:
        text += f" (decided by {change.new_rule} in NEW, {change.old_rule} in OLD)"
    if change.examples:
        shown = "; ".join(brief(w) for w in change.examples)
        text += f". {change.op_count} witness operation{'s' if change.op_count != 1 else ''}"
        text += f", e.g. {shown}"
    return text + "."


def _as_sarif(result: DiffResult, old: PolicyDocument, new: PolicyDocument) -> dict[str, Any]:
    rule_ids = list(_KINDS)
    rules = []
    for ident, name, level, text in _KINDS.values():
        rule: dict[str, Any] = {
            "id": ident,
            "name": name,
            "shortDescription": {"text": text},
            "fullDescription": {"text": text + " Found by `appshield diff` on compiled rules."},
            "defaultConfiguration": {"level": level},
            "help": {
                "text": "Review the change: if the new capability is intended, accept it;"
                " otherwise restore the rule. See docs/lifecycle.md.",
            },
            "properties": {"tags": ["security", "appshield-policy"]},
        }
        if level == "error":
            rule["properties"]["security-severity"] = "7.0"
        rules.append(rule)
    results = []
    for change in (*result.widened, *result.narrowed):
        key = (change.direction, change.kind)
        ident, _name, level, _text = _KINDS[key]
        entry: dict[str, Any] = {
            "ruleId": ident,
            "ruleIndex": rule_ids.index(key),
            "level": level,
            "message": {"text": _message(change)},
        }
        place = _in_repository(_place(change, new), new)
        if place is not None:
            entry["locations"] = [_location(place)]
        if change.old_source is not None:
            entry["relatedLocations"] = [
                _location(change.old_source, f"OLD rule {change.old_rule}", 1)
            ]
        fingerprint = hashlib.sha256(repr(change.key).encode()).hexdigest()[:32]
        entry["partialFingerprints"] = {"appshieldDiffChange/v1": fingerprint}
        entry["properties"] = {
            "category": change.category,
            "kind": change.kind,
            "oldRule": change.old_rule,
            "newRule": change.new_rule,
            "witnessCount": change.op_count,
        }
        results.append(entry)
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "appshield",
                        "version": __version__,
                        "semanticVersion": __version__,
                        "rules": rules,
                    }
                },
                "results": results,
                "columnKind": "unicodeCodePoints",
            }
        ],
    }
