"""Turning observed paths into policy globs.

The rules here decide how far a learned policy reaches beyond the literal paths it saw:
- reads below the interpreter's own folders become `{site_packages}/**`, `{stdlib}/**`,
  `{prefix}/**` (the runtime reads there constantly and what it reads depends on the code path);
- reads below a few system folders whose content is public (time zones, locales, CA
  certificates) become that folder's `/**`;
- names that change on every run are widened: `tempfile`'s random names (`tmpab12_xyz`),
  numbered folders under `{tmp}` (`pytest-12`), process ids in `/proc/<pid>/...`;
- everything else stays literal, with glob characters escaped.
Sibling collapsing (many files of one folder become `folder/*`) is done by the caller, which
sees all paths at once; `collapsible` says where it is allowed.
"""

from __future__ import annotations

import os
import re

from appshield.learn.records import Roots

__all__ = ["collapsible", "escape_glob", "generalise_path", "runtime_read_glob"]

# Folders whose files are public and read by the runtime or common libraries; a read of any
# file inside allows reading the whole folder.
RUNTIME_READ_FOLDERS: tuple[str, ...] = (
    "/usr/share/zoneinfo",
    "/usr/share/locale",
    "/usr/lib/locale",
    "/usr/share/ca-certificates",
    "/etc/ssl/certs",
    "/usr/lib/ssl",
    "/usr/share/mime",
)

# Folders where a folder glob would let the application read secrets it never touched:
# collapsing siblings never happens directly inside these.
_NO_COLLAPSE_EXACT = ("/", "/etc", "/root", "/home", "/var", "/run", "/var/run", "/usr", "/tmp")
_NO_COLLAPSE_BELOW = ("/proc", "/sys", "/dev", "/var/run/secrets", "/run/secrets", "/etc/ssh")
_SECRET_HOME_FOLDERS = (".ssh", ".aws", ".gnupg", ".kube", ".docker", ".config/gcloud", ".azure")

# tempfile's random names: a prefix (default "tmp"), 8 characters of [a-z0-9_], a suffix.
_TEMPFILE_NAME = re.compile(r"^(tmp)[a-z0-9_]{8}(\.[A-Za-z0-9]+)?$")
# A uuid, or a run of 8+ hex digits holding a digit (a hash, a random id): garbage-1f2e...
_RANDOM_RUN = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|(?=[a-f]*[0-9])[0-9a-f]{8,}"
)
# tempfile's bare random names (`tempfile.gettempdir()` probes the folder with one).
_TEMPFILE_PROBE = re.compile(r"^[a-z0-9_]{8}$")
# A run of digits at the end of a name: pytest-12, test_learn0, build-20250101.
_NUMBERED = re.compile(r"^(.*?[A-Za-z_.\-])\d+$")


def escape_glob(text: str) -> str:
    """A literal for a glob: each magic character becomes a one-character class. Braces
    cannot be written in a path glob at all (they mark variables), so each becomes `?`."""
    return re.sub(r"[{}]", "?", re.sub(r"([*?\[])", r"[\1]", text))


def _under(path: str, root: str) -> bool:
    if not root:
        return False
    root = root.rstrip("/") or "/"
    return path == root or path.startswith(root + "/") or root == "/"


def _root_candidates(roots: Roots) -> list[tuple[str, str]]:
    """(variable, folder) pairs, raw and resolved spellings, longest folder first."""
    pairs: list[tuple[str, str]] = []
    for var in ("site_packages", "stdlib", "prefix"):
        for folder in getattr(roots, var):
            if folder and folder != "/":
                pairs.append((var, folder.rstrip("/")))
                pairs.append((var, os.path.realpath(folder).rstrip("/")))
    return sorted(set(pairs), key=lambda p: -len(p[1]))


def interpreter_read_glob(path: str, roots: Roots) -> str | None:
    """`{stdlib}/**` and friends for a read below the interpreter's folders, else None."""
    if roots.executable and path == roots.executable:
        return None  # the interpreter binary itself stays literal (it may live elsewhere)
    for var, folder in _root_candidates(roots):
        if _under(path, folder):
            return "{" + var + "}/**"
    return None


def runtime_read_glob(path: str) -> str | None:
    for folder in RUNTIME_READ_FOLDERS:
        if _under(path, folder):
            return escape_glob(folder) + "/**"
    return None


def _widen_temp_segment(segment: str) -> str:
    if _RANDOM_RUN.search(segment):
        # A uuid or a long hex/random run: keep the readable rest, widen the run.
        parts = _RANDOM_RUN.split(segment)
        return "*".join(escape_glob(p) for p in parts)
    m = _TEMPFILE_NAME.match(segment)
    if m:
        return "tmp*" + escape_glob(m.group(2) or "")
    if _TEMPFILE_PROBE.match(segment) and any(c.isdigit() for c in segment):
        return "????????"
    m = _NUMBERED.match(segment)
    if m:
        return escape_glob(m.group(1)) + "*"
    return escape_glob(segment)


def _with_variable(path: str, var: str, folder: str, widen: bool) -> str:
    rest = path[len(folder.rstrip("/")) :].lstrip("/")
    if not rest:
        return "{" + var + "}"
    parts = rest.split("/")
    widened = [_widen_temp_segment(s) if widen else escape_glob(s) for s in parts]
    return "{" + var + "}/" + "/".join(widened)


def generalise_path(path: str, access: str, roots: Roots) -> str:
    """The glob a learned rule uses for one observed (resolved) path."""
    if access == "read":
        glob = interpreter_read_glob(path, roots) or runtime_read_glob(path)
        if glob:
            return glob
    tmp = roots.tmp.rstrip("/")
    home = roots.home.rstrip("/")
    # The longer of {tmp} and {home} wins when one holds the other.
    for var, folder, widen in sorted(
        (("tmp", tmp, True), ("home", home, False)), key=lambda t: -len(t[1])
    ):
        if folder and folder != "/" and _under(path, folder):
            return _with_variable(path, var, folder, widen)
    if path.startswith("/proc/"):
        parts = path.split("/")
        if len(parts) > 2 and parts[2].isdigit():
            parts[2] = "*"
            return "/".join(escape_glob(p) if p != "*" else p for p in parts)
    return escape_glob(path)


def collapsible(folder_glob: str, roots: Roots) -> bool:
    """May the files of this folder (a glob spelling of it) collapse into `folder/*`?"""
    if "*" in folder_glob.replace("[*]", ""):
        return True  # already a widened temp folder
    if folder_glob.startswith("{"):
        var, _, rest = folder_glob[1:].partition("}")
        if var == "home":
            rest = rest.lstrip("/")
            return bool(rest) and not any(
                rest == s or rest.startswith(s + "/") for s in _SECRET_HOME_FOLDERS
            )
        return bool(rest.strip("/"))
    folder = folder_glob.rstrip("/") or "/"
    if folder in _NO_COLLAPSE_EXACT:
        return False
    return not any(_under(folder, below) for below in _NO_COLLAPSE_BELOW)
