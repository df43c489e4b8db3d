"""Would a started program be a Python interpreter that runs without this process's shield?
The check behind `ProcessOp.unshielded` (rule id `implicit:unshielded_children`), asked by
the process describer (`appshield._proc_describe.unshielded`) for every start.

It compares the child with how the parent was switched on (`parent`: the activation facts,
handed in; `appshield.activation` keeps them), so it applies only to a shield that came in
through the environment (`appshield run`, the sitecustomize bootstrap,
`opentelemetry-instrument`): only those travel to children. A Python child is unshielded when
its start-up options isolate it (`-I`, `-E`, `-S`), when its environment turns the shield off
or points it at another policy, mode or parent identity, when the interpreter cannot load this
appshield (another version), or when its PYTHONPATH does not bring in the bootstrap first.

No patching, and no I/O beyond looking at the interpreter and its folders: `explain` and the
hooks both reach it through the describer.
"""

from __future__ import annotations

import os
import sys

from appshield import _inherit

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any, Protocol
else:
    # The same classes, without `typing` or the `collections` package at start-up: a Protocol
    # is only read by type checkers, and `_collections_abc` is what `collections.abc` is.
    from _collections_abc import Mapping

    Protocol = object

__all__ = [
    "BOOTSTRAP_DIR",
    "ENV_SOURCES",
    "Parent",
    "child_would_be_unshielded",
    "is_python_program",
    "isolation_flags",
]

# Where users' manifests point PYTHONPATH (`appshield bootstrap-path` prints it): kept at
# appshield/bootstrap, outside appshield/activation, so that a path written into a deployment
# before that package existed stays true.
BOOTSTRAP_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bootstrap")
_BOOTSTRAP_REAL = os.path.realpath(BOOTSTRAP_DIR)

# Ways in that travel through the environment, so children inherit them.
ENV_SOURCES = frozenset({"bootstrap", "opentelemetry"})


class Parent(Protocol):
    """How the parent's shield was switched on (`appshield.activation.Activation` is one)."""

    @property
    def source(self) -> str: ...
    @property
    def policy_env(self) -> str | None: ...
    @property
    def mode_env(self) -> str | None: ...
    @property
    def identity(self) -> str | None: ...


def is_python_program(executable: str, argv0: str | None = None) -> bool:
    """A CPython-style interpreter: `python`, `python3`, `python3.11`, `pythonw`, `pypy3`,
    or this very interpreter under any name."""
    import re

    pattern = re.compile(r"^(python|pypy)(\d+(\.\d+)*)?[a-z]*(\.exe)?$")
    for candidate in (executable, argv0):
        if candidate and pattern.match(os.path.basename(candidate)):
            return True
    try:
        return bool(executable) and os.path.realpath(executable) == os.path.realpath(sys.executable)
    except (OSError, ValueError):
        return False


# Python options that take a value (attached or as the next argument).
_WITH_VALUE = frozenset("WX")
_LONG_WITH_VALUE = frozenset({"--check-hash-based-pycs"})


def isolation_flags(argv: Sequence[str]) -> set[str]:
    """The start-up options among -I, -E and -S in a Python command line (argv[0] is the
    interpreter). Parsing stops where Python's does: at -c/-m (their value follows), a script
    name, `-` or `--`."""
    found: set[str] = set()
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg in ("-", "--") or not arg.startswith("-"):
            break
        if arg.startswith("--"):
            i += 2 if arg in _LONG_WITH_VALUE else 1
            continue
        letters = arg[1:]
        for j, letter in enumerate(letters):
            if letter in "IES":
                found.add(letter)
            if letter in "cm":
                return found
            if letter in _WITH_VALUE:
                if j == len(letters) - 1:
                    i += 1  # the value is the next argument
                break
        i += 1
    return found


def _text_env(env: Mapping[Any, Any]) -> dict[str, str]:
    """The environment as text, as the child reads it. A name given twice (`"PYTHONPATH"` and
    `b"PYTHONPATH"` both reach the child's environment block): the child's C start-up
    (`getenv`) and its `os.environ` both take the first, so the first counts here too."""
    out: dict[str, str] = {}
    for key, value in env.items():
        k = os.fsdecode(key) if isinstance(key, bytes) else str(key)
        if k not in out:
            out[k] = os.fsdecode(value) if isinstance(value, bytes) else str(value)
    return out


def _env_pairs(items: Sequence[Any]) -> dict[str, str]:
    """fork_exec's `b"KEY=VALUE"` items (exact bytes, or str) as a mapping; of a repeated name,
    the first, as the child reads it (see `_text_env`)."""
    pairs: dict[str, str] = {}
    for item in items:
        kind = type(item)
        if kind is not bytes and kind is not str:
            raise TypeError(f"not a plain environment item: {kind.__qualname__}")
        key, _, value = os.fsdecode(item).partition("=")
        pairs.setdefault(key, value)
    return pairs


def _has_sitecustomize(folder: str) -> bool:
    return any(
        os.path.exists(os.path.join(folder, name))
        for name in ("sitecustomize.py", "sitecustomize.pyc", "sitecustomize/__init__.py")
    )


def _otel_bootstrap_dir() -> str | None:
    try:
        import importlib.util

        spec = importlib.util.find_spec("opentelemetry.instrumentation.auto_instrumentation")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    return os.path.realpath(os.path.dirname(spec.origin))


def _otel_skips_us(env: Mapping[str, str]) -> bool:
    skipped = env.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "")
    names = {name.strip() for name in skipped.split(",")}
    return bool(names & {"appshield", "*"})


def _pythonpath_activates(env: Mapping[str, str], cwd: str | None) -> bool:
    """Would a Python started with this environment switch appshield on? The first folder on
    PYTHONPATH that holds a sitecustomize decides: ours does; OpenTelemetry's runs our
    instrumentor unless told to skip it (APPSHIELD_POLICY is checked separately); anything
    else shadows ours."""
    otel_dir = None
    for entry in env.get("PYTHONPATH", "").split(os.pathsep):
        if not entry:
            continue
        folder = os.path.realpath(os.path.join(cwd or os.getcwd(), entry))
        if folder == _BOOTSTRAP_REAL:
            return True
        if not _has_sitecustomize(folder):
            continue
        if otel_dir is None:
            otel_dir = _otel_bootstrap_dir() or ""
        return folder == otel_dir and not _otel_skips_us(env)
    return False


_python_name: Any = None  # is_python_program's name pattern, compiled on first use


def _arg_text(value: Any) -> str:
    return os.fsdecode(value) if isinstance(value, bytes) else str(value)


# (program, argv[0]) -> does either base name look like a Python interpreter's? A pure
# function of two exact str, remembered: `os.path.basename` and the pattern cost more than a
# lookup, on every start of a shield that came in through the environment.
_named: dict[tuple[str, str | None], bool] = {}


def _python_named(program: str, argv0: str | None) -> bool:
    global _python_name
    exact = type(program) is str and (argv0 is None or type(argv0) is str)
    if exact:
        found = _named.get((program, argv0))
        if found is not None:
            return found
    if _python_name is None:
        import re

        _python_name = re.compile(r"^(python|pypy)(\d+(\.\d+)*)?[a-z]*(\.exe)?$")
    found = any(c and _python_name.match(os.path.basename(c)) for c in (program, argv0))
    if exact:
        if len(_named) >= 256:
            _named.clear()
        _named[program, argv0] = found
    return found


def child_would_be_unshielded(
    argv: Sequence[str | bytes],
    env: Mapping[Any, Any] | Sequence[Any] | None = None,
    *,
    executable: str | bytes | None = None,
    cwd: str | None = None,
    parent: Parent | None,
) -> bool:
    """True when the program about to start is a Python interpreter that would run without
    this process's shield. For the process describer: the result is `ProcessOp.unshielded`.

    env: the child's environment (None: it inherits `os.environ` as it is now), a mapping or
    fork_exec's list of b"KEY=VALUE" (converted only when the answer depends on it), of plain
    str/bytes. parent: how this process was switched on (None: it was not).
    Only meaningful when this process was switched on through the environment (`appshield run`,
    the bootstrap, `opentelemetry-instrument`): a shield installed from code cannot travel to
    children, so then nothing is reported as unshielded (write process rules for interpreters).
    """
    current = parent
    if current is None or current.source not in ENV_SOURCES:
        return False
    # argv[0] first: the rest of argv is read only for a child that is Python (most are not).
    argv0 = _arg_text(argv[0]) if argv else None
    if isinstance(executable, bytes):
        executable = os.fsdecode(executable)
    program = executable or (argv0 if argv0 is not None else "")
    # Most children are not Python: say so without is_python_program's two realpath walks
    # (about 60 us per start). Equal realpaths are one file, so different files (device and
    # inode, both found) cannot be this interpreter; a name that looks like Python, or a file
    # that cannot be looked at, goes through is_python_program itself.
    if not _python_named(program, argv0):
        if not program:
            return False
        try:
            if not os.path.samestat(os.stat(sys.executable), os.stat(program)):
                return False
        except (OSError, ValueError):
            pass  # not found: is_python_program decides
    if not is_python_program(program, argv0):
        return False
    args = [_arg_text(a) for a in argv]
    if isolation_flags(args):
        return True
    if env is not None and not isinstance(env, Mapping):
        env = _env_pairs(env)  # fork_exec's b"KEY=VALUE" items
    child_env = _text_env(os.environ if env is None else env)
    if child_env.get("APPSHIELD_DISABLE", "") not in ("", "0"):
        return True
    if child_env.get("APPSHIELD_POLICY") != current.policy_env:
        return True
    if child_env.get("APPSHIELD_MODE") != current.mode_env:
        return True
    if child_env.get(_inherit.VARIABLE) != current.identity:
        return True  # dropped or changed: the child would not check it runs our policy
    if not _runs_this_python(_found(program, child_env), cwd):
        return True  # another Python cannot load this appshield: decided here, not there
    return not _pythonpath_activates(child_env, cwd)


def _found(program: str, env: Mapping[str, str]) -> str:
    """A bare program name as the child's PATH finds it (the hooks pass the resolved path)."""
    if not program or os.sep in program:
        return program
    for folder in env.get("PATH", os.defpath).split(os.pathsep):
        candidate = os.path.join(folder or os.curdir, program)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return program


_VERSIONED = None  # `pythonX.Y`, compiled on first use


def _runs_this_python(program: str, cwd: str | None) -> bool:
    """Whether `program` is an interpreter of this very Python (implementation, version and
    ABI), so that the bootstrap can load this appshield and its dependencies in it: this
    interpreter or its base (a venv's), a `pythonX.Y` of the same version, or a venv's copy
    whose `pyvenv.cfg` names the same version. Anything else (another version, `python3.13t`,
    a program that cannot be looked at) cannot carry the shield."""
    global _VERSIONED
    if sys.implementation.name != "cpython" or not program:
        return False
    try:
        real = os.path.realpath(os.path.join(cwd or os.getcwd(), program))
        own = {os.path.realpath(sys.executable)}
        base = getattr(sys, "_base_executable", None)
        if base:
            own.add(os.path.realpath(base))
        if real in own:
            return True
        if _VERSIONED is None:
            import re

            _VERSIONED = re.compile(r"^python(\d+)\.(\d+)$")
        found = _VERSIONED.match(os.path.basename(real))
        if found is not None:
            return (int(found[1]), int(found[2])) == sys.version_info[:2] and not sys.abiflags
        return _venv_version(real) == sys.version_info[:2] and not sys.abiflags
    except (OSError, ValueError):
        return False


def _venv_version(real: str) -> tuple[int, int] | None:
    """The Python version a venv's `pyvenv.cfg` (beside the interpreter's `bin`) names."""
    config = os.path.join(os.path.dirname(os.path.dirname(real)), "pyvenv.cfg")
    try:
        with open(config, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    for line in lines:
        key, _, value = line.partition("=")
        if key.strip() in ("version", "version_info"):
            parts = value.strip().split(".")
            if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
                return int(parts[0]), int(parts[1])
    return None
