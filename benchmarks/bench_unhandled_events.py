"""What appshield's audit hook costs for events it does not handle, against a no-op hook.

    python benchmarks/bench_unhandled_events.py [--n 2000] [--policy FILE] [--only exec,compile]
                                                [--json FILE]

CPython raises audit events that appshield has no handler for all the time: `exec` and
`compile`, `sys._getframe`, `object.__getattr__` (reading a function's `__code__` or a
frame's `f_code`), `builtins.id`, and dozens more. For each of these, every audit hook in the
process is called, so appshield's hook must return from them at about the price of an empty
one: the target is within 10% of `sys.addaudithook(lambda event, args: None)`.

Each row is a loop whose body raises exactly one such event (checked before measuring, with a
counting hook, in every mode), run in three modes in a fresh interpreter each:

- `bare`: no audit hook at all;
- `noop`: one Python hook that does nothing;
- `appshield`: `appshield.install(POLICY)` (default: examples/web-service.yaml).

Counts are user-space instructions from `valgrind --tool=callgrind` (deterministic, unlike
timings on a shared machine): one run of N iterations and one of 2N, the difference divided
by N, so start-up and install cancel out. The table shows instructions per event in each
mode, what each hook adds over `bare`, and the ratio of appshield's addition to the no-op
hook's (the number the 10% target is about). PYTHONHASHSEED is set to 0 for the workers.

Worker (internal): `python bench_unhandled_events.py --worker EVENT MODE N POLICY [--check]`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_POLICY = str(HERE.parent / "examples" / "web-service.yaml")
MODES = ("bare", "noop", "appshield")
WARM_UP = 50  # iterations before the measured loop: the same in every run, so they cancel out

Loop = Callable[[int], None]


def _getframe_loop() -> Loop:
    getframe = sys._getframe

    def loop(n: int) -> None:
        for _ in range(n):
            getframe()

    return loop


def _code_attribute_loop() -> Loop:
    def target() -> None:
        pass

    def loop(n: int) -> None:
        for _ in range(n):
            target.__code__  # noqa: B018  (the read raises object.__getattr__)

    return loop


def _frame_code_loop() -> Loop:
    frame = sys._getframe()

    def loop(n: int) -> None:
        for _ in range(n):
            frame.f_code  # noqa: B018  (the read raises object.__getattr__)

    return loop


def _compile_loop() -> Loop:
    def loop(n: int) -> None:
        for _ in range(n):
            compile("1", "<s>", "eval")

    return loop


def _exec_loop() -> Loop:
    code = compile("1", "<s>", "eval")
    namespace: dict[str, object] = {}

    def loop(n: int) -> None:
        for _ in range(n):
            exec(code, namespace)

    return loop


def _id_loop() -> Loop:
    value = object()

    def loop(n: int) -> None:
        for _ in range(n):
            id(value)

    return loop


# row -> (the one audit event each iteration raises, the loop)
ROWS: dict[str, tuple[str, Callable[[], Loop]]] = {
    "sys._getframe()": ("sys._getframe", _getframe_loop),
    "function.__code__": ("object.__getattr__", _code_attribute_loop),
    "frame.f_code": ("object.__getattr__", _frame_code_loop),
    "compile('1')": ("compile", _compile_loop),
    "exec(code)": ("exec", _exec_loop),
    "id(obj)": ("builtins.id", _id_loop),
}


# -- worker ----------------------------------------------------------------------------------


def _start(mode: str, policy: str) -> None:
    if mode == "noop":
        sys.addaudithook(lambda event, args: None)
    elif mode == "appshield":
        import appshield

        appshield.install(policy)
    elif mode != "bare":
        raise SystemExit(f"unknown mode {mode!r}")


def _check(loop: Loop, event: str, n: int) -> None:
    """Fail unless `loop(n)` raises `event` exactly n times and no other event (so that an
    iteration's cost is one event's, and appshield's hook raised nothing of its own)."""
    seen: list[str] = []
    counting = [False]

    def count(name: str, args: tuple[object, ...]) -> None:
        if counting[0]:
            seen.append(name)

    sys.addaudithook(count)
    counting[0] = True
    loop(n)
    counting[0] = False
    others = sorted({name for name in seen if name != event})
    if len(seen) != n or others:
        raise SystemExit(f"{event}: {len(seen)} events for {n} iterations (others: {others})")


def worker(row: str, mode: str, n: int, policy: str, check: bool) -> None:
    event, make = ROWS[row]
    loop = make()
    _start(mode, policy)
    loop(WARM_UP)
    if check:
        _check(loop, event, n)
    else:
        loop(n)


# -- parent ----------------------------------------------------------------------------------


def _command(row: str, mode: str, n: int, policy: str) -> list[str]:
    return [sys.executable, __file__, "--worker", row, mode, str(n), policy]


def _instructions(row: str, mode: str, n: int, policy: str, env: dict[str, str]) -> int:
    # Imported here, in the driver: the worker runs this file too and must load nothing more.
    from run import callgrind_instructions

    return callgrind_instructions(_command(row, mode, n, policy), env, f"{row} {mode}")


def per_event(row: str, mode: str, n: int, policy: str, env: dict[str, str]) -> float:
    # The check doubles as a warm run: the .pyc files and the policy cache are written by it,
    # not by one of the two measured runs.
    subprocess.run([*_command(row, mode, n, policy), "--check"], env=env, check=True)
    one = _instructions(row, mode, n, policy, env)
    two = _instructions(row, mode, 2 * n, policy, env)
    return (two - one) / n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="iterations of the shorter run")
    parser.add_argument("--policy", default=DEFAULT_POLICY)
    parser.add_argument("--only", help="comma-separated rows (e.g. exec,compile): substrings")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument(
        "--modes", default=",".join(MODES), help="comma-separated modes (ratios need all three)"
    )
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPSHIELD_", "OTEL_"))}
    env["PYTHONHASHSEED"] = "0"
    rows = [r for r in ROWS if not args.only or any(s in r for s in args.only.split(","))]
    print(f"policy {args.policy}, N={args.n}; instructions per event")
    print(
        f"{'row (event)':42} {'bare':>8} {'no-op':>8} {'appshield':>10}"
        f" {'+no-op':>8} {'+appshield':>11} {'ratio':>7}"
    )
    results: dict[str, dict[str, object]] = {}
    modes = [mode for mode in MODES if mode in args.modes.split(",")]
    for row in rows:
        counts = {mode: per_event(row, mode, args.n, args.policy, env) for mode in modes}
        results[row] = {**counts, "event": ROWS[row][0]}
        cells = [f"{counts[mode]:,.0f}" if mode in counts else "-" for mode in MODES]
        added = ["-", "-", "-"]
        if len(counts) == len(MODES):
            noop = counts["noop"] - counts["bare"]
            shielded = counts["appshield"] - counts["bare"]
            results[row]["ratio"] = shielded / noop
            added = [f"{noop:,.0f}", f"{shielded:,.0f}", f"{shielded / noop:.3f}x"]
        print(
            f"{row + ' (' + ROWS[row][0] + ')':42} {cells[0]:>8} {cells[1]:>8} {cells[2]:>10}"
            f" {added[0]:>8} {added[1]:>11} {added[2]:>7}",
            flush=True,
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6:] == ["--check"])
    else:
        sys.exit(main())
