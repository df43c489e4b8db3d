"""`appshield run` and `appshield bootstrap-path`.

    appshield run [--policy P] [--mode enforce|monitor] [--record FILE]
                  [--shadow CANDIDATE] -- CMD [ARGS...]

validates the policy first (invalid: every problem as `FILE:LINE:COL: message`, exit 2, CMD is
not started), then replaces itself with CMD (`os.execvpe`: CMD keeps this process id, so its
exit code and the signal that ends it reach the caller unchanged) in an environment where

    PYTHONPATH       = <bootstrap folder> + the existing PYTHONPATH
    APPSHIELD_POLICY = the policy's absolute path
    APPSHIELD_MODE   = --mode, when given
    APPSHIELD_RECORD = --record's absolute path, when given (every decision of every
                       shielded process appended to it: docs/lifecycle.md ("Record and replay"))
    APPSHIELD_SHADOW_POLICY = --shadow's absolute path, when given (appshield.shadow: a
                       candidate decided beside the policy and reported, never enforced)

so CMD, if it is Python, and every Python child that inherits the environment starts with the
shield on, locked. `appshield bootstrap-path` prints the bootstrap folder, for platforms where
only environment variables can be set.

`appshield.cli` registers these through `register(subparsers)` and reads the usual
spellings of `run` itself (`simple_run_arguments`).
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping, Sequence
    from typing import Any

    from appshield.settings import Settings

__all__ = ["bootstrap_path", "child_environment", "register", "run", "simple_run_arguments"]

EXIT_INVALID = 2

# `appshield._proc_children.BOOTSTRAP_DIR`, restated (tests/cli/test_run_arguments.py checks
# they agree): importing that module and `_inherit` would cost this process, which only
# validates and execs, about 2 M instructions; they are the child's.
BOOTSTRAP_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bootstrap"
)


def register(subparsers: Any) -> None:
    """Add `run` and `bootstrap-path` to the `appshield` command's subparsers. Each parser's
    `func` default takes the parsed namespace and returns the exit code."""
    run_parser = subparsers.add_parser(
        "run",
        help="run a command with the shield on (and in its Python children)",
        description="Run CMD with the shield active and locked, in CMD if it is Python and in"
        " every Python child that inherits the environment.",
    )
    run_parser.add_argument("--policy", metavar="P", help="policy file (default: discovered)")
    run_parser.add_argument("--mode", choices=("enforce", "monitor"), help="override the mode")
    run_parser.add_argument(
        "--record",
        metavar="FILE",
        help="append every decision (allowed ones too) to FILE, for `appshield replay`",
    )
    run_parser.add_argument(
        "--shadow",
        metavar="CANDIDATE",
        help="a candidate policy decided beside the policy, reported as shadow, never enforced",
    )
    run_parser.add_argument("command", nargs="...", metavar="-- CMD [ARGS...]")
    run_parser.set_defaults(func=_run_from_args)

    path_parser = subparsers.add_parser(
        "bootstrap-path",
        help="print the folder to put first on PYTHONPATH (with APPSHIELD_POLICY set)",
    )
    path_parser.set_defaults(func=lambda _args: bootstrap_path())


def bootstrap_path() -> int:
    print(BOOTSTRAP_DIR)
    return 0


def _run_from_args(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    return run(command, policy=args.policy, mode=args.mode, record=args.record, shadow=args.shadow)


def child_environment(
    environ: Mapping[str, str],
    policy_path: str | None,
    mode: str | None,
    record: str | None = None,
    shadow_path: str | None = None,
) -> dict[str, str]:
    """CMD's environment: the bootstrap folder first on PYTHONPATH (once), the policy path
    absolute, the mode, the recording's absolute path and the shadow candidate (absolute)
    when given."""
    env = dict(environ)
    rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if rest:  # resolved only when there is something to compare it with (a few lstat each)
        bootstrap = os.path.realpath(BOOTSTRAP_DIR)
        rest = [p for p in rest if os.path.realpath(p) != bootstrap]
    env["PYTHONPATH"] = os.pathsep.join([BOOTSTRAP_DIR, *rest])
    if policy_path is not None:
        env["APPSHIELD_POLICY"] = os.path.abspath(policy_path)
    if mode is not None:
        env["APPSHIELD_MODE"] = mode
    if record is not None:
        env["APPSHIELD_RECORD"] = os.path.abspath(record)
    if shadow_path is not None:
        env["APPSHIELD_SHADOW_POLICY"] = os.path.abspath(shadow_path)
    return env


def _fail(message: str) -> int:
    for line in message.splitlines() or [message]:
        sys.stderr.write(f"{line}\n")
    return EXIT_INVALID


def _validated_policy(
    policy: str | None, mode: str | None, shadow: str | None, settings: Settings
) -> str:
    """The absolute policy path, after loading it once: raises on anything that would stop
    the bootstrap in CMD, so CMD is never started only to fail. `settings`: this process's
    environment, read once by `run`."""
    from appshield.policy import cache, load_policy

    if policy is None:
        from appshield.policy import discover_policy

        policy = discover_policy(environ=os.environ)
    path = os.path.abspath(policy)
    # A valid cache proves a valid policy: CMD's bootstrap builds it from the same cache, so
    # building it here too (a few ms for 1,000 rules) would prove nothing more.
    if not cache.is_valid(path):
        load_policy(path)
    # An invalid APPSHIELD_MODE or APPSHIELD_LOG_FORMAT stops here, too (CMD's settings are
    # this environment's), and so does a shadow candidate that CMD could not load.
    settings.check_mode(mode)
    settings.check_log_format()
    candidate = shadow if shadow is not None else settings.shadow_policy_path
    if candidate is not None and not cache.is_valid(os.path.abspath(candidate)):
        load_policy(candidate)
    return path


def run(
    command: Sequence[str],
    *,
    policy: str | None = None,
    mode: str | None = None,
    record: str | None = None,
    shadow: str | None = None,
) -> int:
    """Validate, then exec CMD. Returns only on failure (the exit code)."""
    if not command:
        return _fail("appshield run: no command given (usage: appshield run [...] -- CMD)")
    from appshield.settings import Settings

    settings = Settings.from_environ(os.environ)
    path: str | None = None
    if settings.disabled:
        # The kill switch must work even when the policy is what broke; CMD's bootstrap
        # prints the one line that says the shield is off.
        path = os.path.abspath(policy) if policy else None
    else:
        try:
            path = _validated_policy(policy, mode, shadow, settings)
        except (OSError, ValueError, LookupError) as exc:
            # `appshield.errors` only now: a valid policy never needs it in this process.
            from appshield.errors import PolicyError

            if isinstance(exc, PolicyError):  # a ValueError: every problem, as it is
                return _fail(str(exc))
            return _fail(f"appshield run: {_reason(exc)}")
    if record is not None:
        # Checked here, where it can stop the start: inside CMD a recording that cannot be
        # written only stops itself (the app is never affected by it).
        try:
            os.close(os.open(record, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600))
        except OSError as exc:
            return _fail(f"appshield run: cannot write the recording: {_reason(exc)}")
    env = child_environment(os.environ, path, mode, record, shadow)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execvpe(command[0], list(command), env)
    except FileNotFoundError:
        sys.stderr.write(f"appshield run: command not found: {command[0]}\n")
        return 127
    except PermissionError as exc:
        # Under a shield already (a nested `run`), the exec itself may be what is denied.
        from appshield.errors import PolicyViolation

        reason = str(exc) if isinstance(exc, PolicyViolation) else "permission denied"
        sys.stderr.write(f"appshield run: {reason}: {command[0]}\n")
        return 126
    except OSError as exc:
        sys.stderr.write(f"appshield run: cannot run {command[0]}: {exc.strerror or exc}\n")
        return 126
    return 0  # pragma: no cover - execvpe does not return


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.strerror or exc}: {exc.filename}"
    return str(exc) or type(exc).__name__


def simple_run_arguments(argv: Sequence[str]) -> tuple[str | None, str | None, list[str]] | None:
    """(policy, mode, command) for the usual spellings of `run`, else None for argparse.

    `appshield run` is on the start-up path of every process it shields, and argparse costs
    more to import than the rest of the command (it brings shutil, gettext and locale). So
    the spellings a launcher writes (`run [--policy P|--policy=P] [--mode M|--mode=M] --
    CMD...`, or CMD from its first word that is not an option) are read here, and anything
    else (help, an abbreviation, a repeated or unknown option, a bad mode) goes to argparse,
    which reads these spellings exactly the same way (tests/cli/test_run_arguments.py).
    """
    if argv[:1] != ["run"]:
        return None
    found: dict[str, str] = {}
    rest = list(argv[1:])
    while rest:
        word = rest[0]
        if word == "--":
            return found.get("policy"), found.get("mode"), rest[1:]
        if not word.startswith("-"):
            return found.get("policy"), found.get("mode"), rest
        name, equals, value = word[2:].partition("=")
        if not word.startswith("--") or name not in ("policy", "mode") or name in found:
            return None
        if not equals:
            if len(rest) < 2 or rest[1].startswith("-"):
                return None
            value = rest[1]
            rest = rest[2:]
        else:
            rest = rest[1:]
        if name == "mode" and value not in ("enforce", "monitor"):
            return None
        found[name] = value
    return found.get("policy"), found.get("mode"), []
