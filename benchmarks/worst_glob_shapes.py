"""A search for the slowest glob decision on a 4,096-character subject (issue 17).

`_worst_cases.py` (run.py --only globs) keeps the adversarial globs that once took seconds;
this script goes through families of shapes built against the block scan of
`appshield/engine/globs.py` ("long blocks"): blocks of 8 to 2,000 segments between two `**`
of each kind of segment glob, against paths whose segments repeat or are all different
(new segments and new characters are what the scan pays for), globs of many blocks, and
plain globs (argv items, command lines, hosts) of many stars. Each decision is timed with
its matcher compiled beforehand, as a new matcher's first decision on that subject and as a
repeated one, best of `--tries`, in CPU time (`measure`).

    python benchmarks/worst_glob_shapes.py [--tries 7] [--top 12] [--regex-only]

`--regex-only` forces every block to the regex search, to compare with what the matcher
did before the scan (it sets `globs._SCAN_COST` so high that no block takes the scan).
"""

from __future__ import annotations

import argparse
import itertools
import string
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _worst_cases import ADVERSARIAL, SUBJECT, late_placements

from appshield.engine import globs


def _path(segments: Iterator[str]) -> str:
    """A path of whole segments, at most SUBJECT characters."""
    out, size = [], 0
    for segment in segments:
        size += 1 + len(segment)
        if size > SUBJECT:
            break
        out.append(segment)
    return "/" + "/".join(out)


ALNUM = string.ascii_letters + string.digits
PATHS = {
    "2,048 x /a": "/a" * (SUBJECT // 2),
    "2,048 distinct 1-char": _path(chr(0x100 + i) for i in itertools.count()),
    "1,365 distinct 2-char": _path("".join(p) for p in itertools.product(ALNUM, repeat=2)),
    "455 distinct 8-char": _path("".join(p) for p in itertools.product("ab", repeat=8)),
    "512 x /aaaaaaa": "/aaaaaaa" * (SUBJECT // 8),
    "1 segment": "/" + "a" * (SUBJECT - 1),
}
PIECES = ["*a", "a*", "*", "?", "??", "*?", "[!z]", "*[!b]a", "[a-z]*", "?*?"]


def shapes() -> Iterator[tuple[str, str, str, str]]:
    """(family, label, glob, subject)."""
    for family, glob, subject in ADVERSARIAL:
        yield family, glob[:40], glob, subject
    for k in (8, 12, 16, 24, 100, 1000, 2000):
        for piece in PIECES:
            glob = "/**/" + "/".join([piece] * k) + "/b/**"
            for name, subject in PATHS.items():
                yield "path block", f"{k} x {piece} on {name}", glob, subject
    mixed = "/".join(itertools.islice(itertools.cycle(PIECES), 24))
    for name, subject in PATHS.items():
        yield "path block", f"24 mixed on {name}", "/**/" + mixed + "/b/**", subject
    for blocks, size in ((100, 2), (1000, 2), (680, 3), (2000, 1), (50, 16)):
        glob = "/**/" + "/**/".join(["/".join(["*a"] * size)] * blocks) + "/*b/**"
        yield "path blocks", f"{blocks} blocks of {size} x *a", glob, PATHS["2,048 x /a"]
    # Many blocks each placed one segment later than it could be (a scan per block paid its
    # set-up per block), and single blocks as wide as the subject allows (many distinct
    # segment globs, each its own stand-in, beside one long glob).
    late = "/**/" + "/**/".join(["/".join(["*"] * 12 + ["b"])] * 130) + "/**"
    for name, subject in (
        ("ASCII", ("/a" * 60 + "/b") * 5 + ("/a" * 13 + "/b") * 124),
        ("new chars", late_placements(0x3000)),
    ):
        yield "path blocks", f"130 blocks of 12 x * + b, late, {name}", late, subject
    # (What lies between the two `**` is over `appshield check`'s 512 characters in the
    # first three: the engine still matches them, a policy cannot hold them.)
    for distinct, long in ((1500, 1000), (1000, 2000), (250, 500), (170, 0), (150, 60)):
        names = [chr(0x400 + i) for i in range(distinct)]
        runs = ["*", *(f"*{c}" for c in names), *(["?" * long] if long else [])]
        glob = "/**/" + "/".join(runs) + "/**"
        subject = "/" + "/".join(names) + ("/" + "a" * long if long else "")
        subject += "/x" * ((SUBJECT - len(subject)) // 2)
        refused = " (refused by check)" if len("/".join(runs)) > 512 else ""
        yield "path block", f"{distinct} distinct *X + {long} x ?{refused}", glob, subject
    yield "path", "one segment, 2,000 stars", "/**/" + "*a" * 2000 + "*b/**", PATHS["2,048 x /a"]
    yield "path", "2,000 stars, long segment", "/**/" + "*a" * 2000 + "*b/**", PATHS["1 segment"]
    for stars in (10, 100, 1000, 2000):
        for family, piece, tail in (
            ("argv / command line", "*a", "*b"),
            ("argv / command line", "*?", "*b"),
            ("host", "*a.", "*b"),
        ):
            glob = piece * stars + tail
            subject = ("a" * SUBJECT) if family != "host" else ("a." * (SUBJECT // 2))
            yield family, f"{stars} x {piece}{tail}", glob, subject


def _cpu(call: Callable[[], object]) -> int:
    t0 = time.thread_time_ns()
    call()
    return time.thread_time_ns() - t0


def measure(family: str, glob: str, subject: str, tries: int) -> tuple[float, float]:
    """(first, repeated): the best over `tries` of the first decision on `subject` by a new
    matcher (compiled beforehand on another subject, so its memo knows none of this one's
    segments), and of a repeated one. This thread's CPU time: the machine is shared, and a
    decision preempted for a scheduler slice says nothing about the matcher."""
    plain = family.startswith(("argv", "host"))
    single = globs.plain_matcher if plain else globs.path_matcher
    first = repeated = float("inf")
    for _ in range(tries):
        matcher = single(glob)
        matcher("compile")  # the regex (or the scan) is made on first use
        first = min(first, _cpu(partial(matcher, subject)))
        repeated = min(repeated, _cpu(partial(matcher, subject)))
    return first, repeated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tries", type=int, default=7)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--regex-only", action="store_true")
    args = parser.parse_args()
    if args.regex_only:
        globs._SCAN_COST = 10**12
    rows = []
    for family, label, glob, subject in shapes():
        first, repeated = measure(family, glob, subject, args.tries)
        rows.append((max(first, repeated), first, repeated, family, label))
    rows.sort(reverse=True)
    print(
        f"slowest of {len(rows)} decisions, {SUBJECT}-character subjects (target <= 1 ms),"
        " CPU time, best of each: first decision of a new matcher / repeated"
    )
    for _worst, first, repeated, family, label in rows[: args.top]:
        print(f"  {family:20} {label:46} {first / 1000:9.1f} us {repeated / 1000:9.1f} us")


if __name__ == "__main__":
    main()
