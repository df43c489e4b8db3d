"""Indexes that turn an operation into the few rules that could match it.

Every index maps a key taken from the operation to *positions*: integers that order a
category's rules by (deny, alert, allow) and then file order. A rule is filed under every
alternative of the field that narrows it best; the rule's own predicates confirm the match, so
an index may over-approximate (return rules that then fail) but never miss one.
"""

from __future__ import annotations

from functools import lru_cache

from appshield.engine.globs import has_magic, literal_prefix_segments

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["CidrIndex", "HostIndex", "KeyIndex", "PathTrie", "address_key", "network_key"]


class PathTrie:
    """Segment trie over the literal prefixes of path globs.

    A node is `[children, positions]`. Walking an operation's path segment by segment collects
    the positions of every rule whose literal prefix the path passes through; globs with no
    literal prefix (`/**`, `/*/x`) sit at the root and are collected for every path.
    """

    __slots__ = ("root",)

    def __init__(self) -> None:
        self.root: list[Any] = [{}, []]

    def add(self, pattern: str, position: int) -> None:
        node = self.root
        for seg in literal_prefix_segments(pattern) if pattern.startswith("/") else ():
            node = node[0].setdefault(seg, [{}, []])
        if position not in node[1]:
            node[1].append(position)

    def collect(self, path: str, out: list[int]) -> None:
        node = self.root
        out += node[1]
        if not path.startswith("/"):
            return  # a relative subject can only meet the root's patterns
        for seg in path.split("/")[1:]:
            node = node[0].get(seg)
            if node is None:
                return
            out += node[1]

    def __bool__(self) -> bool:
        return bool(self.root[0] or self.root[1])


class KeyIndex:
    """Exact keys (ports, executable base names) to positions, plus an always-checked list."""

    __slots__ = ("always", "keys")

    def __init__(self) -> None:
        self.keys: dict[object, list[int]] = {}
        self.always: list[int] = []

    def add(self, key: object, position: int) -> None:
        bucket = self.keys.setdefault(key, [])
        if position not in bucket:
            bucket.append(position)

    def add_always(self, position: int) -> None:
        if position not in self.always:
            self.always.append(position)


class HostIndex:
    """Host globs: exact names and IP literals, suffixes starting at a dot, the rest.

    `*.example.com` and `api-*.example.com` are filed under `.example.com`, `*evil.com`
    under `.com`; a subject `a.b.example.com` looks up each of its dot-suffixes.
    """

    __slots__ = ("exact", "general", "suffix")

    def __init__(self) -> None:
        self.exact: dict[str, list[int]] = {}
        self.suffix: dict[str, list[int]] = {}
        self.general: list[int] = []

    def add(self, pattern: str, position: int) -> None:
        if not has_magic(pattern):
            _add(self.exact, pattern, position)
            return
        tail = pattern
        for magic in "*?[]":
            tail = tail.rpartition(magic)[2]
        dot = tail.find(".")
        if dot < 0 or tail == ".":
            if position not in self.general:
                self.general.append(position)
        else:
            _add(self.suffix, tail[dot:], position)

    def collect(self, subject: str, out: list[int]) -> None:
        hit = self.exact.get(subject)
        if hit:
            out += hit
        if self.suffix:
            dot = subject.find(".")
            while dot >= 0:
                hit = self.suffix.get(subject[dot:])
                if hit:
                    out += hit
                dot = subject.find(".", dot + 1)


@lru_cache(maxsize=4096)
def address_key(address: str) -> tuple[int, int] | None:
    """(IP version, integer) of an address; IPv4-mapped IPv6 folds to IPv4. None if not an IP."""
    import ipaddress  # here, not at the top: only network decisions need it, never start-up

    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.version, int(ip)


@lru_cache(maxsize=1)
def _mapped_range() -> Any:
    import ipaddress

    return ipaddress.IPv6Network("::ffff:0:0/96")


def network_key(cidr: str) -> tuple[int, int, int]:
    """(IP version, prefix length, network integer); an IPv4-mapped IPv6 network folds to IPv4."""
    import ipaddress

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
    """Networks by prefix length: one dict of masked network integers per length in use."""

    __slots__ = ("tables",)

    def __init__(self) -> None:
        # version -> [(prefixlen, shift, {network >> shift: positions})]
        self.tables: dict[int, list[tuple[int, int, dict[int, list[int]]]]] = {}

    def add(self, cidr: str, position: int) -> None:
        version, prefixlen, network = network_key(cidr)
        shift = (32 if version == 4 else 128) - prefixlen
        tables = self.tables.setdefault(version, [])
        table = next((t for length, _s, t in tables if length == prefixlen), None)
        if table is None:
            table = {}
            tables.append((prefixlen, shift, table))
            tables.sort(key=lambda item: item[0])
        _add(table, network >> shift, position)

    def collect(self, address: str, out: list[int]) -> None:
        key = address_key(address)
        if key is None:
            return
        version, value = key
        for _length, shift, table in self.tables.get(version, ()):
            hit = table.get(value >> shift)
            if hit:
                out += hit


def _add(table: dict[Any, list[int]], key: object, position: int) -> None:
    bucket = table.setdefault(key, [])
    if position not in bucket:
        bucket.append(position)
