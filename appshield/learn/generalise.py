"""Observations -> rule drafts: the least privilege that still allows everything seen.

One function per category turns that category's observations into `Draft`s (a match mapping
ready for YAML, plus the observations it covers, for the comment). How far each category
generalises, and why, is written next to the code that does it; the path rules are in
`appshield.learn.paths`.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import posixpath
import re
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence, Set
from dataclasses import dataclass, field
from typing import Any

from appshield.engine.globs import path_matcher
from appshield.learn.paths import (
    NO_RUN,
    RunNames,
    collapsible,
    escape_glob,
    generalise_path,
    glob_with_stars,
    run_specific_spans,
)
from appshield.learn.records import Observation, Roots
from appshield.operations import FileOp, ImportOp, NetworkOp, ProcessOp

__all__ = ["Draft", "draft_rules"]

# Ports the kernel hands out for the local side of connections and for bind(port 0); a
# loopback service the app itself started lives on one of these and changes every run.
EPHEMERAL_LOW = 32768
EPHEMERAL = f"{EPHEMERAL_LOW}-65535"
# A server's port given on its command line (`-b 127.0.0.1:8002`, `--port 8002`) is
# configuration that changes between runs; the host stays literal, and a privileged port
# (below 1024) stays exact.
UNPRIVILEGED_LOW = 1024
UNPRIVILEGED = f"{UNPRIVILEGED_LOW}-65535"
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
    unless: dict[str, Any] | None = None

    @property
    def count(self) -> int:
        return sum(o.count for o in self.observations)

    @property
    def modules(self) -> list[str]:
        return sorted({o.module for o in self.observations if o.module})

    @property
    def apis(self) -> list[str]:
        return sorted({o.api for o in self.observations if o.api})


def run_names(observations: Iterable[Observation]) -> RunNames:
    """What the run's observations say is run-specific: its pids, tempfile's random parts."""
    seen = list(observations)
    return RunNames.of(
        {pid for o in seen for pid in o.pids}, {token for o in seen for token in o.volatile}
    )


def draft_rules(
    observations: Iterable[Observation], *, run: RunNames | None = None
) -> tuple[list[Draft], list[Observation]]:
    """Rule drafts for everything seen, in category order, and the observations no allow rule
    can cover (a Python child that would run unshielded: an implicit protection denies it).
    `run`: what is known to be run-specific (default: what these observations say)."""
    observations = list(observations)
    if run is None:
        run = run_names(observations)
    by_category: dict[str, list[Observation]] = defaultdict(list)
    skipped: list[Observation] = []
    for obs in observations:
        if _unallowable(obs.operation):
            skipped.append(obs)
        else:
            by_category[obs.operation.category].append(obs)
    sources = app_source_drafts(by_category["import"], by_category["file"])
    files = _absorbed(by_category["file"], sources)
    drafts = [
        *_process_drafts(by_category["process"], run),
        *_file_drafts(files, run),
        *sources,
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


def _executable_pattern(op: ProcessOp, roots: Roots) -> str:
    # The interpreter itself is `{python}`: the venv's `python` and the file it resolves to
    # here, whatever they are in the image that enforces the policy.
    if op.executable and (op.executable == roots.executable or op.executable in roots.python):
        return "{python}"
    # A base name matches only programs found through PATH (or in folders the process cannot
    # write); anything else is pinned to its absolute path.
    if op.trusted_location:
        return escape_glob(posixpath.basename(op.executable))
    return escape_glob(op.executable)


def _path_arg_glob(arg: str, roots: Roots, run: RunNames) -> str:
    """An absolute path as an argument glob: run-specific names widened (as in file rules),
    {tmp} and {home} written out (variables do not expand in `args`)."""
    widened = generalise_path(arg, "write", roots, run)  # "write": no interpreter root globs
    for var, folder in (("{tmp}", roots.tmp), ("{home}", roots.home)):
        if widened.startswith(var) and folder:
            return escape_glob(folder.rstrip("/")) + widened[len(var) :]
    return widened


# A number given as an option's value or a port: `--port=8002`, `-p8002`, `127.0.0.1:8002`,
# or on its own after an option (`--port 8002`, `-w 2`).
_NUMERIC_VALUE = re.compile(r"^(?P<head>--?[A-Za-z][A-Za-z0-9_-]*=|-[A-Za-z]|.*:)?(?P<n>[0-9]+)$")
_OPTION = re.compile(r"^--?[A-Za-z][A-Za-z0-9_-]*$")
# Numbers that are not counts or ports: file modes, which must stay exactly as seen.
_MODE_OPTIONS = frozenset({"-m", "--mode", "--umask", "--chmod", "--perms", "--permissions"})
_MODE_PROGRAMS = frozenset({"chmod", "chown", "chgrp", "umask", "install", "setfacl"})


def _numeric_glob(arg: str, previous: str | None, program: str) -> str | None:
    """`[0-9]*` for the number in an option value or a port; None to keep `arg` as it is."""
    m = _NUMERIC_VALUE.match(arg)
    if m is None or program in _MODE_PROGRAMS:
        return None
    head = m.group("head")
    if head is None:
        # A bare number counts only as the value of the option before it.
        if previous is None or not _OPTION.match(previous) or previous in _MODE_OPTIONS:
            return None
        return "[0-9]*"
    if head.rstrip("=") in _MODE_OPTIONS:
        return None
    return escape_glob(head) + "[0-9]*"


def configured_numbers(argv: Sequence[str]) -> set[int]:
    """The numbers `argv` gives as an option's value or a port (`-b 127.0.0.1:8002`,
    `--bind=:8002`, `--port 8002`, `-w 2`): those the process rules write as `[0-9]*`."""
    found: set[int] = set()
    program = posixpath.basename(argv[0]) if argv else ""
    previous: str | None = None
    for arg in argv[1:]:
        m = _NUMERIC_VALUE.match(arg)
        if m is not None and _numeric_glob(arg, previous, program) is not None:
            found.add(int(m.group("n")))
        previous = arg
    return found


def _arg_glob(arg: str, previous: str | None, program: str, roots: Roots, run: RunNames) -> str:
    if arg.startswith("/"):
        return _path_arg_glob(arg, roots, run)
    numeric = _numeric_glob(arg, previous, program)
    if numeric is not None:
        return numeric
    spans = run_specific_spans(arg, run)
    return glob_with_stars(arg, spans, escape_glob) if spans else escape_glob(arg)


# multiprocessing starts its helpers with file descriptor numbers in the code it passes
# (`spawn_main(tracker_fd=7, pipe_handle=13)`); they differ from run to run.
_MP_CODE = re.compile(r"^from multiprocessing[.\w]* import ")


def _args_globs(op: ProcessOp, roots: Roots, run: RunNames) -> tuple[str, ...]:
    program = posixpath.basename(op.executable)
    out = []
    previous: str | None = None
    for arg in op.argv[1:]:
        if _MP_CODE.match(arg):
            glob = re.sub(r"\d+", "*", escape_glob(arg))
        else:
            glob = _arg_glob(arg, previous, program, roots, run)
        out.append(glob)
        previous = arg
    return tuple(out)


def _process_drafts(observations: Sequence[Observation], run: RunNames = NO_RUN) -> list[Draft]:
    groups: dict[str, list[Observation]] = defaultdict(list)
    for obs in observations:
        groups[_executable_pattern(obs.operation, obs.roots)].append(obs)  # type: ignore[arg-type]
    drafts = []
    for exe, group in groups.items():
        vectors = sorted({_args_globs(o.operation, o.roots, run) for o in group})  # type: ignore[arg-type]
        match: dict[str, Any] = {"executable": exe}
        if len(vectors) > MAX_ARG_VECTORS:
            match["args"] = [["**"]]
        else:
            match["args"] = [list(v) for v in vectors]
        name = "python" if exe == "{python}" else posixpath.basename(exe)
        drafts.append(Draft("process", match, "run-" + name, group))
    return drafts


# Reads a fresh policy always allows, seen or not: tracebacks, `linecache` and `inspect` read
# the interpreter's and the packages' sources, and a run without an exception never shows it.
ALWAYS_READ = ("{stdlib}/**", "{site_packages}/**")


def always_read_drafts(drafts: Sequence[Draft]) -> list[Draft]:
    """Read rules for `ALWAYS_READ` folders that the drafts do not already have, and for
    appshield's own sources when they are outside those folders (`own_sources_glob`)."""
    have = {d.match.get("path") for d in drafts if d.category == "file"}
    note = "always allowed: tracebacks, linecache and inspect read Python sources"
    found = [
        Draft("file", {"path": glob, "access": ["read"]}, f"file-read-{glob}", [], note)
        for glob in ALWAYS_READ
        if glob not in have
    ]
    roots = next((o.roots for d in drafts for o in d.observations), None)
    own = own_sources_glob(roots or Roots.current())
    if own is not None and own not in have:
        note = (
            "always allowed: appshield's own sources (installed outside site-packages), which"
            " a traceback through a denied operation reads"
        )
        match = {"path": own, "access": ["read"]}
        found.append(Draft("file", match, "file-source-appshield", [], note))
    return found


def own_sources_glob(roots: Roots) -> str | None:
    """appshield's own `.py` files as a read glob, when they are not below the standard
    library or site-packages (an editable install, a source checkout on `PYTHONPATH`).

    A denied operation raises from inside the shield, so its traceback has the shield's
    frames; Flask's `log_exception`, uvicorn's and Django's error pages format it, and
    linecache then reads those files. Below site-packages `ALWAYS_READ` covers them."""
    folders = [*roots.stdlib, *roots.site_packages]
    marker = posixpath.join(_APPSHIELD_HOME, "__init__.py")
    if _under_any(marker, folders) or _under_any(marker, map(os.path.realpath, folders)):
        return None
    return escape_glob(_APPSHIELD_HOME) + "/**/*.py"


# -- file -------------------------------------------------------------------------------------


def _file_drafts(observations: Sequence[Observation], run: RunNames = NO_RUN) -> list[Draft]:
    by_glob: dict[str, tuple[set[str], list[Observation]]] = {}
    for obs in observations:
        op: FileOp = obs.operation  # type: ignore[assignment]
        glob = generalise_path(op.real_path, op.access, obs.roots, run)
        accesses, seen = by_glob.setdefault(glob, (set(), []))
        accesses.add(op.access)
        seen.append(obs)
    by_glob = _collapse_temp_trees(_collapse_siblings(_collapse_numbered(by_glob)))
    drafts = []
    for glob, (accesses, seen) in sorted(by_glob.items()):
        access = [a for a in _ACCESS_ORDER if a in accesses]
        slug = "file-" + "-".join(access) + "-" + glob
        drafts.append(Draft("file", {"path": glob, "access": access}, slug, seen))
    return drafts


# A number on its own in a name (`result-4242.json`, `worker_7.log`): not glued to letters
# or digits, not part of a dotted number (`python3.11`, `libssl.so.3`).
_LONE_NUMBER = re.compile(r"(?<![0-9A-Za-z])(?<![0-9]\.)[0-9]+(?![0-9A-Za-z])(?!\.[0-9])")


def _collapse_numbered(
    by_glob: dict[str, tuple[set[str], list[Observation]]],
) -> dict[str, tuple[set[str], list[Observation]]]:
    """Names of one folder that differ only in their lone numbers (`result-4242.json`,
    `result-4250.json`), seen with the same access, become one glob (`result-*.json`):
    variation within the run is the evidence (a single `config-2.json` stays literal)."""
    families: dict[tuple[str, str, frozenset[str]], list[str]] = defaultdict(list)
    for glob, (accesses, _) in by_glob.items():
        folder, _, name = glob.rpartition("/")
        if not folder or any(c in name for c in "*?["):
            continue
        shape = _LONE_NUMBER.sub("*", name)
        if shape != name:
            families[(folder, shape, frozenset(accesses))].append(glob)
    result = dict(by_glob)
    for (folder, shape, accesses), members in families.items():
        roots = by_glob[members[0]][1][0].roots
        if len(members) < 2 or not collapsible(folder, roots):
            continue
        merged: list[Observation] = []
        for glob in members:
            merged.extend(result.pop(glob)[1])
        target = folder + "/" + shape
        old_access, old_seen = result.get(target, (set(), []))
        result[target] = (old_access | set(accesses), old_seen + merged)
    return result


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


# -- the app's own sources --------------------------------------------------------------------


def _under_any(path: str, folders: Iterable[str]) -> bool:
    return any(path.startswith(f.rstrip("/") + "/") for f in folders if f)


def _interpreter_file(path: str, roots: Roots) -> bool:
    folders = [*roots.stdlib, *roots.site_packages, *roots.prefix]
    return _under_any(path, folders) or _under_any(path, map(os.path.realpath, folders))


def _too_broad(folder: str, roots: Roots) -> bool:
    """Folders whose every `.py` file is more than the app: `/`, `/usr`, the temp and home
    folders themselves, ..."""
    plain = folder.rstrip("/") or "/"
    own = {roots.tmp.rstrip("/"), roots.home.rstrip("/"), os.path.realpath(roots.tmp)}
    return plain in own or not collapsible(escape_glob(plain), roots)


# appshield's own code (the shield, its bootstrap) is not the app's, wherever it is installed.
_APPSHIELD_HOME = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _without_nested(found: dict[str, set[str]]) -> dict[str, set[str]]:
    """Drop the globs another folder glob already covers (its modules join that one)."""
    folders = sorted((g[: -len("/**/*.py")] for g in found if g.endswith("/**/*.py")), key=len)
    result: dict[str, set[str]] = {}
    for glob in sorted(found, key=len):
        outer = next(
            (f for f in folders if glob.startswith(f + "/") and glob != f + "/**/*.py"), None
        )
        key = outer + "/**/*.py" if outer is not None else glob
        result.setdefault(key, set()).update(found[glob])
    return result


def _source_folders(
    imports: Sequence[Observation], files: Sequence[Observation]
) -> dict[str, set[str]]:
    """Folder glob -> the modules (or main scripts) found there: where the app's own code was
    imported from (the `sys.path` entry of each top-level module or package outside the
    interpreter's folders), and the folder of each main script the interpreter ran."""
    found: dict[str, set[str]] = defaultdict(set)
    for obs in imports:
        op: ImportOp = obs.operation  # type: ignore[assignment]
        origin, module = op.origin or "", op.module or ""
        if not (module and origin.startswith("/") and origin.endswith(".py")):
            continue
        if _interpreter_file(origin, obs.roots) or _under_any(origin, [_APPSHIELD_HOME]):
            continue
        package = _package_folder(module, origin)
        entry = posixpath.dirname(package or origin)
        if not _too_broad(entry, obs.roots):
            found[escape_glob(entry) + "/**/*.py"].add(module.split(".")[0])
        elif package:  # only the package's own folder
            found[escape_glob(package) + "/**/*.py"].add(module.split(".")[0])
        else:  # only the module's own file
            found[escape_glob(origin)].add(module)
    for obs in files:
        op: FileOp = obs.operation  # type: ignore[assignment,no-redef]
        path = op.real_path
        # The main script: read by the interpreter itself, no Python code on the stack yet.
        if obs.stack or op.access != "read" or not path.endswith(".py"):
            continue
        if path.startswith("/") and not _interpreter_file(path, obs.roots):
            folder = posixpath.dirname(path)
            broad = _too_broad(folder, obs.roots)
            glob = escape_glob(path) if broad else escape_glob(folder) + "/**/*.py"
            found[glob].add(posixpath.basename(path))
    return _without_nested(found)


def app_source_drafts(
    imports: Sequence[Observation], files: Sequence[Observation] = ()
) -> list[Draft]:
    """Read rules for the app's own `.py` sources, as `ALWAYS_READ` has for the interpreter's:
    a traceback, `linecache` or `inspect` reads them, and a run without an exception never
    shows it."""
    drafts = []
    for glob, modules in sorted(_source_folders(imports, files).items()):
        note = (
            "the app's own sources (tracebacks, linecache, inspect): "
            + ", ".join(sorted(modules)[:4])
            + (" and more" if len(modules) > 4 else "")
        )
        drafts.append(Draft("file", {"path": glob, "access": ["read"]}, "source-" + glob, [], note))
    return drafts


def _absorbed(files: Sequence[Observation], sources: Sequence[Draft]) -> list[Observation]:
    """The file observations no source rule covers; the reads a source rule covers join its
    observations (for the comment)."""
    if not sources:
        return list(files)
    matchers = [(d, path_matcher(d.match["path"])) for d in sources]
    rest = []
    for obs in files:
        op: FileOp = obs.operation  # type: ignore[assignment]
        covering = None
        if op.access == "read":
            covering = next((d for d, match in matchers if match(op.real_path)), None)
        if covering is None:
            rest.append(obs)
        else:
            covering.observations.append(obs)
    return rest


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


def _port_item(op: NetworkOp, configured: Set[int] = frozenset()) -> int | str | None:
    port = op.port
    if port is None:
        return None
    if op.operation == "bind" and port >= EPHEMERAL_LOW:
        return EPHEMERAL
    if op.operation == "bind" and port >= UNPRIVILEGED_LOW and port in configured:
        return UNPRIVILEGED
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
    note = ""
    if name:
        match["host"] = name
    if not portless:
        ports: set[int | str] = set()
        for obs in group:
            op: NetworkOp = obs.operation  # type: ignore[assignment]
            item = _port_item(op, {n for argv in obs.argvs for n in configured_numbers(argv)})
            if item is not None:
                ports.add(item)
            if item == UNPRIVILEGED:
                note = f"port {op.port} was given on the command line: any unprivileged port"
        if UNPRIVILEGED in ports:
            ports.discard(EPHEMERAL)  # inside it
        match["port"] = sorted(ports, key=lambda p: (isinstance(p, str), str(p).zfill(6)))
    match["operation"] = operations
    match["transport"] = transport
    return Draft("network", match, f"{'-'.join(operations)}-{name or 'any'}", group, note)


# -- import -----------------------------------------------------------------------------------


# Where third-party packages live, also when that is inside a standard-library folder (an
# install without a venv: `.../lib/python3.X/site-packages`; a venv's lib folder is `{stdlib}`).
SITE_FOLDERS = (
    "{site_packages}/**",
    "{stdlib}/site-packages/**",
    "{stdlib}/dist-packages/**",
)


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
    # Site-packages first (in a venv, and in an install without one, it lies inside a
    # {stdlib} folder); then the standard library's own folder, which in a venv is narrower
    # than {stdlib} (that also names the venv's lib folder).
    for var in ("site_packages", "stdlib_modules", "stdlib"):
        for folder in getattr(roots, var):
            for spelling in {folder.rstrip("/"), os.path.realpath(folder)}:
                if spelling and origin.startswith(spelling + "/"):
                    if var == "site_packages":
                        return "{site_packages}/**"
                    return "{" + var + "}" + _stdlib_file_kind(origin[len(spelling) :])
    package = _package_folder(op.module or "", origin)
    return escape_glob(package) + "/**" if package else escape_glob(origin)


def _stdlib_file_kind(relative: str) -> str:
    """The origin glob, below a standard-library folder, for the kind of file seen there: any
    `.py` (or sourceless `.pyc`) file, or exactly the native file that was loaded. A module
    seen as Python source is then never allowed from a native file planted under its name
    (`json.cpython-311-x86_64-linux-gnu.so` next to `json/`), which the import system would
    prefer: extension suffixes come first in its search."""
    for suffix in (".py", ".pyc"):
        if relative.endswith(suffix):
            return "/**/*" + suffix
    folder, name = posixpath.split(relative)
    if folder == "/" + DYNLOAD and name.endswith(".so"):
        return folder + "/*.so"  # the rule names the native modules seen there, and only them
    return escape_glob(relative)


def _import_drafts(observations: Sequence[Observation]) -> list[Draft]:
    homes: dict[str, tuple[set[str], list[Observation]]] = {}
    libraries: dict[str, list[Observation]] = defaultdict(list)
    for obs in observations:
        op: ImportOp = obs.operation  # type: ignore[assignment]
        if op.module is None:
            libraries[op.library or op.origin or ""].append(obs)
            continue
        home = _import_home(op, obs.roots)
        modules, seen = homes.setdefault(home, (set(), []))
        # A module glob also matches submodules, so the top-level name is enough where the
        # origin pins where the package comes from; characters a module glob cannot hold (a
        # `spec_from_file_location("my-mod")`) become `?`. Without a file (built-in and
        # frozen modules, namespace packages such as `flask.sansio`, `typing.io`) the name
        # is kept whole: the top-level name there would allow `flask` from any folder.
        name = op.module if not home else op.module.split(".")[0]
        modules.add(re.sub(r"[^A-Za-z0-9_.]", "?", name) or "?")
        seen.append(obs)
    drafts = []
    for home, (modules, seen) in sorted(homes.items()):
        match: dict[str, Any] = {"module": sorted(modules)}
        unless = None
        if home:
            match["origin"] = home
        else:
            # Seen without a file, allowed only without one: a file loaded under one of these
            # names (a planted `sys.py`, `spec_from_file_location`) is not covered.
            unless = {"origin": ["/**"]}
        if home.startswith("{stdlib"):
            # A package of the same name in a site-packages folder below it is not the
            # standard library's (pip installs backports such as `typing` or `enum34`).
            unless = {"origin": list(SITE_FOLDERS)}
        slug = "import-" + (
            "stdlib"
            if home.startswith("{stdlib")
            else home.strip("{}/*").split("}")[0]
            if home.startswith("{")
            else "builtin"
            if not home
            else sorted(modules)[0]
        )
        drafts.append(Draft("import", match, slug, seen, unless=unless))
    for library, seen in sorted(libraries.items()):
        match = {"library": escape_glob(library)}
        drafts.append(Draft("import", match, "load-" + posixpath.basename(library), seen))
    return drafts


def stdlib_names() -> frozenset[str]:
    return frozenset(getattr(sys, "stdlib_module_names", ()))


# Never granted by a broad standard-library rule, whatever their form on this interpreter:
# they reach native code or start processes without going through a Python API appshield
# judges. ctypes is a pure-Python package over `_ctypes`, so it is excluded by name and by
# folder; the extension modules among them are in `NATIVE_NEVER_BROAD` too (below).
NEVER_BROAD = frozenset({"ctypes", "_ctypes", "cffi", "_cffi_backend", "_posixsubprocess", "mmap"})
STDLIB_PYTHON_ID = "import-stdlib-python"
STDLIB_FROZEN_ID = "import-stdlib-frozen"


def _pure_python(folder: str, name: str) -> bool:
    base = posixpath.join(folder, name)
    return any(
        os.path.isfile(candidate)
        for candidate in (
            base + ".py",
            base + ".pyc",
            posixpath.join(base, "__init__.py"),
            posixpath.join(base, "__init__.pyc"),
        )
    )


def stdlib_python_names(folders: Iterable[str]) -> list[str]:
    """The top-level standard-library names that are pure Python in `folders` (a module or a
    package of `.py` or `.pyc` files there), less `never_broad` ones."""
    return list(_stdlib_python_names(tuple(f for f in dict.fromkeys(folders) if f)))


@functools.lru_cache(maxsize=8)
def _stdlib_python_names(folders: tuple[str, ...]) -> tuple[str, ...]:
    # Cached: about a thousand stat calls, and a policy is often written more than once
    # per process (the tests, `--merge` after a fresh run).
    return tuple(
        sorted(
            name
            for name in stdlib_names()
            if not never_broad(name)
            if any(_pure_python(folder, name) for folder in folders)
        )
    )


def stdlib_python_draft(observations: Iterable[Observation]) -> Draft | None:
    """One rule for the standard library's pure-Python modules (None when the observations
    name no standard-library folder), the ones the run did not import included: a code path
    not taken while learning may import one lazily (`encodings.idna` imports `stringprep` on
    the first IDNA host name).

    Each condition narrows it: the name is a top-level standard-library name that is pure
    Python in this interpreter's standard library (a generated list, so a third-party
    package such as pip or setuptools, even one bundled inside the standard library's folder,
    is not covered); the file is a `.py` or `.pyc` file in `{stdlib_modules}`, the standard
    library's own folder (not `{stdlib}`, which in a venv also names the venv's own lib
    folder), so an extension module, a built-in or frozen module (no file) and a
    `stringprep.py` planted in the app's folder or on a prepended `sys.path` entry are not;
    and `unless` takes out anything below a site-packages folder and ctypes' own folder.
    Extension modules, ctypes and third-party packages stay listed precisely by the other
    import rules."""
    folders = [f for obs in observations for f in obs.roots.stdlib_modules or obs.roots.stdlib]
    names = stdlib_python_names(folders)
    if not names:
        return None
    match: dict[str, Any] = {
        "module": names,
        "origin": ["{stdlib_modules}/**/*.py", "{stdlib_modules}/**/*.pyc"],
    }
    # ctypes: the one package of NEVER_BROAD that is Python in the standard library.
    unless = {"origin": [*SITE_FOLDERS, "{stdlib_modules}/ctypes/**"]}
    note = (
        "the standard library's pure-Python modules, also those this run did not import (a"
        " code path not taken may import one lazily); never extension modules, ctypes or"
        " site-packages. `appshield learn --strict-imports` leaves this rule out."
    )
    return Draft("import", match, STDLIB_PYTHON_ID, [], note, unless)


# The standard library's own extension modules that no broad rule grants, whether in
# lib-dynload or built into the interpreter. Each group gives a native capability that goes
# around the hooks or outlives them, or exists only to test CPython's internals:
# - `_ctypes` loads any shared library and calls any address; `mmap` maps files and memory
#   that are then read and written with no file operation to judge;
# - `_posixsubprocess` forks and execs without the `subprocess`/`os` APIs the process hook
#   judges; `_posixshmem` and `_multiprocessing` create and unlink shared memory and
#   semaphores by name, outside the file rules;
# - the subinterpreter modules run code in another interpreter, which has none of this
#   one's patches or Python-level audit hooks;
# - `_sqlite3` loads any shared library with `load_extension` (on builds that enable it:
#   Debian's, the python images), not judged when a database file's CHECK constraint calls
#   it (docs/limits.md); `_tkinter` runs Tcl, whose `exec`, `open` and `load` start
#   programs, open files and load libraries in C, unseen;
#   `_remote_debugging` (3.14) reads other processes' memory;
# - `readline` (history and init files), `_dbm` and `_gdbm` (database files) read and write
#   files at any path in C with no audit event; `spwd` reads the shadow password database,
#   `nis` queries NIS servers and `syslog` writes to the system log's socket, past the file
#   and network rules;
# - `_test*` (`_testcapi`, `_testinternalcapi`, ...), `_xxtestfuzz`, `xxlimited*` and
#   `xxsubtype` are CPython's test and example modules: raw C-API access, never app code.
NATIVE_NEVER_BROAD = frozenset(
    {
        "_ctypes",
        "_ctypes_test",
        "mmap",
        "_posixsubprocess",
        "_posixshmem",
        "_multiprocessing",
        "_xxsubinterpreters",
        "_xxinterpchannels",
        "_interpreters",
        "_interpchannels",
        "_interpqueues",
        "_sqlite3",
        "_tkinter",
        "_remote_debugging",
        "readline",
        "_dbm",
        "_gdbm",
        "spwd",
        "nis",
        "syslog",
        "_xxtestfuzz",
        "xxsubtype",
    }
)
_NATIVE_NEVER_BROAD_PREFIXES = ("_test", "xxlimited")
STDLIB_NATIVE_ID = "import-stdlib-native"
# The folder of the standard library's extension modules, inside its own folder (POSIX
# builds; Windows keeps them in `DLLs`, which gets no rule).
DYNLOAD = "lib-dynload"


def never_broad(name: str) -> bool:
    """True for a top-level name no broad standard-library rule may grant."""
    return (
        name in NEVER_BROAD
        or name in NATIVE_NEVER_BROAD
        or name.startswith(_NATIVE_NEVER_BROAD_PREFIXES)
    )


def stdlib_native_names(folders: Iterable[str]) -> list[str]:
    """The standard library's extension modules in the `lib-dynload` folder of `folders`
    (the module name is the file name up to its first `.`), that are standard-library names
    of this interpreter, less `never_broad` ones."""
    return list(_stdlib_native_names(tuple(f for f in dict.fromkeys(folders) if f)))


@functools.lru_cache(maxsize=8)
def _stdlib_native_names(folders: tuple[str, ...]) -> tuple[str, ...]:
    suffixes = tuple(
        sys.modules["_frozen_importlib_external"].EXTENSION_SUFFIXES  # type: ignore[attr-defined]
    )
    stdlib = stdlib_names()
    found: set[str] = set()
    for folder in folders:
        try:
            entries = os.listdir(posixpath.join(folder, DYNLOAD))
        except OSError:
            continue
        for entry in entries:
            name = entry.partition(".")[0]
            if entry.endswith(suffixes) and name in stdlib and not never_broad(name):
                found.add(name)
    return tuple(sorted(found))


def stdlib_native_draft(observations: Iterable[Observation]) -> Draft | None:
    """The rule for CPython's own extension modules (`unicodedata`, `_csv`, `_decimal`,
    `_json`, `_zoneinfo`, ...): the pure-Python modules of `stdlib_python_draft` need them
    (`encodings.idna` imports `stringprep`, which imports `unicodedata`), and they come with
    the interpreter, as its `.py` files do. None when the standard library has no
    `lib-dynload` folder (its extensions are then built in: see `stdlib_frozen_draft`).

    Both conditions are exact: the name is one of a list generated from the files in
    `{stdlib_modules}/lib-dynload` (less `never_broad`), and the file is directly in that
    folder (`*` does not cross a `/`). A copy of `unicodedata`'s file anywhere else, under
    its own name or another, is not covered; nor is another file of that folder loaded under
    a listed name (an allow also needs the file's own name, `ImportOp.home`, to match)."""
    folders = [f for obs in observations for f in obs.roots.stdlib_modules or obs.roots.stdlib]
    names = stdlib_native_names(folders)
    if not names:
        return None
    match: dict[str, Any] = {"module": names, "origin": ["{stdlib_modules}/" + DYNLOAD + "/*.so"]}
    note = (
        "the standard library's own extension modules in its lib-dynload folder, by exact"
        " name (pure-Python modules the run did not import need them: encodings.idna needs"
        " unicodedata, csv needs _csv); never _ctypes, mmap, _posixsubprocess, shared"
        " memory, subinterpreters, _sqlite3, _tkinter, readline, dbm or CPython's test"
        " modules."
        " `appshield learn --strict-imports` leaves this rule out."
    )
    return Draft("import", match, STDLIB_NATIVE_ID, [], note)


def stdlib_frozen_names() -> list[str]:
    """The standard-library modules compiled into this interpreter: frozen (3.11+: `runpy`,
    `os`, `importlib.util`, ...; CPython's own test modules `__hello__`, `__phello__` left
    out) and built in (`posix`, `_io`, and on builds without `lib-dynload` modules such as
    `unicodedata` or `_csv`), less `never_broad` ones."""
    import _imp

    frozen = getattr(_imp, "_frozen_module_names", None)
    found = {*(frozen() if frozen is not None else ()), *sys.builtin_module_names}
    stdlib = stdlib_names()
    return sorted(
        name
        for name in found
        if name.split(".")[0] in stdlib
        and not never_broad(name.split(".")[0])
        and not name.startswith("__")
    )


def stdlib_frozen_draft(observations: Iterable[Observation]) -> Draft | None:
    """The rule for the standard library's frozen and built-in modules: compiled into the
    interpreter, so no file, and `origin` cannot name them. They are allowed by their exact
    dotted names, and only when there is no file at all (`unless` any origin): the same name
    loaded from a file (`spec_from_file_location("runpy", "/tmp/x.py")`) is not covered."""
    if not any(obs.roots.stdlib for obs in observations):
        return None
    names = stdlib_frozen_names()
    if not names:
        return None
    note = (
        "the standard library's frozen and built-in modules (compiled into the interpreter,"
        " no file), by exact name; a file loaded under one of these names is not covered"
    )
    return Draft("import", {"module": names}, STDLIB_FROZEN_ID, [], note, {"origin": ["/**"]})


def stdlib_drafts(observations: Iterable[Observation]) -> list[Draft]:
    """The rules for standard-library modules the run may not have imported (see
    `stdlib_python_draft`, `stdlib_native_draft` and `stdlib_frozen_draft`)."""
    imports = list(observations)
    found = (
        stdlib_python_draft(imports),
        stdlib_native_draft(imports),
        stdlib_frozen_draft(imports),
    )
    return [draft for draft in found if draft is not None]


@dataclass
class GrantDraft:
    """The grant to write for one distribution: its entries as drafts (their `unless` is
    left to the ordinary rules, which keep it), and the version it was learned with."""

    name: str
    version: str
    drafts: list[Draft]


def grant_drafts(
    observations: Iterable[Observation], *, run: RunNames | None = None
) -> tuple[list[GrantDraft], list[Observation]]:
    """A grant per distribution that was answerable for something, generalised as rules
    are; and the observations no grant can cover (no distribution could be shown to own
    the code: `packages:unattributed`)."""
    observations = list(observations)
    if run is None:
        run = run_names(observations)
    by_name: dict[str, tuple[str, list[Observation]]] = {}
    unattributed: list[Observation] = []
    for obs in observations:
        for name, version in obs.packages:
            if name == "?":
                unattributed.append(obs)
                continue
            by_name.setdefault(name, (version, []))[1].append(obs)
    grants = []
    for name in sorted(by_name):
        version, seen = by_name[name]
        drafts, _ = draft_rules(seen, run=run)
        if any(d.category == "file" for d in drafts):
            # A distribution that reads files formats tracebacks too (a server's error log):
            # the sources a traceback reads, as the ordinary rules allow them.
            extra = always_read_drafts(drafts)
            at = max((i + 1 for i, d in enumerate(drafts) if d.category == "file"), default=0)
            drafts[at:at] = extra
        for draft in drafts:
            draft.unless = None
        grants.append(GrantDraft(name, version, drafts))
    return grants, unattributed
