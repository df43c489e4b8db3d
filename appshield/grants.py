"""Per-distribution grants, decided (docs/packages.md). Pure: no frames, no metadata reads.

    table = GrantTable(document.packages, mode)
    table.decide(op, decision, responsible)   # the ordinary decision, narrowed by the grants

An operation is allowed only if the ordinary rules allow it (allow or alert) **and** every
distribution answerable for it (`appshield.attribution.responsible`) may do it:

- a distribution with a grant that applies (its `version` specifier met by the installed
  version) may do what one of the grant's entries for the category matches;
- a distribution without one may do what `packages.default` says: `deny` nothing, `allow`
  whatever the ordinary rules allow;
- `UNATTRIBUTED` (no frame could be shown to be the app's or a distribution's) may do
  nothing, whatever the default: a doubt is a denial.

The first answerable distribution that may not (innermost first) names the decision: rule
`package:<name>` (its grant has no entry for this), `packages:default` (no grant applies)
or `packages:unattributed`, with the distribution's name and version on the `Decision`.
Each grant's entries are compiled by the ordinary engine as allow rules, so they match
exactly as rules do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from os.path import realpath
from typing import Any

from appshield.attribution import UNATTRIBUTED, Dist
from appshield.decision import Action, Decision, Mode
from appshield.document import Grant, Packages, PolicyDocument, Protections, RuleSpec
from appshield.operations import CATEGORIES, FileOp, Operation
from appshield.versions import load_packaging, meets

__all__ = ["GrantTable", "naming"]

_DENY_ALL: dict[str, Action] = dict.fromkeys(CATEGORIES, "deny")
_NO_PROTECTIONS = Protections(False, False, False)


class GrantTable:
    """The `packages` section ready to decide. Immutable except for its caches."""

    def __init__(self, packages: Packages, mode: Mode) -> None:
        self.packages = packages
        self.mode: Mode = mode
        self._blocks = mode == "enforce"
        self._default_allows = packages.default == "allow"
        # (name, version) -> the grant's compiled entries, or None: no grant applies
        self._applicable: dict[Dist, Any] = {}

    def prepare(self, installed: Mapping[str, str]) -> None:
        """Decide now, for the installed versions (name -> version), which grants apply and
        compile them: a shield does this at install, so deciding never imports or compiles."""
        load_packaging()
        for name, version in installed.items():
            if name in self.packages.grants:
                compiled = self._compiled(Dist(name, version))
                if compiled is not None:
                    for category in CATEGORIES:
                        compiled.index(category)

    def _compiled(self, dist: Dist) -> Any:
        try:
            return self._applicable[dist]
        except KeyError:
            pass
        grant = self.packages.grants.get(dist.name)
        compiled = None
        if grant is not None and meets(dist.version, grant.version):
            compiled = _compile_grant(grant)
        self._applicable[dist] = compiled
        return compiled

    def holds(self, dist: Any, op: Operation) -> bool:
        """Whether `dist` may do `op` (before the ordinary rules, which must allow it too)."""
        if dist is UNATTRIBUTED:
            return False
        compiled = self._compiled(dist)
        if compiled is None:
            return self._default_allows
        if op.__class__ is FileOp and op.resolved is None:
            # A grant's path is an allow: it must match where the path really leads (the
            # hooks resolve only what the ordinary rules need).
            op = op._replace(resolved=realpath(op.path))
        return bool(compiled.decide(op).action == "allow")

    def decide(self, op: Operation, decision: Decision, answerable: Sequence[Any]) -> Decision:
        """`decision` (the ordinary rules'), or a denial naming the first answerable
        distribution that may not do `op`."""
        if decision.action == "deny":
            # The ordinary rules already refuse and name the rule; the report still names
            # the distribution that made the operation (the innermost answerable one).
            return naming(decision, answerable)
        for dist in answerable:
            if self.holds(dist, op):
                continue
            if dist is UNATTRIBUTED:
                return Decision("deny", "packages:unattributed", self._blocks, self.mode)
            rule = "packages:default" if self._compiled(dist) is None else f"package:{dist.name}"
            return Decision("deny", rule, self._blocks, self.mode, dist.name, dist.version)
        return naming(decision, answerable) if decision.action != "allow" else decision

    def grant_for(self, name: str) -> Grant | None:
        return self.packages.grants.get(name)


def naming(decision: Decision, answerable: Sequence[Any]) -> Decision:
    """`decision` naming the innermost answerable distribution (when one is)."""
    for dist in answerable:
        if type(dist) is Dist:
            return decision._replace(package=dist.name, package_version=dist.version)
    return decision


def _compile_grant(grant: Grant) -> Any:
    """A grant as a policy of allow rules over deny defaults, for the ordinary engine."""
    from appshield.engine import compile_policy

    rules = tuple(
        RuleSpec(f"grant:{grant.name}:{category}:{i}", category, "allow", condition)
        for category, conditions in grant.allows.items()
        for i, condition in enumerate(conditions)
    )
    document = PolicyDocument(1, None, "enforce", _DENY_ALL, rules, _NO_PROTECTIONS)
    return compile_policy(document, "enforce")
