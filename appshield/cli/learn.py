"""`appshield learn`: run a command observing everything, then write the policy it needs.

    appshield learn [--out P] [--merge P] [--name N] [--keep DIR] [--stop-timeout S]
                    [--strict-imports] -- CMD ...
    appshield learn [--out P] [--merge P] [--strict-imports] --from DIR

--out P      where to write the policy (default: the --merge file, else `appshield.yaml`;
             `-` for stdout). An existing file is not overwritten unless it is the --merge
             file or --force is given; that is checked before CMD starts.
--merge P    start from the policy P and add only rules for what it does not allow yet.
--keep DIR   record into DIR and keep the raw observations (`ops-<pid>.jsonl`).
--from DIR   do not run anything: write the policy from observations kept earlier (a
             --keep folder), or from a recording FILE (`appshield run --record FILE`).
--strict-imports
             import rules list only the modules seen; without it, more rules allow the
             standard library's pure-Python modules, CPython's own extension modules in
             lib-dynload and its frozen and built-in ones (not ctypes, mmap, process or
             shared-memory modules, not site-packages), so a code path that lazily
             imports one still works.
--stop-timeout SECONDS
             after a SIGTERM or SIGINT to `appshield learn`, how long CMD has to end before
             it and every process below it are killed (default 8).

Stopped: SIGTERM or SIGINT sent to `appshield learn` is forwarded to CMD; learn waits for it
(bounded, see --stop-timeout; a second signal kills at once; processes left below it are
stopped too), writes the policy from what it saw, with a comment at the top saying the run
was cut short, and then ends itself with the same signal (a shell sees 128+N: 143 for
SIGTERM, 130 for SIGINT; where that signal cannot end it, as for PID 1 in a container, it
exits with 128+N).

Exit code: CMD's own, 128+N when CMD was killed by signal N (2 when the arguments, the
--merge policy or the output are unusable).
`appshield.cli` registers this through `register(subparsers)`;
`python -m appshield.cli.learn learn ...` works on its own too.
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
        "--from",
        dest="source",
        metavar="DIR|FILE",
        help="use observations kept earlier, or a recording (`appshield run --record`)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    parser.add_argument(
        "--strict-imports",
        action="store_true",
        help="allow only the modules seen, not every standard-library module",
    )
    parser.add_argument(
        "--packages",
        action="store_true",
        help="also write per-distribution grants: what each installed distribution's code did"
        " (docs/packages.md); with --merge, extend the policy's grants",
    )
    parser.add_argument(
        "--stop-timeout",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="after SIGTERM/SIGINT, how long CMD has to end before it is killed (default 8)",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")
    parser.set_defaults(func=learn_from_args)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}")
    return value


def _fail(message: str) -> int:
    sys.stderr.write(f"appshield learn: {message}\n")
    return EXIT_USAGE


def _output_path(args: argparse.Namespace) -> str:
    if args.out:
        return str(args.out)
    return str(args.merge) if args.merge else "appshield.yaml"


# Set for the learning processes by `--packages`: record which installed distributions were
# answerable for each operation (learn/recorder.py).
PACKAGES_VARIABLE = "APPSHIELD_LEARN_PACKAGES"


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

        return _write(args, out, read_records(args.source), command)
    if args.packages:
        # Read by the recorder in every learning process (it inherits the environment).
        os.environ[PACKAGES_VARIABLE] = "1"
    return _record_and_write(args, out, command)


def _record_and_write(args: argparse.Namespace, out: str, command: list[str]) -> int:
    from appshield.learn.runner import DEFAULT_STOP_TIMEOUT, record

    timeout = DEFAULT_STOP_TIMEOUT if args.stop_timeout is None else args.stop_timeout
    try:
        if args.keep:
            os.makedirs(args.keep, exist_ok=True)
            recording = record(command, args.keep, stop_timeout=timeout)
        else:
            with tempfile.TemporaryDirectory(prefix="appshield-learn-") as folder:
                recording = record(command, folder, stop_timeout=timeout)
    except OSError as exc:  # CMD could not be started at all
        sys.stderr.write(f"appshield learn: cannot run {command[0]!r}: {exc.strerror or exc}\n")
        return EXIT_NOT_FOUND if isinstance(exc, FileNotFoundError) else EXIT_CANNOT_RUN
    notes = _stop_notes(recording.stopped_by, recording.killed, recording.returncode, timeout)
    status = _write(args, out, recording.observations, command, notes)
    if status != 0:
        return status
    if recording.stopped_by is not None:
        return _end_by_signal(recording.stopped_by)
    code = recording.returncode
    return 128 - code if code < 0 else code  # killed by signal N: 128+N, as a shell says


def _stop_notes(signum: int | None, killed: bool, returncode: int, timeout: float) -> list[str]:
    """The comment lines that say the run did not end on its own."""
    from appshield.learn.runner import signal_name

    if signum is not None:
        if killed:
            how = f"killed after {timeout:g} s"
        elif returncode < 0:
            how = f"it ended by {signal_name(-returncode)}"
        else:
            how = f"it exited with {returncode}"
        return [
            f"This run was cut short: appshield learn received {signal_name(signum)} and"
            f" stopped the command ({how}).",
            "Only what ran before that is allowed; a later run with --merge can add the rest.",
        ]
    if returncode < 0:
        return [
            f"This run was cut short: the command was ended by {signal_name(-returncode)}.",
            "Only what ran before that is allowed; a later run with --merge can add the rest.",
        ]
    return []


def _end_by_signal(signum: int) -> int:
    """End this process with `signum`, as a shell expects of a program stopped by it; the
    exit code 128+N where the signal cannot end it (PID 1 in a container ignores it)."""
    import signal

    sys.stdout.flush()
    sys.stderr.flush()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    return 128 + signum


def _write(
    args: argparse.Namespace,
    out: str,
    observations: list[Any],
    command: Sequence[str],
    notes: Sequence[str] = (),
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
            result = merge_policy(args.merge, observations, notes=notes)
        else:
            result = learn_policy(
                observations,
                name=name,
                command=command,
                notes=notes,
                strict_imports=args.strict_imports,
            )
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
        f" {'added to' if args.merge else 'written to'} {where}"
        f"{' (the run was cut short)' if notes else ''}\n"
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
