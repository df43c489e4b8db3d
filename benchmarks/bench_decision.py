"""Decision cost of the engine for generated policies of 10, 1,000 and 10,000 rules.

    python benchmarks/bench_decision.py [--reps 31] [--loops 2000]

For each sample operation (benchmarks/_policygen.py) and each policy size it times
`decide` (cache warm: the steady state of a hook) and `decide_uncached` (the full indexed
lookup), as loops of `--loops` calls with `time.perf_counter_ns`. All configurations run
interleaved, round after round, after a warm-up round, so that drift of a shared machine hits
them alike; the table shows the median over rounds in nanoseconds per decision, and the ratio
of the 10,000-rule policy to the 10-rule one (issue 2's target: <= 1.5x).
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


def _loop(call: Callable[[object], object], op: object, loops: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(loops):
        call(op)
    return (time.perf_counter_ns() - start) / loops


def _compile(size: int) -> tuple[CompiledPolicy, float]:
    document = generate(size)
    start = time.perf_counter_ns()
    compiled = compile_policy(document, "enforce", protected_paths=("/etc/appshield.yaml",))
    return compiled, (time.perf_counter_ns() - start) / 1e6


def run(reps: int, loops: int) -> None:
    policies = {size: _compile(size) for size in SIZES}
    configs = [
        (label, size, cached, policies[size][0], op)
        for label, op in SAMPLE_OPS
        for size in SIZES
        for cached in (True, False)
    ]
    # Same decisions for every size: the generated filler never decides a sample operation.
    for label, op in SAMPLE_OPS:
        answers = {policies[s][0].decide_uncached(op).action for s in SIZES}
        assert len(answers) == 1, (label, answers)
    samples: dict[tuple[str, int, bool], list[float]] = {c[:3]: [] for c in configs}
    for round_ in range(reps + 1):
        for label, size, cached, compiled, op in configs:
            call = compiled.decide if cached else compiled.decide_uncached
            elapsed = _loop(call, op, loops)
            if round_:  # round 0 warms up: caches, lazy regexes, branch predictors
                samples[(label, size, cached)].append(elapsed)
    _print(policies, samples)


def _print(
    policies: dict[int, tuple[CompiledPolicy, float]],
    samples: dict[tuple[str, int, bool], list[float]],
) -> None:
    median = {key: statistics.median(values) for key, values in samples.items()}
    print(f"python {sys.version.split()[0]}, median ns per decision")
    print("compile ms: " + ", ".join(f"{s} rules {policies[s][1]:.1f}" for s in SIZES))
    head = "| operation | " + " | ".join(
        f"{kind} {s}" for kind in ("cached", "uncached") for s in SIZES
    )
    print(head + " | cached 10k/10 | uncached 10k/10 |")
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=31)
    parser.add_argument("--loops", type=int, default=2000)
    args = parser.parse_args()
    run(args.reps, args.loops)


if __name__ == "__main__":
    main()
