"""Indexes that turn an operation into the few rules that could match it.

Every index maps a key taken from the operation to *positions*: integers that order a
category's rules by (deny, alert, allow) and then file order. A rule is filed under every
alternative of the field that narrows it best; the rule's own predicates confirm the match, so
an index may over-approximate (return rules that then fail) but never miss one.
"""

from __future__ import annotations

from functools import lru_cache

from appshield._modules import stdlib
from appshield.engine.globs import has_magic, literal_prefix_segments

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

__all__ = [
    "Buckets",
    "CidrIndex",
    "HostIndex",
    "KeyIndex",
    "PathTrie",
    "address_key",
    "network_key",
]


# Where the positions live: a policy of 100,000 rules files them under about as many keys
# (trie nodes, host names, ports), and every list or dict among them would be an object the
# cyclic garbage collector walks at each full collection, the app's as much as ours, for as
# long as the policy is loaded (about six per rule: with the rest, a full collection took
# 0.55 s at 100,000 rules). So a key maps to an int, the slot of its positions in one
# sequence of tuples: a dict whose keys and values are all str or int is never tracked by
# the collector, and CPython's own young collections untrack a tuple of ints. A young
# collection moves the objects only reachable through another young one behind it, so the
# tuple holding those tuples is seen before its items the first time, and untracked by the
# next collection of generation 1 that sees it (which reads its items once), never left for
# a full one. Nothing here touches the collector or its settings: a collection's cost just
# stays that of the objects that can hold a cycle. Slot 0 is the empty tuple: no positions.
_EMPTY = 0


class Buckets:
    """Positions by key: `slots[key]` is the index in `hits` of the key's positions.

    `hits` is a list while rules are filed and a tuple once `freeze` is called (the index's
    `finish`), so that the collector can untrack it; a frozen (or restored) one is thawed
    by the next `add`.
    """

    __slots__ = ("hits", "slots")

    def __init__(self) -> None:
        self.slots: dict[Any, int] = {}
        self.hits: Sequence[tuple[int, ...]] = [()]

    def add(self, key: object, position: int) -> None:
        hits = self.hits
        if not isinstance(hits, list):
            hits = self.hits = list(hits)
        slot = self.slots.get(key, _EMPTY)
        if slot == _EMPTY:
            self.slots[key] = len(hits)
            hits.append((position,))
        elif position not in hits[slot]:
            hits[slot] += (position,)

    def get(self, key: object) -> tuple[int, ...]:
        """The key's positions (empty when none); for building, not for the decision path."""
        return self.hits[self.slots.get(key, _EMPTY)]

    def freeze(self) -> None:
        self.hits = tuple(self.hits)

    def export(self) -> tuple[dict[Any, int], tuple[tuple[int, ...], ...]]:
        return self.slots, tuple(self.hits)

    def restore(self, state: tuple[dict[Any, int], tuple[tuple[int, ...], ...]]) -> None:
        self.slots, self.hits = state

    def __bool__(self) -> bool:
        return bool(self.slots)


def _filed_segments(pattern: str) -> list[str]:
    """The trie path `PathTrie.add` files `pattern` under."""
    return literal_prefix_segments(pattern) if pattern.startswith("/") else []


class PathTrie:
    """Segment trie over the literal prefixes of path globs.

    Node n (0 is the root) has its children in `kids[n]` (segment -> node) and the positions
    filed there in `hits[n]`: no list per node, and dicts of str and int only, which the
    collector never tracks (see `Buckets`). `kids` itself stays tracked (CPython untracks a
    tuple only when its items are tuples or atomic), so a full collection still reads each
    node's header once through it: 45 ns a node here, against walking three tracked objects
    a node before. A flat table of whole prefixes (`a/b` -> positions) would avoid that but
    slice the path at every step, which made a walk slower than this one.

    Walking an operation's path segment by segment collects the positions of every rule
    whose literal prefix the path passes through; globs with no literal prefix (`/**`,
    `/*/x`) sit at the root and are collected for every path. `kids` and `hits` are lists
    while rules are filed and tuples once frozen (the index's `finish`); a frozen or
    restored trie is thawed by the next `add`.
    """

    __slots__ = ("hits", "kids")

    def __init__(self) -> None:
        self.kids: Sequence[dict[str, int]] = [{}]
        self.hits: Sequence[tuple[int, ...]] = [()]

    def add(self, pattern: str, position: int) -> None:
        self.add_under(_filed_segments(pattern), position)

    def add_under(self, segments: Sequence[str], position: int) -> None:
        """File `position` under the trie path `segments` (what `add` finds in a pattern,
        for a caller that knows it without parsing one)."""
        kids, hits = self.kids, self.hits
        if not isinstance(kids, list) or not isinstance(hits, list):
            kids, hits = self.kids, self.hits = list(kids), list(hits)
        node = 0
        for seg in segments:
            below = kids[node].get(seg)
            if below is None:
                below = kids[node][seg] = len(kids)
                kids.append({})
                hits.append(())
            node = below
        if position not in hits[node]:
            hits[node] += (position,)

    def add_root(self, position: int) -> None:
        self.add("", position)

    @property
    def root(self) -> tuple[int, ...]:
        """The positions filed at the root (collected for every path)."""
        return self.hits[0]

    @property
    def tops(self) -> dict[str, int]:
        """The root's children: the first segments some rule is filed under."""
        return self.kids[0]

    def freeze(self) -> None:
        self.kids, self.hits = tuple(self.kids), tuple(self.hits)

    def export(self) -> tuple[tuple[dict[str, int], ...], tuple[tuple[int, ...], ...]]:
        return tuple(self.kids), tuple(self.hits)

    def restore(
        self, state: tuple[tuple[dict[str, int], ...], tuple[tuple[int, ...], ...]]
    ) -> None:
        self.kids, self.hits = state

    def collect(self, path: str, out: list[int]) -> None:
        kids: Any = self.kids  # (Any: `node` is an int or None, as the walk goes)
        hits = self.hits
        out += hits[0]
        if not path.startswith("/"):
            return  # a relative subject can only meet the root's patterns
        node = 0
        for seg in path.split("/")[1:]:
            node = kids[node].get(seg)
            if node is None:
                return
            out += hits[node]

    def __bool__(self) -> bool:
        return bool(self.kids[0] or self.hits[0])


class KeyIndex(Buckets):
    """Exact keys (ports, executable base names) to positions, plus an always-checked list."""

    __slots__ = ("always",)

    def __init__(self) -> None:
        super().__init__()
        self.always: list[int] = []

    def add_always(self, position: int) -> None:
        if position not in self.always:
            self.always.append(position)


class HostIndex:
    """Host globs: exact names and IP literals, suffixes starting at a dot, the rest.

    `*.example.com` and `api-*.example.com` are filed under `.example.com`, `*evil.com`
    under `.com`; a subject `a.b.example.com` looks up each of its dot-suffixes.
    """

    __slots__ = ("_exact", "_exact_hits", "_suffix", "_suffix_hits", "exact", "general", "suffix")

    def __init__(self) -> None:
        self.exact = Buckets()
        self.suffix = Buckets()
        self.general: list[int] = []
        self.freeze()

    def add(self, pattern: str, position: int) -> None:
        if not has_magic(pattern):
            self.exact.add(pattern, position)
            return
        tail = pattern
        for magic in "*?[]":
            tail = tail.rpartition(magic)[2]
        dot = tail.find(".")
        if dot < 0 or tail == ".":
            if position not in self.general:
                self.general.append(position)
        else:
            self.suffix.add(tail[dot:], position)

    def freeze(self) -> None:
        """Freeze both tables, and keep their parts at hand: `collect` runs for every name
        and address of a network decision, and reads them without a hop through each."""
        exact, suffix = self.exact, self.suffix
        exact.freeze()
        suffix.freeze()
        self._exact, self._exact_hits = exact.slots, exact.hits
        self._suffix, self._suffix_hits = suffix.slots, suffix.hits

    def collect(self, subject: str, out: list[int]) -> None:
        slot = self._exact.get(subject)
        if slot is not None:
            out += self._exact_hits[slot]
        suffix = self._suffix
        if suffix:
            hits = self._suffix_hits
            dot = subject.find(".")
            while dot >= 0:
                slot = suffix.get(subject[dot:])
                if slot is not None:
                    out += hits[slot]
                dot = subject.find(".", dot + 1)


@lru_cache(maxsize=4096)
def address_key(address: str) -> tuple[int, int] | None:
    """(IP version, integer) of an address; IPv4-mapped IPv6 folds to IPv4. None if not an IP."""
    # Here, not at the top: only network decisions need it, never start-up.
    ipaddress = stdlib("ipaddress")

    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.version, int(ip)


@lru_cache(maxsize=1)
def _mapped_range() -> Any:
    ipaddress = stdlib("ipaddress")

    return ipaddress.IPv6Network("::ffff:0:0/96")


def network_key(cidr: str) -> tuple[int, int, int]:
    """(IP version, prefix length, network integer); an IPv4-mapped IPv6 network folds to IPv4."""
    ipaddress = stdlib("ipaddress")

    net = ipaddress.ip_network(cidr, strict=False)
    if (
        isinstance(net, ipaddress.IPv6Network)
        and net.prefixlen >= 96
        and net.subnet_of(_mapped_range())
    ):
        mapped = net.network_address.ipv4_mapped
        assert mapped is not None
        return 4, net.prefixlen - 96, int(mapped)
    return net.version, net.prefixlen, int(net.network_address)


class CidrIndex:
    """Networks by prefix length: one table of masked network integers per length in use."""

    __slots__ = ("tables",)

    def __init__(self) -> None:
        # version -> [(prefixlen, shift, {network >> shift: positions})]
        self.tables: dict[int, list[tuple[int, int, Buckets]]] = {}

    def add(self, cidr: str, position: int) -> None:
        version, prefixlen, network = network_key(cidr)
        shift = (32 if version == 4 else 128) - prefixlen
        tables = self.tables.setdefault(version, [])
        table = next((t for length, _s, t in tables if length == prefixlen), None)
        if table is None:
            table = Buckets()
            tables.append((prefixlen, shift, table))
            tables.sort(key=lambda item: item[0])
        table.add(network >> shift, position)

    def freeze(self) -> None:
        for tables in self.tables.values():
            for _length, _shift, table in tables:
                table.freeze()

    def export(self) -> Any:
        return {
            version: [(length, shift, table.export()) for length, shift, table in tables]
            for version, tables in self.tables.items()
        }

    def restore(self, state: Any) -> None:
        self.tables = {}
        for version, tables in state.items():
            restored = self.tables[version] = []
            for length, shift, plain in tables:
                table = Buckets()
                table.restore(plain)
                restored.append((length, shift, table))

    def collect(self, address: str, out: list[int]) -> None:
        key = address_key(address)
        if key is None:
            return
        version, value = key
        for _length, shift, table in self.tables.get(version, ()):
            slot = table.slots.get(value >> shift)
            if slot is not None:
                out += table.hits[slot]
