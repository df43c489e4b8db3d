"""`variables.real_path` is `os.path.realpath`, the same string, on real trees of folders,
files and links: chains, relative targets with `..`, loops, dangling links, a file where a
folder is expected, paths with glob characters, and a `known` set shared by several paths."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appshield.policy.variables import real_path

NAMES = ["a", "b", "c", "l1", "l2", "x[1]", "*"]


def _tree(root: Path) -> None:
    (root / "a" / "b" / "c").mkdir(parents=True)
    (root / "x[1]").mkdir()
    (root / "a" / "f").write_text("")
    links = {
        "l1": "a/b",  # relative
        "a/l2": "../x[1]",  # relative, up
        "abs": str(root / "a" / "b" / "c"),  # absolute
        "chain": "l1/../l1",  # through another link, then `..` after it
        "loop1": "loop2",
        "loop2": "loop1",
        "self": "self/x",
        "dangling": "nowhere/else",
        "a/b/up": "../../l1",
        "x[1]/*": "../a",
        "file-dir": "a/f/below",  # a file where a folder is expected
    }
    for where, target in links.items():
        os.symlink(target, root / where)


CASES = [
    "",
    "a",
    "a/b/c",
    "l1",
    "l1/c",
    "l1/c/../..",
    "a/l2",
    "a/l2/*/b",
    "abs/../..",
    "chain/c",
    "loop1",
    "loop1/x",
    "self",
    "dangling",
    "dangling/../a",
    "a/b/up/c",
    "x[1]/*/f",
    "a/f/below",
    "file-dir/x",
    "missing/l1",
    "a/./b//c/",
    "a/../../..",
]


def test_real_path_is_realpath_on_a_tree_of_links(tmp_path: Path) -> None:
    _tree(tmp_path)
    known: set[str] = set()
    for case in CASES:
        path = f"{tmp_path}/{case}"
        assert real_path(path) == os.path.realpath(path), case
        assert real_path(path, known) == os.path.realpath(path), case
    assert real_path("//" + str(tmp_path)) == os.path.realpath("//" + str(tmp_path))
    assert all(not os.path.islink(k) for k in known)


def test_what_it_does_not_walk_itself_is_realpath_s() -> None:
    # relative, not a str, a NUL (realpath's own error), the root
    for path in ("relative/x", ".", "/"):
        assert real_path(path) == os.path.realpath(path)
    try:
        os.path.realpath("/a\0b")
    except ValueError:
        expected = "ValueError"
    else:
        expected = os.path.realpath("/a\0b")
    try:
        found: object = real_path("/a\0b")
    except ValueError:
        found = "ValueError"
    assert found == expected


def test_a_long_chain_of_links_is_handed_to_realpath(tmp_path: Path) -> None:
    (tmp_path / "end").mkdir()
    previous = "end"
    for i in range(50):
        os.symlink(previous, tmp_path / f"n{i}")
        previous = f"n{i}"
    path = f"{tmp_path}/{previous}"
    assert real_path(path) == os.path.realpath(path) == f"{tmp_path}/end"


@st.composite
def _links(draw: st.DrawFn) -> list[tuple[str, str]]:
    count = draw(st.integers(1, 6))
    segments = st.sampled_from([*NAMES, "..", "."])
    out = []
    for i in range(count):
        target = "/".join(draw(st.lists(segments, min_size=1, max_size=3)))
        out.append((f"r{i}", target))
    return out


_made = 0


@given(
    _links(),
    st.lists(
        st.lists(st.sampled_from([*NAMES, "r0", "r1", "r2", ".."]), max_size=4),
        min_size=1,
        max_size=4,
    ),
)
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_real_path_is_realpath_on_random_links(
    tmp_path: Path, links: list[tuple[str, str]], paths: list[list[str]]
) -> None:
    global _made
    _made += 1
    root = tmp_path / f"t{_made}"
    _tree(root)
    for name, target in links:
        where = root / "a" / name if name == "r1" else root / name
        os.symlink(target, where)
    known: set[str] = set()
    for segments in paths:
        path = "/".join([str(root), *segments])
        assert real_path(path, known) == os.path.realpath(path), (links, segments)
