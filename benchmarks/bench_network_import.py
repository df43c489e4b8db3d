"""Network and import hot paths: bare Python against appshield, interleaved.

    python benchmarks/bench_network_import.py [--rounds 5] [--reps 5] [--callgrind]

Each row runs `_worker.py` in fresh interpreters, bare and shielded one after the other,
round after round (so machine noise hits both alike), under the generated 1,000-rule policy
of `run.py` (the measured operation is allowed by it). It prints the medians and the ratio.

`--callgrind` adds user-space instruction counts per operation: each worker runs under
`valgrind --tool=callgrind` with N and with 2N operations, and the difference divided by N
cancels start-up out. Instruction counts do not swing with the machine's load, unlike
wall-clock ratios on a shared 2-core host.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from run import Case, measure, per_op_instructions, start_listener, write_policies

CASES = (
    Case("TCP connect+close, loopback", "connect", 3000, "full", "<= 1.10x"),
    Case("getaddrinfo('localhost')", "getaddrinfo", 3000, "full", "-"),
    Case("import json (cached)", "import_cached", 200000, "full", "<= 1.05x"),
    Case("first import of a module", "import_first", 300, "full", "<= 1.10x"),
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--callgrind", action="store_true")
    parser.add_argument("--only", help="run only the rows whose worker op contains this")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="appshield-bench-net-"))
    policies = write_policies(folder)
    server, port = start_listener()
    env = {**os.environ, "BENCH_PORT": str(port)}
    env = {k: v for k, v in env.items() if not k.startswith(("APPSHIELD_", "OTEL_"))}
    env["BENCH_PORT"] = str(port)
    try:
        print(f"{'operation':34} {'bare':>10} {'shield':>10} {'ratio':>7} {'target':>9}", end="")
        print(f" {'instr bare':>11} {'instr shield':>12} {'ratio':>7}" if args.callgrind else "")
        for case in CASES:
            if args.only and args.only not in case.op:
                continue
            m = measure(case, args.rounds, args.reps, policies[case.policy], env, False)
            bare, shielded = m["bare"] or 0.0, m["shield"] or 0.0
            line = (
                f"{case.name:34} {bare / 1000:>8.2f}us {shielded / 1000:>8.2f}us "
                f"{shielded / bare:>6.3f}x {case.target:>9}"
            )
            if args.callgrind and shutil.which("valgrind"):
                ib = per_op_instructions(case, "bare", policies[case.policy], env)
                isd = per_op_instructions(case, "shield", policies[case.policy], env)
                line += f" {ib:>11.0f} {isd:>12.0f} {isd / ib:>6.3f}x"
            print(line, flush=True)
    finally:
        server.kill()
        server.wait()
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
