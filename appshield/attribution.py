"""Which installed distribution a file of code belongs to (docs/packages.md, "Attribution").

    DistributionIndex.build()        every distribution's installed files, from its metadata
    index.owner_of(path)             -> Dist | FIRST_PARTY | STANDARD | UNATTRIBUTED
    responsible(kinds)               the walk's rule, pure: the distributions answerable

A file is judged by where it is and by the installed-file lists (RECORD) of the
distributions `importlib.metadata` finds, never by a module's `__name__`:

1. the standard library's folders (not site-packages below them): `STANDARD`, transparent;
2. a file some distribution lists: that distribution (`FIRST_PARTY` when the policy names
   it in `packages.first_party`);
3. a file under a folder that was on `sys.path` at start-up and is not a site-packages or
   standard-library folder (the app's own folders): `FIRST_PARTY`;
4. anything else (a site-packages file no distribution lists, a distribution whose metadata
   lists no files, a file in `/tmp`): `UNATTRIBUTED`, a doubt, so a denial.

Results are cached per path; the index is built once, before the hooks are installed (its
own reads must not be judged).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

__all__ = [
    "FIRST_PARTY",
    "STANDARD",
    "UNATTRIBUTED",
    "Dist",
    "DistributionIndex",
    "Owner",
    "normalise_name",
    "responsible",
]


class Dist(NamedTuple):
    """An installed distribution: its normalised name and its version."""

    name: str
    version: str


class _Kind(NamedTuple):
    kind: str


FIRST_PARTY = _Kind("first-party")
STANDARD = _Kind("standard library")
UNATTRIBUTED = _Kind("unattributed")
Owner = Dist | _Kind


def normalise_name(name: str) -> str:
    """PEP 503: lower-case, each run of `-`, `_` and `.` as one `-`."""
    out = []
    previous_sep = False
    for char in name.lower():
        if char in "-_.":
            if not previous_sep:
                out.append("-")
            previous_sep = True
        else:
            out.append(char)
            previous_sep = False
    return "".join(out)


def _folder(path: str) -> str:
    return os.path.join(os.path.abspath(path), "")


class DistributionIndex:
    """Files of code -> the distribution that installed them."""

    def __init__(
        self,
        files: dict[str, Dist],
        stdlib: Sequence[str],
        site: Sequence[str],
        app_folders: Sequence[str],
        first_party: Iterable[str] = (),
    ) -> None:
        self._files = files
        self._stdlib = tuple(_folder(p) for p in stdlib if p)
        self._site = tuple(_folder(p) for p in site if p)
        # The app's own folders: start-up import folders that are neither site-packages nor
        # the standard library (nor inside them). `''` on `sys.path` is the current folder.
        self._app = tuple(
            f
            for f in (_folder(p or ".") for p in app_folders)
            if not f.startswith(self._site) and not f.startswith(self._stdlib)
        )
        self._first_party = frozenset(normalise_name(n) for n in first_party)
        self._cache: dict[str, Owner] = {}
        self.versions: dict[str, str] = {d.name: d.version for d in files.values()}

    @classmethod
    def build(
        cls,
        first_party: Iterable[str] = (),
        *,
        path: Sequence[str] | None = None,
        stdlib: Sequence[str] | None = None,
        site: Sequence[str] | None = None,
    ) -> DistributionIndex:
        """Read every distribution's installed-file list (`path`: where to look, default
        `sys.path`). A distribution whose metadata lists no files contributes none: its code
        stays unattributed."""
        import importlib.metadata as metadata

        search = list(sys.path if path is None else path)
        files: dict[str, Dist] = {}
        versions: dict[str, str] = {}
        for dist in metadata.distributions(path=search):
            try:
                name = normalise_name(dist.metadata["Name"] or "")
                version = dist.version or ""
                listed = dist.files
            except Exception:  # a broken metadata folder: its files stay unattributed
                continue
            if not name or name in versions:
                continue  # the first on the path is the one imported (as importlib does)
            versions[name] = version
            owner = Dist(name, version)
            for entry in listed or ():
                text = str(entry)
                if not text.endswith((".py", ".pyw")):
                    continue
                located = os.path.normpath(os.path.abspath(str(dist.locate_file(entry))))
                files.setdefault(located, owner)
        if stdlib is None:
            stdlib = [os.path.dirname(os.__file__)]
        if site is None:
            site = _site_folders()
        index = cls(files, stdlib, site, search, first_party)
        index.versions = versions
        return index

    def add_app_folder(self, folder: str) -> None:
        """A folder of the app's own code found after start-up (the main script's)."""
        found = _folder(folder)
        if found.startswith(self._site) or found.startswith(self._stdlib) or found in self._app:
            return
        self._app = (*self._app, found)
        self._cache.clear()

    def version_of(self, name: str) -> str | None:
        return self.versions.get(normalise_name(name))

    def owner_of(self, path: str) -> Owner:
        """Who the code file at `path` (absolute, as the import system read it) belongs to."""
        found = self._cache.get(path)
        if found is None:
            found = self._owner(path)
            if found is UNATTRIBUTED:
                return found  # asked again next time: `sys.path` may have grown since
            if len(self._cache) > 65536:
                self._cache.clear()
            self._cache[path] = found
        return found

    def _owner(self, path: str) -> Owner:
        normal = os.path.normpath(path)
        dist = self._files.get(normal)
        if dist is not None:
            return FIRST_PARTY if dist.name in self._first_party else dist
        if normal.startswith(self._stdlib) and not normal.startswith(self._site):
            return STANDARD
        if normal.startswith(self._app) and not normal.startswith(self._site):
            return FIRST_PARTY
        # A folder the app put on `sys.path` since (servers add the current folder, as
        # uvicorn and gunicorn do, to import the app's module by name).
        added = tuple(
            f
            for f in (_folder(p or ".") for p in list(sys.path) if isinstance(p, str))
            if not f.startswith(self._site) and not f.startswith(self._stdlib)
        )
        if normal.startswith(added) and not normal.startswith(self._site):
            return FIRST_PARTY
        return UNATTRIBUTED


def _site_folders() -> list[str]:
    found: list[str] = []
    site = sys.modules.get("site")
    getsitepackages = getattr(site, "getsitepackages", None)
    if getsitepackages is not None:
        found.extend(getsitepackages())
    user = getattr(site, "getusersitepackages", None)
    if user is not None:
        try:
            found.append(user())
        except Exception:
            pass
    # Folders named site-packages or dist-packages anywhere on the path count as well
    # (`--target` installs, virtualenvs without `site.getsitepackages`).
    found.extend(p for p in sys.path if os.path.basename(p.rstrip(os.sep)) in _SITE_NAMES)
    return found


_SITE_NAMES = ("site-packages", "dist-packages")


def responsible(owners: Iterable[Any], bottom: Sequence[Dist] | None = None) -> tuple[Any, ...]:
    """The rule of attribution, over the owners of the frames from the operation outwards:
    `STANDARD` for the standard library (and appshield's own frames), None for code with no
    recorded file (`exec`, `compile`, generated at run time), `FIRST_PARTY`, a `Dist`, or
    `UNATTRIBUTED` for a file nobody can be shown to own.

    Every distribution (and `UNATTRIBUTED` file) met before the first first-party frame is
    answerable, each once, innermost first. A walk that reaches the end of the stack without
    a first-party frame also holds `bottom` (the distributions answerable where its thread was
    started, when known). When it then holds nobody:
    - it met code with no recorded file: `UNATTRIBUTED` (who made that code is unknown);
    - it met only the standard library, or no frame at all (the interpreter's own start-up,
      a builtin called back from C): () -- no third party is answerable, the ordinary rules
      alone decide."""
    found: list[Any] = []
    unknown = False
    for owner in owners:
        if owner is FIRST_PARTY:
            return tuple(found)
        if owner is STANDARD:
            continue
        if owner is None:
            unknown = True
            continue
        if owner not in found:
            found.append(owner)
    for owner in bottom or ():
        if owner not in found:
            found.append(owner)
    if not found and unknown:
        return (UNATTRIBUTED,)
    return tuple(found)
