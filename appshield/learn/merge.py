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

from appshield.learn.generalise import Draft, GrantDraft
from appshield.learn.records import Observation
from appshield.learn.render import render_grants, render_packages, render_rules
from appshield.policy import Policy

__all__ = ["MergeResult", "append_grants", "append_rules", "not_granted", "split_by_policy"]


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


def not_granted(policy: Policy, observations: Iterable[Observation]) -> list[Observation]:
    """The observations whose answerable distributions the policy's grants do not cover yet
    (all of them that name a distribution, when the policy has no `packages` section)."""
    packages = policy.document.packages
    seen = [o for o in observations if o.packages]
    if packages is None:
        return seen
    from appshield.attribution import UNATTRIBUTED, Dist
    from appshield.decision import Decision
    from appshield.grants import GrantTable

    table = GrantTable(packages, policy.mode)
    allowed = Decision("allow", "learn", False, policy.mode)
    out = []
    for obs in seen:
        answerable = tuple(
            UNATTRIBUTED if name == "?" else Dist(name, version) for name, version in obs.packages
        )
        if table.decide(obs.operation, allowed, answerable).action != "allow":
            out.append(obs)
    return out


_INDENTED_KEY = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z0-9_.-]+)\s*:\s*(?P<rest>.*)$")


def _key_at(lines: Sequence[str], start: int, end: int, indent: int, key: str) -> int | None:
    for i in range(start, end):
        found = _INDENTED_KEY.match(lines[i])
        if found and len(found.group("indent")) == indent and _norm(found.group("key")) == key:
            return i
    return None


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _block_end(lines: Sequence[str], start: int, indent: int) -> int:
    """Just past the last content line of the block opened at `start` (lines indented more
    than `indent`)."""
    end = start + 1
    last = start + 1
    while end < len(lines):
        line = lines[end]
        if line.strip() and not line.lstrip().startswith("#"):
            if len(line) - len(line.lstrip()) <= indent:
                break
            last = end + 1
        end += 1
    return last


def _rest(line: str) -> str:
    found = _INDENTED_KEY.match(line)
    return found.group("rest").split("#")[0].strip() if found else ""


def _flow_error(what: str) -> ValueError:
    return ValueError(
        f"cannot add to {what} written in flow style ({{...}} or [...]); write it as a block"
        " mapping or list and merge again"
    )


def append_grants(text: str, grants: Sequence[GrantDraft]) -> str:
    """`text` with `grants` added to its `packages.grants` (a new `packages` section when it
    has none): a new distribution's grant at the end, a known one's entries at the end of
    their category's list. Nothing else in the file changes."""
    if not grants:
        return text
    lines = text.splitlines()
    top = next((i for i, line in enumerate(lines) if re.match(r"^packages\s*:", line)), None)
    if top is None:
        suffix = "" if text.endswith("\n") or not text else "\n"
        return text + suffix + render_packages(grants)
    if _rest(lines[top]):
        raise _flow_error("`packages`")
    section_end = _block_end(lines, top, 0)
    found = _key_at(lines, top + 1, section_end, 2, "grants")
    if found is None:
        lines[section_end:section_end] = ["  grants:"]
        found, section_end = section_end, section_end + 1
    elif _rest(lines[found]) == "{}":
        lines[found] = "  grants:"
    elif _rest(lines[found]):
        raise _flow_error("`packages.grants`")
    for grant in grants:
        lines = _add_grant(lines, found, grant)
    return "\n".join(lines) + "\n"


def _add_grant(lines: list[str], grants_line: int, grant: GrantDraft) -> list[str]:
    grants_end = _block_end(lines, grants_line, 2)
    at = _key_at(lines, grants_line + 1, grants_end, 4, _norm(grant.name))
    if at is None:
        return lines[:grants_end] + render_grants([grant]) + lines[grants_end:]
    rest = _rest(lines[at])
    if rest == "{}":
        lines[at] = lines[at].split(":")[0] + ":"
    elif rest:
        raise _flow_error(f"the grant of {grant.name!r}")
    for draft_lines, category in _by_category(grant):
        grant_end = _block_end(lines, at, 4)
        where = _key_at(lines, at + 1, grant_end, 6, category)
        if where is None:
            lines = [*lines[:grant_end], f"      {category}:", *draft_lines, *lines[grant_end:]]
            continue
        if _rest(lines[where]):
            raise _flow_error(f"the {category} entries of {grant.name!r}")
        end = _block_end(lines, where, 6)
        lines = lines[:end] + draft_lines + lines[end:]
    return lines


def _by_category(grant: GrantDraft) -> list[tuple[list[str], str]]:
    """Each category's new entries as lines at the grant-entry indent."""
    rendered = render_grants([grant])
    out: list[tuple[list[str], str]] = []
    for line in rendered:
        found = re.match(r"^      (?P<category>[a-z]+):$", line)
        if found:
            out.append(([], found.group("category")))
        elif out and line.startswith("        "):
            out[-1][0].append(line)
    return out
