"""Worst cases of the engine, for `run.py --only globs,first_decision` (issue 17).

globs: the slowest single decision over adversarial globs, each against a 4,096-character
subject built to make a backtracking matcher try every split (the matcher's regex is
compiled before the clock starts; the best of a few tries, since one decision is short).

first_decision: a generated policy of 1k, 10k and 100k rules, its cache written by a first
run, then in a fresh process: loading it (as `install` does), the first decision of each
category (which restores that category's index) and a later, uncached one. With and
without the cache (`PYTHONDONTWRITEBYTECODE=1`, where the index is built at load).

Each measurement runs in its own interpreter (`python _worst_cases.py WHAT ...`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
SUBJECT = 4096

# (family, glob, subject): each subject is SUBJECT characters.
ADVERSARIAL: tuple[tuple[str, str, str], ...] = (
    ("path", "/**/**/**/**/*a*a*a*a*a*b", "/" + "a" * (SUBJECT - 1)),
    ("path", "/**/*a*a*a*a*a*b/**", "/a" * (SUBJECT // 2)),
    ("path", "/**/*a/**/*a/**/*a/**/*a/**/*a/**/*b", "/a" * (SUBJECT // 2)),
    ("path", "/**/" + "/".join(["*a"] * 8) + "/*b/**", "/a" * (SUBJECT // 2)),
    ("path", "/**/" + "/".join(["?"] * 8) + "/b/**", "/a" * (SUBJECT // 2)),
    ("path", "/**/" + "/".join(["*"] * 8) + "/b", "/a" * (SUBJECT // 2)),
    ("path", "/**/a/a/a/a/a/a/a/a/b/**", "/a" * (SUBJECT // 2)),
    ("path", "/**//////////b/**", "/" * SUBJECT),
    ("path", "/*a*a*a*a*a*a*a*a*a*a*b", "/" + "a" * (SUBJECT - 1)),
    ("path (24 wildcard segments)", "/**/" + "/".join(["*a"] * 24) + "/*b/**", "/a" * 2048),
    ("argv / command line", "*a*a*a*a*a*a*a*a*a*a*b", "a" * SUBJECT),
    ("argv / command line", "*?*?*?*?*?*?*?*?*?*?*b", "a" * SUBJECT),
    ("argv / command line", "*[ab]*[ab]*[ab]*[ab]*[ab]*c", "ab" * (SUBJECT // 2)),
    ("host", "*a*a*a*a*a*a.a*a*a.*b", "a." * (SUBJECT // 2)),
    ("executable base name", "*a*a*a*a*a*a*a*a*b", "a" * SUBJECT),
)


def _best(call: Callable[[], object], tries: int = 5) -> float:
    best = float("inf")
    for _ in range(tries):
        t0 = time.perf_counter_ns()
        call()
        best = min(best, time.perf_counter_ns() - t0)
    return best


def globs_rows() -> list[tuple[str, str, float]]:
    from appshield.engine.globs import path_matcher, plain_matcher

    rows = []
    for family, glob, subject in ADVERSARIAL:
        single = path_matcher if family.startswith(("path", "executable")) else plain_matcher
        matcher = single(glob)
        matcher("compile")  # the regex is compiled on first use
        rows.append((family, glob, _best(lambda m=matcher, s=subject: m(s))))
    return rows


def first_decision(policy: str) -> dict[str, float]:
    """In this (fresh) process: load, compile, first decisions, later decisions (ns)."""
    sys.path.insert(0, str(HERE))
    from _policygen import SAMPLE_OPS

    from appshield.policy import Policy

    t0 = time.perf_counter_ns()
    loaded = Policy.from_file(policy)
    compiled = loaded.compiled
    load = time.perf_counter_ns() - t0
    first = 0.0
    for _label, op in SAMPLE_OPS:
        t0 = time.perf_counter_ns()
        compiled.decide(op)
        first = max(first, time.perf_counter_ns() - t0)
    later = max(_best(lambda o=op: compiled.decide_uncached(o), 7) for _label, op in SAMPLE_OPS)
    return {"load": load, "first": first, "later": later}


def first_decision_rows(
    sizes: tuple[int, ...] = (1_000, 10_000, 100_000),
) -> list[dict[str, object]]:
    sys.path.insert(0, str(HERE))
    from _policygen import generate, to_yaml

    rows: list[dict[str, object]] = []
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPSHIELD_")}
    with tempfile.TemporaryDirectory(prefix="appshield-bench-first-") as folder:
        for size in sizes:
            path = os.path.join(folder, f"p{size}.yaml")
            Path(path).write_text(to_yaml(generate(size)))
            command = [sys.executable, __file__, "first", path]
            for cached in (False, True):  # without first: a cache would be read even then
                extra = {} if cached else {"PYTHONDONTWRITEBYTECODE": "1"}
                environ = {**env, **extra}
                if cached:  # a first run writes the cache, as a process's first start does
                    environ.pop("PYTHONDONTWRITEBYTECODE", None)
                    subprocess.run(command, env=environ, check=True, capture_output=True)
                out = subprocess.run(
                    command, env=environ, check=True, capture_output=True, text=True
                )
                rows.append({"rules": size, "cache": cached, **json.loads(out.stdout)})
    return rows


def print_globs() -> list[tuple[str, str, float]]:
    rows = globs_rows()
    print(f"\nworst-case single decision, {SUBJECT}-character subject (target <= 1 ms)")
    for family, glob, ns in rows:
        shown = glob if len(glob) <= 48 else glob[:45] + "..."
        print(f"  {family:30} {shown:50} {ns / 1000:9.1f} us")
    worst = max(ns for _f, _g, ns in rows)
    print(f"  {'worst':81} {worst / 1000:9.1f} us")
    return rows


def print_first_decision() -> list[dict[str, object]]:
    rows = first_decision_rows()
    print("\nfirst decision after load (target at 10k rules: <= 2x a later one + 1 ms)")
    for row in rows:
        load, first, later = (float(row[k]) for k in ("load", "first", "later"))  # type: ignore[arg-type]
        cache = "cache" if row["cache"] else "no cache (index built at load)"
        print(
            f"  {row['rules']:>7,} rules, {cache:31} load {load / 1e6:8.1f} ms"
            f"  first {first / 1000:8.1f} us  later {later / 1000:6.1f} us"
            f"  (first <= 2x later + 1 ms: {'yes' if first <= 2 * later + 1e6 else 'NO'})"
        )
    return rows


if __name__ == "__main__":
    if sys.argv[1] == "first":
        print(json.dumps(first_decision(sys.argv[2])))
    elif sys.argv[1] == "globs":
        print_globs()
    else:
        print_first_decision()
