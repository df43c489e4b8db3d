"""`appshield learn`: run a command observing everything, then write the policy it needs.

    appshield learn [--out P] [--merge P] [--name N] [--keep DIR] -- CMD [ARGS...]
    appshield learn [--out P] [--merge P] --from DIR

--out P      where to write the policy (default: the --merge file, else `appshield.yaml`;
             `-` for stdout). An existing file is not overwritten unless it is the --merge
             file or --force is given; that is checked before CMD starts.
--merge P    start from the policy P and add only rules for what it does not allow yet.
--keep DIR   record into DIR and keep the raw observations (`ops-<pid>.jsonl`).
--from DIR   do not run anything: write the policy from observations kept earlier.

Exit code: CMD's own (2 when the arguments, the --merge policy or the output are unusable).
`appshield.cli` registers this through `register(subparsers)`;
`python -m appshield.cli_learn learn ...` works on its own too.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

from appshield.errors import PolicyError

__all__ = ["main", "register"]

EXIT_USAGE = 2
EXIT_CANNOT_RUN = 126  # the shell's codes for a command that cannot run / is not found
EXIT_NOT_FOUND = 127


def register(subparsers: Any) -> None:
    """Add `learn` to the `appshield` command's subparsers; `func` returns the exit code."""
    parser = subparsers.add_parser(
        "learn",
        help="run a command and write the least-privilege policy it needs",
        description="Run CMD observing every operation (nothing is blocked) in it and in every"
        " Python child, then write a policy that allows exactly what was seen.",
    )
    parser.add_argument(
        "--out", metavar="P", help="output policy (default appshield.yaml; - stdout)"
    )
    parser.add_argument("--merge", metavar="P", help="add to this existing policy")
    parser.add_argument("--name", help="the policy's name (default: the command's name)")
    parser.add_argument("--keep", metavar="DIR", help="keep the raw observations in DIR")
    parser.add_argument(
        "--from", dest="source", metavar="DIR", help="use observations kept earlier"
    )
    parser.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")
    parser.set_defaults(func=learn_from_args)


def _fail(message: str) -> int:
    sys.stderr.write(f"appshield learn: {message}\n")
    return EXIT_USAGE


def _output_path(args: argparse.Namespace) -> str:
    if args.out:
        return str(args.out)
    return str(args.merge) if args.merge else "appshield.yaml"


def learn_from_args(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if bool(command) == bool(args.source):
        return _fail("give either a command after `--` or --from DIR")
    out = _output_path(args)
    same_as_merge = args.merge and os.path.abspath(out) == os.path.abspath(args.merge)
    if out != "-" and os.path.exists(out) and not (same_as_merge or args.force):
        return _fail(f"{out} exists; use --merge {out} to add to it, or --force")
    if args.merge:
        try:
            from appshield.policy import Policy

            Policy.from_file(args.merge)
        except (OSError, PolicyError) as exc:
            return _fail(f"cannot merge into {args.merge}: {exc}")
    if args.source:
        from appshield.learn.records import read_records

        return _write(args, out, read_records(args.source), command, 0)
    return _record_and_write(args, out, command)


def _record_and_write(args: argparse.Namespace, out: str, command: list[str]) -> int:
    from appshield.learn.runner import record

    try:
        if args.keep:
            os.makedirs(args.keep, exist_ok=True)
            recording = record(command, args.keep)
        else:
            with tempfile.TemporaryDirectory(prefix="appshield-learn-") as folder:
                recording = record(command, folder)
    except OSError as exc:  # CMD could not be started at all
        sys.stderr.write(f"appshield learn: cannot run {command[0]!r}: {exc.strerror or exc}\n")
        return EXIT_NOT_FOUND if isinstance(exc, FileNotFoundError) else EXIT_CANNOT_RUN
    status = _write(args, out, recording.observations, command, recording.returncode)
    return recording.returncode if status == 0 else status


def _write(
    args: argparse.Namespace, out: str, observations: list[Any], command: Sequence[str], code: int
) -> int:
    from appshield.learn import learn_policy, merge_policy, not_allowed
    from appshield.policy import Policy

    if not observations:
        sys.stderr.write(
            "appshield learn: nothing was observed (is CMD a Python program, or does it start"
            " one?)\n"
        )
    name = args.name or _default_name(command)
    try:
        if args.merge:
            result = merge_policy(args.merge, observations)
        else:
            result = learn_policy(observations, name=name, command=command)
        base = os.path.dirname(os.path.abspath(out if out != "-" else "appshield.yaml"))
        policy = Policy.from_yaml(result.text, filename=os.path.join(base, "<learned>"))
    except (OSError, PolicyError, ValueError) as exc:
        return _fail(f"could not write a valid policy: {exc}")
    missing = [o for o in not_allowed(policy, observations) if o not in result.skipped]
    for obs, rule in result.denied_by_rule:
        sys.stderr.write(f"appshield learn: kept denied by rule {rule!r}: {obs.operation.target}\n")
    if missing and not args.merge:
        for obs in missing[:10]:
            sys.stderr.write(f"appshield learn: not covered: {obs.operation.target}\n")
    if out == "-":
        sys.stdout.write(result.text)
    else:
        with open(out, "w", encoding="utf-8") as handle:
            handle.write(result.text)
    added = len(result.drafts)
    where = "stdout" if out == "-" else out
    sys.stderr.write(
        f"appshield learn: {len(observations)} distinct operations, {added} rules"
        f" {'added to' if args.merge else 'written to'} {where}\n"
    )
    return 0


def _default_name(command: Sequence[str]) -> str:
    """The program's name; for `python app.py` or `python -m pkg`, the script or module."""
    if not command:
        return "learned"
    program = os.path.basename(command[0])
    if program.startswith(("python", "pypy")):
        rest = list(command[1:])
        if "-m" in rest[:-1]:
            return rest[rest.index("-m") + 1]
        scripts = [a for a in rest if not a.startswith("-")]
        if scripts:
            return os.path.splitext(os.path.basename(scripts[0]))[0]
    return program


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="appshield")
    register(parser.add_subparsers(dest="subcommand", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
