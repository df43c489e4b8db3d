"""The glob matchers never backtrack their way into exponential time, and still mean what the
reference translation means.

The reference is the plain regex translation (`translate_path`, `translate_plain`), which is
exact but backtracks: on short subjects it is fast enough to be the oracle. The matchers under
test are the ones the engine uses (`path_matcher`, `plain_matcher`), fast shapes included.
"""

from __future__ import annotations

import re
import subprocess
import sys
from fnmatch import fnmatchcase

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appshield.engine.globs import (
    glob_problem,
    path_matcher,
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
