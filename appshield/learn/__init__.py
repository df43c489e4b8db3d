"""`appshield learn`: write a least-privilege policy from what a real run did.

    appshield learn [--out P] [--merge P] -- CMD [ARGS...]

runs CMD with every operation observed and nothing blocked, in CMD (if it is Python) and in
every Python child, then writes a v1 policy with `defaults: deny` in all four categories and
one commented `allow` rule per generalised behaviour. With `--merge P` only the operations P
does not already allow are added, as new rules appended to P's `rules:` list.

The pieces, each usable on its own:
- `records`: the observations and their JSON-lines files (one per process);
- `recorder`: the reporter that writes them inside each shielded process;
- `paths` and `generalise`: observations -> rule drafts (where least privilege is widened on
  purpose: the interpreter's folders, run-specific names (pids, dates, tempfile's random
  parts), the app's own sources, `{python}` and numeric options, ephemeral ports, names over
  addresses);
- `render`: drafts -> YAML text with comments; `merge`: append to an existing file;
- `runner`: start the command under the learning shield and collect what it saw.
See docs/learning.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from appshield.learn.generalise import (
    Draft,
    GrantDraft,
    always_read_drafts,
    draft_rules,
    grant_drafts,
    run_names,
    stdlib_drafts,
)
from appshield.learn.merge import append_grants, append_rules, not_granted, split_by_policy
from appshield.learn.records import Observation, Roots, read_records
from appshield.learn.render import render_packages, render_policy
from appshield.policy import Policy

__all__ = [
    "LearnResult",
    "Observation",
    "Roots",
    "learn_policy",
    "merge_policy",
    "not_allowed",
    "read_records",
]


@dataclass
class LearnResult:
    """The policy text and what a reviewer should know about it."""

    text: str
    drafts: list[Draft] = field(default_factory=list)
    skipped: list[Observation] = field(default_factory=list)
    denied_by_rule: list[tuple[Observation, str]] = field(default_factory=list)
    grants: list[GrantDraft] = field(default_factory=list)


def _skip_note(obs: Observation) -> str:
    if ("?", "") in obs.packages:
        return f"{obs.operation.target} (code no distribution could be shown to own)"
    if obs.operation.category == "process":
        return f"{obs.operation.target} (a Python child without the shield)"
    return f"{obs.operation.target} (a native library not found on disk)"


def learn_policy(
    observations: Iterable[Observation],
    *,
    name: str = "learned",
    command: Sequence[str] = (),
    notes: Sequence[str] = (),
    strict_imports: bool = False,
) -> LearnResult:
    """A fresh policy that allows exactly the observations (generalised), denying the rest.
    `notes`: comment lines for the top (such as a run being cut short). `strict_imports`:
    list only the modules seen, without the rules for the standard library's pure-Python,
    lib-dynload extension, frozen and built-in modules (`stdlib_drafts`)."""
    observations = list(observations)
    drafts, skipped = draft_rules(observations)
    extra = always_read_drafts(drafts)
    if extra:  # next to the other file rules, before the network ones
        early = ("process", "file")
        at = max((i + 1 for i, d in enumerate(drafts) if d.category in early), default=0)
        drafts[at:at] = extra
    if not strict_imports:
        drafts += stdlib_drafts(o for o in observations if o.operation.category == "import")
    grants: list[GrantDraft] = []
    if any(o.packages for o in observations):
        # Installed distributions were answerable for some of it: a grant for each, so that
        # each may do only what its own code did (docs/packages.md).
        grants, unattributed = grant_drafts(observations)
        skipped += [o for o in unattributed if o not in skipped]
    skip_notes = sorted({_skip_note(o) for o in skipped})
    text = render_policy(drafts, name=name, command=command, skipped_notes=skip_notes, notes=notes)
    if grants or any(o.packages for o in observations):
        text += render_packages(grants)
    return LearnResult(text, drafts, skipped, grants=grants)


def merge_policy(
    path: str, observations: Iterable[Observation], *, notes: Sequence[str] = ()
) -> LearnResult:
    """The text of the policy file at `path` with rules added for what it does not allow;
    `notes` become comment lines above the added rules."""
    existing = Policy.from_file(path)
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    observations = list(observations)
    split = split_by_policy(existing, observations)
    # What is run-specific is known from the whole run, not only from what is new.
    drafts, skipped = draft_rules(split.new, run=run_names(observations))
    taken = {rule.id for rule in existing.document.rules}
    merged = append_rules(text, drafts, taken, notes=notes)
    grants: list[GrantDraft] = []
    ungranted = not_granted(existing, observations)
    if ungranted:
        # What installed distributions did that the policy's grants do not cover yet: added
        # to their grants (a new `packages` section when there is none).
        grants, unattributed = grant_drafts(ungranted, run=run_names(observations))
        skipped += [o for o in unattributed if o not in skipped]
        merged = append_grants(merged, grants)
    return LearnResult(merged, drafts, skipped, split.denied_by_rule, grants)


def not_allowed(policy: Policy, observations: Iterable[Observation]) -> list[Observation]:
    """The observations a policy would still report (deny or alert): the self-check run on
    every learned policy, and what the tests assert is empty."""
    packages = policy.document.packages
    table = None
    if packages is not None:
        from appshield.grants import GrantTable

        table = GrantTable(packages, policy.mode)
    out = []
    for obs in observations:
        decision = policy.decide(obs.operation, obs.stack)
        if table is not None and obs.packages and decision.action != "deny":
            decision = table.decide(obs.operation, decision, _answerable(obs))
        if decision.action != "allow":
            out.append(obs)
    return out


def _answerable(obs: Observation) -> tuple[object, ...]:
    from appshield.attribution import UNATTRIBUTED, Dist

    return tuple(
        UNATTRIBUTED if name == "?" else Dist(name, version) for name, version in obs.packages
    )
