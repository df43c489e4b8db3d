"""Observations -> rule drafts: the least privilege that still allows everything seen.

One function per category turns that category's observations into `Draft`s (a match mapping
ready for YAML, plus the observations it covers, for the comment). How far each category
generalises, and why, is written next to the code that does it; the path rules are in
`appshield.learn.paths`.
"""

from __future__ import annotations

import ipaddress
import os
import posixpath
import re
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from appshield.learn.paths import collapsible, escape_glob, generalise_path
from appshield.learn.records import Observation, Roots
from appshield.operations import FileOp, ImportOp, NetworkOp, ProcessOp

__all__ = ["Draft", "draft_rules"]

# Ports the kernel hands out for the local side of connections and for bind(port 0); a
# loopback service the app itself started lives on one of these and changes every run.
EPHEMERAL_LOW = 32768
EPHEMERAL = f"{EPHEMERAL_LOW}-65535"
# More distinct argument vectors than this for one program: allow any arguments.
MAX_ARG_VECTORS = 6
# At least this many files of one folder (same access) collapse into `folder/*`.
SIBLINGS = 5
_ACCESS_ORDER = ("read", "write", "delete")
_NET_ORDER = ("connect", "send", "bind", "resolve")


@dataclass
class Draft:
    """A rule to write: category, match mapping, and the observations behind it."""

    category: str
    match: dict[str, Any]
    slug: str
    observations: list[Observation] = field(default_factory=list)
    note: str = ""

    @property
    def count(self) -> int:
        return sum(o.count for o in self.observations)

    @property
    def modules(self) -> list[str]:
        return sorted({o.module for o in self.observations if o.module})

    @property
    def apis(self) -> list[str]:
        return sorted({o.api for o in self.observations if o.api})


def draft_rules(observations: Iterable[Observation]) -> tuple[list[Draft], list[Observation]]:
    """Rule drafts for everything seen, in category order, and the observations no allow rule
    can cover (a Python child that would run unshielded: an implicit protection denies it)."""
    by_category: dict[str, list[Observation]] = defaultdict(list)
    skipped: list[Observation] = []
    for obs in observations:
        if _unallowable(obs.operation):
            skipped.append(obs)
        else:
            by_category[obs.operation.category].append(obs)
    drafts = [
        *_process_drafts(by_category["process"]),
        *_file_drafts(by_category["file"]),
        *_network_drafts(by_category["network"]),
        *_import_drafts(by_category["import"]),
    ]
    return drafts, skipped


def _unallowable(op: object) -> bool:
    """Operations no allow rule can cover: a Python child that would run unshielded (an
    implicit protection denies it first), a native library found nowhere on disk (a bare
    name: `library` globs are absolute paths)."""
    if isinstance(op, ProcessOp):
        return op.unshielded
    if isinstance(op, ImportOp) and op.module is None:
        return not (op.library or op.origin or "").startswith("/")
    return False


# -- process ----------------------------------------------------------------------------------


def _executable_pattern(op: ProcessOp) -> str:
    # A base name matches only programs found through PATH (or in folders the process cannot
    # write); anything else is pinned to its absolute path.
    if op.trusted_location:
        return escape_glob(posixpath.basename(op.executable))
    return escape_glob(op.executable)


def _arg_glob(arg: str, roots: Roots) -> str:
    if arg.startswith("/"):
        widened = generalise_path(arg, "write", roots)  # temp names widened, no root globs
        if widened.startswith("{tmp}"):
            return widened.replace("{tmp}", escape_glob(roots.tmp.rstrip("/")), 1)
    return escape_glob(arg)


# multiprocessing starts its helpers with file descriptor numbers in the code it passes
# (`spawn_main(tracker_fd=7, pipe_handle=13)`); they differ from run to run.
_MP_CODE = re.compile(r"^from multiprocessing[.\w]* import ")


def _args_globs(argv: Sequence[str], roots: Roots) -> tuple[str, ...]:
    out = []
    for arg in argv[1:]:
        glob = _arg_glob(arg, roots)
        if _MP_CODE.match(arg):
            glob = re.sub(r"\d+", "*", glob)
        out.append(glob)
    return tuple(out)


def _process_drafts(observations: Sequence[Observation]) -> list[Draft]:
    groups: dict[str, list[Observation]] = defaultdict(list)
    for obs in observations:
        groups[_executable_pattern(obs.operation)].append(obs)  # type: ignore[arg-type]
    drafts = []
    for exe, group in groups.items():
        vectors = sorted({_args_globs(o.operation.argv, o.roots) for o in group})  # type: ignore[union-attr]
        match: dict[str, Any] = {"executable": exe}
        if len(vectors) > MAX_ARG_VECTORS:
            match["args"] = [["**"]]
        else:
            match["args"] = [list(v) for v in vectors]
        drafts.append(Draft("process", match, "run-" + posixpath.basename(exe), group))
    return drafts


# Reads a fresh policy always allows, seen or not: tracebacks, `linecache` and `inspect` read
# the interpreter's and the packages' sources, and a run without an exception never shows it.
ALWAYS_READ = ("{stdlib}/**", "{site_packages}/**")


def always_read_drafts(drafts: Sequence[Draft]) -> list[Draft]:
    """Read rules for `ALWAYS_READ` folders that the drafts do not already have."""
    have = {d.match.get("path") for d in drafts if d.category == "file"}
    note = "always allowed: tracebacks, linecache and inspect read Python sources"
    return [
        Draft("file", {"path": glob, "access": ["read"]}, f"file-read-{glob}", [], note)
        for glob in ALWAYS_READ
        if glob not in have
    ]


# -- file -------------------------------------------------------------------------------------


def _file_drafts(observations: Sequence[Observation]) -> list[Draft]:
    by_glob: dict[str, tuple[set[str], list[Observation]]] = {}
    for obs in observations:
        op: FileOp = obs.operation  # type: ignore[assignment]
        glob = generalise_path(op.real_path, op.access, obs.roots)
        accesses, seen = by_glob.setdefault(glob, (set(), []))
        accesses.add(op.access)
        seen.append(obs)
    by_glob = _collapse_temp_trees(_collapse_siblings(by_glob))
    drafts = []
    for glob, (accesses, seen) in sorted(by_glob.items()):
        access = [a for a in _ACCESS_ORDER if a in accesses]
        slug = "file-" + "-".join(access) + "-" + glob
        drafts.append(Draft("file", {"path": glob, "access": access}, slug, seen))
    return drafts


def _collapse_siblings(
    by_glob: dict[str, tuple[set[str], list[Observation]]],
) -> dict[str, tuple[set[str], list[Observation]]]:
    """Many literal files of one folder with the same access become `folder/*`."""
    families: dict[tuple[str, frozenset[str]], list[str]] = defaultdict(list)
    for glob, (accesses, _) in by_glob.items():
        if glob.endswith("/**"):
            continue
        folder, _, name = glob.rpartition("/")
        if folder and name and "*" not in name:
            families[(folder, frozenset(accesses))].append(glob)
    result = dict(by_glob)
    for (folder, accesses), members in families.items():
        roots = by_glob[members[0]][1][0].roots
        if len(members) < SIBLINGS or not collapsible(folder, roots):
            continue
        merged: list[Observation] = []
        for glob in members:
            merged.extend(result.pop(glob)[1])
        target = folder + "/*"
        old_access, old_seen = result.get(target, (set(), []))
        result[target] = (old_access | set(accesses), old_seen + merged)
    return result


def _collapse_temp_trees(
    by_glob: dict[str, tuple[set[str], list[Observation]]],
) -> dict[str, tuple[set[str], list[Observation]]]:
    """Many paths below one folder of the temp folder become `{tmp}/folder/**`: scratch
    trees (a test runner's, a build's) hold names no run repeats."""
    trees: dict[str, list[str]] = defaultdict(list)
    for glob in by_glob:
        parts = glob.split("/")
        if parts[0] == "{tmp}" and len(parts) > 2:
            trees[parts[1]].append(glob)
    result = dict(by_glob)
    for top, members in trees.items():
        if len(members) < 2 * SIBLINGS or "*" in top:
            continue
        target = "{tmp}/" + top + "/**"
        accesses, seen = result.pop(target, (set(), []))
        for glob in members:
            more_access, more_seen = result.pop(glob)
            accesses, seen = accesses | more_access, seen + more_seen
        result[target] = (accesses, seen)
    return result


# -- network ----------------------------------------------------------------------------------


def _is_loopback(op: NetworkOp) -> bool:
    if op.host == "localhost":
        return True
    try:
        return op.address is not None and ipaddress.ip_address(op.address).is_loopback
    except ValueError:
        return False


def _host_glob(name: str) -> str:
    """A host glob for an observed name or address: characters a host glob cannot hold
    (and glob characters) become `?`."""
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return re.sub(r"[^a-z0-9_.-]", "?", name.lower())


def _net_name(op: NetworkOp) -> str | None:
    # A name beats an address: the name survives a change of IP, and it is what a reviewer
    # recognises. The address is used only when no name was ever seen for it.
    name = op.host or (op.names[0] if op.names else None) or op.address
    return _host_glob(name) if name else None


def _port_item(op: NetworkOp) -> int | str | None:
    port = op.port
    if port is None:
        return None
    if op.operation == "bind" and port >= EPHEMERAL_LOW:
        return EPHEMERAL
    if op.operation in ("connect", "send") and port >= EPHEMERAL_LOW and _is_loopback(op):
        return EPHEMERAL
    return port


def _network_drafts(observations: Sequence[Observation]) -> list[Draft]:
    groups: dict[tuple[Any, ...], list[Observation]] = defaultdict(list)
    for obs in observations:
        op: NetworkOp = obs.operation  # type: ignore[assignment]
        if op.transport == "unix":
            groups[("unix", op.operation)].append(obs)
        elif op.operation == "resolve":
            groups[("resolve",)].append(obs)
        else:
            groups[("ip", _net_name(op), op.transport, op.port is None)].append(obs)
    drafts = []
    for key, group in groups.items():
        drafts.append(_network_draft(key, group))
    return drafts


def _network_draft(key: tuple[Any, ...], group: list[Observation]) -> Draft:
    ops: list[NetworkOp] = [o.operation for o in group]  # type: ignore[misc]
    operations = [n for n in _NET_ORDER if any(op.operation == n for op in ops)]
    if key[0] == "unix":
        paths = sorted({op.path or "" for op in ops})
        note = "unix sockets cannot be told apart by path: " + ", ".join(paths)
        match = {"transport": "unix", "operation": operations}
        return Draft("network", match, f"unix-{key[1]}", group, note)
    if key[0] == "resolve":
        hosts = sorted({n for op in ops if (n := _net_name(op))})
        return Draft("network", {"host": hosts, "operation": ["resolve"]}, "resolve", group)
    _, name, transport, portless = key
    match: dict[str, Any] = {}
    if name:
        match["host"] = name
    if not portless:
        ports = {p for op in ops if (p := _port_item(op)) is not None}
        match["port"] = sorted(ports, key=lambda p: (isinstance(p, str), str(p).zfill(6)))
    match["operation"] = operations
    match["transport"] = transport
    return Draft("network", match, f"{'-'.join(operations)}-{name or 'any'}", group)


# -- import -----------------------------------------------------------------------------------


def _package_folder(module: str, origin: str) -> str | None:
    """The folder of a module's top-level package, from one of its files; None for a
    top-level plain module (its file is the whole package)."""
    depth = module.count(".")
    folder = posixpath.dirname(origin)
    if posixpath.basename(origin).startswith("__init__."):
        steps = depth
    elif depth == 0:
        return None
    else:
        steps = depth - 1
    for _ in range(steps):
        folder = posixpath.dirname(folder)
    return folder


def _import_home(op: ImportOp, roots: Roots) -> str:
    """Where a module comes from, as an origin glob: a root variable, a package folder, the
    module's own file, or '' for built-in and frozen modules (no file to match)."""
    origin = op.origin
    if not origin or not origin.startswith("/"):
        return ""
    for var in ("site_packages", "stdlib"):
        for folder in getattr(roots, var):
            for spelling in {folder.rstrip("/"), os.path.realpath(folder)}:
                if spelling and origin.startswith(spelling + "/"):
                    return "{" + var + "}/**"
    package = _package_folder(op.module or "", origin)
    return escape_glob(package) + "/**" if package else escape_glob(origin)


def _import_drafts(observations: Sequence[Observation]) -> list[Draft]:
    homes: dict[str, tuple[set[str], list[Observation]]] = {}
    libraries: dict[str, list[Observation]] = defaultdict(list)
    for obs in observations:
        op: ImportOp = obs.operation  # type: ignore[assignment]
        if op.module is None:
            libraries[op.library or op.origin or ""].append(obs)
            continue
        modules, seen = homes.setdefault(_import_home(op, obs.roots), (set(), []))
        # A module glob also matches submodules, so the top-level name is enough; characters
        # a module glob cannot hold (a `spec_from_file_location("my-mod")`) become `?`.
        modules.add(re.sub(r"[^A-Za-z0-9_]", "?", op.module.split(".")[0]) or "?")
        seen.append(obs)
    drafts = []
    for home, (modules, seen) in sorted(homes.items()):
        match: dict[str, Any] = {"module": sorted(modules)}
        if home:
            match["origin"] = home
        slug = "import-" + (
            home.strip("{}/*").split("}")[0]
            if home.startswith("{")
            else "builtin"
            if not home
            else sorted(modules)[0]
        )
        drafts.append(Draft("import", match, slug, seen))
    for library, seen in sorted(libraries.items()):
        match = {"library": escape_glob(library)}
        drafts.append(Draft("import", match, "load-" + posixpath.basename(library), seen))
    return drafts


def stdlib_names() -> frozenset[str]:
    return frozenset(getattr(sys, "stdlib_module_names", ()))
