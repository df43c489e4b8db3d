"""The `appshield` command's subcommands, for `appshield.cli.main` (see there for the usage).

Subcommands come from one table, `COMMANDS`: each entry is a function that adds its parsers
to the subparsers (setting `func`, which takes the parsed namespace and returns the exit
code). `run` and `bootstrap-path` live in `cli.run`, `learn` in `cli.learn`, `diff` in
`cli.diff`, `replay` in `cli.replay`: their entries import those modules only when the parser
is built. A module of its own, not the package's `__init__`: `appshield run`'s usual
spellings never load it (`appshield.cli.main`).
"""

from __future__ import annotations

import os
import sys

from appshield import __version__

# `typing` (and `collections.abc`) only for type checkers, and `PolicyError` imported where it
# is caught: the exceptions module is loaded when a policy problem is reported.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence
    from typing import Any, TypeAlias

    Register: TypeAlias = Callable[[Any], None]

__all__ = ["COMMANDS", "build_parser", "parse_and_run"]

EXIT_ALLOW, EXIT_DENY, EXIT_INVALID, EXIT_ALERT = 0, 1, 2, 3
_EXIT_FOR_ACTION = {"allow": EXIT_ALLOW, "deny": EXIT_DENY, "alert": EXIT_ALERT}


# --- check -------------------------------------------------------------------------------


def _add_check(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "check",
        help="validate policies",
        description="Validate policies (default: the discovered one). Prints every problem"
        " as FILE:LINE:COL: message. Exit 0 when all are valid, 1 otherwise.",
    )
    parser.add_argument("paths", nargs="*", metavar="P", help="policy files")
    parser.add_argument("-q", "--quiet", action="store_true", help="print problems only")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also write each valid policy's cache, even where bytecode writing is off"
        " (a build step for images with PYTHONDONTWRITEBYTECODE=1; docs/operations.md)",
    )
    parser.set_defaults(func=_check)


def _check(args: argparse.Namespace) -> int:
    from appshield.errors import PolicyError

    paths: list[str] = list(args.paths)
    if not paths:
        try:
            paths = [_discover()]
        except PolicyError as exc:
            print(f"appshield: {exc}")
            return 1
    from appshield.policy.loader import load_file

    failed = False
    for path in paths:
        written = None
        try:
            pack = _pack_name(path)
            if pack is not None:
                document = _load_pack(pack)  # built in: never cached on its own
            elif args.compile:
                document, written = _compile(path)
            else:
                document = load_file(path)
        except PolicyError as exc:
            failed = True
            for problem in exc.problems:
                print(problem)
            continue
        except OSError as exc:  # valid, but the cache asked for could not be written
            failed = True
            print(f"{path}: valid, but no policy cache written: {exc}")
            continue
        if not args.quiet:
            count = len(document.rules)
            cached = f"; cache {written}" if written else ""
            print(f"{path}: valid ({count} rule{'s' if count != 1 else ''}{cached})")
        if document.packages is not None:
            from appshield.cli.packages import grant_warnings

            for warning in grant_warnings(document, path):
                print(warning)
    return 1 if failed else 0


def _compile(path: str) -> tuple[Any, str]:
    from appshield.policy.cache import compile_file

    return compile_file(path)


def _pack_name(path: str) -> str | None:
    """The built-in pack that `path` names (`appshield:NAME`, or a file of the packs folder),
    else None."""
    from appshield.policy.loader import PACK_PREFIX, PACKS_DIR

    if path.startswith(PACK_PREFIX):
        return path[len(PACK_PREFIX) :]
    folder, name = os.path.split(os.path.realpath(path))
    if folder == os.path.realpath(PACKS_DIR) and name.endswith(".yaml"):
        return name[: -len(".yaml")]
    return None


def _load_pack(pack: str) -> Any:
    """A pack is a policy to extend, without `defaults` of its own (the policy extending it
    names them): it is checked as a policy that extends it would load it, so its problems
    are still reported against the pack's own file."""
    from appshield.policy.loader import PACK_PREFIX, load_text

    text = (
        f'version: 1\nextends: ["{PACK_PREFIX}{pack}"]\n'
        "defaults: {process: allow, file: allow, network: allow, import: allow}\n"
    )
    return load_text(text, filename=f"<check of {PACK_PREFIX}{pack}>")


def _discover() -> str:
    from appshield.policy import discover_policy

    return discover_policy()


# --- explain -----------------------------------------------------------------------------


def _common_explain_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    # The same options are accepted before and after CATEGORY; after it they must not
    # overwrite a value given before (argparse copies sub-parser defaults up).
    import argparse

    default: Any = argparse.SUPPRESS if suppress else None
    parser.add_argument("--policy", metavar="P", default=default, help="policy file")
    parser.add_argument(
        "--mode", choices=("enforce", "monitor"), default=default, help="override the mode"
    )
    parser.add_argument(
        "--stack",
        metavar="MOD,MOD",
        default=default,
        help="modules on the call stack, innermost first (for rules with scope)",
    )
    parser.add_argument(
        "--package",
        metavar="NAME[==VERSION]",
        default=default,
        help="as if this installed distribution's code made the operation (its grant)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS if suppress else False,
        help="print the answer as JSON",
    )


def _add_explain(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "explain",
        help="show the decision for a described operation",
        description="Print the decision and the deciding rule for one operation. Exit 0 allow,"
        " 1 deny, 3 alert, 2 invalid policy.",
    )
    _common_explain_options(parser, suppress=False)
    categories = parser.add_subparsers(dest="category", metavar="CATEGORY", required=True)

    def category(name: str, help_text: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = categories.add_parser(name, help=help_text)
        _common_explain_options(sub, suppress=True)
        sub.set_defaults(func=_explain)
        return sub

    process = category("process", "a program start: explain process -- git status")
    process.add_argument("--shell", action="store_true", help="run through a shell")
    process.add_argument("--cwd", metavar="D", help="the folder it starts in")
    process.add_argument("--unshielded", action="store_true", help="an unshielded Python child")
    process.add_argument("argv", nargs="+", metavar="PROG [ARGS...]")

    file = category("file", "a file access: explain file read /etc/shadow")
    file.add_argument("access", choices=("read", "write", "delete"))
    file.add_argument("path")

    network = category("network", "a network action: explain network connect example.com:443")
    network.add_argument("operation", choices=("connect", "send", "bind", "resolve"))
    network.add_argument("target", metavar="HOST[:PORT]", help="host:port, [v6]:port, or a path")
    network.add_argument("--transport", choices=("tcp", "udp", "unix", "raw"))
    network.add_argument("--address", metavar="IP", help="the address the name resolved to")

    imports = category("import", "an import: explain import ctypes")
    imports.add_argument("module", nargs="?")
    imports.add_argument("--origin", metavar="PATH", help="the file it is loaded from")
    imports.add_argument("--library", metavar="PATH", help="a native library load")


def _operation(args: argparse.Namespace) -> Any:
    from appshield import _describe

    if args.category == "process":
        argv = [a for a in args.argv]
        if argv and argv[0] == "--":
            argv = argv[1:]
        return _describe.process_op(
            argv, shell=args.shell, cwd=args.cwd, unshielded=args.unshielded
        )
    if args.category == "file":
        return _describe.file_op(args.access, args.path)
    if args.category == "network":
        return _describe.network_op(
            args.operation, args.target, transport=args.transport, address=args.address
        )
    return _describe.import_op(args.module, origin=args.origin, library=args.library)


def _explain(args: argparse.Namespace) -> int:
    from appshield.errors import PolicyError
    from appshield.policy import Policy

    try:
        path = args.policy or _discover()
        # The YAML itself, never its cache: explain answers for what is on disk.
        policy = Policy.from_file(path, use_cache=False).with_mode(args.mode)
    except PolicyError as exc:
        print(exc, file=sys.stderr)
        return EXIT_INVALID
    try:
        operation = _operation(args)
    except ValueError as exc:
        print(f"appshield explain: {exc}", file=sys.stderr)
        return EXIT_INVALID
    stack = tuple(m for m in args.stack.split(",") if m) if args.stack else None
    decision = policy.decide(operation, stack)
    version = None
    if args.package:
        from appshield.cli.packages import decide_for_package

        decision, version = decide_for_package(
            policy.document, policy.mode, operation, decision, args.package
        )
    answer = _answer(policy, operation, decision, path)
    if args.package:
        answer["package"] = decision.package or args.package.partition("==")[0]
        answer["package_version"] = decision.package_version or version
    if args.json:
        import json

        print(json.dumps(answer, indent=2))
    else:
        _print_answer(answer)
    return _EXIT_FOR_ACTION[decision.action]


def _answer(policy: Any, operation: Any, decision: Any, path: str) -> dict[str, Any]:
    rule = next((r for r in policy.document.rules if r.id == decision.rule_id), None)
    source = None
    if rule is not None and rule.source is not None:
        source = f"{_shown(rule.source.file or path)}:{rule.source.line}"
    packages = policy.document.packages
    if decision.package is not None and packages is not None:
        grant = packages.grants.get(decision.package)
        if grant is not None and grant.source is not None:
            source = f"{_shown(grant.source.file or path)}:{grant.source.line}"
    fields = {
        name: getattr(operation, name)
        for name in getattr(operation, "_fields", ())
        if not name.startswith("_")
    }
    return {
        "decision": decision.action,
        "rule": decision.rule_id,
        "blocked": decision.blocked,
        "mode": decision.mode,
        "source": source,
        "description": rule.description if rule is not None else None,
        "category": operation.category,
        "target": operation.target,
        "operation": {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()},
        "policy": os.path.abspath(path),
    }


def _shown(path: str) -> str:
    """A path relative to the current folder when it is below it (shorter to read)."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def _print_answer(answer: dict[str, Any]) -> None:
    print(f"decision: {answer['decision']}")
    where = f" ({answer['source']})" if answer["source"] else ""
    print(f"rule:     {answer['rule']}{where}")
    if answer["description"]:
        print(f"          {answer['description']}")
    blocked = "yes" if answer["blocked"] else "no"
    print(f"blocked:  {blocked} (mode {answer['mode']})")
    if "package" in answer:
        print(f"package:  {answer['package']} {answer['package_version'] or '(not installed)'}")
    print(f"{answer['category']}:{' ' * max(1, 9 - len(answer['category']))}{answer['target']}")


# --- schema ------------------------------------------------------------------------------


def _add_schema(subparsers: Any) -> None:
    parser = subparsers.add_parser("schema", help="print the JSON Schema of the policy format")
    parser.set_defaults(func=_schema)


def _schema(_args: argparse.Namespace) -> int:
    from appshield.policy._schema import schema_text

    sys.stdout.write(schema_text())
    return 0


# --- the table ---------------------------------------------------------------------------


def _add_run(subparsers: Any) -> None:
    from appshield.cli.run import register

    register(subparsers)


def _add_learn(subparsers: Any) -> None:
    from appshield.cli.learn import register

    register(subparsers)


def _add_diff(subparsers: Any) -> None:
    from appshield.cli.diff import register

    register(subparsers)


def _add_replay(subparsers: Any) -> None:
    from appshield.cli.replay import register

    register(subparsers)


COMMANDS: list[Register] = [
    _add_check,
    _add_explain,
    _add_schema,
    _add_run,
    _add_learn,
    _add_diff,
    _add_replay,
]


def build_parser() -> argparse.ArgumentParser:
    import argparse  # here, not at the top: `appshield run` never needs it (cli_run)

    parser = argparse.ArgumentParser(
        prog="appshield",
        description="In-process application security for Python.",
    )
    parser.add_argument("--version", action="version", version=f"appshield {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in COMMANDS:
        register(subparsers)
    return parser


def parse_and_run(argv: Sequence[str] | None = None) -> int:
    """Every command as argparse reads it (`appshield.cli.main` handles the usual spellings
    of `run` itself, and hands everything else here). Returns the exit code."""
    from appshield.errors import PolicyError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except PolicyError as exc:
        print(exc, file=sys.stderr)
        return EXIT_INVALID
    except Exception as exc:  # never a traceback for a user of the command
        print(f"appshield: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_INVALID
