"""The `packages` section of a policy: per-distribution grants (docs/packages.md).

    packages:
      default: deny              # a third-party distribution without an applicable grant
      first_party: [myapp]       # distributions that are the application's own code
      grants:
        requests:
          version: ">=2,<3"      # optional; the grant applies only to these versions
          network: [{host: api.example.com, port: 443}]
          file: [{path: "{tmp}/**"}]

A grant's entries per category are match fields of that category, as in a rule's `match`;
one entry that holds grants the operation. Problems are reported at their place, as for rules.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, cast

from appshield.decision import Action
from appshield.document import MATCH_FIELDS, Condition, Grant, Packages, SourceRef
from appshield.operations import CATEGORIES
from appshield.policy import _fields
from appshield.policy._check import Checker
from appshield.policy._nodes import Node
from appshield.versions import SpecifierError, check_specifier

__all__ = ["PACKAGES_KEYS", "merge_packages", "normalise_name", "read_packages"]

PACKAGES_KEYS = ("default", "first_party", "grants")
GRANT_KEYS = ("version", *CATEGORIES)
PACKAGE_DEFAULTS = ("deny", "allow")
# A distribution name as PEP 508 allows it.
_NAME = re.compile(r"^([A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9._-]*[A-Za-z0-9])$")


def normalise_name(name: str) -> str:
    """PEP 503: lower-case, every run of `-`, `_` and `.` as one `-`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_packages(
    ck: Checker, node: Node, file: str | None, variables: Mapping[str, tuple[str, ...]]
) -> Packages | None:
    """The section, or None after reporting its problems."""
    entries = ck.mapping(node, "packages", PACKAGES_KEYS, "in packages")
    if entries is None:
        return None
    ok = True
    default: Action = "deny"
    if "default" in entries:
        chosen = ck.choice(entries["default"][1], "packages.default", PACKAGE_DEFAULTS)
        ok = chosen is not None
        default = cast("Action", chosen or "deny")
    first_party: tuple[str, ...] = ()
    if "first_party" in entries:
        names = ck.one_or_many(
            entries["first_party"][1], "packages.first_party", lambda n: _name(ck, n)
        )
        ok = ok and names is not None
        first_party = tuple(dict.fromkeys(names or ()))
    grants: dict[str, Grant] = {}
    if "grants" in entries:
        read = _grants(ck, entries["grants"][1], file, variables)
        ok = ok and read is not None
        grants = read or {}
    for name in first_party:
        if name in grants:
            ck.report(
                entries["first_party"][1],
                f"packages: {name!r} is both first_party and granted (first-party code is "
                "governed by the ordinary rules only)",
            )
            ok = False
    if not ok:
        return None
    return Packages(default, first_party, MappingProxyType(grants))


def _name(ck: Checker, node: Node) -> str | None:
    text = ck.text(node, "a distribution name")
    if text is None:
        return None
    if not _NAME.match(text):
        ck.report(node, f"{text!r} is not a distribution name")
        return None
    return normalise_name(text)


def _grants(
    ck: Checker, node: Node, file: str | None, variables: Mapping[str, tuple[str, ...]]
) -> dict[str, Grant] | None:
    if node.kind == "scalar" and node.value is None and node.ytype == "null":
        return {}
    if node.kind != "map":
        ck.wrong_type(node, "packages.grants", "a mapping of distribution names")
        return None
    out: dict[str, Grant] = {}
    ok = True
    for key, value in node.items():
        name = _name(ck, key)
        if name is None:
            ok = False
            continue
        if name in out:
            ck.report(
                key,
                f"packages.grants: {name!r} is granted twice (names are compared "
                "as PEP 503 normalises them)",
            )
            ok = False
            continue
        grant = _grant(ck, name, value, file, variables, key)
        if grant is None:
            ok = False
        else:
            out[name] = grant
    return out if ok else None


def _grant(
    ck: Checker,
    name: str,
    node: Node,
    file: str | None,
    variables: Mapping[str, tuple[str, ...]],
    key: Node,
) -> Grant | None:
    where = f"packages.grants.{name}"
    if node.kind == "scalar" and node.value is None and node.ytype == "null":
        entries: dict[str, tuple[Node, Node]] = {}  # `name:` alone: granted nothing
    else:
        found = ck.mapping(node, where, GRANT_KEYS, f"in {where}")
        if found is None:
            return None
        entries = found
    ok = True
    version: str | None = None
    if "version" in entries:
        version_node = entries["version"][1]
        version = ck.text(version_node, f"{where}.version")
        if version is not None:
            try:
                check_specifier(version)
            except SpecifierError as exc:
                ck.report(version_node, f"{where}.version: {exc}")
                ok = False
        else:
            ok = False
    allows: dict[str, tuple[Condition, ...]] = {}
    for category in CATEGORIES:
        if category not in entries:
            continue
        conditions = _conditions(
            ck, entries[category][1], f"{where}.{category}", category, variables
        )
        if conditions is None:
            ok = False
        else:
            allows[category] = conditions
    if not ok:
        return None
    source = SourceRef(file, key.line, key.col or 1) if key.line is not None else None
    return Grant(name, version, MappingProxyType(allows), source)


def _conditions(
    ck: Checker,
    node: Node,
    what: str,
    category: str,
    variables: Mapping[str, tuple[str, ...]],
) -> tuple[Condition, ...] | None:
    if node.kind != "seq":
        ck.wrong_type(node, what, "a list of match-field mappings ([{}] grants everything)")
        return None
    out: list[Condition] = []
    ok = True
    for item in node.elements():
        entries = ck.mapping(item, what, MATCH_FIELDS[category], f"in {what}")
        if entries is None:
            ok = False
            continue
        fields = _fields.read_condition_fields(ck, entries, category, variables)
        if fields is None:
            ok = False
            continue
        out.append(Condition(fields=MappingProxyType(fields)))
    return tuple(out) if ok else None


def merge_packages(earlier: Packages | None, later: Packages | None) -> Packages | None:
    """A later layer (the extending file) over an earlier one (what it extends): its default
    wins, first-party names add up, and its grant for a name replaces the earlier one."""
    if earlier is None or later is None:
        return later if later is not None else earlier
    grants: dict[str, Any] = dict(earlier.grants)
    grants.update(later.grants)
    first_party = tuple(dict.fromkeys((*earlier.first_party, *later.first_party)))
    return Packages(later.default, first_party, MappingProxyType(grants))
