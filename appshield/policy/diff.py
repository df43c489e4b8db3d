"""Capability diff of two policies: what NEW allows that OLD did not, and the reverse.

    result = diff_documents(load_file("old.yaml"), load_file("new.yaml"))
    result.widened    # changes that let more through (or report less) under NEW
    result.narrowed   # changes that block (or report) more under NEW

The comparison runs on the compiled rules, never on the text: the engine decides a set of
witness operations (`appshield.policy._witnesses`) under both policies, and every operation
decided differently is a change, grouped by category and by the two deciding rules. So a
reworded rule, a reordered list or a glob rewritten into an equal one is no change, and a
reported widening always comes with a concrete operation that OLD denies and NEW allows.

Both policies are compiled in enforce mode, so that rules are compared by what they would
do; the policies' own `mode`, their `defaults` and their `protections` are compared as
settings of their own. `protections.policy_files` guards each policy's own files, which
differ between two files by nature, so the file witnesses leave it out and only its setting
is compared. Telemetry exporter allows depend on the environment: only the setting counts.

Strictness, from least to most: allow, alert (allowed, reported), a deny that only reports
(its rule's `mode: monitor`), a deny that blocks. A change to a less strict outcome is a
widening: kind `allowed` when OLD blocked and NEW does not, `unreported` when neither
blocks and NEW reports less. A change to a stricter one is a narrowing (`blocked` or
`reported`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

from appshield.decision import Decision
from appshield.document import Grant, PolicyDocument, Protections, RuleSpec, SourceRef
from appshield.engine import compile_policy
from appshield.operations import CATEGORIES
from appshield.policy._witnesses import LIMIT, Witness, witnesses

__all__ = [
    "Change",
    "DiffResult",
    "diff_documents",
    "key_place",
    "strictness",
]

Direction = Literal["widened", "narrowed"]

_EXAMPLES = 3  # witnesses kept per change


class Change(NamedTuple):
    """One difference. `category` is a rule category, or `mode`, `defaults`, `protections`.

    old_rule / new_rule: the deciding rule under each policy (`default:<category>` when none
    matched), with where it is written (None for defaults and implicit rules). `count`: how
    many witnesses were decided this way; `examples`: a few of them.
    """

    direction: Direction
    kind: str
    category: str
    summary: str
    old_rule: str | None = None
    new_rule: str | None = None
    old_source: SourceRef | None = None
    new_source: SourceRef | None = None
    old_outcome: str | None = None
    new_outcome: str | None = None
    op_count: int = 0
    examples: tuple[Witness, ...] = ()

    @property
    def key(self) -> tuple[str, str, str, str | None, str | None]:
        """What identifies a change independently of direction (diff(A, B) widened against
        diff(B, A) narrowed compare equal on it, with old and new swapped)."""
        return (self.kind, self.category, self.summary, self.old_rule, self.new_rule)


class DiffResult(NamedTuple):
    widened: tuple[Change, ...]
    narrowed: tuple[Change, ...]
    checked: int  # witness operations decided under both policies
    truncated: tuple[str, ...]  # categories whose witnesses were cut at the limit

    @property
    def widens(self) -> bool:
        return bool(self.widened)


def strictness(decision: Decision) -> int:
    """0 allow, 1 alert, 2 a deny that only reports, 3 a deny that blocks."""
    if decision.action == "allow":
        return 0
    if decision.action == "alert":
        return 1
    return 3 if decision.blocked else 2


_OUTCOME = ("allow", "alert", "deny (reported only)", "deny")


def _kind(direction: Direction, old: int, new: int) -> str:
    if direction == "widened":
        return "allowed" if old == 3 else "unreported"
    return "blocked" if new == 3 else "reported"


def _sources(document: PolicyDocument) -> dict[str, SourceRef]:
    return {r.id: r.source for r in document.rules if r.source is not None}


def diff_documents(old: PolicyDocument, new: PolicyDocument, *, limit: int = LIMIT) -> DiffResult:
    """Compare two validated policies by capability."""
    found = witnesses(old, new, limit=limit)
    changes = [*_setting_changes(old, new), *_decision_changes(old, new, found.items)]
    checked = sum(len(v) for v in found.items.values())
    package_changes, package_checked = _package_changes(old, new, limit)
    changes.extend(package_changes)
    checked += package_checked
    widened = tuple(c for c in changes if c.direction == "widened")
    narrowed = tuple(c for c in changes if c.direction == "narrowed")
    return DiffResult(widened, narrowed, checked, found.truncated)


def _decision_changes(
    old: PolicyDocument, new: PolicyDocument, found: Mapping[str, list[Witness]]
) -> list[Change]:
    # Compiled without the policy-file protection (each policy guards its own files) and
    # without the environment's telemetry allows: see the module docstring.
    old_compiled = compile_policy(old, "enforce", cache_size=0)
    new_compiled = compile_policy(new, "enforce", cache_size=0)
    old_sources, new_sources = _sources(old), _sources(new)
    groups: dict[tuple[Any, ...], list[Any]] = {}
    for category in CATEGORIES:
        default_changed = old.defaults[category] != new.defaults[category]
        for witness in found[category]:
            before = old_compiled.decide_uncached(witness.op, witness.stack)
            after = new_compiled.decide_uncached(witness.op, witness.stack)
            a, b = strictness(before), strictness(after)
            if a == b:
                continue
            if default_changed and before.rule_id == after.rule_id == f"default:{category}":
                continue  # the defaults change reports it
            direction: Direction = "widened" if b < a else "narrowed"
            key = (direction, _kind(direction, a, b), category, before.rule_id, after.rule_id)
            group = groups.get(key)
            if group is None:
                groups[key] = [0, [], a, b]
                group = groups[key]
            group[0] += 1
            if len(group[1]) < _EXAMPLES and all(brief(w) != brief(witness) for w in group[1]):
                group[1].append(witness)  # examples that read differently
    out = []
    for (direction, kind, category, old_rule, new_rule), (count, examples, a, b) in sorted(
        groups.items(), key=lambda item: repr(item[0])
    ):
        verb = "allows" if direction == "widened" else "denies"
        was = "denied" if direction == "widened" else "allowed"
        out.append(
            Change(
                direction,
                kind,
                category,
                f"{category}: NEW {_OUTCOME[b]} where OLD {_OUTCOME[a]}"
                if kind in ("unreported", "reported")
                else f"{category}: NEW {verb} what OLD {was}",
                old_rule,
                new_rule,
                old_sources.get(old_rule),
                new_sources.get(new_rule),
                _OUTCOME[a],
                _OUTCOME[b],
                count,
                tuple(examples),
            )
        )
    return out


def _setting_changes(old: PolicyDocument, new: PolicyDocument) -> list[Change]:
    out: list[Change] = []
    old_mode, new_mode = old.mode or "enforce", new.mode or "enforce"
    if old_mode != new_mode:
        direction: Direction = "widened" if new_mode == "monitor" else "narrowed"
        kind = "allowed" if direction == "widened" else "blocked"
        out.append(
            Change(direction, kind, "mode", f"mode: {old_mode} -> {new_mode}", "mode", "mode")
        )
    for category in CATEGORIES:
        a, b = old.defaults[category], new.defaults[category]
        if a == b:
            continue
        rank = {"allow": 0, "alert": 1, "deny": 3}
        direction = "widened" if rank[b] < rank[a] else "narrowed"
        rule = f"default:{category}"
        out.append(
            Change(
                direction,
                _kind(direction, rank[a], rank[b]),
                "defaults",
                f"defaults.{category}: {a} -> {b}",
                rule,
                rule,
                old_outcome=_OUTCOME[rank[a]],
                new_outcome=_OUTCOME[rank[b]],
            )
        )
    # Turning a protection off widens (an implicit deny goes away), except the telemetry
    # exporter's, which is an implicit allow.
    for name in ("policy_files", "unshielded_children", "telemetry_exporter"):
        a_on, b_on = getattr(old.protections, name), getattr(new.protections, name)
        if a_on == b_on:
            continue
        allows = name == "telemetry_exporter"
        widened = b_on if allows else a_on
        direction = "widened" if widened else "narrowed"
        kind = "allowed" if widened else "blocked"
        state = {True: "on", False: "off"}
        rule = f"implicit:{name}"
        summary = f"protections.{name}: {state[a_on]} -> {state[b_on]}"
        out.append(Change(direction, kind, "protections", summary, rule, rule))
    return out


def _package_changes(
    old: PolicyDocument, new: PolicyDocument, limit: int
) -> tuple[list[Change], int]:
    """What the `packages` sections let each distribution do, compared per distribution and
    category (docs/packages.md, docs/lifecycle.md). A distribution's capability is its grant
    (or, without one, the section's `default`), compared as a policy of its own: deny by
    default, the grant's conditions as allow rules, decided on the same witnesses. Adding the
    section narrows, removing it widens; `default` and `first_party` are settings."""
    a, b = old.packages, new.packages
    if a is None and b is None:
        return [], 0
    if a is None or b is None:
        direction: Direction = "widened" if b is None else "narrowed"
        summary = "packages: section removed" if b is None else "packages: section added"
        kind = "allowed" if b is None else "blocked"
        return [Change(direction, kind, "packages", summary, "packages", "packages")], 0
    out: list[Change] = []
    if a.default != b.default:
        direction = "widened" if b.default == "allow" else "narrowed"
        summary = f"packages.default: {a.default} -> {b.default}"
        kind = "allowed" if direction == "widened" else "blocked"
        out.append(Change(direction, kind, "packages", summary, "packages", "packages"))
    for name in sorted(set(b.first_party) - set(a.first_party)):
        # first-party code answers to the ordinary rules only: its grant no longer binds it
        summary = f"packages.first_party: + {name}"
        out.append(Change("widened", "allowed", "packages", summary, "packages", "packages"))
    for name in sorted(set(a.first_party) - set(b.first_party)):
        summary = f"packages.first_party: - {name}"
        out.append(Change("narrowed", "blocked", "packages", summary, "packages", "packages"))
    checked = 0
    for name in sorted(set(a.grants) | set(b.grants)):
        before, after = a.grants.get(name), b.grants.get(name)
        rule = f"packages.grants.{name}"
        old_source = before.source if before is not None else None
        new_source = after.source if after is not None else None
        old_version = before.version if before is not None else None
        new_version = after.version if after is not None else None
        if before is not None and after is not None and old_version != new_version:
            # A doubt is a widening: another specifier may cover versions the old did not.
            summary = f"{rule}.version: {old_version or 'any'} -> {new_version or 'any'}"
            out.append(
                Change(
                    "widened", "allowed", "packages", summary, rule, rule, old_source, new_source
                )
            )
        found = diff_documents(
            _grant_document(before, a.default), _grant_document(after, b.default), limit=limit
        )
        checked += found.checked
        for change in (*found.widened, *found.narrowed):
            if change.category == "defaults":
                continue  # the grant document's own default, said by the summary below
            out.append(
                change._replace(
                    category=f"packages:{name}:{change.category}",
                    summary=f"{name}: {change.summary}",
                    old_rule=rule if before is not None else "packages.default",
                    new_rule=rule if after is not None else "packages.default",
                    old_source=old_source,
                    new_source=new_source,
                )
            )
        if (before is None) != (after is None):
            summary = f"{rule}: {'added' if after is not None else 'removed'}"
            shown = Change("narrowed", "blocked", "packages", summary, rule, rule)
            if found.widened and not found.narrowed:
                shown = shown._replace(direction="widened", kind="allowed")
            if found.widened or found.narrowed:
                out.append(shown._replace(old_source=old_source, new_source=new_source))
    return out, checked


def _grant_document(grant: Grant | None, default: str) -> PolicyDocument:
    """One distribution's capability as a policy: without a grant, what `default` gives it
    (everything the ordinary rules allow, or nothing); with one, its conditions."""
    everything = grant is None and default == "allow"
    rules = tuple(
        RuleSpec(f"grant-{index}-{category}", category, "allow", condition)
        for index, (category, conditions) in enumerate(
            sorted((grant.allows if grant else {}).items())
        )
        for condition in conditions
    )
    return PolicyDocument(
        version=1,
        name="grant",
        mode="enforce",
        defaults={c: ("allow" if everything else "deny") for c in CATEGORIES},
        rules=rules,
        protections=Protections(False, False, False),
        files=(),
    )


def setting_place(document: PolicyDocument, change: Change) -> SourceRef | None:
    """Where a `mode`, `defaults` or `protections` change is written in `document`'s top
    file (the key's line; the file's first line when the key is inherited or absent)."""
    if not document.files:
        return None
    path = document.files[0]
    keys: tuple[str, ...]
    if change.category == "defaults":
        keys = ("defaults", change.summary.split(":")[0].split(".")[1])
    elif change.category == "protections":
        keys = ("protections", change.summary.split(":")[0].split(".")[1])
    elif change.category == "mode":
        keys = ("mode",)
    else:
        return None
    return key_place(path, keys) or key_place(path, keys[:1]) or SourceRef(path, 1, 1)


def key_place(path: str, keys: tuple[str, ...]) -> SourceRef | None:
    from appshield.policy._yaml import parse

    try:
        with open(path, encoding="utf-8") as handle:
            tree, _problems = parse(handle.read())
    except (OSError, UnicodeDecodeError):
        return None
    node = tree
    place = None
    for key in keys:
        if node is None or node.kind != "map":
            return None
        entry = next((kv for kv in node.items() if kv[0].value == key), None)
        if entry is None:
            return None
        place, node = entry
    if place is None or place.line is None:
        return None
    return SourceRef(path, place.line, place.col or 1)


def describe(witness: Witness) -> dict[str, Any]:
    """A witness as plain data (for JSON and the text table)."""
    op = witness.op
    fields = {
        name: list(value) if isinstance(value, tuple) else value
        for name, value in zip(op._fields, op, strict=True)
        if value not in (None, (), False)
    }
    out: dict[str, Any] = {"category": op.category, "target": op.target, "fields": fields}
    if witness.stack:
        out["stack"] = list(witness.stack)
    return out


def brief(witness: Witness) -> str:
    """One line: `read /etc/app.conf`, `connect api.example.com:443 (tcp)`, ..."""
    op: Any = witness.op
    if op.category == "file":
        text = f"{op.access} {op.path}"
        if op.resolved is not None and op.resolved != op.path:
            text += f" -> {op.resolved}"
    elif op.category == "network":
        text = f"{op.operation} {op.target}"
        if op.names:  # the address is known only as what these names resolved to
            text += f" (named {', '.join(op.names)})"
        if op.operation != "resolve":  # a name lookup has no transport of its own
            text += f" ({op.transport})"
    elif op.category == "process":
        text = "exec " + " ".join(op.argv or (op.executable,))
        if op.argv and op.argv[0] != op.executable:
            text += f" [{op.executable}]"
        text += " (shell)" if op.shell else ""
        text += " (unshielded)" if op.unshielded else ""
    else:
        text = f"import {op.target}"
    if witness.stack:
        text += f" from {','.join(witness.stack)}"
    return text


def shown_path(path: str) -> str:
    """A path relative to the current folder when it is below it."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def rule_places(document: PolicyDocument) -> Mapping[str, SourceRef]:
    return _sources(document)
