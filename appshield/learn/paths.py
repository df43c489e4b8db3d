"""Turning observed paths into policy globs.

The rules here decide how far a learned policy reaches beyond the literal paths it saw:
- reads below the interpreter's own folders become `{site_packages}/**`, `{stdlib}/**`,
  `{prefix}/**` (the runtime reads there constantly and what it reads depends on the code path);
- reads below a few system folders whose content is public (time zones, locales, CA
  certificates) become that folder's `/**`;
- run-specific parts of names become `*` anywhere (`widen_segment`): the random part of a
  `tempfile` name, uuids and hex ids, dates and Unix times, the run's own process ids; below
  `{tmp}` also numbered folders (`pytest-12`) and names that look like tempfile's; process ids
  in `/proc/<pid>/...`;
- everything else stays literal, with glob characters escaped.
Sibling collapsing (many files of one folder become `folder/*`) is done by the caller, which
sees all paths at once; `collapsible` says where it is allowed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from appshield.learn.records import Roots

__all__ = [
    "RunNames",
    "collapsible",
    "escape_glob",
    "generalise_path",
    "run_specific_spans",
    "runtime_read_glob",
    "widen_segment",
]

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


@dataclass(frozen=True)
class RunNames:
    """What a learning run knows to be run-specific, beyond the shape of a name.

    pids: the process ids of the run (every recorded process and its parent), as text; only
        ids of three digits or more (a `-7` in a name is more likely an index than a pid).
    tokens: the random parts `tempfile` put into the names it made (the recorder reads them
        off tempfile's own frame), so `wgunicorn-d7lf25wp` is known to be `wgunicorn-` and a
        random part, whatever the prefix and suffix, and wherever the name is used later.
    """

    pids: frozenset[str] = frozenset()
    tokens: frozenset[str] = frozenset()

    @classmethod
    def of(cls, pids: Iterable[int] = (), tokens: Iterable[str] = ()) -> RunNames:
        return cls(
            frozenset(str(p) for p in pids if p >= MIN_PID),
            frozenset(t for t in tokens if len(t) >= MIN_TOKEN),
        )


MIN_PID = 100
MIN_TOKEN = 6
NO_RUN = RunNames()

# -- run-specific parts of a name, found anywhere ------------------------------------------
# A uuid (any case), or 32 hex digits (uuid4().hex): random by construction.
_UUID = re.compile(
    r"(?<![0-9A-Za-z])(?:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
    r"[0-9a-fA-F]{12}|[0-9a-f]{32})(?![0-9A-Za-z])"
)
# A hex id (a hash, a random id): 8+ lowercase hex digits holding a letter and a digit, not
# glued to other letters or digits (`cache_3f9a01bc2d`, not `deadbeef`, not `face2faces`).
_HEX_ID = re.compile(r"(?<![0-9A-Za-z])(?=[0-9]*[a-f])(?=[a-f]*[0-9])[0-9a-f]{8,}(?![0-9A-Za-z])")
# A date (1970-2099, month and day checked), with an optional time of day, fraction and zone:
# 2026-12-03, 20261203, 2026_12_03T08-52-01, 2026-12-03T08:52:01.123Z, 2026-12 (a month).
_DATE = re.compile(
    r"(?<![0-9])(?:19[7-9][0-9]|20[0-9]{2})"
    r"(?:(?P<sep>[-_.]?)(?:0[1-9]|1[0-2])(?P=sep)(?:0[1-9]|[12][0-9]|3[01])"
    r"(?:[T_ -]?(?:[01][0-9]|2[0-3])(?P<tsep>[-:_.]?)[0-5][0-9](?:(?P=tsep)[0-5][0-9])?"
    r"(?:[.,][0-9]{1,9})?)?(?:Z|[+-][0-9]{2}:?[0-9]{2})?"
    r"|[-_](?:0[1-9]|1[0-2]))(?![0-9])"
)
# A Unix time: seconds, milli-, micro- or nanoseconds since 1970 (2001-2033), with a fraction.
_EPOCH = re.compile(r"(?<![0-9])1[0-9]{9}(?:[0-9]{3}){0,3}(?:\.[0-9]{1,9})?(?![0-9])")
# A run of digits on its own: not glued to letters or digits, not part of a dotted number
# (`python3.11`, `libssl.so.3`, `1.2.3`). Candidates for known pids and for variation.
_NUMBER = re.compile(r"(?<![0-9A-Za-z])(?<![0-9]\.)[0-9]+(?![0-9A-Za-z])(?!\.[0-9])")

# -- only below {tmp}, where names are scratch by nature -----------------------------------
# tempfile's default names: "tmp", 8 characters of [a-z0-9_], a suffix.
_TEMPFILE_NAME = re.compile(r"^tmp(?P<random>[a-z0-9_]{8})(\.[A-Za-z0-9]+)?$")
# A tempfile name with another prefix: the prefix ends in a separator, the random part
# holds a digit (`job-ab12cd34.dat`, `wgunicorn-d7lf25wp`).
_PREFIXED_TEMPFILE = re.compile(
    r"^.*[-.](?P<random>(?=[a-z_]*[0-9])[a-z0-9_]{8})(\.[A-Za-z0-9]+)?$"
)
# A uuid, or a run of 8+ hex digits holding a digit (a hash, a random id): garbage-1f2e...
_RANDOM_RUN = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|(?=[a-f]*[0-9])[0-9a-f]{8,}"
)
# tempfile's bare random names (`tempfile.gettempdir()` probes the folder with one).
_TEMPFILE_PROBE = re.compile(r"^[a-z0-9_]{8}$")
# A run of digits at the end of a name: pytest-12, test_learn0, build-20250101.
_NUMBERED = re.compile(r"^.*?[A-Za-z_.\-](?P<number>\d+)$")

Span = tuple[int, int]


def _spans(pattern: re.Pattern[str], text: str, group: int | str = 0) -> list[Span]:
    return [m.span(group) for m in pattern.finditer(text)]


def run_specific_spans(segment: str, run: RunNames = NO_RUN) -> list[Span]:
    """Where a name holds a part that changes from run to run, on the evidence of one
    sighting: a random part tempfile made, a uuid or hex id, a date or Unix time, one of the
    run's process ids."""
    found: list[Span] = []
    for token in run.tokens:
        start = segment.find(token)
        while start >= 0:
            found.append((start, start + len(token)))
            start = segment.find(token, start + 1)
    for pattern in (_UUID, _HEX_ID, _DATE, _EPOCH):
        found += _spans(pattern, segment)
    if run.pids:
        found += [m.span() for m in _NUMBER.finditer(segment) if m.group() in run.pids]
    return found


def _temp_spans(segment: str) -> list[Span]:
    """The weaker evidence used below the temp folder only."""
    found = _spans(_RANDOM_RUN, segment)
    for pattern in (_TEMPFILE_NAME, _PREFIXED_TEMPFILE):
        found += _spans(pattern, segment, "random")
    m = _NUMBERED.match(segment)
    if m:
        found.append(m.span("number"))
    return found


def _merged(spans: list[Span]) -> list[Span]:
    out: list[Span] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def glob_with_stars(text: str, spans: list[Span], escape: Callable[[str], str]) -> str:
    """`text` with each span (merged) replaced by `*` and the rest escaped."""
    out, last = [], 0
    for start, end in _merged(spans):
        out.append(escape(text[last:start]) + "*")
        last = end
    out.append(escape(text[last:]))
    return "".join(out)


def widen_segment(segment: str, run: RunNames = NO_RUN, *, scratch: bool = False) -> str:
    """The glob for one path segment: run-specific parts become `*` (which never crosses a
    `/`); in a scratch folder (`scratch`: below {tmp}) weaker evidence counts too."""
    spans = run_specific_spans(segment, run)
    if scratch:
        if not spans and _TEMPFILE_PROBE.match(segment) and any(c.isdigit() for c in segment):
            spans = [(0, len(segment))]
        spans += _temp_spans(segment)
    if not spans:
        return escape_glob(segment)
    glob = glob_with_stars(segment, spans, escape_glob)
    if glob == "*":  # nothing readable is left: never a bare `*` (all of the folder)
        # A random part tempfile made can be all digits this time and not the next: only a
        # number that holds no such part stays a number (`000000000` is the random
        # `00000000` with a suffix `0`: next time `_00000000` and `0`).
        number = segment.isdigit() and not any(token in segment for token in run.tokens)
        return "[0-9]*" if number else "?" * len(segment)
    return glob


def _with_variable(path: str, var: str, folder: str, run: RunNames) -> str:
    rest = path[len(folder.rstrip("/")) :].lstrip("/")
    if not rest:
        return "{" + var + "}"
    scratch = var == "tmp"
    widened = [widen_segment(s, run, scratch=scratch) for s in rest.split("/")]
    return "{" + var + "}/" + "/".join(widened)


def generalise_path(path: str, access: str, roots: Roots, run: RunNames = NO_RUN) -> str:
    """The glob a learned rule uses for one observed (resolved) path."""
    if access == "read":
        if roots.executable and path == roots.executable:
            return "{python}"  # the interpreter binary: wherever the next image has it
        glob = interpreter_read_glob(path, roots) or runtime_read_glob(path)
        if glob:
            return glob
    tmp = roots.tmp.rstrip("/")
    home = roots.home.rstrip("/")
    # The longer of {tmp} and {home} wins when one holds the other.
    for var, folder in sorted((("tmp", tmp), ("home", home)), key=lambda t: -len(t[1])):
        if folder and folder != "/" and _under(path, folder):
            return _with_variable(path, var, folder, run)
    parts = path.split("/")
    if path.startswith("/proc/") and len(parts) > 2 and parts[2].isdigit():
        return "/proc/*/" + "/".join(escape_glob(p) for p in parts[3:]) if parts[3:] else "/proc/*"
    return "/".join(widen_segment(p, run) if p else "" for p in parts)


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
