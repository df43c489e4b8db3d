"""Rule drafts -> policy YAML text, with a comment on every rule.

The text is written by hand rather than by `yaml.safe_dump` so that each rule can carry its
comment (how often it was seen, from which modules, through which APIs) and so that merged
rules can be appended to a file a human has edited without re-serialising it. Every string
is written as a JSON string, which YAML reads back verbatim: no `host: no` or `port: 1:30`
surprises, no glob character mistaken for YAML syntax.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Iterable, Sequence
from typing import Any

from appshield.learn.generalise import Draft, GrantDraft
from appshield.operations import CATEGORIES

__all__ = ["render_policy", "render_rules", "rule_id"]

_MAX_LISTED = 3
_WIDTH = 96
# A longer list of plain strings is written as a flow list over several lines.
_MAX_BLOCK = 12


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value))


def _flow(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    return _scalar(value)


def _field(indent: str, key: str, value: Any) -> list[str]:
    """One match field: a flow value when it fits on a line, else a block list (a long list
    of plain strings, such as a generated list of module names: a flow list over lines)."""
    line = f"{indent}{key}: {_flow(value)}"
    if len(line) <= _WIDTH or not isinstance(value, list | tuple):
        return [line]
    if len(value) > _MAX_BLOCK and all(isinstance(v, str) for v in value):
        return _wrapped(f"{indent}{key}: [", indent + "  ", [_scalar(v) for v in value])
    return [f"{indent}{key}:", *(f"{indent}  - {_flow(v)}" for v in value)]


def _wrapped(first: str, indent: str, items: Sequence[str]) -> list[str]:
    """A flow list spread over lines of at most `_WIDTH` characters."""
    lines, current = [], first
    for n, item in enumerate(items):
        text = item + ("," if n < len(items) - 1 else "]")
        if current not in (first, indent) and len(current) + 1 + len(text) > _WIDTH:
            lines.append(current.rstrip())
            current = indent
        current += ("" if current in (first, indent) else " ") + text
    lines.append(current)
    return lines


def rule_id(draft: Draft, taken: set[str]) -> str:
    """A readable id (letters, digits, `-`), unique among `taken` (which it joins)."""
    text = draft.slug.replace("{", "").replace("}", "").replace("**", "all")
    base = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:60].rstrip("-")
    if not base.startswith(draft.category):
        base = f"{draft.category}-{base}"
    candidate, n = base, 2
    while candidate in taken:
        candidate, n = f"{base}-{n}", n + 1
    taken.add(candidate)
    return candidate


def _listed(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    more = len(items) - _MAX_LISTED
    return shown + (f" and {more} more" if more > 0 else "")


def _comment(draft: Draft) -> list[str]:
    if not draft.observations:
        return _note(draft.note)
    times = "once" if draft.count == 1 else f"{draft.count} times"
    line = f"# seen {times}"
    if draft.modules:
        line += f" from {_listed(draft.modules)}"
    if draft.apis:
        line += f" ({_listed(draft.apis)})"
    lines = [line]
    if draft.note:
        lines += _note(draft.note)
    return lines


def _note(text: str) -> list[str]:
    return [
        f"# {line}"
        for line in textwrap.wrap(text, _WIDTH - 4, break_long_words=False, break_on_hyphens=False)
    ]


def render_rules(drafts: Iterable[Draft], taken: set[str], indent: str = "  ") -> str:
    """The rules as block-sequence items at `indent`, each preceded by its comment."""
    out: list[str] = []
    inner = indent + "  "
    for draft in drafts:
        out.extend(indent + c for c in _comment(draft))
        out.append(f"{indent}- id: {rule_id(draft, taken)}")
        out.append(f"{inner}category: {draft.category}")
        out.append(f"{inner}action: allow")
        if draft.match:
            out.append(f"{inner}match:")
            for key, value in draft.match.items():
                out.extend(_field(f"{inner}  ", key, value))
        else:
            out.append(f"{inner}match: {{}}")
        if draft.unless:
            out.append(f"{inner}unless:")
            for key, value in draft.unless.items():
                out.extend(_field(f"{inner}  ", key, value))
    return "\n".join(out) + ("\n" if out else "")


def render_policy(
    drafts: Sequence[Draft],
    *,
    name: str = "learned",
    command: Sequence[str] = (),
    skipped_notes: Sequence[str] = (),
    notes: Sequence[str] = (),
) -> str:
    """A complete v1 policy: deny by default in all four categories, one allow per draft.
    `notes`: comment lines written first (such as a run being cut short)."""
    head = ["# Written by `appshield learn`"]
    if command:
        # one comment line, whatever the arguments hold (`python -c "...\n..."`)
        head[0] += ": " + " ".join(" ".join(command).split())[:200]
    head += [f"# {' '.join(note.split())}" for note in notes]
    head += [
        "# It allows exactly what was seen and denies everything else. Review it, then enforce",
        "# it with `appshield run --policy FILE -- CMD`; add more runs with `--merge FILE`.",
        "# Consider `extends: [appshield:baseline]` too (see docs/packs.md).",
    ]
    head += [f"# not allowed: {note}" for note in skipped_notes]
    body = [
        "version: 1",
        f"name: {_scalar(name)}",
        "mode: enforce",
        "defaults:",
        *(f"  {c}: deny" for c in CATEGORIES),
    ]
    rules = render_rules(drafts, set())
    body.append("rules:" if rules else "rules: []")
    return "\n".join(head + body) + "\n" + rules


def render_grants(grants: Sequence[GrantDraft], indent: str = "    ") -> list[str]:
    """The `grants:` entries: per distribution, its entries per category, each with the
    comment its rule would have had."""
    out: list[str] = []
    for grant in grants:
        out.append(f"{indent}# learned with {grant.name} {grant.version}")
        if not grant.drafts:
            out.append(f"{indent}{grant.name}: {{}}")
            continue
        out.append(f"{indent}{grant.name}:")
        by_category: dict[str, list[Draft]] = {}
        for draft in grant.drafts:
            by_category.setdefault(draft.category, []).append(draft)
        for category in CATEGORIES:
            drafts = by_category.get(category)
            if not drafts:
                continue
            out.append(f"{indent}  {category}:")
            for draft in drafts:
                out.extend(f"{indent}    {c}" for c in _comment(draft))
                out.append(f"{indent}    - {_flow_mapping(draft.match)}")
    return out


def render_packages(grants: Sequence[GrantDraft]) -> str:
    """A `packages` section: deny by default, a grant for each distribution seen."""
    lines = [
        "# Each installed distribution may do only what its grant says (docs/packages.md).",
        "packages:",
        "  default: deny",
    ]
    entries = render_grants(grants)
    lines += ["  grants:", *entries] if entries else ["  grants: {}"]
    return "\n".join(lines) + "\n"


def _flow_mapping(match: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{key}: {_flow(value)}" for key, value in match.items()) + "}"
