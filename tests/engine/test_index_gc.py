"""The compiled indexes hold nothing the cyclic garbage collector has to walk per rule.

A loaded policy lives as long as the app, and every full collection of the app walks every
tracked object: a 100,000-rule policy whose index kept about ten lists and dicts per rule made
each of them walk about a million more (docs/performance.md). The index keeps its positions in
dicts of atomic keys and values (never tracked) and tuples of ints (which CPython's young
collections untrack), so what stays tracked does not grow with the number of rules. The
collector is left alone here as in appshield: the tests only ask it what it tracks.
"""

from __future__ import annotations

import gc
import marshal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from appshield.document import Condition, PolicyDocument, RuleSpec
from appshield.engine import compile_policy, index_states
from appshield.engine.globs import literal_prefix_segments
from appshield.engine.indexes import Buckets, PathTrie
from appshield.operations import CATEGORIES

DEFAULTS = {"process": "deny", "file": "allow", "network": "deny", "import": "allow"}


def _rule(i: int, category: str, action: str, **fields: tuple[Any, ...]) -> RuleSpec:
    return RuleSpec(f"r{i}", category, action, Condition(fields))  # type: ignore[arg-type]


def _policy(n: int) -> PolicyDocument:
    """n rules of every shape each index files: trie nodes, keys, host names and suffixes,
    networks, ports and port ranges, base-name prefixes and suffixes."""
    rules: list[RuleSpec] = []
    for i in range(n):
        shape = i % 12
        if shape == 0:
            rules.append(_rule(i, "file", "deny", path=(f"/srv/app{i}/secrets/**",)))
        elif shape == 1:
            rules.append(_rule(i, "file", "allow", path=(f"/var/lib/a{i}/x", "/**/y")))
        elif shape == 2:
            rules.append(_rule(i, "file", "alert", access=("delete",), path=(f"/l/{i}/*.log",)))
        elif shape == 3:
            rules.append(_rule(i, "network", "allow", host=(f"svc{i}.example.net",)))
        elif shape == 4:
            rules.append(_rule(i, "network", "allow", host=(f"*.p{i}.com",), port=((1, 9),)))
        elif shape == 5:
            net = f"10.{(i >> 8) & 255}.{i & 255}.0/24"
            rules.append(_rule(i, "network", "deny", cidr=(net,)))
        elif shape == 6:
            rules.append(_rule(i, "network", "alert", port=((20000 + i, 20000 + i),)))
        elif shape == 7:
            rules.append(_rule(i, "import", "deny", module=(f"plugin{i}", f"v{i}.*")))
        elif shape == 8:
            rules.append(_rule(i, "import", "deny", origin=(f"/opt/p{i}/**",)))
        elif shape == 9:
            rules.append(_rule(i, "process", "allow", executable=(f"/opt/t{i}/bin/*",)))
        elif shape == 10:
            rules.append(_rule(i, "process", "allow", executable=(f"tool{i}", f"t{i}*")))
        else:
            rules.append(_rule(i, "process", "deny", executable=(f"*-x{i}",)))
    return PolicyDocument(1, f"p{n}", None, DEFAULTS, tuple(rules))  # type: ignore[arg-type]


def _compiled(n: int, restored: bool) -> list[Any]:
    document = _policy(n)
    # Restored as the policy cache restores it: marshalled, then loaded.
    index = marshal.loads(marshal.dumps(index_states(document))) if restored else None
    compiled = compile_policy(document, "enforce", index=index, protected_paths=("/etc/p",))
    return [compiled.index(c) for c in CATEGORIES]


def _tracked_below(roots: list[Any]) -> int:
    """Tracked objects reachable from `roots`, not counting the document's rule specs (the
    document's own) nor types, functions and modules (shared by every policy)."""
    seen: set[int] = set()
    todo = list(roots)
    count = 0
    while todo:
        obj = todo.pop()
        if id(obj) in seen or not gc.is_tracked(obj):
            continue
        seen.add(id(obj))
        if isinstance(obj, (RuleSpec, type)) or callable(obj) or type(obj).__name__ == "module":
            continue
        count += 1
        todo.extend(gc.get_referents(obj))
    return count


def _buckets(roots: list[Any]) -> list[Buckets | PathTrie]:
    found: list[Buckets | PathTrie] = []
    for index in roots:
        for value in vars(index).values():
            if isinstance(value, (Buckets, PathTrie)):
                found.append(value)
            elif isinstance(value, dict):
                found.extend(v for v in value.values() if isinstance(v, PathTrie))
        for name in ("hosts", "cidrs"):
            part = getattr(index, name, None)
            if part is not None:
                found += [part.exact, part.suffix] if name == "hosts" else []
                for tables in getattr(part, "tables", {}).values():
                    found.extend(table for _l, _s, table in tables)
    return found


def _kids(indexes: list[Any]) -> list[Any]:
    return [k for t in _buckets(indexes) if isinstance(t, PathTrie) for k in t.kids]


def test_what_stays_tracked_does_not_grow_with_the_rules() -> None:
    for restored in (False, True):
        counts = []
        for n in (120, 2400):
            indexes = _compiled(n, restored)
            gc.collect()  # the test's own: what a collection leaves tracked
            counts.append(_tracked_below(indexes))
        small, large = counts
        # 20 times the rules: a few more prefix-length tables at most, never one per rule.
        assert large - small <= 8, (restored, counts)


def test_the_keys_are_never_tracked() -> None:
    """Untracked from the start, without waiting for any collection: a dict whose keys and
    values are all atomic is never tracked by CPython."""
    for restored in (False, True):
        indexes = _compiled(600, restored)
        buckets = _buckets(indexes)
        assert sum(isinstance(b, PathTrie) for b in buckets) >= 6
        assert sum(isinstance(b, Buckets) for b in buckets) >= 6
        for found in buckets:
            assert isinstance(found.hits, tuple)  # frozen by the index's `finish`
            tables = found.kids if isinstance(found, PathTrie) else (found.slots,)
            assert isinstance(tables, tuple)
            for table in tables:
                assert not gc.is_tracked(table), table
                assert all(type(slot) is int for slot in table.values())


def test_young_collections_untrack_the_positions() -> None:
    """Built or restored from the cache, a trie's tables of children are never tracked (the
    one tuple holding them is: CPython never untracks a tuple of dicts), and the tuples of
    positions are untracked by collections of generations 0 and 1 (the first one untracks
    the small tuples, the next one that sees it the tuple holding them): none waits for a
    full collection."""
    for restored in (False, True):
        enabled = gc.isenabled()
        gc.disable()  # the test's own: everything below stays young until it asks
        try:
            indexes = _compiled(600, restored)
        finally:
            if enabled:
                gc.enable()
        assert all(not gc.is_tracked(kids) for kids in _kids(indexes))
        gc.collect(0)
        gc.collect(1)
        for found in _buckets(indexes):
            assert not gc.is_tracked(found.hits), (restored, found)


def test_a_frozen_trie_takes_more_rules() -> None:
    """The implicit rules are filed into a restored (frozen) index: a frozen trie thaws."""
    trie = PathTrie()
    trie.add("/a/b/**", 1)
    trie.freeze()
    trie.add("/a/c", 2)
    trie.add("/a/b/*.py", 3)
    trie.freeze()
    out: list[int] = []
    trie.collect("/a/b/x.py", out)
    assert sorted(out) == [1, 3]
    out = []
    trie.collect("/a/c", out)
    assert out == [2]


_SEGMENT = st.sampled_from(["a", "b", "", "x.py", "*", "a*", "**"])


@given(
    patterns=st.lists(
        st.tuples(st.booleans(), st.lists(_SEGMENT, max_size=4)).map(
            lambda p: ("/" if p[0] else "") + "/".join(p[1])
        ),
        max_size=8,
    ),
    path=st.tuples(
        st.booleans(), st.lists(st.sampled_from(["a", "b", "", "x.py"]), max_size=5)
    ).map(lambda p: ("/" if p[0] else "") + "/".join(p[1])),
)
def test_the_flat_trie_collects_what_the_nested_one_did(patterns: list[str], path: str) -> None:
    """A rule is collected for a path exactly when its pattern's literal prefix segments are
    a prefix of the path's segments (the root's, a relative pattern's: for every path)."""
    trie = PathTrie()
    for position, pattern in enumerate(patterns):
        trie.add(pattern, position)
    trie.freeze()
    out: list[int] = []
    trie.collect(path, out)
    walked = path.split("/")[1:] if path.startswith("/") else None
    expected = set()
    for position, pattern in enumerate(patterns):
        prefix = literal_prefix_segments(pattern) if pattern.startswith("/") else []
        if not prefix or (walked is not None and walked[: len(prefix)] == prefix):
            expected.add(position)
    assert set(out) == expected
    assert len(out) == len(set(out))
