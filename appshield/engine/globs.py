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

import sys

# The C half of `bisect` (CPython's bisect.py only re-exports it): the module in Python costs
# every start about 0.6 M instructions to load.
from _bisect import bisect_left
from functools import partial
from itertools import count
from operator import length_hint, mul, sub

from appshield._modules import stdlib

# `typing` and `collections.abc` for type checkers only: this module is on the start-up path.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from typing import Any, NamedTuple, TypeAlias
else:  # typing's own costs ~0.7 M instructions per class at start-up (appshield/_records.py)
    from appshield._records import NamedTuple

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

Matcher: TypeAlias = "Callable[[str], bool]"


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


# `re.escape` without importing `re`: the same table CPython's `re` uses (3.7 onwards), so
# that translating a glob (which install does for every `[...]` class, to fail early) keeps
# `re` off the start-up path. tests/engine/test_linear_globs.py compares the two.
_REGEX_SPECIAL = {i: "\\" + chr(i) for i in b"()[]{}?*+-|^$\\.&~# \t\n\r\v\f"}


def regex_escape(text: str) -> str:
    """`re.escape(text)`."""
    return text.translate(_REGEX_SPECIAL)


def _class_regex(body: str, sep: str | None) -> str:
    """`[...]` body (without brackets) as a regex class; never matches `sep`."""
    negate, items = _class_items(body)
    klass = (
        "["
        + ("^" if negate else "")
        + "".join(
            f"{regex_escape(lo)}-{regex_escape(hi)}" if span else regex_escape(lo)
            for lo, hi, span in items
        )
        + "]"
    )
    # A lookahead, not `[^.../]`: a range such as `+-0` spans `/` too.
    return klass if sep is None else f"(?!{regex_escape(sep)}){klass}"


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
    one = "." if sep is None else f"[^{regex_escape(sep)}]"
    out: list[str | None] = []
    for item in _run_items(pattern):
        if item is _STAR:
            out.append(_STAR)
        elif item[0] == "?":
            out.append(one)
        elif item[0] == "[":
            out.append(_class_regex(item[1], sep))
        else:
            out.append(regex_escape(item[1]))
    return out


def _translate_run(pattern: str, sep: str | None) -> str:
    """The plain (backtracking) regex of a run: the reference translation."""
    star = ".*" if sep is None else f"[^{regex_escape(sep)}]*"
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
# - Each segment glob of the block is a small automaton, and all of them run side by side in
#   one integer, each at its own bits (one state per character item, a star a loop on the
#   state it follows). They are laid out end to end, read backwards (each glob's top state
#   is its start, its bottom state where it accepts), so that a character moves all of them
#   at once (a shift down, two ANDs and an OR) and the bottoms left after a subject segment
#   are the globs that accept it. The integer is at most twice as wide as the block's globs
#   are long, and a subject shorter than they are is refused unread, so no decision steps
#   through more than 2 x (subject length) x (subject length) bits of it.
# - The tries in flight are a second integer with a bit at glob j's bottom for "a try has
#   matched the block's first j segments": each subject segment keeps the tries whose next
#   glob accepts it and moves them to the next bottom (a shift when the bottoms are evenly
#   spaced, every glob given the room of the deepest if that at most doubles the width;
#   else an addition whose carry runs to the next bottom). The first try to pass the
#   last glob is the leftmost placement (tries end in the order they began), and where it
#   ends is where the regex search's match ends.
# - A glob of several blocks between `**` places them one after the other in the same pass:
#   once a block is placed, its tries are dropped (a later placement of it is never better)
#   and the next block's begin. Equal blocks share their states and memo.
#
# Each character is first replaced, in C, by the stand-in of its code point range (the
# ranges over which every item of the blocks behaves alike), and what a segment of stand-ins
# is accepted by is computed once. So the cost is a C translation per character, a
# dictionary hit and a few integer operations per subject segment, and a step per character
# of a segment of stand-ins met for the first time, whether or not the subject's characters
# are new: an attacker who sends new characters each time gets no slower path.

_SLASH = ord("/")
_TOP = sys.maxunicode
# A memo is emptied when it would hold more entries than this, so its memory is bounded.
_MEMO = 1 << 14
_BMP = 0x10000


def _unchanged(text: str) -> str:
    return text


def _template(rep: str) -> str:
    """`rep` as a regex substitution's template, which reads `\\` as an escape."""
    return rep.replace("\\", "\\\\")


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


class _Tries:
    """One distinct block's part of a `_BlockScan`: where its states lie in the scan's
    automaton, how its tries move, and what each segment of stand-ins gives them."""

    __slots__ = ("base", "found", "gaps", "marks", "mask", "memo", "stride")

    def __init__(self, base: int, depths: list[int], stride: int) -> None:
        # Segment glob j's states lie from its bottom (bit `bottoms[j]` above `base`) up to
        # its top; the bit of "a try has placed the globs before j" is that same bottom, so
        # that a verdict and the tries line up without moving either. A segment moves the
        # tries its globs accept up to the next bottom: by one stride when the bottoms are
        # evenly spaced (every glob given the room of the deepest, `stride`, when that at
        # most doubles the width), otherwise (stride 0) by adding `gaps` (the bits between
        # the bottoms), whose carry runs from just above a bottom up to the next one and
        # stops there: twice the operations, on an integer half as wide.
        bottoms, bit = 0, 0
        for depth in depths:
            bottoms |= 1 << bit
            bit += stride or depth + 1
        self.base, self.found = base, 1 << bit  # `found`: every glob of the block placed
        self.mask = self.found - 1
        self.marks = bottoms | self.found
        self.stride = stride
        self.gaps = 0 if stride else self.mask & ~bottoms
        self.memo: dict[str, int] = {}  # segment as stand-ins -> bottoms of globs accepting it


class _BlockScan:
    """The leftmost placement of one block of path segments, or of several blocks each
    after a `**`, one after the other (see above)."""

    __slots__ = (
        "_ascii",
        "_blocks",
        "_bounds",
        "_latin",
        "_limit",
        "_loops",
        "_marks",
        "_masks",
        "_need",
        "_past",
        "_read",
        "_reps",
        "_size",
        "_start",
        "_table",
    )

    def __init__(self, runs: list[str], *later: list[str]) -> None:
        # One automaton for the glob's distinct blocks, each at its own bits (equal blocks
        # accept the same segments, so they share their states and their memo). Every
        # segment glob has its own states, bottom to top: its top is where it starts, each
        # character item moves down one, a star is a loop on the state it follows, and its
        # bottom is where it accepts (the glob is read backwards, and so is each segment).
        blocks = [runs, *later]
        parts: dict[tuple[str, ...], _Tries] = {}
        need: dict[tuple[str, ...], int] = {}
        bit = start = loops = marks = 0
        # Where a state starts or stops accepting a character; `/` is a class of its own.
        events: dict[int, int] = {0: 0, _SLASH: 0, _SLASH + 1: 0}
        for block in map(tuple, blocks):
            if block in parts:
                continue
            base, readings = bit, [_run_items(run) for run in block]
            depths = [sum(item is not _STAR for item in items) for items in readings]
            need[block] = sum(depths) + len(depths)  # a `/` and the items of each glob
            stride = max(depths) + 1
            if stride * len(depths) > 2 * need[block]:
                stride = 0
            for items, depth in zip(readings, depths, strict=True):
                marks |= 1 << bit
                state = bit + depth
                start |= 1 << state
                for item in reversed(items):
                    if item is _STAR:
                        loops |= 1 << state
                        continue
                    state -= 1
                    for low, high in _item_ranges(item):
                        events[low] = events.get(low, 0) ^ (1 << state)
                        events[high + 1] = events.get(high + 1, 0) ^ (1 << state)
                bit += stride or depth + 1
            parts[block] = _Tries(base, depths, stride)
        self._blocks = [parts[tuple(block)] for block in blocks]
        self._size = sum(map(len, blocks))
        # The characters the blocks need; the automaton is at most twice as wide.
        self._need = sum(need[tuple(block)] for block in blocks)
        self._start, self._loops, self._marks = start, loops, marks
        # The code points fall into ranges (`_bounds`, the last one ending at _TOP) whose
        # characters every item treats alike. A subject is read with each character replaced
        # by its range's stand-in (`_reps`: `/` for `/`, otherwise a character of its own,
        # the smallest ones free), so that segments that differ only in characters no item
        # tells apart are one segment to the memo, and a stand-in string is short to store.
        self._bounds = bounds = [at for at in sorted(events) if at <= _TOP]
        self._reps = reps = [
            "/" if at == _SLASH else chr(index + 1 if index >= _SLASH else index)
            for index, at in enumerate(bounds)
        ]
        self._masks: dict[str, int] = {}  # stand-in -> states its characters may enter
        mask = 0
        for at, rep in zip(bounds, reps, strict=True):
            mask ^= events[at]
            self._masks[rep] = mask
        # Stand-ins by code point as `str.translate` tables (a character past a table's end
        # is left as it is): one for ASCII, and, if the glob names a character beyond ASCII,
        # one as long as the highest code point it names (`_make_table`; 64 KB to 2.2 MB,
        # made now: its cost grows with the glob, like the rest of this set-up).
        self._ascii = self._span_table(0x80)
        self._table = ""
        self._past: Callable[[str], str] | None = None  # stand-in for what is past `_table`
        self._latin = b""
        if bounds[-1] >= 0x80:
            self._make_table()
        else:  # stand-ins by byte of a subject encoded to Latin-1 (`_forms`); all below 0x100
            latin = [*self._ascii.encode("latin-1"), *[ord(reps[-1])] * 0x80]
            latin[ord("?")], latin[0x80] = ord(reps[-1]), ord(self._ascii[ord("?")])
            self._latin = bytes(latin)
        self._read: dict[str, int] = {}  # segment as stand-ins -> bottoms of globs accepting it
        # Each entry is an integer as wide as the automaton: about 1 MB in all at most.
        self._limit = max(256, min(_MEMO, (1 << 23) // (bit + 1)))

    def _span_table(self, end: int) -> str:
        """The stand-ins of code points 0 to end - 1, as a string indexed by code point (in
        C calls: a glob of thousands of ranges would otherwise pay a Python step each)."""
        used = bisect_left(self._bounds, end)
        starts = self._bounds[:used]
        sizes = map(sub, [*starts[1:], end], starts)
        return "".join(map(mul, self._reps[:used], sizes))

    def _forms(self, joined: str) -> str:
        """`joined` with each character replaced by its range's stand-in: in C (one
        `str.translate`, and one regex substitution for characters past the table), not a
        Python step per character, since a subject of new characters is what an attacker
        sends."""
        if joined.isascii():
            return joined.translate(self._ascii)
        past = self._past
        if past is None:
            # A glob that names only ASCII: every other character is in the last range. The
            # Latin-1 encoder turns each character past U+00FF into `?` in C, so a real `?`
            # is first moved to U+0080 (and a real U+0080 to U+0081, in the last range
            # too), and `_latin` then gives each byte its stand-in. A regex substitution per
            # character, as before, cost about 0.3 M instructions per 2,048 characters.
            moved = joined.replace("\x80", "\x81").replace("?", "\x80")
            return moved.encode("latin-1", "replace").translate(self._latin).decode("latin-1")
        out = joined.translate(self._table)
        if out.isascii() and len(self._reps) <= 0x80:
            return out  # nothing was left as it was: every stand-in is ASCII
        return past(out)

    def _make_table(self) -> None:
        """Make `_table` and `_past`."""
        re = stdlib("re")

        bounds = self._bounds
        # Every code point from the start of the last range up is in that range, so the
        # table stops there (at the BMP's end at least: 64-128 KB), and what is past it gets
        # the last stand-in. A glob of so many ranges that the stand-ins would reach that far
        # gets a table of every code point instead.
        end = max(_BMP, bounds[-1])
        if len(bounds) + 1 >= end:
            end = _TOP + 1
        self._table = self._span_table(end)
        if end > _TOP:
            self._past = _unchanged
        else:
            past = re.compile(f"[{chr(end)}-{chr(_TOP)}]").sub
            self._past = partial(past, _template(self._reps[-1]))

    def _accepts(self, form: str) -> int:
        """The bottoms of the segment globs (of every distinct block) accepting `form`: one
        step per stand-in over the whole automaton, remembered. A full memo is replaced,
        never emptied in place: another thread may be reading it."""
        read = self._read
        verdict = read.get(form)
        if verdict is None:
            masks, loops = self._masks, self._loops
            states = self._start
            for mask in map(masks.__getitem__, reversed(form)):
                states = ((states >> 1) & mask) | (states & loops)
                if not states:
                    break
            verdict = states & self._marks
            if len(read) >= self._limit:
                read = self._read = {}
            read[form] = verdict
        return verdict

    def end(self, x: str, pos: int, cut: int, _probes: list[int] | None = None) -> int:
        """Where the last block's leftmost placement in `x[pos:cut]` ends (-1 if none), each
        block placed where it first can after the one before; `x[pos]` is the `/` before a
        segment, or pos == cut, as for the regex `search` it stands for."""
        if pos >= cut or cut - pos < self._need or x.count("/", pos, cut) < self._size:
            # Fewer characters or segments than the blocks need: the few long segments need
            # not be read (and no automaton is wider than the subject is long).
            return -1
        blocks = iter(self._blocks)
        part, live = next(blocks), 0
        # Where the next segment starts, and the next slice's size: the segments are split
        # off in slices that double in size, starting from the least the blocks can cover,
        # so that a placement found early does not pay for reading the rest.
        start, window = pos + 1, max(2 * self._size, self._need) + 2
        while True:
            stop = start + window
            if stop < cut:
                stop = x.rfind("/", start, stop)  # whole segments only
                if stop < 0:
                    window *= 2  # a segment longer than the slice
                    continue
            else:
                stop = cut
            # The slice as stand-ins, one per character, so its segments keep their lengths
            # (and subjects that differ only in characters no item tells apart are alike).
            forms = self._forms(x[start:stop]).split("/")
            rest = iter(forms)  # no `enumerate`: the index is what `rest` has not yet given
            while True:
                live = self._tries(part, rest, live)
                if live < part.found:
                    break  # the slice is read
                # Placed: the next block starts after it. A try still in this block could
                # only place it later, which is never better.
                following = next(blocks, None)
                if following is None:
                    index = len(forms) - length_hint(rest)
                    return start + index - 1 + sum(map(len, forms[:index]))
                part, live = following, 0
            if stop == cut:
                return -1
            start, window = stop + 1, window * 2

    def _tries(self, part: _Tries, rest: Iterator[str], live: int) -> int:
        """`part`'s tries after reading from `rest` until the block is placed (`found` is
        then the highest bit set) or `rest` runs out."""
        found, known, gaps = part.found, part.memo.get, part.gaps
        if gaps:
            marks = part.marks
            for form in rest:
                accepted = known(form)
                if accepted is None:
                    accepted = self._learn(part, form)
                    known = part.memo.get
                live = ((((live | 1) & accepted) << 1) + gaps) & marks
                if live >= found:
                    break
        else:
            stride = part.stride
            for form in rest:
                accepted = known(form)
                if accepted is None:
                    accepted = self._learn(part, form)
                    known = part.memo.get
                live = ((live | 1) & accepted) << stride
                if live >= found:
                    break
        return live

    def _learn(self, part: _Tries, form: str) -> int:
        """The bottoms of `part`'s globs accepting `form`, remembered in its memo (replaced,
        never emptied in place, when full)."""
        accepted = (self._accepts(form) >> part.base) & part.mask
        if len(part.memo) >= _MEMO:
            part.memo = {}
        part.memo[form] = accepted
        return accepted


def linear_plain_regex(pattern: str) -> str:
    """Regex (for fullmatch, DOTALL) of an fnmatch-like glob, matched greedily as above."""
    return _linear_run(_run_tokens(pattern, None), ".", "", (f"g{k}" for k in count()))


def glob_problem(pattern: str) -> str | None:
    """Why `pattern` is not a usable glob, or None. For the loader's validation."""
    re = stdlib("re")

    try:
        re.compile(translate_path(pattern))
        re.compile(translate_plain(pattern))
    except (GlobError, re.error) as exc:
        return str(exc)
    return None


# Which of a block's two matchers to use. Measured in callgrind instructions on a subject
# of 2,048 segments that lets every try go deep (`/a`, `/aa`), the regex search costs, per
# segment of the block, about 1.4 M for one with a star and a class (`*[!b]a`: the class is
# a lookahead that keeps it off `/`), 0.4-0.7 M with a star, 0.25 M with a class and 0.05 M
# for the rest (`?`, `a?`: a fixed-length segment is rejected at its first character only
# when the subject's segments differ there). The scan costs 3.5-7.5 M whatever the block's
# length (docs/performance-worst-cases.md). Both grow with the subject alike, so the block
# alone decides: the scan from 3 segments with a star and a class (6 with a star, 15 with a
# class, 61 others). These were 60, 30, 12 and 2 until round 25: a block of 178 `?` and a
# `b` stayed a regex search that cost 9.3 M on `/a` x 2,048, the scan 3.8 M.
_STAR_CLASS_COST, _STAR_COST, _CLASS_COST, _PLAIN_COST, _SCAN_COST = 140, 70, 25, 6, 360


def _regex_cost(run: str) -> int:
    if "*" in run:
        return _STAR_CLASS_COST if "[" in run else _STAR_COST
    return _CLASS_COST if "[" in run else _PLAIN_COST


# A block the scan takes, up to this cost, first gets a regex search over the next
# `_PROBE_REACH // cost` characters (a few us at most): a placement close by, as in a glob of
# many blocks each placed where the last ended or a little later, is found without the
# scan's set-up. What those searches go through before a placement (or all of it, when there
# is none) is counted per decision, in characters x cost: past `_PROBE_BUDGET` (four failed
# searches), a block is only tried right where the search starts (one anchored match, which
# reads at most the block's own segments) before the scan. Unbounded, a subject that puts
# each placement just beyond the reach made the searches add up to a regex search of the
# whole subject (34 blocks of 13 segments: 1.7-2.4 ms).
_PROBE_MAX, _PROBE_REACH, _PROBE_BUDGET = 1500, 40_000, 160_000


Middle: TypeAlias = "Callable[[str, int, int, list[int] | None], int]"


def _middle(regex: str, runs: list[str]) -> Middle:
    """For a block between two `**`: where its leftmost placement in `x[pos:cut]` ends (-1
    if none), by its regex search or, for a long block with a wildcard, by the one-pass scan
    (made when the glob is first used)."""
    re = stdlib("re")

    cost = sum(map(_regex_cost, runs))
    long = cost > _SCAN_COST and any(map(has_magic, runs))
    if long and cost > _PROBE_MAX:
        return _BlockScan(runs).end
    compiled = re.compile(regex, re.DOTALL)
    search = compiled.search
    if not long:

        def end(x: str, pos: int, cut: int, _probes: list[int] | None = None) -> int:
            placed = search(x, pos, cut)
            return -1 if placed is None else placed.end()

        return end
    scan, reach, anchored = _BlockScan(runs).end, _PROBE_REACH // cost, compiled.match

    def probe_then_scan(x: str, pos: int, cut: int, probes: list[int] | None = None) -> int:
        if probes is None or probes[0] < _PROBE_BUDGET:
            # Up to a `/` (or the cut): the block's end check then sees a real boundary.
            stop = cut if pos + reach >= cut else x.rfind("/", pos + 1, pos + reach)
            if stop > pos:
                placed = search(x, pos, stop)
                if probes is not None:  # what the search went through before its placement
                    probes[0] += ((stop if placed is None else placed.start()) - pos) * cost
                if placed is not None:
                    found: int = placed.end()  # (`re` is the engine's lazy import: typed here)
                    return found
                if stop == cut:
                    return -1
        # Placed at `pos` itself is the leftmost placement there can be.
        placed = anchored(x, pos, cut)
        return scan(x, pos, cut) if placed is None else placed.end()

    return probe_then_scan


def _is_long(runs: list[str]) -> bool:
    """Whether a block's regex search would cost more than the scan (above)."""
    return sum(map(_regex_cost, runs)) > _SCAN_COST and any(map(has_magic, runs))


def _middles(plan: PathPlan) -> tuple[Middle, ...]:
    """How the blocks between two `**` are placed, one after the other. When one of several
    blocks is long, all of them are placed by one scan: it reads the subject once for every
    block, where a scan per block paid for its set-up per block (a glob of 130 blocks of 12
    `*` and a `b`, each block placed a segment further than the last: 19-51 M instructions)."""
    blocks = [list(runs) for runs in plan.middle_runs]
    if len(blocks) > 1 and any(map(_is_long, blocks)):
        return (_BlockScan(*blocks).end,)
    return tuple(_middle(regex, runs) for regex, runs in zip(plan.middles, blocks, strict=True))


def _lazy_path_regex(pattern: str) -> Matcher:
    """The linear matcher of a path glob, translated and compiled on first use."""
    plan: tuple[Any, tuple[Middle, ...], Any, int | None] | None = None

    def match(text: str) -> bool:
        nonlocal plan
        if plan is None:
            re = stdlib("re")

            found = path_plan(pattern)
            plan = (
                re.compile(found.first, re.DOTALL).match,
                _middles(found),
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
        probes = [0]  # this decision's probe searches, in characters x cost (`_middle`)
        for middle in middles:
            pos = middle(x, pos, cut, probes)
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
            re = stdlib("re")

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
            re = stdlib("re")

            compiled = re.compile(linear_plain_regex(pattern), re.DOTALL).fullmatch
        return compiled(text) is not None

    return match


def _suffix(suffix: str) -> Matcher:
    return lambda text: text.endswith(suffix)


# `escape`'s table: each glob character becomes a class of itself.
_ESCAPES = {ord(c): f"[{c}]" for c in "*?["}


def escape(text: str) -> str:
    """A glob that matches exactly `text` (for file names used as globs, such as the
    protected policy files): `*`, `?` and `[` each become a one-character class."""
    if "*" not in text and "?" not in text and "[" not in text:
        # The usual file name, returned as it is (every shielded start escapes a dozen such
        # paths: its policy files, their folders, appshield's own).
        return text
    # One C-level pass (a generator per character cost about 100 instructions a character).
    return text.translate(_ESCAPES)


def literal_prefix_segments(pattern: str) -> list[str]:
    """The leading segments of an absolute path glob that hold no glob character.

    `/a/b/*.py` -> ["a", "b"]; a literal pattern gives all of its segments; `/**` gives [].
    The segment trie files a rule under this prefix: only paths that walk through it can match.
    """
    if not has_magic(pattern):
        return pattern.split("/")[1:]  # a literal path (a folder, a protected file): all
    out: list[str] = []
    for seg in pattern.split("/")[1:]:
        if "*" in seg or "?" in seg or "[" in seg:  # `has_magic`, inlined: once per segment
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
