"""Worst cases of the engine, for `run.py --only globs,first_decision` (issue 17).

globs: the slowest single decision over adversarial globs, each against a 4,096-character
subject built to make a backtracking matcher try every split, or a long block between two
`**` do the most work per subject (new characters, long segments): a new matcher's first
decision on that subject (its regex compiled beforehand on another subject; what an attacker
who varies the subject gets, each try a subject of characters not used before) and the same
decision repeated, in CPU time, the best of a few tries (one decision is short, and the
machine may be shared).

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
from functools import partial
from itertools import islice, product
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


def _new_segments(first: int) -> str:
    """2,048 one-character segments, all distinct and beyond ASCII, from code point `first`."""
    return "/" + "/".join(map(chr, range(first, first + SUBJECT // 2)))


def _block(pieces: list[str], tail: str = "/**") -> str:
    return "/**/" + "/".join(pieces) + tail


def late_placements(first: int) -> str:
    """For 130 blocks of 12 `*` and a `b`: five placements 61 segments apart (what spent
    the probes' budget when each block had a scan of its own), then each block one segment
    later than it could be, in new characters from code point `first`."""
    names = map(chr, range(first, first + SUBJECT))
    parts: list[str] = []
    for gap in [60] * 5 + [13] * 124:
        parts += [*(next(names) for _ in range(gap)), "b"]
    return "/" + "/".join(parts)


# A block of `*` and 170 distinct `*X`: 511 characters between the two `**`, as wide as
# `appshield check` allows (512, appshield/policy/_values.py), every X its own stand-in.
_WIDE = 170


def _wide_subject(n: int) -> str:
    """For that block: its X (rotated by n, so that no two tries are alike), each a new
    stand-in segment, then `/x` up to SUBJECT characters."""
    names = [chr(0x400 + (i + n) % _WIDE) for i in range(_WIDE)]
    text = "/" + "/".join(names)
    return text + "/x" * ((SUBJECT - len(text)) // 2)


_ASTRAL = 0x20000
_DISTINCT = [f"*{chr(0x100 + i)}*a" for i in range(500)]
# (family, glob, subject of try n): the shapes that cost the block scan most, found by
# benchmarks/worst_glob_shapes.py and docs/performance-worst-cases.md.
NEW_SUBJECTS: tuple[tuple[str, str, Callable[[int], str]], ...] = (
    (
        "path, 2,048 new chars",
        _block(["*?"] * 24, "/b/**"),
        lambda n: _new_segments(0x3000 + 3000 * n),
    ),
    ("path, 2,048 new chars", _block(["*"] * 2000), lambda n: _new_segments(0x3000 + 3000 * n)),
    (
        "path, 2,048 new astral chars",
        _block([f"*[{chr(_ASTRAL - 5000 + 50 * i)}]" for i in range(2000)], "/b/**"),
        lambda n: _new_segments(_ASTRAL + 3000 * n),
    ),
    (
        "path, distinct globs, long seg",
        _block(_DISTINCT, "/c/**"),
        lambda n: "/" + ("ab" * SUBJECT)[n : n + SUBJECT - 1001] + "/a" * 500,
    ),
    (
        "path, 34 blocks, far placements",
        "/**/" + "/**/".join(["/".join(["*"] * 12 + ["b"])] * 34) + "/**",
        lambda n: "".join(
            "/"
            + "/".join(map(chr, range(0x3000 + 3000 * n + 61 * j, 0x3000 + 3000 * n + 61 * j + 60)))
            + "/b"
            for j in range(33)
        ),
    ),
    (
        "path, 40 blocks of 51, new chars",
        "/**/" + "/**/".join(["/".join(["*?"] * 51)] * 40) + "/**",
        lambda n: _new_segments(0x3000 + 3000 * n),
    ),
    (
        "path, 130 blocks placed late",
        "/**/" + "/**/".join(["/".join(["*"] * 12 + ["b"])] * 130) + "/**",
        lambda n: late_placements(0x3000 + 5000 * n),
    ),
    (
        "path, widest block check allows",
        _block(["*"] + [f"*{chr(0x400 + i)}" for i in range(_WIDE)]),
        lambda n: _wide_subject(n),
    ),
    (
        "path, 409 new 9-char segments",
        _block(["*[!b]a"] * 300),
        lambda n: "/" + "/".join(islice(map("".join, product("ab", repeat=9)), n, n + 409)),
    ),
)


def _best(call: Callable[[], object], tries: int = 5) -> float:
    best = float("inf")
    for _ in range(tries):
        t0 = time.perf_counter_ns()
        call()
        best = min(best, time.perf_counter_ns() - t0)
    return best


def _first_and_repeated(
    family: str, glob: str, subject: Callable[[int], str], tries: int = 5
) -> tuple[float, float]:
    """CPU time (ns) of a new matcher's first decision on subject(n) and of that decision
    again, best of `tries`."""
    from appshield.engine.globs import path_matcher, plain_matcher

    single = path_matcher if family.startswith(("path", "executable")) else plain_matcher
    first = repeated = float("inf")
    for n in range(tries):
        matcher, text = single(glob), subject(n)
        matcher("/compile")  # the regexes and scans are made on first use
        for k in range(2):
            t0 = time.process_time_ns()
            matcher(text)
            spent = time.process_time_ns() - t0
            if k:
                repeated = min(repeated, spent)
            else:
                first = min(first, spent)
    return first, repeated


def globs_rows() -> list[tuple[str, str, float]]:
    """(family, glob, the worse of the first and the repeated decision, ns)."""
    rows = []
    same: list[tuple[str, str, Callable[[int], str]]] = [
        (family, glob, partial(_same, subject)) for family, glob, subject in ADVERSARIAL
    ]
    for family, glob, subject in [*same, *NEW_SUBJECTS]:
        rows.append((family, glob, max(_first_and_repeated(family, glob, subject))))
    return rows


def _same(subject: str, _n: int) -> str:
    return subject


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
    later = max(_best(partial(compiled.decide_uncached, op), 7) for _label, op in SAMPLE_OPS)
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
    print(
        f"\nworst-case single decision, {SUBJECT}-character subject (target <= 1 ms;"
        " CPU time, the worse of a new matcher's first decision and a repeated one)"
    )
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
