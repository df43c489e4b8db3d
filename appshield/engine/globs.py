"""Glob matchers: one small callable per pattern, never one big alternation.

Three families share one translator (see docs/architecture.md, "Matching semantics"):

- path globs: `/` separates segments; `*`, `?` and `[...]` stay inside a segment; `**` as a
  whole segment is zero or more whole segments. Module globs reuse them: `a.b` is matched as
  the path `/a/b` (see `module_subject`), so the segment trie and the fast shapes serve both.
- plain globs (`command_line`, `args` items, host names): fnmatch-like, `*` crosses everything.

The common shapes (a literal, `/a/b/**`, `*.example.com`) are answered with plain string
operations; anything else gets its own regex, compiled on first use so that a 10,000-rule
policy does not pay for 10,000 `re.compile` calls at start-up. That regex is built so that it
cannot backtrack more than one pass per chunk ("linear matching" below): `translate_path` and
`translate_plain` are the plain translations, kept as the reference and for validation only.
"""

from __future__ import annotations

import re
import sys
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from itertools import count
from typing import Any, NamedTuple

__all__ = [
    "GlobError",
    "Matcher",
    "any_matcher",
    "escape",
    "glob_problem",
    "has_magic",
    "literal_ends",
    "literal_prefix_segments",
    "module_pattern",
    "module_subject",
    "path_matcher",
    "plain_matcher",
    "translate_path",
    "translate_plain",
]

Matcher = Callable[[str], bool]


class GlobError(ValueError):
    """A pattern that cannot be a glob (a reversed `[z-a]` range)."""


def has_magic(text: str) -> bool:
    return "*" in text or "?" in text or "[" in text


def _class_items(body: str) -> tuple[bool, list[tuple[str, str, bool]]]:
    """`[...]` body (without brackets) as (negated, [(low, high, is a range)]), the one reading
    that both the regex translation and the block scanner's character sets are made from."""
    negate = body.startswith("!")
    if negate:
        body = body[1:]
    items = []
    k = 0
    while k < len(body):
        low = body[k]
        if k + 2 < len(body) and body[k + 1] == "-":
            high = body[k + 2]
            if high < low:
                raise GlobError(f"bad character range {low}-{high} in glob")
            items.append((low, high, True))
            k += 3
        else:
            items.append((low, low, False))
            k += 1
    return negate, items


def _class_regex(body: str, sep: str | None) -> str:
    """`[...]` body (without brackets) as a regex class; never matches `sep`."""
    negate, items = _class_items(body)
    klass = (
        "["
        + ("^" if negate else "")
        + "".join(
            f"{re.escape(lo)}-{re.escape(hi)}" if span else re.escape(lo) for lo, hi, span in items
        )
        + "]"
    )
    # A lookahead, not `[^.../]`: a range such as `+-0` spans `/` too.
    return klass if sep is None else f"(?!{re.escape(sep)}){klass}"


_STAR = None  # a `*` among a run's tokens (every other token is one character's regex)


# One character's item of a run: ("=", c) a literal, ("?", "") any one character but the
# separator, ("[", body) a class; `_STAR` (None) a star.
Item = tuple[str, str] | None


def _run_items(pattern: str) -> list[Item]:
    """`*`, `?`, `[...]` and literals, as fnmatch reads them (`**` inside a segment is just
    `*`; a `[` with no closing `]` is a literal)."""
    out: list[Item] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            if not (out and out[-1] is _STAR):
                out.append(_STAR)
        elif c == "?":
            out.append(("?", ""))
        elif c == "[":
            j = i
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:
                out.append(("=", "["))
            else:
                out.append(("[", pattern[i:j]))
                i = j + 1
        else:
            out.append(("=", c))
    return out


def _run_tokens(pattern: str, sep: str | None) -> list[str | None]:
    """The run's items as regexes: one per character, `_STAR` for a star; `sep` is never
    matched."""
    one = "." if sep is None else f"[^{re.escape(sep)}]"
    out: list[str | None] = []
    for item in _run_items(pattern):
        if item is _STAR:
            out.append(_STAR)
        elif item[0] == "?":
            out.append(one)
        elif item[0] == "[":
            out.append(_class_regex(item[1], sep))
        else:
            out.append(re.escape(item[1]))
    return out


def _translate_run(pattern: str, sep: str | None) -> str:
    """The plain (backtracking) regex of a run: the reference translation."""
    star = ".*" if sep is None else f"[^{re.escape(sep)}]*"
    return "".join(star if t is _STAR else t for t in _run_tokens(pattern, sep))


def translate_plain(pattern: str) -> str:
    """Regex (for fullmatch, DOTALL) of an fnmatch-like glob: `*` crosses `/`, `.`, spaces."""
    return _translate_run(pattern, None)


def translate_path(pattern: str) -> str:
    """Regex (for fullmatch) of a path glob."""
    if pattern == "**":
        return ".*"
    out: list[str] = []
    slash = ""  # the separator owed before the next segment
    for seg in pattern.split("/"):
        if seg == "**":
            if out and out[-1] == "(?:/[^/]*)*":
                continue  # `**/**` is `**`; collapsing also avoids needless backtracking
            # zero or more whole segments (at the start of a relative pattern: before it)
            out.append("(?:/[^/]*)*" if slash else "(?:[^/]*/)*")
            continue
        out.append(slash + _translate_run(seg, "/"))
        slash = "/"
    return "".join(out)


# -- linear matching ---------------------------------------------------------------------
#
# The translations above are the reference, and they backtrack: `*a*a*a*b` read as
# `.*a.*a.*a.*b` tries every split of the subject (O(n^k)), and `/**/**/**/x` every split
# of its segments. The matchers use another regex of the same language, in which no part is
# ever tried twice from the same place:
#
# - A run `C0*C1*...*Ck` (each Ci of fixed length: literals, `?`, classes) is matched
#   greedily: C0 at the start, each middle Ci at its leftmost place after the previous one,
#   Ck at the end. Leftmost is never worse (whatever follows a placement that ends sooner can
#   follow it too), so this holds exactly when the glob matches. A middle chunk is found by
#   a lazy search inside a lookahead, `(?=(?P<g>.*?Ci))(?P=g)`: the engine never goes back
#   into a lookahead, so the search is not retried (the atomic group of Python 3.11, spelled
#   so that 3.10 has it too).
# - Path globs do the same one level up: the subject (behind a `/`) is a list of `/segment`,
#   `**` skips whole segments, and the segments between two `**` form a block of fixed
#   length, placed at its leftmost place by `search` from where the previous block ended.
#   The last block is placed by counting segments back from the end. A block ends with
#   `(?![^/])`, so it covers whole segments and a placement cannot stop inside one.
#
# Cost: every chunk and block search moves forward only and is never retried, so a decision
# is at most a pass over the subject for each chunk, and for each segment of a block between
# two `**` (O(subject x glob) steps, all inside the regex engine, never exponential). A long
# block of wildcard segments (`/**/*a/*a/.../*b/**`) would be tried at every segment, about
# 40 us per segment of the block on a 4,096-character path: such a block is found by one
# pass over the subject's segments instead when that is cheaper ("long blocks" below).


def _linear_run(tokens: list[str | None], any_char: str, end: str, names: Iterator[str]) -> str:
    chunks: list[list[str]] = [[]]
    for token in tokens:
        if token is _STAR:
            chunks.append([])
        else:
            chunks[-1].append(token)
    if len(chunks) == 1:
        return "".join(chunks[0]) + end
    out = "".join(chunks[0])
    for chunk in chunks[1:-1]:
        name = next(names)
        out += f"(?=(?P<{name}>{any_char}*?{''.join(chunk)}))(?P={name})"
    return out + f"{any_char}*{''.join(chunks[-1])}{end}"


def _path_items(pattern: str) -> list[str | None]:
    """The pattern's segments, with None for a `**` (runs of them are one)."""
    items: list[str | None] = []
    for seg in pattern.split("/"):
        if seg != "**":
            items.append(seg)
        elif not items or items[-1] is not None:
            items.append(None)
    return items


class PathPlan(NamedTuple):
    """How a path glob is matched against `x = "/" + subject` (regexes for DOTALL).

    first: the segments before the first `**`, matched at the start (fullmatch of all of x
        when there is no `**`: `last_size` is then None).
    middles: each block of segments between two `**`, searched for from where the previous
        one ended; its leftmost place is never worse than any other.
    last, last_size: the segments after the last `**`, which must be the last `last_size`
        of x.
    middle_runs: the segments of each middle block, for `_BlockScan`.
    """

    first: str
    middles: tuple[str, ...]
    last: str
    last_size: int | None
    middle_runs: tuple[tuple[str, ...], ...] = ()


def path_plan(pattern: str) -> PathPlan:
    """The regexes of a path glob, none of which can backtrack beyond one pass per chunk
    (see above)."""
    names = (f"g{k}" for k in count())

    def block(runs: list[str]) -> str:
        # Only the block's end needs the boundary check: inside it, the next segment's `/`
        # is one. So a block of literal segments is one literal, which `search` scans for fast.
        return "".join("/" + _linear_run(_run_tokens(r, "/"), "[^/]", "", names) for r in runs) + (
            "(?![^/])" if runs else ""
        )

    blocks: list[list[str]] = [[]]
    for item in _path_items(pattern):
        if item is None:
            blocks.append([])
        else:
            blocks[-1].append(item)
    if len(blocks) == 1:
        return PathPlan(block(blocks[0]), (), "", None)
    middles = tuple(block(b) for b in blocks[1:-1])
    runs = tuple(tuple(b) for b in blocks[1:-1])
    return PathPlan(block(blocks[0]), middles, block(blocks[-1]), len(blocks[-1]), runs)


# -- long blocks: one pass over the segments ---------------------------------------------
#
# `search` tries a block at every segment of the subject, and each try can go as deep as the
# block is long: (segments of the subject) x (segments of the block) steps, about 1 ms for
# 24 wildcard segments on a path of 2,048 segments, 8 ms for 100. `_BlockScan` finds the
# same placement in one pass over the subject's segments, whatever the block's length, by
# running every try at once (shift-and, bit-parallel):
#
# - The block's k segments are run side by side as one automaton in one integer: one state
#   per character item of each segment (a star is a loop on the state it follows), the
#   states of depth d (d items read) of segment j at bit d * k + j, every segment's last
#   state at the same depth. A character moves all of them at once (a shift by k, two ANDs
#   and an OR), and after a subject segment the top depth, shifted down, holds bit j when
#   the block's segment j accepts it.
# - The tries in flight are one integer with bit j for "a try has matched the block's first
#   j segments": each subject segment keeps the bits whose block segment accepts it and
#   moves them up by one. The first time bit k is set, the leftmost try has matched (tries
#   end in the order they began), and where it ends is where the regex search's match ends.
#
# What a subject segment is accepted by is computed once per distinct segment; what a
# character may be, once per distinct character (a bisection over the code point ranges of
# the block's items). So the cost is a dictionary hit and three integer operations per
# subject segment, plus a few per character of a segment seen for the first time.

_SLASH = ord("/")
_TOP = sys.maxunicode
# A memo is emptied when it would hold more entries than this, so its memory is bounded.
_MEMO = 1 << 14


def _union(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Inclusive ranges merged into sorted, disjoint, non-touching ones."""
    out: list[tuple[int, int]] = []
    for low, high in sorted(spans):
        if out and low <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], high))
        else:
            out.append((low, high))
    return out


def _item_ranges(item: tuple[str, str]) -> list[tuple[int, int]]:
    """The code points a character item of a path segment accepts, as sorted, disjoint,
    inclusive ranges; never `/`, which `_class_regex(..., "/")` also excludes."""
    kind, text = item
    if kind == "=":
        spans = [(ord(text), ord(text))]
    elif kind == "?":
        spans = [(0, _TOP)]
    else:
        negate, items = _class_items(text)
        spans = _union((ord(low), ord(high)) for low, high, _range in items)
        if negate:
            edges = [-1] + [e for span in spans for e in span] + [_TOP + 1]
            spans = [(edges[i] + 1, edges[i + 1] - 1) for i in range(0, len(edges), 2)]
            spans = [(low, high) for low, high in spans if low <= high]
    out = []
    for low, high in spans:
        if low < _SLASH:
            out.append((low, min(high, _SLASH - 1)))
        if high > _SLASH:
            out.append((max(low, _SLASH + 1), high))
    return out


class _BlockScan:
    """The leftmost placement of a block of path segments (see above)."""

    __slots__ = (
        "_bounds",
        "_classes",
        "_found",
        "_loops",
        "_masks",
        "_read",
        "_seen",
        "_shift",
        "_start",
        "_top",
    )

    def __init__(self, runs: list[str]) -> None:
        items = [_run_items(run) for run in runs]
        sizes = [sum(item is not _STAR for item in run) for run in items]
        depth, slots = max(sizes), len(runs)
        start = loops = 0
        # Where a state starts or stops accepting a character; `/` is a class of its own.
        events: dict[int, int] = {0: 0, _SLASH: 0, _SLASH + 1: 0}
        for slot, (run, size) in enumerate(zip(items, sizes, strict=True)):
            state = (depth - size) * slots + slot  # so that every slot ends at depth `depth`
            start |= 1 << state
            for item in run:
                if item is _STAR:
                    loops |= 1 << state
                    continue
                state += slots
                for low, high in _item_ranges(item):
                    events[low] = events.get(low, 0) ^ (1 << state)
                    events[high + 1] = events.get(high + 1, 0) ^ (1 << state)
        # The code points fall into ranges (`_bounds`) whose characters every item treats
        # alike; a subject is read with each character replaced by the first of its range, so
        # segments that differ only in such characters are one segment to the memo.
        self._bounds = sorted(events)
        self._masks: dict[str, int] = {}  # first character of a range -> states it may enter
        mask = 0
        for at in self._bounds:
            mask ^= events[at]
            if at <= _TOP:  # not the end of the last range
                self._masks[chr(at)] = mask
        self._shift, self._start, self._loops = slots, start, loops
        self._top, self._found = depth * slots, 1 << slots
        self._classes: dict[int, str] = {}  # code point -> first character of its range
        self._read: dict[str, int] = {}  # segment so read -> the block segments accepting it
        self._seen: dict[str, int] = {}  # segment -> the block segments accepting it

    def _learn(self, segments: list[str]) -> dict[str, int]:
        """A memo that holds every one of `segments`, those it lacked worked out in bulk (not
        a call per segment: a subject of new segments is the worst case). A new segment is
        read with every character replaced by the first of its range, so that segments that
        differ only in characters no item tells apart are worked out once. A full memo is
        replaced, never emptied in place: another thread may be reading it."""
        seen = self._seen
        new = set(segments).difference(seen)
        if not new:
            return seen
        if len(seen) + len(new) > _MEMO:
            seen = self._seen = {}
            new = set(segments)
        read, classes = self._read, self._classes
        if len(read) + len(new) > _MEMO:
            read = self._read = {}
        ordered = list(new)
        joined = "/".join(ordered)
        codes = set(map(ord, set(joined))).difference(classes)
        if len(classes) + len(codes) > _MEMO:
            classes = self._classes = {}
            codes = set(map(ord, set(joined)))
        bounds = self._bounds
        for code in codes:
            classes[code] = chr(bounds[bisect_right(bounds, code) - 1])
        forms = joined.translate(classes).split("/")
        masks, loops, shift, top = self._masks, self._loops, self._shift, self._top
        for form in set(forms).difference(read):
            states = self._start
            for char in form:
                states = ((states << shift) & masks[char]) | (states & loops)
                if not states:
                    break
            read[form] = states >> top
        seen.update(zip(ordered, map(read.__getitem__, forms), strict=True))
        return seen

    def end(self, x: str, pos: int, cut: int) -> int:
        """Where the leftmost placement in `x[pos:cut]` ends (-1 if none); `x[pos]` is the
        `/` before a segment, or pos == cut, as for the regex `search` it stands for."""
        if pos >= cut:
            return -1
        found, live = self._found, 0
        # Where the next segment starts, and the next slice's size: the segments are split
        # off in slices that double in size, starting from about what the block can cover,
        # so that a placement found early does not pay for reading the rest (a glob of many
        # blocks would pay for that once per block).
        start, window = pos + 1, 4 * self._shift + 4
        while True:
            stop = start + window
            if stop < cut:
                stop = x.rfind("/", start, stop)  # whole segments only
                if stop < 0:
                    window *= 2  # a segment longer than the slice
                    continue
            else:
                stop = cut
            segments = x[start:stop].split("/")
            accepts = self._learn(segments).__getitem__
            for index, accepted in enumerate(map(accepts, segments)):
                live = ((live | 1) & accepted) << 1
                if live >= found:  # `found` is the highest bit `live` can hold
                    return start + index + sum(map(len, segments[: index + 1]))
            if stop == cut:
                return -1
            start, window = stop + 1, window * 2


def linear_plain_regex(pattern: str) -> str:
    """Regex (for fullmatch, DOTALL) of an fnmatch-like glob, matched greedily as above."""
    return _linear_run(_run_tokens(pattern, None), ".", "", (f"g{k}" for k in count()))


def glob_problem(pattern: str) -> str | None:
    """Why `pattern` is not a usable glob, or None. For the loader's validation."""
    try:
        re.compile(translate_path(pattern))
        re.compile(translate_plain(pattern))
    except (GlobError, re.error) as exc:
        return str(exc)
    return None


# Which of a block's two matchers to use. On a path of 2,048 segments, the regex search
# costs, per segment of the block, about 60-90 us for one with a star and a class (`*[!b]a`:
# the class is a lookahead that keeps it off `/`), 30-50 us with a star, 10-30 us with a
# class and 2-4 us for the rest (a fixed-length segment is rejected at its first character).
# The scan costs 0.2-0.8 ms whatever the block's length, but up to about 1.5 ms when every
# segment and character of the subject is new to it (docs/performance-worst-cases.md). Both
# grow with the subject alike, so the block alone decides: the scan from 13 segments with a
# star (7 with a star and a class, 31 with a class, 181 others).
_STAR_CLASS_COST, _STAR_COST, _CLASS_COST, _PLAIN_COST, _SCAN_COST = 60, 30, 12, 2, 360


def _regex_cost(run: str) -> int:
    if "*" in run:
        return _STAR_CLASS_COST if "[" in run else _STAR_COST
    return _CLASS_COST if "[" in run else _PLAIN_COST


# A block the scan takes, up to this cost, first gets a regex search over the next
# `_PROBE_REACH // cost` characters (a few us at most): a placement close by, as in a glob of
# many blocks each placed where the last ended, is found without the scan's set-up.
_PROBE_MAX, _PROBE_REACH = 1500, 40_000


def _middle(regex: str, runs: list[str]) -> Callable[[str, int, int], int]:
    """For a block between two `**`: where its leftmost placement in `x[pos:cut]` ends (-1
    if none), by its regex search or, for a long block with a wildcard, by the one-pass scan
    (made when the glob is first used)."""
    cost = sum(map(_regex_cost, runs))
    long = cost > _SCAN_COST and any(map(has_magic, runs))
    if long and cost > _PROBE_MAX:
        return _BlockScan(runs).end
    search = re.compile(regex, re.DOTALL).search
    if not long:

        def end(x: str, pos: int, cut: int) -> int:
            placed = search(x, pos, cut)
            return -1 if placed is None else placed.end()

        return end
    scan, reach = _BlockScan(runs).end, _PROBE_REACH // cost

    def probe_then_scan(x: str, pos: int, cut: int) -> int:
        # Up to a `/` (or the cut): the block's end check then sees a real boundary.
        stop = cut if pos + reach >= cut else x.rfind("/", pos + 1, pos + reach)
        if stop > pos:
            placed = search(x, pos, stop)
            if placed is not None:
                return placed.end()
            if stop == cut:
                return -1
        return scan(x, pos, cut)

    return probe_then_scan


def _lazy_path_regex(pattern: str) -> Matcher:
    """The linear matcher of a path glob, translated and compiled on first use."""
    plan: tuple[Any, tuple[Callable[[str, int, int], int], ...], Any, int | None] | None = None

    def match(text: str) -> bool:
        nonlocal plan
        if plan is None:
            found = path_plan(pattern)
            plan = (
                re.compile(found.first, re.DOTALL).match,
                tuple(
                    _middle(regex, list(runs))
                    for regex, runs in zip(found.middles, found.middle_runs, strict=True)
                ),
                re.compile(found.last, re.DOTALL).fullmatch,
                found.last_size,
            )
        first, middles, last, size = plan
        x = "/" + text
        if size is None:  # no `**`: the first block is the whole glob
            whole = first(x)
            return whole is not None and whole.end() == len(x)
        cut = len(x)
        if size:
            parts = x.rsplit("/", size)  # the last `size` segments, cut off in one pass
            cut = len(parts[0])
            if len(parts) <= size or last(x, cut) is None:
                return False
        placed = first(x, 0, cut)
        if placed is None:
            return False
        pos = placed.end()
        for middle in middles:
            pos = middle(x, pos, cut)
            if pos < 0:
                return False
        return True

    return match


def _always(_text: str) -> bool:
    return True


def _absolute(text: str) -> bool:
    return not text or text.startswith("/")


def path_matcher(pattern: str) -> Matcher:
    """Matcher for one path glob (also base-name globs and converted module globs)."""
    if not has_magic(pattern):
        return pattern.__eq__
    if "[" in pattern:
        translate_path(pattern)  # a bad class raises GlobError now, not at the first decision
    return _path_shape(pattern) or _lazy_path_regex(pattern)


def _path_shape(pattern: str) -> Matcher | None:
    """String operations for the common shapes: `P/**`, `P/**/T`, `/**/T`, `P/*S`."""
    if pattern == "/**":
        return _absolute
    head, sep, tail = pattern.partition("/**")
    if sep and not has_magic(head) and (not tail or tail.startswith("/")) and not has_magic(tail):
        if not tail:  # P/**: P itself and everything below
            below = head + "/"
            return lambda text: text.startswith(below) or text == head
        if not head:  # /**/T: any absolute path ending in /T
            return lambda text: text.startswith("/") and text.endswith(tail)
        return _head_tail(head, tail)
    head, sep, tail = pattern.rpartition("/*")
    if sep and head and not has_magic(head) and not has_magic(tail) and "/" not in tail:
        start, size = len(head) + 1, len(head) + 1 + len(tail)
        below = head + "/"
        # P/*S: one segment below P that ends in S
        return lambda text: (
            text.startswith(below)
            and text.endswith(tail)
            and len(text) >= size
            and "/" not in text[start:]
        )
    if _one_star_folder(pattern):
        return _folder_below(pattern[:-3])
    return None


def _one_star_folder(pattern: str) -> bool:
    """`/P/**` where no segment of P has more than one `*` (and P has no `**`): a shape the
    reference regex matches without backtracking across segments (`[^/]*` cannot cross a
    `/`, and one star per segment tries each split of that segment once), so it is matched
    by that regex in C, not by the block placement below in Python frames."""
    if not pattern.startswith("/") or not pattern.endswith("/**"):
        return False
    head = pattern[:-3]
    if not head or "**" in head or not has_magic(head):
        return False
    return all(segment.count("*") <= 1 for segment in head.split("/"))


def _folder_below(head: str) -> Matcher:
    """P/** for a P of `_one_star_folder`: P itself or anything below it, compiled on first
    use (a policy's many globs are never all needed)."""
    fullmatch: Callable[[str], Any] | None = None

    def match(text: str) -> bool:
        nonlocal fullmatch
        if fullmatch is None:
            fullmatch = re.compile(translate_path(head) + "(?:/.*)?", re.DOTALL).fullmatch
        return fullmatch(text) is not None

    return match


def _head_tail(head: str, tail: str) -> Matcher:
    """P/**/T: P, then zero or more whole segments, then /T."""
    size = len(head) + len(tail)

    def match(text: str) -> bool:
        if not (text.startswith(head) and text.endswith(tail)) or len(text) < size:
            return False
        middle = text[len(head) : len(text) - len(tail)]
        return not middle or middle.startswith("/")

    return match


def any_matcher(patterns: Iterable[str], single: Callable[[str], Matcher]) -> Matcher:
    """One matcher for a field's alternatives: a set lookup for the literals, then the
    others one by one (a per-rule handful, never the policy-wide alternation)."""
    patterns = list(patterns)
    literals = frozenset(p for p in patterns if not has_magic(p))
    rest = tuple(single(p) for p in patterns if has_magic(p))
    if not rest:
        return literals.__contains__
    if not literals and len(rest) == 1:
        return rest[0]

    def match(text: str) -> bool:
        if text in literals:
            return True
        for matcher in rest:
            if matcher(text):
                return True
        return False

    return match


def plain_matcher(pattern: str) -> Matcher:
    """Matcher for one fnmatch-like glob (command lines, argv items, host names)."""
    if not has_magic(pattern):
        return pattern.__eq__
    if pattern == "*":
        return _always
    if pattern.startswith("*") and not has_magic(pattern[1:]):
        return _suffix(pattern[1:])
    if pattern.endswith("*") and not has_magic(pattern[:-1]):
        prefix = pattern[:-1]
        return lambda text: text.startswith(prefix)
    if "[" in pattern:
        translate_plain(pattern)  # a bad class raises GlobError now
    compiled: Callable[[str], object] | None = None

    def match(text: str) -> bool:
        nonlocal compiled
        if compiled is None:
            compiled = re.compile(linear_plain_regex(pattern), re.DOTALL).fullmatch
        return compiled(text) is not None

    return match


def _suffix(suffix: str) -> Matcher:
    return lambda text: text.endswith(suffix)


def escape(text: str) -> str:
    """A glob that matches exactly `text` (for file names used as globs, such as the
    protected policy files): `*`, `?` and `[` each become a one-character class."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def literal_prefix_segments(pattern: str) -> list[str]:
    """The leading segments of an absolute path glob that hold no glob character.

    `/a/b/*.py` -> ["a", "b"]; a literal pattern gives all of its segments; `/**` gives [].
    The segment trie files a rule under this prefix: only paths that walk through it can match.
    """
    out: list[str] = []
    for seg in pattern.split("/")[1:]:
        if has_magic(seg):
            break
        out.append(seg)
    return out


def literal_ends(pattern: str) -> tuple[str, str]:
    """The literal text before a glob's first wildcard and after its last (`tool*.sh` ->
    ("tool", ".sh")); a `[` counts as a wildcard wherever it is, as `has_magic` counts it."""
    first = min((i for i in (pattern.find(c) for c in "*?[") if i >= 0), default=len(pattern))
    last = max(pattern.rfind(c) for c in "*?[]")
    return pattern[:first], pattern[last + 1 :] if last >= 0 else pattern


def module_subject(module: str) -> str:
    """A dotted module name as the path that module globs are matched against."""
    return "/" + module.replace(".", "/")


def module_pattern(pattern: str) -> str:
    """A module glob as a path glob that also matches every submodule (`ctypes` -> `/ctypes/**`)."""
    return module_subject(pattern) + "/**"
