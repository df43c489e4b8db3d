"""Variables in path globs, expanded once when the policy is loaded.

    ~ (leading)       the user's home folder
    {home}            the user's home folder
    {cwd}             the current directory at load time
    {tmp}             tempfile.gettempdir()
    {prefix}          sys.prefix
    {stdlib}          the standard library folders (sysconfig stdlib and platstdlib)
    {stdlib_modules}  the folder of the standard library's own modules (sysconfig stdlib
                      alone: in a venv, platstdlib is the venv's own lib folder, which holds
                      its site-packages and whatever else is written there)
    {site_packages}   every site-packages folder, the user's one included when it exists
    {policy_dir}      the folder of the policy file that holds the rule
    {python}          the running interpreter: `sys.executable` (a venv's `python`), the file
                      it resolves to, and the base interpreter a venv was made from

A child started by a shielded parent does not compute them again: it takes the values its
root process expanded (`freeze`, from the identity the parent passed; see
`appshield._inherit`), so a child started with another cwd, TMPDIR or HOME gets the same rules.

A variable with several values ({stdlib}, {site_packages}) turns one glob into several.
Values are glob-escaped, so a home folder named `a[1]` matches only itself. Any other
brace in a path glob is an error: there is no literal-brace syntax, and a typo such as
`{hom}` must not silently become a pattern that never matches.
"""

from __future__ import annotations

import itertools
import os
import sys

from appshield.normalize import realpath
from appshield.settings import environ_subset

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

__all__ = [
    "INHERITED",
    "NAMES",
    "VariableError",
    "expand",
    "expanded",
    "freeze",
    "normalise_path_glob",
    "record",
    "value",
    "values",
]

NAMES = (
    "cwd",
    "home",
    "tmp",
    "prefix",
    "stdlib",
    "stdlib_modules",
    "site_packages",
    "policy_dir",
    "python",
)
# Values a child takes from its root process like the variables, though no glob can name
# them: the collector endpoints of `implicit:telemetry_exporter` (appshield.policy.exporter).
INHERITED = ("telemetry_endpoints",)

# `expand` reads its braces without `re`: `re` (with `enum`) is about 15 M instructions of
# every start-up, and this module is on that path. `tokens` finds exactly what the regular
# expression `\{([^{}]*)\}|[{}]` would (tests/policy/test_variable_tokens.py compares them).
_GLOB_ESCAPES = {ord(c): f"[{c}]" for c in "*?["}


def tokens(pattern: str) -> Iterator[tuple[int, int, str | None]]:
    """(start, end, name) of each `{name}` in `pattern`, in order, and (start, end, None) for a
    stray brace: a `}`, or a `{` whose next brace is another `{` (or none)."""
    at = 0
    size = len(pattern)
    while at < size:
        brace = _next_brace(pattern, at)
        if brace < 0:
            return
        if pattern[brace] == "{":
            close = _next_brace(pattern, brace + 1)
            if close >= 0 and pattern[close] == "}":
                yield brace, close + 1, pattern[brace + 1 : close]
                at = close + 1
                continue
        yield brace, brace + 1, None
        at = brace + 1


def _next_brace(pattern: str, start: int) -> int:
    opening = pattern.find("{", start)
    closing = pattern.find("}", start)
    if opening < 0 or 0 <= closing < opening:
        return closing
    return opening


class VariableError(ValueError):
    """A glob names an unknown variable or holds a stray brace."""


# `os.path.realpath`, the same string, for less: one implementation, in `appshield.normalize`
# (install's resolution of `sys.path` and the policy files' folders use it too).
real_path = realpath


def _unique(paths: list[str]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for path in paths:
        if path:
            seen.setdefault(os.path.normpath(path), None)
    return tuple(seen)


def _site_packages() -> list[str]:
    import site  # already imported at start-up unless `python -S`

    found: list[str] = []
    getsite = getattr(site, "getsitepackages", None)  # missing in some old virtualenvs
    if getsite is not None:
        found.extend(getsite())
    user = site.getusersitepackages()
    if isinstance(user, str) and os.path.isdir(user):
        found.append(user)
    return found


def _interpreters() -> list[str]:
    """The paths the running interpreter goes by: a process rule sees the resolved file,
    a reader the venv's `python`, and a venv's children may be started with the base one."""
    found: list[str] = []
    known: set[str] = set()  # a venv's link leads into the base interpreter's folders
    for path in (sys.executable, getattr(sys, "_base_executable", None)):
        if isinstance(path, str) and os.path.isabs(path):
            found += [path, real_path(path, known)]
    return found


# Values handed down by the root process (never `policy_dir`, which the file path gives), and
# every value this process used, for handing down in turn.
_frozen: dict[str, tuple[str, ...]] = {}
_expanded: dict[str, tuple[str, ...]] = {}


def freeze(values: Mapping[str, tuple[str, ...]]) -> None:
    """Use these values from now on instead of computing them."""
    _frozen.clear()
    _frozen.update(
        {
            k: tuple(v)
            for k, v in values.items()
            if (k in NAMES or k in INHERITED) and k != "policy_dir"
        }
    )


def frozen(name: str) -> tuple[str, ...] | None:
    return _frozen.get(name)


def record(name: str, found: tuple[str, ...]) -> None:
    """Note a value this process's policy was built with (the cache checks `{tmp}` its own
    way)."""
    if name != "policy_dir":
        _expanded.setdefault(name, found)


def expanded() -> dict[str, tuple[str, ...]]:
    """Every variable value the policy of this process was built with."""
    return dict(_expanded)


def value(name: str, policy_dir: str, *, built_with: bool = True) -> tuple[str, ...]:
    """The value(s) of one variable, for a rule written in `policy_dir`. `built_with`: the
    policy is built with it (noted for `expanded`, what children inherit); false for a value
    only looked at (a recording's header).

    Each is computed on its own (and its modules imported only then), because the cached
    policy (`appshield.policy.cache`) re-checks just the variables a policy used, at start-up.
    """
    if name == "policy_dir":
        return (policy_dir,)
    found = _frozen.get(name)
    if found is None:
        found = _compute(name)
    if built_with:
        _expanded.setdefault(name, found)
    return found


# What this process needs of sysconfig: (stdlib, platstdlib, LIBDIR, MULTIARCH), the first two
# for `{stdlib}` and `{stdlib_modules}`, the others for where the dynamic loader looks
# (`appshield.hooks.imports.library`). Importing sysconfig and asking it costs about 7 M
# instructions (it imports its build-time data, and expands every scheme path with `re`), so
# it is asked once per process, and not at all when the policy cache proves the answer
# (`sysconfig_proof`, `prove_sysconfig_answer`).
_answer: tuple[str, str, str, str] | None = None
# The proof `_answer` was obtained under, when it was taken (what the cache stores with it).
_answer_proof: tuple[object, ...] | None = None


def _sysconfig_answer() -> tuple[str, str, str, str]:
    global _answer, _answer_proof
    found = _answer
    if found is None:
        proof = sysconfig_proof()  # before: what the answer below was computed from
        import sysconfig

        paths = sysconfig.get_paths()
        found = (
            paths.get("stdlib", ""),
            paths.get("platstdlib", ""),
            str(sysconfig.get_config_var("LIBDIR") or ""),
            str(sysconfig.get_config_var("MULTIARCH") or ""),
        )
        _answer = found
        _answer_proof = proof if proof == sysconfig_proof() else None
    return found


def _stdlib_paths() -> tuple[str, str]:
    found = _sysconfig_answer()
    return found[0], found[1]


def loader_folders() -> tuple[str, str]:
    """sysconfig's LIBDIR and MULTIARCH (each "" when it has none)."""
    found = _sysconfig_answer()
    return found[2], found[3]


def sysconfig_answer_with_proof() -> tuple[tuple[object, ...], tuple[str, ...]] | None:
    """(proof, what this process needs of sysconfig), for the policy cache (asked of
    sysconfig now if this process has not yet: `implicit:telemetry_exporter` and the import
    hooks need it at every start, even when no written rule does); None when what it came
    from could not be proved."""
    _sysconfig_answer()
    if _answer is None or _answer_proof is None:
        return None
    return _answer_proof, _answer


def prove_sysconfig_answer(proof: object, answer: object) -> bool:
    """Take `answer` as sysconfig's without asking sysconfig, when `proof` (stored beside it
    by a process that asked it) equals this process's `sysconfig_proof()`: the same sysconfig
    code computing from the same inputs gives the same answer."""
    global _answer, _answer_proof
    if _answer is not None:
        return False  # asked already: that answer stands
    if _frozen:
        # A child of a shielded parent: its parent's identity covers the values it takes
        # (the variables handed down) but not this answer, so a cache is not believed.
        return False
    if not (type(answer) is tuple and len(answer) == 4 and all(type(a) is str for a in answer)):
        return False
    current = sysconfig_proof()
    if current is None or proof != current:
        return False
    _answer, _answer_proof = (answer[0], answer[1], answer[2], answer[3]), current
    return True


# The environment variables sysconfig reads (CPython 3.10-3.13: the build-time data module's
# name, a cross-build's project base and platform, the user base), those that set `sys`'s
# prefixes, and those the distributions' patched sysconfig modules read (Debian, Fedora).
# Not PYTHONPATH: it only chooses where modules come from, which the files' identities in
# the proof cover.
_SYSCONFIG_ENVIRON = (
    "PYTHONHOME",
    "PYTHONUSERBASE",
    "PYTHONPLATLIBDIR",
    "DEB_PYTHON_INSTALL_LAYOUT",
    "RPM_BUILD_ROOT",
    "VIRTUAL_ENV",
)


def _sysconfig_environ() -> tuple[tuple[str, str], ...]:
    # `environ_subset`: only the variables that count are decoded (`os.environ.items()`
    # decodes every variable of the process, about 0.3 M instructions of every start with a
    # cached policy, more in a CI job).
    return tuple(sorted(environ_subset(os.environ, ("_PYTHON",), _SYSCONFIG_ENVIRON).items()))


def _module_file(name: str) -> str | None:
    """The file the module `name` is (or would be) loaded from, without importing it: the
    loaded module's, else the first finder's answer. None when it is not a plain file."""
    module = sys.modules.get(name)
    if module is not None:
        where = getattr(module, "__file__", None)
        return where if isinstance(where, str) and os.path.isabs(where) else None
    for finder in sys.meta_path:
        find = getattr(finder, "find_spec", None)
        if find is None:
            continue
        spec = find(name, None)
        if spec is None:
            continue
        loader = type(spec.loader).__name__
        origin = spec.origin
        if loader not in ("SourceFileLoader", "SourcelessFileLoader"):
            return None
        return origin if isinstance(origin, str) and os.path.isabs(origin) else None
    return None


def sysconfig_proof() -> tuple[object, ...] | None:
    """Everything `sysconfig.get_paths()`'s stdlib and platstdlib are computed from: the
    interpreter's version, ABI, platform and prefixes, `sys.platlibdir`, the environment
    variables sysconfig reads, and which files sysconfig and its build-time data are loaded
    from (path, device, inode, size, modification time: an edited or replaced sysconfig is
    another proof). Two equal proofs mean the same answer. None when a module is not a
    plain file (the answer must then be asked of sysconfig itself); any error is None."""
    try:
        data = os.environ.get(
            "_PYTHON_SYSCONFIGDATA_NAME",
            f"_sysconfigdata_{sys.abiflags}_{sys.platform}_"
            f"{getattr(sys.implementation, '_multiarch', '')}",
        )
        files = []
        for module in ("sysconfig", data):
            where = _module_file(module)
            if where is None:
                return None
            st = os.stat(where)
            files.append((where, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
        return (
            "sysconfig-proof/1",
            sys.version,
            sys.implementation.cache_tag,
            sys.abiflags,
            sys.platform,
            os.name,
            sys.prefix,
            sys.base_prefix,
            sys.exec_prefix,
            sys.base_exec_prefix,
            getattr(sys, "platlibdir", "lib"),
            str(getattr(sys, "_framework", "")),
            tuple(files),
            _sysconfig_environ(),
        )
    except Exception:
        return None


def _compute(name: str) -> tuple[str, ...]:
    if name == "cwd":
        return (os.getcwd(),)
    if name == "home":
        return (os.path.expanduser("~"),)
    if name == "tmp":
        import tempfile

        return (tempfile.gettempdir(),)
    if name == "prefix":
        return (sys.prefix,)
    if name == "stdlib":
        return _unique(list(_stdlib_paths()))
    if name == "stdlib_modules":
        # Also resolved: the import system's spelling comes from `sys.path`, which may reach
        # the same folder through a symlinked prefix.
        folder = _stdlib_paths()[0]
        return _unique([folder, real_path(folder) if folder else ""])
    if name == "site_packages":
        return _unique(_site_packages())
    if name == "python":
        return _unique(_interpreters())
    raise KeyError(name)


def values(policy_dir: str, *, built_with: bool = True) -> dict[str, tuple[str, ...]]:
    """The value(s) of every variable, for a rule written in `policy_dir` (see `value`)."""
    return {name: value(name, policy_dir, built_with=built_with) for name in NAMES}


def glob_escaped(value: str) -> str:
    """A variable's value as `expand` puts it into a glob (matching only itself)."""
    # Only the glob characters of our syntax need escaping; a class of one is the escape.
    return value.translate(_GLOB_ESCAPES)


def expand(pattern: str, variables: Mapping[str, tuple[str, ...]]) -> list[str]:
    """Every glob that `pattern` stands for once its variables are replaced."""
    if pattern == "~" or pattern.startswith("~/"):
        pattern = "{home}" + pattern[1:]
    elif pattern.startswith("~"):
        raise VariableError(f"only a leading '~' or '~/' is supported, not {pattern!r}")
    pieces: list[list[str]] = []
    last = 0
    for start, end, name in tokens(pattern):
        if name is None or name not in variables:
            shown = pattern[start:end]
            raise VariableError(
                f"unknown variable {shown!r} in {pattern!r} (known: "
                + ", ".join("{" + n + "}" for n in NAMES)
                + ")"
            )
        pieces.append([pattern[last:start]])
        pieces.append([glob_escaped(v) for v in variables[name]])
        last = end
    if not pieces:
        return [pattern]
    pieces.append([pattern[last:]])
    return ["".join(combo) for combo in itertools.product(*pieces)]


def normalise_path_glob(glob: str) -> str:
    """Fold `.`, `..` and repeated slashes; a trailing `/**` stays (normpath keeps it)."""
    out = os.path.normpath(glob)
    if out.startswith("//"):  # POSIX lets normpath keep exactly two leading slashes
        out = "/" + out.lstrip("/")
    return out
