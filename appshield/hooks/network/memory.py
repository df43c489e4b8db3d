"""The resolver memory: which names recently resolved to which addresses.

A socket only sees an address. A policy speaks of names (`host: *.evil.com`). So every
resolution the shield sees (getaddrinfo, gethostbyname, gethostbyname_ex, gethostbyaddr) is
remembered here, and when a socket later connects to an address, the names that led to it
are put in `NetworkOp.names`: a deny on any of them denies.

Bounded (the oldest addresses are dropped first) and expiring (an entry lives `ttl` seconds
from its last resolution), so a long-running process cannot grow it without limit and a stale
mapping does not outlive a plausible DNS TTL for long. Thread-safe: writers take a lock;
readers only do a dict lookup, which is atomic under the GIL. The lock is re-entrant, and
the writers tolerate being interleaved with themselves: a signal handler (or a finalizer) that
resolves a name while its thread is inside `remember` records its answer then and there,
instead of waiting for ever on a lock its own thread holds. Fork-safe: the child gets a fresh
lock (a lock held by another thread at fork time would otherwise never be released).
"""

from __future__ import annotations

import _thread
import time
from collections import OrderedDict

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["ResolverMemory", "memory"]

DEFAULT_CAPACITY = 4096
DEFAULT_TTL = 300.0


class _Entry:
    """The names of one address, each with its expiry, plus the soonest expiry so that a
    lookup can tell in one comparison whether anything needs pruning."""

    # The compiled audit hook reads `names` and `soonest` at their offsets
    # (hooks/network `compiled_hook_parts`).
    __slots__ = ("expiries", "names", "soonest")

    def __init__(self) -> None:
        self.expiries: dict[str, float] = {}
        self.names: tuple[str, ...] = ()
        self.soonest = 0.0

    def refresh(self, names_changed: bool = True) -> None:
        # The names tuple is rebuilt only when the set of names changes: its identity tells
        # the network hook's allow cache whether a decision still holds.
        if names_changed:
            self.names = tuple(sorted(self.expiries))
        self.soonest = min(self.expiries.values()) if self.expiries else 0.0


class ResolverMemory:
    def __init__(self, capacity: int = DEFAULT_CAPACITY, ttl: float = DEFAULT_TTL) -> None:
        self.capacity = capacity
        self.ttl = ttl
        self._by_address: OrderedDict[str, _Entry] = OrderedDict()
        self._by_name: dict[str, tuple[tuple[str, ...], float]] = {}
        self._lock = _thread.RLock()

    def remember(self, name: str, addresses: Iterable[str]) -> None:
        """Record that `name` (already normalised) resolved to `addresses` (canonical)."""
        now = time.monotonic()
        unique = tuple(dict.fromkeys(a for a in addresses if a))
        if not name or not unique:
            return
        known = self._by_name.get(name)
        if known is not None and known[0] == unique and known[1] - now > self.ttl / 2:
            return  # the same answer, recently: nothing worth the lock
        expiry = now + self.ttl
        with self._lock:
            self._by_name[name] = (unique, expiry)
            by_address = self._by_address
            for address in unique:
                # The entry stays in place while it is updated (readers take no lock); a
                # re-entrant call may evict it meanwhile, and then it is put back.
                entry = by_address.get(address)
                if entry is None:
                    entry = by_address.setdefault(address, _Entry())
                new_name = name not in entry.expiries
                entry.expiries[name] = expiry
                entry.refresh(new_name)
                try:
                    by_address.move_to_end(address)
                except KeyError:
                    by_address[address] = entry
            self._evict()

    def _evict(self) -> None:
        while len(self._by_address) > self.capacity:
            try:
                self._by_address.popitem(last=False)
            except KeyError:  # emptied meanwhile by a re-entrant call
                break
        if len(self._by_name) > self.capacity:
            # Names are only a shortcut for connects by name; dropping them all is cheap
            # and keeps the bound without bookkeeping their order.
            self._by_name.clear()

    def names_for(self, address: str) -> tuple[str, ...]:
        """The unexpired names that resolved to `address` (empty when none)."""
        entry = self._by_address.get(address)
        if entry is None:
            return ()
        if entry.soonest > time.monotonic():
            return entry.names
        return self._prune(address)

    def _prune(self, address: str) -> tuple[str, ...]:
        now = time.monotonic()
        with self._lock:
            entry = self._by_address.get(address)
            if entry is None:
                return ()
            for name, expiry in list(entry.expiries.items()):
                if expiry <= now:
                    entry.expiries.pop(name, None)
            if not entry.expiries:
                self._by_address.pop(address, None)
                return ()
            entry.refresh()
            return entry.names

    def addresses_for(self, name: str) -> tuple[str, ...]:
        """The addresses `name` last resolved to, if that was recent enough."""
        found = self._by_name.get(name)
        if found is None or found[1] <= time.monotonic():
            return ()
        return found[0]

    def clear(self) -> None:
        with self._lock:
            self._by_address.clear()
            self._by_name.clear()

    def __len__(self) -> int:
        return len(self._by_address)

    def after_fork(self) -> None:
        """In a forked child (hooks.network's FAMILY): another thread may have held the lock."""
        self._lock = _thread.RLock()


memory = ResolverMemory()
