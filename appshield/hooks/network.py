"""Interception of the network category: connect, send, bind and resolve.

Where each action is seen:

- `connect`, `connect_ex`, `sendto`, `sendmsg`, `bind` of every socket: the PEP 578 events
  `socket.connect`, `socket.sendto`, `socket.sendmsg`, `socket.bind`. These methods live on
  the C type `_socket.socket`, which cannot be patched, and the events fire for every route
  to them (`socket.socket`, `_socket.socket`, unbound calls, captured aliases, reloads).
  A wrapt layer on `socket.socket` would see exactly the same arguments and only add its
  own cost to the hot path (and then the audit event would still fire), so there is none.
- name resolution: wrapt wrappers on `_socket.getaddrinfo` (which `socket.getaddrinfo` calls)
  and on `gethostbyname`, `gethostbyname_ex`, `gethostbyaddr` in both `socket` and
  `_socket`. They decide *and* feed the resolver memory with the answers; the events
  `socket.getaddrinfo`, `socket.gethostbyname`, `socket.gethostbyaddr` are the backstop
  for calls that reach the C functions some other way.
- asyncio resolves in an executor thread, whose stack shows nothing of the caller. So
  `BaseEventLoop.getaddrinfo` is wrapped: the resolve is decided there, in the loop thread
  with the caller's coroutines on the stack (so `scope` and the code location work), and the
  executor's own getaddrinfo call is marked as already decided (`_predecided`).
- `socket.create_connection`, http.client, urllib, requests, httpx, asyncio connections all
  end in getaddrinfo plus a connect, so they are covered by the above.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from appshield.hooks import _gate
from appshield.hooks import _net_describe as describe
from appshield.hooks._patching import PatchPoint
from appshield.hooks._state import thread_state
from appshield.operations import NetworkOp

__all__ = ["AUDIT_HANDLERS", "PATCHES"]

_state = thread_state


def _shield() -> Any:
    """The shield a wrapper consults (None outside a shield, or in appshield's own work)."""
    return _gate.for_wrapper()


# -- audit events: every socket action ------------------------------------------------------


class _AllowCache:
    """Socket actions already decided `allow`: (operation, family, type, address) -> (the
    operation without names, the remembered names it was decided with), for the compiled
    policy that decided them.

    Connects repeat: a service talks to the same few addresses all day, and building,
    hashing and deciding a `NetworkOp` again costs more than the rest of the hook. Only
    allows are cached (a violation is reported every time), only while the policy's network
    rules ignore the call stack, and only for actions on an address (not a name); the cache
    empties itself when the policy changes. A hit still checks the resolver memory: the
    names of the address must be the very tuple the decision saw (the memory builds a new
    one on every change) and none of them may have expired."""

    LIMIT = 4096

    def __init__(self) -> None:
        self.owner: Any = None
        self.entries: dict[Any, tuple[NetworkOp, tuple[str, ...]]] = {}
        self.usable = False

    def reset_for(self, compiled: Any) -> None:
        self.entries = {}
        self.usable = not compiled.needs_stack("network")
        self.owner = compiled

    def store(self, key: Any, base: NetworkOp, names: tuple[str, ...]) -> None:
        entries = self.entries
        if len(entries) >= self.LIMIT:
            entries.clear()
        try:
            entries[key] = (base, names)
        except TypeError:  # an unhashable address: simply not cached
            pass


_allowed = _AllowCache()
_family_of = describe.family_of
_type_of = describe.type_of
_memory = describe.memory
_monotonic = time.monotonic


def _socket_event(operation: str, api: str) -> Callable[[tuple[Any, ...]], Any]:
    """The audit handler for one socket action. The first half is the hot path (a repeat of
    an allowed action): no Python calls beyond this function."""
    cache = _allowed
    by_address = _memory._by_address

    def handler(args: tuple[Any, ...]) -> tuple[NetworkOp, str] | None:
        address = args[1]
        if address is None:  # sendmsg on a connected socket: its connect was judged
            return None
        sock = args[0]
        key = (operation, _family_of(sock), _type_of(sock), address)
        compiled = _gate._shield.compiled
        if cache.owner is compiled:
            try:
                hit = cache.entries.get(key)
            except TypeError:
                hit = None
            if hit is not None:
                entry = by_address.get(hit[0].address)
                if entry is None:
                    if not hit[1]:
                        return None
                elif entry.names is hit[1] and entry.soonest > _monotonic():
                    return None
        return _decide_socket_event(operation, api, key, address, compiled)

    return handler


def _decide_socket_event(
    operation: str, api: str, key: Any, address: Any, compiled: Any
) -> tuple[NetworkOp, str] | None:
    base = describe.base_op(operation, key[1], key[2], address)
    if base is None:
        return None
    names = _memory.names_for(base.address) if base.address is not None else ()
    op = describe.with_names(base, names)
    if base.host is not None:  # a name: what it resolves to changes, never cached
        return op, api
    if _allowed.owner is not compiled:
        _allowed.reset_for(compiled)
    if _allowed.usable and compiled.decide(op, None).action == "allow":
        _allowed.store(key, base, names)
        return None
    return op, api


_on_connect = _socket_event("connect", "socket.connect")
_on_bind = _socket_event("bind", "socket.bind")
_on_sendto = _socket_event("send", "socket.sendto")
_on_sendmsg = _socket_event("send", "socket.sendmsg")


def _on_getaddrinfo(args: tuple[Any, ...]) -> tuple[NetworkOp, str] | None:
    op = describe.describe_resolve(args[0], args[1] if len(args) > 1 else None)
    return None if op is None else (op, "socket.getaddrinfo")


def _on_gethostbyname(args: tuple[Any, ...]) -> tuple[NetworkOp, str] | None:
    op = describe.describe_resolve(args[0], None)
    return None if op is None else (op, "socket.gethostbyname")


def _on_gethostbyaddr(args: tuple[Any, ...]) -> tuple[NetworkOp, str] | None:
    op = _reverse_op(args[0])
    return None if op is None else (op, "socket.gethostbyaddr")


def _reverse_op(ip: Any) -> NetworkOp | None:
    text = describe.host_text(ip)
    if not text:
        return None
    address = describe.canonical(text)
    if address is None:  # gethostbyaddr also takes a name: a forward lookup first
        return describe.describe_resolve(text, None)
    return NetworkOp("resolve", None, address, None, "tcp", describe.memory.names_for(address))


AUDIT_HANDLERS: Mapping[str, Callable[[tuple[Any, ...]], Any]] = {
    "socket.connect": _on_connect,
    "socket.bind": _on_bind,
    "socket.sendto": _on_sendto,
    "socket.sendmsg": _on_sendmsg,
    "socket.getaddrinfo": _on_getaddrinfo,
    "socket.gethostbyname": _on_gethostbyname,
    "socket.gethostbyaddr": _on_gethostbyaddr,
}


# -- asyncio: decide in the loop thread, mark the executor's call ----------------------------


class _Predecided:
    """Resolutions already decided in an event loop thread, waiting for the executor thread
    that performs them. Keyed on (host, port); entries expire so that a cancelled lookup
    cannot leave a pass lying around for long, and only executor threads consume them."""

    LIFETIME = 30.0
    LIMIT = 1024

    def __init__(self) -> None:
        self._pending: dict[tuple[Any, Any], list[float]] = {}
        self._lock = threading.Lock()

    def add(self, host: Any, port: Any) -> None:
        deadline = time.monotonic() + self.LIFETIME
        with self._lock:
            if len(self._pending) >= self.LIMIT:
                self._pending.clear()
            self._pending.setdefault((host, port), []).append(deadline)

    def take(self, host: Any, port: Any) -> bool:
        if not self._pending:
            return False
        if not threading.current_thread().name.startswith("asyncio"):
            return False
        now = time.monotonic()
        with self._lock:
            deadlines = self._pending.get((host, port))
            while deadlines:
                if deadlines.pop(0) > now:
                    return True
            self._pending.pop((host, port), None)
            return False

    def after_fork(self) -> None:
        self._lock = threading.Lock()
        self._pending = {}


_predecided = _Predecided()


def _loop_getaddrinfo(
    wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    shield = _shield()
    if shield is None:
        return wrapped(*args, **kwargs)
    try:
        host, port = _host_port(args, kwargs)
        op = describe.describe_resolve(host, port)
    except Exception:
        return wrapped(*args, **kwargs)
    if op is not None:
        # This frame's callers are the application's coroutines: the stack is right here.
        shield.enforce(op, "asyncio.getaddrinfo")
        _predecided.add(host, port)
    return wrapped(*args, **kwargs)


# -- resolver wrappers: decide, then remember the answer -------------------------------------


def _host_port(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
    host = args[0] if args else kwargs.get("host")
    port = args[1] if len(args) > 1 else kwargs.get("port")
    return host, port


_resolves_allowed = _AllowCache()


def _getaddrinfo(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    shield = _shield()
    if shield is None:
        return wrapped(*args, **kwargs)
    try:
        host, port = _host_port(args, kwargs)
        key = (host, port)
        compiled = shield.compiled
        if _resolves_allowed.owner is compiled and key in _resolves_allowed.entries:
            op = None  # this lookup was allowed before, under this policy
        else:
            op = describe.describe_resolve(host, port)
    except Exception:
        return wrapped(*args, **kwargs)
    if op is not None and not _predecided.take(host, port):
        decision = shield.enforce(op, "socket.getaddrinfo")
        if decision.action == "allow":
            if _resolves_allowed.owner is not compiled:
                _resolves_allowed.reset_for(compiled)
            if _resolves_allowed.usable:
                _resolves_allowed.store(key, op, ())
    _state.expect = ("socket.getaddrinfo", host)
    try:
        infos = wrapped(*args, **kwargs)
    finally:
        _state.expect = None
    describe.remember_results(host, infos)
    return infos


def _by_name(api: str, event: str, kind: str) -> Callable[..., Any]:
    def wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        shield = _shield()
        if shield is None or len(args) != 1 or kwargs:
            return wrapped(*args, **kwargs)
        try:
            op = (
                _reverse_op(args[0]) if kind == "addr" else describe.describe_resolve(args[0], None)
            )
        except Exception:
            return wrapped(*args, **kwargs)
        if op is None:
            return wrapped(*args, **kwargs)
        shield.enforce(op, api)
        _state.expect = (event, args[0])
        try:
            answer = wrapped(*args, **kwargs)
        finally:
            _state.expect = None
        _remember_answer(kind, args[0], answer)
        return answer

    return wrapper


def _remember_answer(kind: str, asked: Any, answer: Any) -> None:
    try:
        if kind == "name":
            describe.remember_names([asked], [answer])
        else:  # (hostname, aliases, addresses)
            hostname, aliases, addresses = answer
            describe.remember_names([asked, hostname, *aliases], list(addresses))
    except (TypeError, ValueError):
        pass


_gethostbyname = _by_name("socket.gethostbyname", "socket.gethostbyname", "name")
_gethostbyname_ex = _by_name("socket.gethostbyname_ex", "socket.gethostbyname", "ex")
_gethostbyaddr = _by_name("socket.gethostbyaddr", "socket.gethostbyaddr", "addr")


PATCHES: tuple[PatchPoint, ...] = (
    PatchPoint("_socket", "getaddrinfo", _getaddrinfo, "network"),
    PatchPoint("_socket", "gethostbyname", _gethostbyname, "network"),
    PatchPoint("_socket", "gethostbyname_ex", _gethostbyname_ex, "network"),
    PatchPoint("_socket", "gethostbyaddr", _gethostbyaddr, "network"),
    # `from _socket import *` copied these into `socket` before we patched `_socket`.
    PatchPoint("socket", "gethostbyname", _gethostbyname, "network"),
    PatchPoint("socket", "gethostbyname_ex", _gethostbyname_ex, "network"),
    PatchPoint("socket", "gethostbyaddr", _gethostbyaddr, "network"),
    PatchPoint("asyncio.base_events", "BaseEventLoop.getaddrinfo", _loop_getaddrinfo, "network"),
)


def on_install(shield: Any) -> None:
    _allowed.reset_for(shield.compiled)


def on_uninstall() -> None:
    describe.memory.clear()


def _after_fork_in_child() -> None:
    _predecided.after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
