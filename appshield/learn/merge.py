"""`--merge`: add to an existing policy only what it does not already allow.

The existing file is never re-serialised: new rules are appended as text at the end of its
`rules:` list, so a human's comments, ordering and formatting survive. An operation the
existing policy denies through one of its *own* rules (not a default) is left alone and
reported: a human decided that, and an allow would not override a deny anyway.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from appshield.learn.generalise import Draft
from appshield.learn.records import Observation
from appshield.learn.render import render_rules
from appshield.policy import Policy

__all__ = ["MergeResult", "append_rules", "split_by_policy"]


@dataclass
class MergeResult:
    new: list[Observation]
    denied_by_rule: list[tuple[Observation, str]]


def split_by_policy(policy: Policy, observations: Iterable[Observation]) -> MergeResult:
    """Which observations the policy does not allow yet, and which its own rules deny."""
    result = MergeResult([], [])
    for obs in observations:
        decision = policy.decide(obs.operation, obs.stack)
        if decision.action != "deny":
            continue  # allowed, or alerted (an alert is allowed, just reported)
        if decision.rule_id.startswith("default:"):
            result.new.append(obs)
        else:
            result.denied_by_rule.append((obs, decision.rule_id))
    return result


_TOP_KEY = re.compile(r"^[A-Za-z_][\w-]*\s*:")
_RULES_KEY = re.compile(r"^rules\s*:\s*(?P<rest>.*)$")


def _rules_block(lines: Sequence[str]) -> tuple[int, int] | None:
    """(index of the `rules:` line, index just past its last item line), or None."""
    start = next((i for i, line in enumerate(lines) if _RULES_KEY.match(line)), None)
    if start is None:
        return None
    end = start + 1
    last_content = start + 1
    while end < len(lines):
        line = lines[end]
        if _TOP_KEY.match(line):
            break
        if line.strip() and not line.lstrip().startswith("#"):
            last_content = end + 1
        end += 1
    if end == len(lines):
        # At the end of the file, trailing comments stay above the new rules too.
        last_content = len(lines)
        while last_content > start + 1 and not lines[last_content - 1].strip():
            last_content -= 1
    return start, last_content


def _item_indent(lines: Sequence[str]) -> str:
    for line in lines:
        m = re.match(r"^(\s*)- ", line)
        if m:
            return m.group(1)
    return "  "


def append_rules(
    text: str, drafts: Sequence[Draft], taken: set[str], *, notes: Sequence[str] = ()
) -> str:
    """`text` with rules for `drafts` added at the end of its `rules:` list, below the
    comment lines `notes` (only when there is a rule to add)."""
    if not drafts:
        return text
    lines = text.splitlines()
    block = _rules_block(lines)
    if block is None:
        suffix = "" if text.endswith("\n") or not text else "\n"
        comments = "".join(f"  # {note}\n" for note in notes)
        return text + suffix + "rules:\n" + comments + render_rules(drafts, taken)
    start, insert_at = block
    rest = _RULES_KEY.match(lines[start]).group("rest").split("#")[0].strip()  # type: ignore[union-attr]
    if rest == "[]":
        lines[start] = "rules:"
    elif rest:
        raise ValueError(
            "cannot append to a `rules:` list written in flow style ([...]); write it as a"
            " block list (one `- id:` per rule) and merge again"
        )
    indent = _item_indent(lines[start + 1 : insert_at])
    new = [f"{indent}# {note}" for note in notes]
    new += render_rules(drafts, taken, indent).rstrip("\n").splitlines()
    merged = lines[:insert_at] + new + lines[insert_at:]
    return "\n".join(merged) + "\n"
