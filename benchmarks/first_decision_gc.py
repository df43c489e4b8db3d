"""Where the first decision's outliers at 100,000 rules come from: the cyclic garbage collector.

For 1k, 10k and 100k generated rules (benchmarks/_policygen.py), with the policy cache written
by a first run, several fresh processes each load the policy (as `install` does) and time the
first decision of every sample operation, while `gc.callbacks` records every collection
(generation, duration, and the decision it fell into). Prints, per size: the slowest first
decision of each run, the later (uncached) decision, and the collections that ran during a
first decision.

    python benchmarks/first_decision_gc.py [--runs 5] [--sizes 1000,10000,100000]

(Wall time, so the machine's load shows; docs/performance-worst-cases.md has the figures.)
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

HERE = Path(__file__).resolve().parent


def child(policy: str) -> dict[str, object]:
    """In this (fresh) process: load, then the first decisions, with every collection logged."""
    sys.path.insert(0, str(HERE))
    from _policygen import SAMPLE_OPS
    from _worst_cases import _best

    from appshield.policy import Policy

    log: list[tuple[int, int, int]] = []  # (generation, start ns, duration ns)
    started: list[int] = [0]

    def watch(phase: str, info: dict[str, int]) -> None:
        now = time.perf_counter_ns()
        if phase == "start":
            started[0] = now
        else:
            log.append((info["generation"], started[0], now - started[0]))

    # Wall time and this thread's CPU time: under load, a decision can be preempted for a
    # scheduler slice (wall >> CPU); a collection shows in both.

    gc.callbacks.append(watch)
    t0 = time.perf_counter_ns()
    compiled = Policy.from_file(policy).compiled
    load = time.perf_counter_ns() - t0
    tracked = len(gc.get_objects())
    at_load = len(log)
    decisions = []
    for label, op in SAMPLE_OPS:
        c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
        compiled.decide(op)
        t1, c1 = time.perf_counter_ns(), time.thread_time_ns()
        during = [(g, d) for g, s, d in log[at_load:] if t0 <= s <= t1]
        decisions.append({"op": label, "ns": t1 - t0, "cpu": c1 - c0, "gc": during})
    gc.callbacks.remove(watch)
    later = max(_best(partial(compiled.decide_uncached, op), 7) for _l, op in SAMPLE_OPS)
    c0 = time.thread_time_ns()
    gc.collect()
    full = time.thread_time_ns() - c0
    return {
        "load": load,
        "tracked": tracked,
        "gc_at_load": [(g, d) for g, _s, d in log[:at_load]],
        "decisions": decisions,
        "later": later,
        "full_collection_cpu": full,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", default="1000,10000,100000")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    from _policygen import generate, to_yaml

    env = {k: v for k, v in os.environ.items() if not k.startswith("APPSHIELD_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    with tempfile.TemporaryDirectory(prefix="appshield-bench-gc-") as folder:
        for size in (int(s) for s in args.sizes.split(",")):
            path = os.path.join(folder, f"p{size}.yaml")
            Path(path).write_text(to_yaml(generate(size)))
            command = [sys.executable, __file__, "--child", path]
            subprocess.run(command, env=env, check=True, capture_output=True)  # writes the cache
            for run in range(args.runs):
                out = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
                row = json.loads(out.stdout)
                worst = max(row["decisions"], key=lambda d: d["ns"])
                collections = [(d["op"], g, ns) for d in row["decisions"] for g, ns in d["gc"]]
                print(
                    f"{size:>7,} rules run {run}: load {row['load'] / 1e6:7.1f} ms,"
                    f" {row['tracked']:>9,} tracked objects (a full collection:"
                    f" {row['full_collection_cpu'] / 1e6:.1f} ms CPU),"
                    f" first {worst['ns'] / 1000:7.1f} us ({worst['cpu'] / 1000:.1f} us CPU,"
                    f" {worst['op']}), later {row['later'] / 1000:5.1f} us;"
                    f" collections in first decisions: "
                    + (
                        ", ".join(f"gen{g} {ns / 1000:.0f} us in {op}" for op, g, ns in collections)
                        or "none"
                    )
                )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2])))
    else:
        main()
