"""Does the shield's memory stay flat over a long run of allowed operations on distinct paths?

Issue 17 asks for peak RSS "flat over 1 M allowed operations on distinct paths (caches
bounded)". Each of appshield's memories (allowed opens, decisions, connect and resolve
answers, redactions) is bounded; this runs the workload that would grow an unbounded one
and reads the process's resident size along the way.

A fresh child, bare or under `import appshield.auto` with a policy that allows the workload
and keeps file and network deny rules (so the symlink-safe open path and the network index
are in play), performs N rounds of:
- create, close, touch and delete a file of a name never used before (an `open` for
  writing, an `os.utime` and an `os.remove`: three allowed file decisions on a distinct
  path; the `os.utime` is remembered, so the memory of allowed changes fills and must stay
  bounded);
- open for reading a distinct path that does not exist (an allowed decision, then ENOENT);
- every 16th round, a `connect_ex` to a distinct closed port on 127.0.0.1 (refused at once:
  a network decision on a distinct address).
After each tenth of the run it collects garbage and reads `/proc/self/statm`. Prints, per
mode, the resident size at each checkpoint and the growth from the first checkpoint to the
last; `--json` keeps them.

    python benchmarks/bench_rss_flat.py [--ops 1000000] [--json FILE]

No test asserts a size from this run (memory swings with the allocator); the figures go in
docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

CHECKPOINTS = 10

POLICY = """\
version: 1
name: rss-flat
mode: enforce
defaults: {{process: allow, file: allow, network: allow, import: allow}}
rules:
  - id: no-secret
    category: file
    action: deny
    match: {{path: "{work}/secret/**"}}
  - id: no-metadata
    category: network
    action: deny
    match: {{cidr: [169.254.169.254/32]}}
"""

CHILD = """\
import gc, os, socket, sys, json
{install}
work, total = sys.argv[1], int(sys.argv[2])
folder = os.path.join(work, "files")
os.makedirs(folder, exist_ok=True)
page = os.sysconf("SC_PAGE_SIZE")
def resident_mb():
    gc.collect()
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * page / 1e6
points = []
step = max(1, total // {checkpoints})
for i in range(total):
    name = os.path.join(folder, "f%d" % i)
    open(name, "w").close()
    os.utime(name)  # an allowed change by path, remembered: one entry per distinct path
    os.remove(name)
    try:
        open(os.path.join(folder, "missing-%d" % i), "rb")
    except FileNotFoundError:
        pass
    if i % 16 == 0:
        s = socket.socket()
        s.connect_ex(("127.0.0.1", 20000 + (i // 16) % 40000))
        s.close()
    if (i + 1) % step == 0:
        points.append([i + 1, resident_mb()])
print("POINTS " + json.dumps(points), flush=True)
"""


def measure(ops: int, shielded: bool, work: Path) -> list[tuple[int, float]]:
    """Run the workload in a fresh interpreter; (operations done, resident MB) per point."""
    policy = work / "policy.yaml"
    policy.write_text(POLICY.format(work=work))
    (work / "secret").mkdir(exist_ok=True)
    code = CHILD.format(
        install="import appshield.auto" if shielded else "", checkpoints=CHECKPOINTS
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPSHIELD_", "OTEL_"))}
    env["APPSHIELD_POLICY"] = str(policy)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), str(work), str(ops)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    for line in done.stdout.splitlines():
        if line.startswith("POINTS "):
            return [(int(n), float(mb)) for n, mb in json.loads(line[len("POINTS ") :])]
    raise RuntimeError(f"the workload failed ({done.returncode}): {done.stderr[-2000:]}")


def main(argv: list[str] | None = None) -> dict[str, list[tuple[int, float]]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=1_000_000, help="rounds per mode")
    parser.add_argument("--json", help="write the checkpoints here")
    args = parser.parse_args(argv)
    results: dict[str, list[tuple[int, float]]] = {}
    for label, shielded in (("bare", False), ("appshield", True)):
        with tempfile.TemporaryDirectory() as work:
            results[label] = measure(args.ops, shielded, Path(work))
    for label, points in results.items():
        first, last = points[0][1], points[-1][1]
        row = "  ".join(f"{n:>9,}: {mb:6.1f}" for n, mb in points)
        print(f"{label:>9}  {row}")
        print(
            f"{'':>9}  growth from {points[0][0]:,} to {points[-1][0]:,} rounds: "
            f"{last - first:+.1f} MB"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
