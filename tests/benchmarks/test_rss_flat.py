"""benchmarks/bench_rss_flat.py runs (a short run), and appshield's memories stay within
their bounds over a workload of distinct paths and addresses. The resident-size figures of a
long run are measured, not tested: they live in docs/performance.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.benchmarks._load import load_benchmark


def test_the_benchmark_runs_both_modes(tmp_path: Path) -> None:
    bench = load_benchmark("bench_rss_flat")
    results = bench.main(["--ops", "400", "--json", str(tmp_path / "rss.json")])
    assert set(results) == {"bare", "appshield"}
    for points in results.values():
        assert [n for n, _ in points] == [40 * k for k in range(1, 11)]
        assert all(mb > 0 for _, mb in points)


def test_every_memory_stays_within_its_bound_over_distinct_operations(tmp_path: Path) -> None:
    # 6,000 distinct paths (three decisions each) and 3,000 distinct ports: more than any
    # memory's bound (4,096), so an unbounded one would show here as a size over its bound.
    work = tmp_path / "work"
    (work / "secret").mkdir(parents=True)
    policy = tmp_path / "policy.yaml"
    policy.write_text(load_benchmark("bench_rss_flat").POLICY.format(work=work))
    code = textwrap.dedent(
        """\
        import gc, json, os, socket, sys
        import appshield.auto
        from appshield.engine import compiled
        from appshield.hooks import _file_cache
        from appshield.hooks.network import describe, memory
        work = sys.argv[1]
        for i in range(6000):
            name = os.path.join(work, "f%d" % i)
            open(name, "w").close()
            os.remove(name)
            try:
                open(name + ".missing", "rb")
            except FileNotFoundError:
                pass
        for i in range(3000):
            s = socket.socket()
            s.connect_ex(("127.0.0.1", 30000 + i))
            s.close()
        sizes = {}
        for obj in gc.get_objects():
            if isinstance(obj, compiled.CompiledPolicy):
                for category, cache in obj._caches.items():
                    if cache is not None:
                        sizes["decisions:" + category.__name__] = len(cache)
        for name in ("_canonical", "_ops", "_named", "_hosts"):
            sizes["network:" + name] = len(getattr(describe, name))
        limits = (compiled.DEFAULT_CACHE_SIZE, _file_cache._LIMIT, describe._CACHE_LIMIT,
                  memory.DEFAULT_CAPACITY)
        print(json.dumps({"limit": min(limits), "sizes": sizes}))
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPSHIELD_", "OTEL_"))}
    env["APPSHIELD_POLICY"] = str(policy)
    done = subprocess.run(
        [sys.executable, "-c", code, str(work)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.splitlines()[-1])
    sizes = found["sizes"]
    # The workload reached the memories it is meant to fill, and none of them holds more
    # than its bound although more distinct operations went through it.
    assert sizes["decisions:FileOp"] > 0 and sizes["decisions:NetworkOp"] > 0, sizes
    assert all(size <= found["limit"] for size in sizes.values()), sizes
