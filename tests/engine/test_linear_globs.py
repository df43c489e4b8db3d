"""The glob matchers never backtrack their way into exponential time, and still mean what the
reference translation means.

The reference is the plain regex translation (`translate_path`, `translate_plain`), which is
exact but backtracks: on short subjects it is fast enough to be the oracle. The matchers under
test are the ones the engine uses (`path_matcher`, `plain_matcher`), fast shapes included.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from fnmatch import fnmatchcase

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appshield.engine.globs import (
    _MEMO,
    _BlockScan,
    _middle,
    _middles,
    glob_problem,
    has_magic,
    path_matcher,
    path_plan,
    plain_matcher,
    translate_path,
    translate_plain,
)
from tests.engine import _engine_reference as reference

MANY = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Segments that make placements ambiguous: stars next to the letters the subjects are made of.
RUN_PIECES = ["a", "b", "*", "?", "[ab]", "[!a]", "*a", "a*", "*a*b", "a?b*", "*b*", ""]
SUBJECT_SEGMENTS = ["a", "b", "ab", "aab", "ba", "", "abab", "bb", "a\nb", "a.b"]


def _join(parts: list[str], absolute: bool) -> str:
    return ("/" if absolute else "") + "/".join(parts)


path_globs = st.builds(
    _join,
    st.lists(st.sampled_from([*RUN_PIECES, "**", "**"]), min_size=1, max_size=6),
    st.booleans(),
)
subjects = st.builds(
    _join, st.lists(st.sampled_from(SUBJECT_SEGMENTS), min_size=1, max_size=7), st.booleans()
)
plain_globs = st.lists(st.sampled_from([*RUN_PIECES, ".", "/", " "]), max_size=7).map("".join)
plain_subjects = st.text("ab./ \n", max_size=12)


def _old_path(glob: str, subject: str) -> bool:
    # The reference read with DOTALL: `**` alone is `.*`, which must cross a newline too.
    return re.fullmatch(translate_path(glob), subject, re.DOTALL) is not None


@MANY
@given(path_globs, subjects)
def test_path_matcher_agrees_with_the_regex_translation(glob: str, subject: str) -> None:
    all_double_star = set(glob.split("/")) == {"**"} and glob.count("/") > 0
    expected = reference.path_glob(glob, subject)
    assert path_matcher(glob)(subject) is expected
    if not all_double_star:  # `**/**` alone: the old regex asked for a trailing `/`
        assert _old_path(glob, subject) is expected


@MANY
@given(plain_globs, plain_subjects)
def test_plain_matcher_agrees_with_fnmatch_and_the_regex(glob: str, subject: str) -> None:
    expected = fnmatchcase(subject, glob)
    assert plain_matcher(glob)(subject) is expected
    assert (re.fullmatch(translate_plain(glob), subject, re.DOTALL) is not None) is expected


@MANY
@given(st.text("ab*?[]!-/", max_size=10), st.text("ab/-\n", max_size=10))
def test_arbitrary_text_agrees(glob: str, subject: str) -> None:
    if glob_problem(glob) is None:
        assert path_matcher(glob)(subject) is reference.path_glob(glob, subject)
        assert plain_matcher(glob)(subject) is fnmatchcase(subject, glob)


def test_double_star_alone_crosses_newlines() -> None:
    # A base-name `executable: "**"` deny must catch a name with a newline in it.
    assert path_matcher("**")("evil\nname")
    assert path_matcher("/**")("/a\n/b")


# Globs the backtracking translation took seconds (or, for the first, minutes) on.
ADVERSARIAL = [
    ("path", "/**/**/**/**/*a*a*a*a*a*b", "/" + "a" * 4095),
    ("path", "/**/*a*a*a*a*a*b/**", "/a" * 2048),
    ("path", "/**/*a/**/*a/**/*a/**/*a/**/*b", "/a" * 2048),
    ("path", "/**/?/?/?/?/?/?/b/**", "/a" * 2048),
    ("plain", "*a*a*a*a*a*a*a*a*b", "a" * 4096),
    ("plain", "*?*?*?*?*?*?*?*?*b", "a" * 4096),
    ("plain", "*[ab]*[ab]*[ab]*[ab]*[ab]*c", "ab" * 2048),
]


@pytest.mark.parametrize(("kind", "glob", "subject"), ADVERSARIAL)
def test_adversarial_globs_decide_at_once(kind: str, glob: str, subject: str) -> None:
    """Not a timing test: the old matcher would not finish within the test run at all, so
    finishing (in a child with a generous wall-clock limit, so a regression fails instead of
    hanging the suite) is the property."""
    matcher = "path_matcher" if kind == "path" else "plain_matcher"
    code = (
        f"from appshield.engine.globs import {matcher}\n"
        f"m = {matcher}({glob!r})\n"
        f"assert not any(m({subject!r}) for _ in range(20))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# `/P/**` with at most one `*` in each segment of P is matched by one regex in C (the
# `_one_star_folder` shape of `globs._path_shape`): it must mean what the reference means.
ONE_STAR_PIECES = ["a", "b", "*", "?", "[ab]", "[!a]", "*a", "a*", "a?b*", "?*b"]
one_star_folders = st.lists(st.sampled_from(ONE_STAR_PIECES), min_size=1, max_size=4).map(
    lambda parts: "/" + "/".join(parts) + "/**"
)


@MANY
@given(one_star_folders, subjects)
def test_one_star_folder_shape_agrees_with_the_reference(glob: str, subject: str) -> None:
    assert path_matcher(glob)(subject) is reference.path_glob(glob, subject)
    assert path_matcher(glob)(subject + "/x\ny") is reference.path_glob(glob, subject + "/x\ny")


# A block of segments between two `**` is found by `_BlockScan` (one pass over the subject's
# segments, every try at once) when the regex search would try it at every segment for too
# long: it must find exactly where the regex search's leftmost match ends, from any start.
BLOCK_PIECES = [
    *RUN_PIECES,
    "[a-b]",
    "[!/]",  # two segments, `[!` and `]`: a glob's `/` always separates
    "[+-0]",
    "[]a]",
    "[!]]",
    "[!]",
    "[",
    "a[",
    "**a",
    "\n",
    "é",
    "?*",
]
BLOCK_SEGMENTS = [*SUBJECT_SEGMENTS, "]", "é", "+", "[", "0", "-", "\n", "a[", "!"]
blocks = st.lists(st.sampled_from(BLOCK_PIECES), min_size=2, max_size=8).filter(
    lambda runs: "**" not in runs and any(has_magic(run) for run in runs)
)
many_segments = st.one_of(
    st.lists(st.sampled_from(BLOCK_SEGMENTS), max_size=14),
    # Past the scan's first slice (256 characters), with segments longer than a slice.
    st.lists(st.sampled_from([*BLOCK_SEGMENTS, "a" * 300, "ab" * 200]), min_size=50, max_size=400),
).map(lambda parts: "".join("/" + part for part in parts))


@MANY
@given(blocks, many_segments, st.data())
def test_block_scan_ends_where_the_regex_search_ends(
    runs: list[str], x: str, data: st.DataObject
) -> None:
    plan = path_plan("/**/" + "/".join(runs) + "/**")
    (block,) = plan.middle_runs
    bounds = [i for i, c in enumerate(x) if c == "/"] + [len(x)]
    pos = data.draw(st.sampled_from(bounds))
    cut = data.draw(st.sampled_from([b for b in bounds if b >= pos]))
    found = re.compile(plan.middles[0], re.DOTALL).search(x, pos, cut)
    assert _BlockScan(list(block)).end(x, pos, cut) == (-1 if found is None else found.end())


# Several blocks, each after a `**`, are placed by one scan, one after the other: the last
# one must end exactly where the regex searches, block after block, would place it.
@MANY
@given(st.lists(blocks, min_size=2, max_size=4), many_segments, st.data())
def test_one_scan_of_several_blocks_ends_where_the_regex_searches_end(
    runs: list[list[str]], x: str, data: st.DataObject
) -> None:
    plan = path_plan("/**/" + "/**/".join("/".join(block) for block in runs) + "/**")
    runs = [list(block) for block in plan.middle_runs]  # `[!/]` is two segments
    bounds = [i for i, c in enumerate(x) if c == "/"] + [len(x)]
    pos = data.draw(st.sampled_from(bounds))
    cut = data.draw(st.sampled_from([b for b in bounds if b >= pos]))
    expected = pos
    for regex in plan.middles:
        found = re.compile(regex, re.DOTALL).search(x, expected, cut)
        if found is None:
            expected = -1
            break
        expected = found.end()
    assert _BlockScan(*runs).end(x, pos, cut) == expected


# Blocks the matcher gives to the scan: 6-10 segments with a star (a regex search over the
# next few dozen characters first, then the scan) and 51-55 (the scan alone), on subjects of
# short segments long enough for both to be taken, short enough for the reference.
STAR_PIECES = ["*", "*a", "a*", "?*", "*[ab]", "*b"]
HEADS, TAILS = ["/**/", "/a/**/", "/**/*/**/"], ["/**", "/**/b", "/**/*b/**"]


def _star_subjects(low: int, high: int) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(["a", "b", "ab"]), min_size=low, max_size=high).map(
        lambda parts: "/" + "/".join(parts)
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from(STAR_PIECES), min_size=6, max_size=10),
    _star_subjects(20, 60),
    st.sampled_from(HEADS),
    st.sampled_from(TAILS),
)
def test_blocks_probed_then_scanned_agree_with_the_reference(
    runs: list[str], subject: str, head: str, tail: str
) -> None:
    glob = head + "/".join(runs) + tail
    assert path_matcher(glob)(subject) is reference.path_glob(glob, subject)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from(STAR_PIECES), min_size=51, max_size=55),
    _star_subjects(55, 80),
    st.sampled_from(HEADS),
    st.sampled_from(TAILS),
)
def test_long_blocks_take_the_scan_and_agree_with_the_reference(
    runs: list[str], subject: str, head: str, tail: str
) -> None:
    glob = head + "/".join(runs) + tail
    end = _middle(path_plan(glob).middles[-1], runs)
    assert isinstance(getattr(end, "__self__", None), _BlockScan)  # the scan alone
    assert path_matcher(glob)(subject) is reference.path_glob(glob, subject)


# Globs of several blocks, one of them long enough for the scan, and equal blocks among
# them (which share their part of the scan's automaton and memo).
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from(STAR_PIECES), min_size=6, max_size=16),
    st.lists(
        st.lists(st.sampled_from(["a", "b", "*", "*b", "?", "[!a]", "*a"]), min_size=1, max_size=3),
        min_size=1,
        max_size=4,
    ),
    st.lists(st.sampled_from(["a", "b", "ab"]), min_size=10, max_size=70).map(
        lambda parts: "/" + "/".join(parts)
    ),
    st.sampled_from(HEADS),
    st.sampled_from(TAILS),
    st.integers(0, 4),
)
def test_globs_of_several_blocks_agree_with_the_reference(
    long: list[str],
    short: list[list[str]],
    subject: str,
    head: str,
    tail: str,
    where: int,
) -> None:
    middle = [*short]
    middle.insert(where % (len(short) + 1), long)
    middle.append(short[0])  # an equal block
    glob = head + "/**/".join("/".join(block) for block in middle) + tail
    assert len(_middles(path_plan(glob))) == 1  # one scan for every block
    assert path_matcher(glob)(subject) is reference.path_glob(glob, subject)


def test_many_blocks_each_placed_late_decide_at_once() -> None:
    """The shape that set up a scan per block (130 blocks of 12 `*` and a `b`, the subject
    first spending the probes' budget, then placing each block one segment late, 19-51 M
    instructions a decision): one scan now reads the subject once for all of them."""
    glob = "/**/" + "/**/".join(["/".join(["*"] * 12 + ["b"])] * 130) + "/**"
    code = (
        "from appshield.engine.globs import path_matcher\n"
        f"m = path_matcher({glob!r})\n"
        "far = ('/a' * 60 + '/b') * 5\n"
        "late = ('/a' * 13 + '/b') * 124\n"  # 129 blocks placed, 4,082 characters
        "assert not any(m(far + late) for _ in range(200))\n"
        "assert m(far + late + '/b' * 13)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_a_long_block_on_a_long_path_decides_at_once() -> None:
    """The shape that was slowest with the regex search alone (24 wildcard segments between
    two `**` on 2,048 one-character segments): now one pass; as a property, not a timing,
    it runs in a child with a wall-clock limit like the adversarial globs above."""
    glob = "/**/" + "/".join(["*a"] * 1000) + "/*b/**"
    code = (
        "from appshield.engine.globs import path_matcher\n"
        f"m = path_matcher({glob!r})\n"
        "assert not any(m('/a' * 2048) for _ in range(200))\n"
        "assert m('/a' * 1000 + '/b')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# Characters the scan reads through its translation tables: ASCII, the rest of the BMP (the
# table's end, a lone surrogate as `os.fsdecode` makes), and beyond it (left past the table
# and substituted), in globs and subjects; a block with repeated segment globs (one slot
# for each distinct one) and subjects with fewer segments than the block.
WIDE_PIECES = [
    "*",
    "?",
    "*a",
    "é*",
    "*[é-ü]",
    "[!é]",
    "*\uffff",
    "[\ud800-\udfff]*",
    "*\U0001f600",
    "[\U0001f600-\U0001f64f]?",
    "[!\U00010000]*",
    "*\U0010ffff",
    "[é-\U0010ffff]",  # not U+0000, yet all that is past the table: its stand-in matters
    "*[!\x00-\x1f]",  # names only ASCII: the rest is its last range, not its first
]
WIDE_SEGMENTS = ["a", "é", "ü", "ñ", "\uffff", "\udcff", "\U0001f600", "\U0001f680", "\U00010000"]
wide_segments = st.lists(
    st.lists(st.sampled_from([*WIDE_SEGMENTS, "b"]), max_size=4).map("".join), max_size=40
).map(lambda parts: "".join("/" + part for part in parts))


@MANY
@given(
    st.lists(st.sampled_from(WIDE_PIECES), min_size=2, max_size=10),
    wide_segments,
    st.data(),
)
def test_block_scan_reads_any_character_as_the_regex_does(
    runs: list[str], x: str, data: st.DataObject
) -> None:
    plan = path_plan("/**/" + "/".join(runs) + "/**")
    bounds = [i for i, c in enumerate(x) if c == "/"] + [len(x)]
    pos = data.draw(st.sampled_from(bounds))
    found = re.compile(plan.middles[0], re.DOTALL).search(x, pos, len(x))
    scan = _BlockScan(runs)
    assert scan.end(x, pos, len(x)) == (-1 if found is None else found.end())
    assert scan.end(x, pos, len(x)) == (-1 if found is None else found.end())  # memo


def test_block_scan_reads_any_character_every_pair() -> None:
    # Every pair of those segment globs (hypothesis rarely draws the one pair that tells two
    # ranges apart) on subjects of every two of those segments.
    subjects = [
        "/" + "/".join(parts) for parts in itertools.product([*WIDE_SEGMENTS, "a" + "é"], repeat=2)
    ]
    for runs in itertools.product(WIDE_PIECES, repeat=2):
        search = re.compile(path_plan("/**/" + "/".join(runs) + "/**").middles[0], re.DOTALL)
        scan = _BlockScan(list(runs))
        for x in subjects:
            found = search.search(x, 0, len(x))
            assert scan.end(x, 0, len(x)) == (-1 if found is None else found.end()), (runs, x)


def test_block_scan_with_a_range_at_every_code_point_of_the_bmp() -> None:
    # A class of every even code point up to U+10010 (no `/`, `]`, `!` or `-`: all odd): a
    # range starts at every code point, so the stand-ins reach as far as the table would end
    # and the table covers every code point instead (nothing is left for the substitution).
    chars = "".join(map(chr, range(0, 0x10012, 2)))
    runs = ["*", f"*[{chars}]", "?*", f"[!{chars[:50]}]"]
    plan = path_plan("/**/" + "/".join(runs) + "/**")
    search = re.compile(plan.middles[0], re.DOTALL).search
    scan = _BlockScan(runs)
    samples = ["a", "b", chr(0x1000F), chr(0x10010), chr(0x10011), "\U0001f600", "a" + chars[9:12]]
    for parts in itertools.product(samples, repeat=4):
        x = "/" + "/".join(parts)
        found = search(x, 0, len(x))
        assert scan.end(x, 0, len(x)) == (-1 if found is None else found.end()), parts


def _backslash_block(beyond: bool) -> list[str]:
    if not beyond:  # names only ASCII, up to `[` (U+005B): its last range starts at `\\`
        return ["*", "*[0-[]*"]
    for size in range(
        1, 120
    ):  # names `é`: a class of as many ranges as make `\\` the last stand-in
        runs = ["*", "*[" + "".join(chr(0x30 + 2 * i) for i in range(size)) + "é]*"]
        if _BlockScan(runs)._reps[-1] == "\\":
            return runs
    raise AssertionError("no block with that stand-in")


@pytest.mark.parametrize("beyond", [False, True])
def test_block_scan_stand_in_that_is_a_backslash(beyond: bool) -> None:
    # The characters past a table are replaced by a regex substitution, whose template reads
    # `\\` as an escape: a block whose last stand-in (it names a character beyond ASCII), or
    # the first character of whose last range (it names only ASCII), is `\\` must be read too.
    runs = _backslash_block(beyond)
    scan = _BlockScan(runs)
    assert (scan._reps[-1] if beyond else chr(scan._bounds[-1])) == "\\"
    search = re.compile(path_plan("/**/" + "/".join(runs) + "/**").middles[0], re.DOTALL).search
    for x in ("/a/\U0001f600", "/é/\U0001f600b", "/\\/ü", "/a/b", "/ü/ß"):
        found = search(x, 0, len(x))
        assert scan.end(x, 0, len(x)) == (-1 if found is None else found.end()), x


def test_block_scan_memo_overflow_keeps_the_segments_it_reads() -> None:
    # More distinct segments than the memo holds: it is replaced along the way, and every
    # placement must still be the regex search's.
    # Every letter of the names a range of its own, so that the names stay distinct as
    # stand-ins and the memo of stand-in segments overflows too.
    runs = ["*", "?*", "[a-z]*"] * 5 + [f"*{c}*" for c in "acdefghij"] + ["b"]
    plan = path_plan("/**/" + "/".join(runs) + "/**")
    search = re.compile(plan.middles[0], re.DOTALL).search
    scan = _BlockScan(runs)
    names = ["".join(p) for p in itertools.product("acdefghij", repeat=5)][: _MEMO + 500]
    for x in ("/" + "/".join(names), "/" + "/".join(names) + "/b", "/" + "/".join(names[::-1])):
        for pos in (0, len(x) // 2 - x[: len(x) // 2][::-1].index("/") - 1):
            found = search(x, pos, len(x))
            assert scan.end(x, pos, len(x)) == (-1 if found is None else found.end())


@given(st.text(max_size=60))
def test_regex_escape_is_re_escape(text: str) -> None:
    # globs.regex_escape keeps `re` off the start-up path; it must escape exactly as re does.
    import re

    from appshield.engine.globs import regex_escape

    assert regex_escape(text) == re.escape(text)


def test_check_refuses_a_long_part_between_double_stars() -> None:
    # The scan's cost grows with the length of what lies between the first and the last
    # `**` (times the subject's): `appshield check` bounds it, in path and module globs.
    from appshield.policy._values import (
        MAX_BETWEEN_DOUBLE_STARS,
        check_module_glob,
        check_path_glob,
    )

    def middle(size: int, sep: str) -> str:  # `a*` segments, then `b..` up to `size`
        count = (size - 1) // 3
        return sep.join(["a*"] * count + ["b" * (size - 3 * count)])

    for size in (MAX_BETWEEN_DOUBLE_STARS, MAX_BETWEEN_DOUBLE_STARS + 1):
        part = middle(size, "/")
        assert len(part) == size
        paths = [f"/x/**/{part}/**/y", f"/**/{part}/**", f"/**/a/**/{part[5:]}/**"]
        modules = [f"x.**.{middle(size, '.')}.**.y"]
        for glob, check in [*((p, check_path_glob) for p in paths)] + [
            (m, check_module_glob) for m in modules
        ]:
            if size <= MAX_BETWEEN_DOUBLE_STARS:
                check(glob)
            else:
                with pytest.raises(ValueError, match="between the first and the last"):
                    check(glob)
    check_path_glob("/**/" + middle(5000, "/"))  # one `**`: nothing lies between two
