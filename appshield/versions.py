"""Version specifiers of `packages.grants.<name>.version` (docs/packages.md).

The policy accepts one fixed subset of PEP 440 specifiers, whatever is installed, so that a
policy valid on one machine is valid on all: clauses joined by commas, each an operator
(`==`, `!=`, `>=`, `<=`, `>`, `<`, `~=`) and a version of dot-separated numbers with an
optional PEP 440 suffix (`2.31`, `1.0rc1`, `2.0.post1`); `==` and `!=` also take a
trailing `.*` (`==2.*`).

Whether an installed version meets it: with `packaging` importable, its `SpecifierSet`
decides (the full PEP 440 ordering, pre-releases included); without it, the versions'
numeric release parts are compared (a suffix is ignored: `2.0rc1` counts as `2.0`), which
agrees with PEP 440 on every final release. An installed version that cannot be read meets
no specifier: a doubt is a denial.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["SpecifierError", "check_specifier", "load_packaging", "meets"]

_CLAUSE = re.compile(
    r"^\s*(===?|!=|>=|<=|~=|>|<)\s*"
    r"(v?[0-9]+(?:\.[0-9]+)*(?:\.\*|(?:[-_.]?(?:a|b|rc|c|alpha|beta|pre|preview|post|rev|r|dev)"
    r"[-_.]?[0-9]*)*(?:\+[a-z0-9.]+)?)?)\s*$",
    re.IGNORECASE,
)
_RELEASE = re.compile(r"^v?([0-9]+(?:\.[0-9]+)*)")


class SpecifierError(ValueError):
    """A specifier outside the accepted subset."""


def check_specifier(text: str) -> tuple[tuple[str, str], ...]:
    """The clauses of `text` as (operator, version); raises `SpecifierError`."""
    clauses = []
    for part in text.split(","):
        found = _CLAUSE.match(part)
        if found is None:
            raise SpecifierError(
                f"{part.strip()!r} is not a version clause (write e.g. '>=2.0', '==1.*', '<3')"
            )
        operator, version = found.group(1), found.group(2)
        if operator == "===":
            raise SpecifierError("'===' (arbitrary equality) is not supported")
        if version.endswith(".*") and operator not in ("==", "!="):
            raise SpecifierError(f"'.*' goes only with == and != (in {part.strip()!r})")
        if operator == "~=" and "." not in version:
            raise SpecifierError(f"'~=' needs at least two version parts (in {part.strip()!r})")
        clauses.append((operator, version))
    return tuple(clauses)


def meets(version: str | None, specifier: str | None) -> bool:
    """Whether the installed `version` meets `specifier` (None: any version meets it)."""
    if specifier is None:
        return True
    if not version:
        return False
    found = _packaging or load_packaging()
    if not found:
        return _meets_subset(version, check_specifier(specifier))
    specifier_set, errors = found
    try:
        return bool(specifier_set(specifier).contains(version, prereleases=True))
    except errors:
        return False


# (SpecifierSet, the exceptions it raises), () when `packaging` is not importable, None until
# looked for. A shield looks for it once at install: importing while deciding is not allowed.
_packaging: tuple[Any, tuple[type[Exception], ...]] | tuple[()] | None = None


def load_packaging() -> tuple[Any, tuple[type[Exception], ...]] | tuple[()]:
    global _packaging
    try:
        from packaging.specifiers import InvalidSpecifier, SpecifierSet
        from packaging.version import InvalidVersion
    except ImportError:
        _packaging = ()
    else:
        _packaging = (SpecifierSet, (InvalidSpecifier, InvalidVersion))
    return _packaging


def _release(text: str) -> tuple[int, ...] | None:
    found = _RELEASE.match(text.strip())
    return tuple(int(p) for p in found.group(1).split(".")) if found else None


def _padded(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    width = max(len(a), len(b))
    return a + (0,) * (width - len(a)), b + (0,) * (width - len(b))


def _meets_subset(version: str, clauses: tuple[tuple[str, str], ...]) -> bool:
    have = _release(version)
    if have is None:
        return False
    for operator, wanted in clauses:
        if wanted.endswith(".*"):
            prefix = _release(wanted[:-2]) or ()
            same = have[: len(prefix)] == prefix
            if same != (operator == "=="):
                return False
            continue
        want = _release(wanted)
        if want is None:
            return False
        mine, theirs = _padded(have, want)
        if operator == "~=":
            if mine < theirs or have[: len(want) - 1] != want[:-1]:
                return False
            continue
        ok = {
            "==": mine == theirs,
            "!=": mine != theirs,
            ">=": mine >= theirs,
            "<=": mine <= theirs,
            ">": mine > theirs,
            "<": mine < theirs,
        }[operator]
        if not ok:
            return False
    return True
