"""`appshield replay`: decide recorded operations against another policy.

    appshield replay --policy NEW [--json] FILE [FILE...]

FILE: recordings made with `appshield run --record FILE` or `APPSHIELD_RECORD=FILE` (or a
learning run's `ops-<pid>.jsonl`). Every distinct recorded decision is decided against NEW;
printed, grouped by NEW's rule (for a new denial) or the recorded rule (for a new allow) and
by call site: what NEW would deny that the recorded run did not, and what it would newly
allow. Then the throughput: recorded decisions (and the operations they stand for) decided
per second. `--json` prints the same as one JSON object.

Exit code: 1 when NEW denies anything the recorded run did not deny, 0 otherwise; 2 when NEW
is not a valid policy or a FILE is not a readable recording (one clear line on stderr).
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse

    from appshield.record.replay import Group, ReplayResult

__all__ = ["register", "replay_command"]

EXIT_NEWLY_DENIED = 1
EXIT_INVALID = 2
SHOWN_PER_GROUP = 5  # operations printed per group; the rest are counted


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "replay",
        help="decide a recording against another policy (exit 1 if it denies more)",
        description="Decide every operation in the recordings against NEW and print what it"
        " would deny (or newly allow) that the recorded run did not.",
    )
    parser.add_argument("--policy", required=True, metavar="NEW", help="the policy to try")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("files", nargs="+", metavar="FILE", help="recordings")
    parser.set_defaults(func=_from_args)


def _from_args(args: argparse.Namespace) -> int:
    return replay_command(args.policy, list(args.files), as_json=args.json)


def replay_command(policy: str, files: list[str], *, as_json: bool = False) -> int:
    from appshield.errors import PolicyError
    from appshield.record.replay import RecordingError, load_recordings, replay

    try:
        loaded = load_recordings(files)
    except RecordingError as exc:
        sys.stderr.write(f"appshield replay: {exc}\n")
        return EXIT_INVALID
    try:
        result = replay(loaded, policy)
    except PolicyError as exc:
        sys.stderr.write(f"{exc}\n")
        return EXIT_INVALID
    except OSError as exc:
        sys.stderr.write(f"appshield replay: {policy}: {exc.strerror or exc}\n")
        return EXIT_INVALID
    if loaded.torn:
        sys.stderr.write(
            f"appshield replay: {loaded.torn} line(s) could not be read and were skipped"
            " (a process killed mid-write leaves a torn last line)\n"
        )
    if as_json:
        print(json.dumps(_as_json(result, policy, files), indent=2))
    else:
        _print_text(result, policy, len(loaded.headers))
    return EXIT_NEWLY_DENIED if result.newly_denied else 0


def _operation_text(group: Group, limit: int) -> list[str]:
    lines = []
    for change in group.changes[:limit]:
        op = change.entry.operation
        before = change.before
        was = (
            "recorded: learned"
            if before is None
            else f"recorded: {before.action} by {before.rule_id}"
        )
        detail = f"{op.category} {getattr(op, 'access', '') or getattr(op, 'operation', '')}"
        lines.append(
            f"      {detail.strip()} {op.target}  [{change.entry.api}, x{change.entry.times};"
            f" {was}]"
        )
    if len(group.changes) > limit:
        lines.append(f"      ... and {len(group.changes) - limit} more")
    return lines


def _print_groups(title: str, groups: list[Group]) -> None:
    if not groups:
        return
    print(f"{title}:")
    for group in groups:
        print(
            f"  rule {group.rule} at {group.site}: {len(group.changes)} distinct,"
            f" {group.operations} operation(s)"
        )
        for line in _operation_text(group, SHOWN_PER_GROUP):
            print(line)


def _print_text(result: ReplayResult, policy: str, processes: int) -> None:
    _print_groups(f"newly denied by {policy} (the recorded run did these)", result.newly_denied)
    _print_groups(
        f"newly allowed by {policy} (the recorded policy denied these)", result.newly_allowed
    )
    if result.overflow:
        total = sum(result.overflow.values())
        kinds = ", ".join(f"{k}: {v}" for k, v in sorted(result.overflow.items()))
        print(
            f"not replayed: {total} decision(s) made after a process reached its limit of"
            f" distinct entries ({kinds})"
        )
    print(
        f"replayed {result.decisions:,} distinct decision(s) ({result.operations:,}"
        f" operation(s), {processes} process(es)) in {result.seconds:.4f} s:"
        f" {result.per_second:,.0f} decisions/s, {result.operations_per_second:,.0f} operations/s"
    )
    if result.newly_denied:
        count = sum(g.operations for g in result.newly_denied)
        print(f"result: {policy} denies {count:,} operation(s) the recorded run did (exit 1)")
    else:
        print(f"result: {policy} denies nothing the recorded run did")


def _group_json(group: Group) -> dict[str, Any]:
    from appshield.record.format import op_to_json

    return {
        "rule": group.rule,
        "site": group.site._asdict(),
        "operations": group.operations,
        "changes": [
            {
                "op": op_to_json(change.entry.operation),
                "api": change.entry.api,
                "count": change.entry.times,
                "before": None if change.before is None else change.before.rule_id,
                "before_action": None if change.before is None else change.before.action,
                "after": change.after.rule_id,
                "after_action": change.after.action,
            }
            for change in group.changes
        ],
    }


def _as_json(result: ReplayResult, policy: str, files: list[str]) -> dict[str, Any]:
    return {
        "policy": policy,
        "recordings": files,
        "newly_denied": [_group_json(g) for g in result.newly_denied],
        "newly_allowed": [_group_json(g) for g in result.newly_allowed],
        "decisions": result.decisions,
        "operations": result.operations,
        "seconds": result.seconds,
        "decisions_per_second": result.per_second,
        "operations_per_second": result.operations_per_second,
        "overflow": result.overflow,
    }
