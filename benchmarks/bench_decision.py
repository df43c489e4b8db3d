"""Decision cost of the engine for generated policies of 10, 1,000 and 10,000 rules.

    python benchmarks/bench_decision.py [--reps 31] [--budget-us 500]

For each sample operation (benchmarks/_policygen.py) and each policy size it times
`decide` (cache warm: the steady state of a hook) and `decide_uncached` (the full indexed
lookup), as loops calibrated to about `--budget-us` each (short, so that one loop rarely
straddles a preemption), read with `time.perf_counter_ns` and `time.thread_time_ns`.
All configurations run interleaved, round after round, after a warm-up round, so that drift
of a shared machine hits them alike. The tables show the median over rounds in nanoseconds
per decision (loop overhead included, ~40-80 ns) and the ratio of the 10,000-rule policy to
the 10-rule one (issue 2's target: <= 1.5x).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _policygen import SAMPLE_OPS, generate

from appshield.engine import CompiledPolicy, compile_policy

SIZES = (10, 1_000, 10_000)


def _loop(call: Callable[[object], object], op: object, loops: int) -> tuple[float, float]:
    """ns per call, as wall time (perf_counter) and as this thread's CPU time (which a busy,
    shared machine does not inflate by preempting us)."""
    cpu0, wall0 = time.thread_time_ns(), time.perf_counter_ns()
    for _ in range(loops):
        call(op)
    wall, cpu = time.perf_counter_ns() - wall0, time.thread_time_ns() - cpu0
    return wall / loops, cpu / loops


FLOOR = "(loop + call floor)"


def _nothing(_op: object) -> None:
    return None


def _calibrate(call: Callable[[object], object], op: object, budget_ns: float) -> int:
    """Loops that take about `budget_ns`: short enough to fit in one scheduler slice."""
    per_call, _ = _loop(call, op, 200)
    return max(50, int(budget_ns / max(per_call, 1.0)))


def _compile(size: int) -> tuple[CompiledPolicy, float]:
    document = generate(size)
    start = time.perf_counter_ns()
    compiled = compile_policy(document, "enforce", protected_paths=("/etc/appshield.yaml",))
    return compiled, (time.perf_counter_ns() - start) / 1e6


def run(reps: int, budget_us: float) -> None:
    policies = {size: _compile(size) for size in SIZES}
    # Same decisions for every size: the generated filler never decides a sample operation.
    for label, op in SAMPLE_OPS:
        answers = {policies[s][0].decide_uncached(op).action for s in SIZES}
        assert len(answers) == 1, (label, answers)
    configs = []
    for label, op in SAMPLE_OPS:
        for size in SIZES:
            for cached in (True, False):
                compiled = policies[size][0]
                call = compiled.decide if cached else compiled.decide_uncached
                configs.append(
                    (label, size, cached, call, op, _calibrate(call, op, budget_us * 1e3))
                )
    # The loop and one Python call, with nothing behind it: the floor under every cell.
    floor = _calibrate(_nothing, None, budget_us * 1e3)
    configs.append((FLOOR, 0, True, _nothing, None, floor))
    samples: dict[tuple[str, int, bool], list[tuple[float, float]]] = {c[:3]: [] for c in configs}
    for round_ in range(reps + 1):
        for label, size, cached, call, op, loops in configs:
            elapsed = _loop(call, op, loops)
            if round_:  # round 0 warms up: caches, lazy regexes, branch predictors
                samples[(label, size, cached)].append(elapsed)
    _print(policies, samples)


def _print(
    policies: dict[int, tuple[CompiledPolicy, float]],
    samples: dict[tuple[str, int, bool], list[tuple[float, float]]],
) -> None:
    print(f"python {sys.version.split()[0]}, median ns per decision over rounds")
    print("compile ms: " + ", ".join(f"{s} rules {policies[s][1]:.1f}" for s in SIZES))
    for clock, title in ((0, "wall clock (perf_counter_ns)"), (1, "thread CPU time")):
        median = {
            key: statistics.median(v[clock] for v in values) for key, values in samples.items()
        }
        print(f"\n{title}")
        head = " | ".join(f"{kind} {s}" for kind in ("cached", "uncached") for s in SIZES)
        print(f"| operation | {head} | cached 10k/10 | uncached 10k/10 |")
        print("|---" * (3 + 2 * len(SIZES)) + "|")
        for label, _op in SAMPLE_OPS:
            cells = [f"{median[(label, s, c)]:.0f}" for c in (True, False) for s in SIZES]
            ratios = [
                median[(label, SIZES[-1], c)] / median[(label, SIZES[0], c)] for c in (True, False)
            ]
            print(
                f"| {label} | "
                + " | ".join(cells)
                + " | "
                + " | ".join(f"{r:.2f}x" for r in ratios)
                + " |"
            )
        print(f"loop + call floor: {median[(FLOOR, 0, True)]:.0f} ns")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=31)
    parser.add_argument(
        "--budget-us",
        type=float,
        default=500.0,
        help="target duration of one timed loop (default 500)",
    )
    args = parser.parse_args()
    run(args.reps, args.budget_us)


if __name__ == "__main__":
    main()
