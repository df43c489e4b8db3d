"""The command line's view of the `packages` section (docs/packages.md).

- `appshield check` warns (exit code unchanged) about a grant for a distribution that is not
  installed here, and about a `version` specifier the installed version does not meet;
- `appshield explain --package NAME[==VERSION] ...` decides an operation as if that
  distribution's code made it, called from the app (the distribution is then the one
  answerable): the ordinary rules, then its grant. Without `==VERSION`, the installed version.
"""

from __future__ import annotations

import os
from typing import Any

from appshield.attribution import Dist, normalise_name
from appshield.decision import Decision
from appshield.document import PolicyDocument
from appshield.versions import meets

__all__ = ["decide_for_package", "grant_warnings", "installed_version"]


def installed_version(name: str) -> str | None:
    import importlib.metadata as metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def grant_warnings(document: PolicyDocument, shown: str) -> list[str]:
    """`FILE:LINE:COL: warning: ...` for grants that cannot apply in this environment."""
    packages = document.packages
    if packages is None:
        return []
    out: list[str] = []
    for grant in packages.grants.values():
        place = shown
        if grant.source is not None:
            # the path as the user gave it, unless the grant came from an extended file
            source = grant.source.file
            where = shown if source is None or source == os.path.abspath(shown) else source
            place = f"{where}:{grant.source.line}:{grant.source.column}"
        version = installed_version(grant.name)
        if version is None:
            out.append(
                f"{place}: warning: packages.grants.{grant.name}: no distribution {grant.name!r}"
                " is installed here"
            )
        elif not meets(version, grant.version):
            out.append(
                f"{place}: warning: packages.grants.{grant.name}: the installed version"
                f" {version} does not meet {grant.version!r}; the grant does not apply"
                f" (packages.default: {packages.default})"
            )
    return out


def decide_for_package(
    document: PolicyDocument, mode: Any, operation: Any, decision: Decision, package: str
) -> tuple[Decision, str | None]:
    """The decision when `package` (`NAME` or `NAME==VERSION`) is answerable for
    `operation`, and the version used (None: not installed and none given)."""
    name, _, version_text = package.partition("==")
    name = normalise_name(name.strip())
    version = version_text.strip() or installed_version(name)
    packages = document.packages
    if packages is None or name in packages.first_party:
        return decision, version
    from appshield.grants import GrantTable

    table = GrantTable(packages, mode)
    return table.decide(operation, decision, (Dist(name, version or ""),)), version
