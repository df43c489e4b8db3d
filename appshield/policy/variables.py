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
import re
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
else:
    from _collections_abc import Mapping  # collections.abc's, without `collections`

__all__ = [
    "INHERITED",
    "NAMES",
    "LazyVariables",
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

_TOKEN = re.compile(r"\{([^{}]*)\}|[{}]")


class VariableError(ValueError):
    """A glob names an unknown variable or holds a stray brace."""


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
    for path in (sys.executable, getattr(sys, "_base_executable", None)):
        if isinstance(path, str) and os.path.isabs(path):
            found += [path, os.path.realpath(path)]
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
        import sysconfig

        paths = sysconfig.get_paths()
        return _unique([paths.get("stdlib", ""), paths.get("platstdlib", "")])
    if name == "stdlib_modules":
        import sysconfig

        # Also resolved: the import system's spelling comes from `sys.path`, which may reach
        # the same folder through a symlinked prefix.
        folder = sysconfig.get_paths().get("stdlib", "")
        return _unique([folder, os.path.realpath(folder) if folder else ""])
    if name == "site_packages":
        return _unique(_site_packages())
    if name == "python":
        return _unique(_interpreters())
    raise KeyError(name)


def values(policy_dir: str, *, built_with: bool = True) -> dict[str, tuple[str, ...]]:
    """The value(s) of every variable, for a rule written in `policy_dir` (see `value`)."""
    return {name: value(name, policy_dir, built_with=built_with) for name in NAMES}


class LazyVariables(Mapping[str, tuple[str, ...]]):
    """The variables for one policy folder, each computed when a glob first names it.

    `used` records what was looked up: a cached policy is valid only while these still
    have the same values (a `{cwd}` rule loaded in another folder is another policy).
    """

    def __init__(self, policy_dir: str, used: dict[tuple[str, str], tuple[str, ...]]) -> None:
        self.policy_dir = policy_dir
        self.used = used

    def __getitem__(self, name: str) -> tuple[str, ...]:
        key = (self.policy_dir, name)
        found = self.used.get(key)
        if found is None:
            found = self.used[key] = value(name, self.policy_dir)
        return found

    def __contains__(self, name: object) -> bool:
        return name in NAMES

    def __iter__(self) -> Iterator[str]:
        return iter(NAMES)

    def __len__(self) -> int:
        return len(NAMES)


def _escape(value: str) -> str:
    # Only the glob characters of our syntax need escaping; a class of one is the escape.
    return re.sub(r"([*?\[])", r"[\1]", value)


def expand(pattern: str, variables: Mapping[str, tuple[str, ...]]) -> list[str]:
    """Every glob that `pattern` stands for once its variables are replaced."""
    if pattern == "~" or pattern.startswith("~/"):
        pattern = "{home}" + pattern[1:]
    elif pattern.startswith("~"):
        raise VariableError(f"only a leading '~' or '~/' is supported, not {pattern!r}")
    pieces: list[list[str]] = []
    last = 0
    for token in _TOKEN.finditer(pattern):
        name = token.group(1)
        if name is None or name not in variables:
            shown = token.group(0)
            raise VariableError(
                f"unknown variable {shown!r} in {pattern!r} (known: "
                + ", ".join("{" + n + "}" for n in NAMES)
                + ")"
            )
        pieces.append([pattern[last : token.start()]])
        pieces.append([_escape(v) for v in variables[name]])
        last = token.end()
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
