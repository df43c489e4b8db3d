"""Process and file hot paths: bare Python against appshield, interleaved.

    python benchmarks/bench_hooks.py [--rounds 7] [--only open] [--callgrind]

Each row runs this file as a worker in fresh interpreters, bare and shielded one after the
other, round after round (so machine noise hits both alike); a worker warms up, then times
several repetitions of N operations and prints its best per-operation time. The table shows
the median over rounds for each side and the ratio of the medians. Wall-clock ratios swing
by 20% or more on a shared machine; `--callgrind` adds user-space instruction counts per call
(valgrind, runs of N and 2N operations, the difference divided by N), which do not.

Policies:
- `plain`: every default allow, one process rule, no file rules (only the implicit protection
  of the policy file and appshield's own files, which concerns writes): an allowed read
  `open()` needs no symlink resolution.
- `1000`: the generated 1,000-rule policy of benchmarks/_policygen.py (file deny rules
  included), under which the measured operation is allowed: reads are resolved through the
  kernel (symlink-safe).
"""

from __future__ import annotations

import argparse
import atexit
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent

PLAIN = """\
version: 1
name: plain
defaults: {process: allow, file: allow, network: allow, import: allow}
rules:
  - id: no-nc
    category: process
    action: deny
    match: {executable: nc}
"""

# (label, operation, policy, operations per repetition)
CASES = (
    ("open()+close(), read, no file rules", "open_read", "plain", 20000),
    ("open()+close(), read, 1,000 rules", "open_read", "1000", 20000),
    ("open()+close(), write, 1,000 rules", "open_write", "1000", 10000),
    ("os.open()+os.close()", "os_open", "plain", 20000),
    ("os.stat() (not checked)", "stat", "plain", 50000),
    ("os.listdir()", "listdir", "plain", 10000),
    ("subprocess.run(['true'])", "run_true", "1000", 150),
)


def _operation(name: str, folder: str) -> Callable[[], object]:
    small = os.path.join(folder, "small.txt")
    with open(small, "w") as handle:
        handle.write("x" * 100)
    out = os.path.join(folder, "out.txt")

    def open_read() -> None:
        open(small).close()

    def open_write() -> None:
        open(out, "w").close()

    def os_open() -> None:
        os.close(os.open(small, os.O_RDONLY))

    def stat() -> None:
        os.stat(small)

    def listdir() -> None:
        os.listdir(folder)

    def run_true() -> None:
        subprocess.run(["true"], check=True)

    return locals()[name]  # type: ignore[no-any-return]


def worker(name: str, mode: str, n: int, reps: int, policy: str) -> None:
    folder = tempfile.mkdtemp(prefix="appshield-bench-hooks-")
    try:
        print(_best_time(name, mode, n, reps, policy, folder))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _best_time(name: str, mode: str, n: int, reps: int, policy: str, folder: str) -> float:
    operation = _operation(name, folder)
    handle = None
    if mode == "shield":
        import appshield

        handle = appshield.install(policy)
    try:
        for _ in range(max(1, n // 10)):  # warm-up: caches, branch predictors, page cache
            operation()
        best = float("inf")
        for _ in range(reps):
            start = time.perf_counter_ns()
            for _ in range(n):
                operation()
            best = min(best, (time.perf_counter_ns() - start) / n)
        return best
    finally:
        if handle is not None:
            handle.uninstall()  # so removing the work folder is not itself refused


def _policies(folder: Path) -> dict[str, str]:
    sys.path.insert(0, str(HERE))
    from run import write_policies  # the 1,000-rule policy of the main benchmark

    plain = folder / "plain.yaml"
    plain.write_text(PLAIN)
    return {"plain": str(plain), "1000": write_policies(folder)["full"]}


def _run(name: str, mode: str, n: int, reps: int, policy: str) -> float:
    command = [sys.executable, __file__, "--worker", name, mode, str(n), str(reps), policy]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"worker {name} {mode} failed:\n{done.stderr[-2000:]}")
    return float(done.stdout.strip().splitlines()[-1])


_COLLECTED = re.compile(r"Collected : (\d+)")


def _instructions(name: str, mode: str, n: int, policy: str) -> int:
    """User-space instructions of one worker run of `n` operations (one repetition)."""
    with tempfile.TemporaryDirectory() as out:
        command = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}/cg.out",
            sys.executable,
            __file__,
            "--worker",
            name,
            mode,
            str(n),
            "1",
            policy,
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    found = _COLLECTED.findall(done.stderr)
    if done.returncode != 0 or not found:
        raise RuntimeError(f"callgrind {name} {mode} failed:\n{done.stderr[-2000:]}")
    return int(found[-1])


def per_op_instructions(name: str, mode: str, n: int, policy: str) -> float:
    """The difference between runs of n and 2n operations cancels start-up out (the warm-up
    of n/10 operations scales with n too)."""
    one = _instructions(name, mode, n, policy)
    two = _instructions(name, mode, 2 * n, policy)
    return (two - one) / (n * 1.1)


def callgrind_table(policies: dict[str, str], only: str | None) -> None:
    print(f"\n{'operation (instructions per call)':42} {'bare':>10} {'appshield':>10} {'ratio':>7}")
    for label, name, policy, n in CASES:
        if only and only not in name:
            continue
        count = max(20, n // 100)
        bare = per_op_instructions(name, "bare", count, policies[policy])
        shielded = per_op_instructions(name, "shield", count, policies[policy])
        print(f"{label:42} {bare:>10.0f} {shielded:>10.0f} {shielded / bare:>6.2f}x", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--only", help="run only the rows whose operation contains this")
    parser.add_argument("--callgrind", action="store_true", help="also count instructions")
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        name, mode, n, reps, policy = args.worker
        worker(name, mode, int(n), int(reps), policy)
        return 0
    policy_folder = Path(tempfile.mkdtemp(prefix="appshield-bench-pol-"))
    atexit.register(shutil.rmtree, policy_folder, True)
    policies = _policies(policy_folder)
    print(f"{'operation':42} {'bare':>10} {'appshield':>10} {'ratio':>7}")
    for label, name, policy, n in CASES if args.rounds > 0 else ():
        if args.only and args.only not in name:
            continue
        bare: list[float] = []
        shielded: list[float] = []
        for _ in range(args.rounds):
            bare.append(_run(name, "bare", n, args.reps, policies[policy]))
            shielded.append(_run(name, "shield", n, args.reps, policies[policy]))
        b, s = statistics.median(bare), statistics.median(shielded)
        print(f"{label:42} {b / 1000:>8.2f}us {s / 1000:>8.2f}us {s / b:>6.2f}x", flush=True)
    if args.callgrind:
        callgrind_table(policies, args.only)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
