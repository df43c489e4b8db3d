"""The validated policy, as plain data: what the loader produces and the engine compiles.

Match values are already normalised by the loader: every field holds a tuple of
alternatives (a list in YAML matches if any item does), variables such as `{home}` are
expanded, host names are lower-case, ports are (low, high) pairs, CIDRs are canonical
network strings.

    field (category)          value type in `Condition.fields[field]`
    executable (process)      tuple[str, ...]             globs
    args (process)            tuple[tuple[str, ...], ...] each a position-by-position glob vector
    shell, unshielded         tuple[bool, ...]
    command_line (process)    tuple[str, ...]             globs (`*` crosses `/` and spaces)
    path (file)               tuple[str, ...]             path globs, absolute after expansion
    access (file)             tuple[str, ...]             read | write | delete
    host (network)            tuple[str, ...]             host globs or IP literals, lower-case
    cidr (network)            tuple[str, ...]             canonical networks, `ipaddress` form
    port (network)            tuple[tuple[int, int], ...] inclusive ranges
    operation, transport      tuple[str, ...]
    module (import)           tuple[str, ...]             dotted globs
    origin, library (import)  tuple[str, ...]             path globs

The types are named tuples, not dataclasses, so that importing them at start-up is cheap
(see `appshield.operations`); change one with `._replace(...)`.
"""

from __future__ import annotations

from types import MappingProxyType

from appshield.decision import Action, Mode

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, NamedTuple
else:  # typing's own costs ~0.7 M instructions per class at start-up (appshield/_records.py)
    from appshield._records import NamedTuple

__all__ = [
    "MATCH_FIELDS",
    "Condition",
    "Grant",
    "Packages",
    "PolicyDocument",
    "Protections",
    "RuleSpec",
    "SourceRef",
]

# The match fields of each category, as the contract lists them.
MATCH_FIELDS: Mapping[str, tuple[str, ...]] = {
    "process": ("executable", "args", "shell", "command_line", "unshielded"),
    "file": ("path", "access"),
    "network": ("host", "cidr", "port", "operation", "transport"),
    "import": ("module", "origin", "library"),
}


class SourceRef(NamedTuple):
    """Where something was written: file (None for text given directly), 1-based line/column."""

    file: str | None
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file or '<policy>'}:{self.line}:{self.column}"


class Condition(NamedTuple):
    """Match fields combined with AND; `scope` (module globs) must also hold when given.

    An empty condition with no scope matches every operation of its category.
    """

    fields: Mapping[str, tuple[Any, ...]] = MappingProxyType({})
    scope: tuple[str, ...] | None = None


class RuleSpec(NamedTuple):
    id: str
    category: str
    action: Action
    match: Condition
    unless: Condition | None = None
    scope: tuple[str, ...] | None = None
    mode: Mode | None = None
    description: str | None = None
    source: SourceRef | None = None


class Protections(NamedTuple):
    policy_files: bool = True
    unshielded_children: bool = True
    # Not a denial but an implicit allow: the configured OpenTelemetry exporter's endpoints
    # and imports (`implicit:telemetry_exporter`, appshield.policy.exporter).
    telemetry_exporter: bool = True


class Grant(NamedTuple):
    """What one installed distribution's code may do (`packages.grants.<name>`).

    name: the distribution's normalised name (PEP 503: lower-case, runs of `-_.` as `-`).
    version: a version specifier (`>=2,<3`) the installed version must meet for the grant to
    apply; None: any version. allows: per category, the conditions (match fields, as in a
    rule's `match`) of which one must hold; a category absent here grants nothing of it.
    """

    name: str
    version: str | None
    allows: Mapping[str, tuple[Condition, ...]]
    source: SourceRef | None = None


class Packages(NamedTuple):
    """The `packages` section: per-distribution least privilege (docs/packages.md).

    default: what a third-party distribution without an applicable grant may do (`deny`:
    nothing; `allow`: whatever the ordinary rules allow). first_party: distributions whose code
    is the application's own (governed by the ordinary rules only). grants: by normalised name.
    """

    default: Action = "deny"
    first_party: tuple[str, ...] = ()
    grants: Mapping[str, Grant] = MappingProxyType({})


class PolicyDocument(NamedTuple):
    """A policy after `extends` are merged and `disable` applied.

    rules are in file order: the rules of extended policies first, in `extends` order,
    then the file's own. files: every policy file that contributed (for self-protection
    and reload), the top file first.
    """

    version: int
    name: str | None
    mode: Mode | None
    defaults: Mapping[str, Action]
    rules: tuple[RuleSpec, ...]
    protections: Protections = Protections()
    files: tuple[str, ...] = ()
    # None: no `packages` section (the ordinary rules alone decide, and nothing is attributed)
    packages: Packages | None = None
