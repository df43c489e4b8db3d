"""Interception of the network category: connect, send, bind and resolve.

Where each action is seen:

- `connect`, `connect_ex`, `sendto`, `sendmsg`, `bind` of every socket: the PEP 578 events
  `socket.connect`, `socket.sendto`, `socket.sendmsg`, `socket.bind`. These methods live on
  the C type `_socket.socket`, which cannot be patched, and the events fire for every route
  to them (`socket.socket`, `_socket.socket`, unbound calls, captured aliases, reloads).
  A wrapt layer on `socket.socket` would see exactly the same arguments and only add its
  own cost to the hot path (and then the audit event would still fire), so there is none.
  The events come after C converted the address, with the original object: it is read the
  way C read it (`_net_describe.read_address`), and refused when that is not possible.
- name resolution: wrapt wrappers on `_socket.getaddrinfo` (which `socket.getaddrinfo` calls)
  and on `gethostbyname`, `gethostbyname_ex`, `gethostbyaddr` in both `socket` and
  `_socket`. Each converts the host and port once, as the C function would, decides on the
  converted values (`_gate.judge_call`), calls the original *with them*, and feeds the
  resolver memory with the answer; the events `socket.getaddrinfo`,
  `socket.gethostbyname`, `socket.gethostbyaddr` are the backstop for calls that reach the
  C functions some other way. A repeated getaddrinfo of an address, or of a name the policy
  allowed for any caller, is answered from the resolve memory (`_Resolves`), which the
  wrapper and the audit event (`_repeat_resolve`) both consult.
- asyncio resolves in an executor thread, whose stack shows nothing of the caller. So
  `BaseEventLoop.getaddrinfo` is wrapped: the resolve is decided there, in the loop thread
  with the caller's coroutines on the stack (so `scope` and the code location work), and the
  executor's own getaddrinfo call is marked as already decided (`_predecided`).
- `socket.create_connection`, http.client, urllib, requests, httpx, asyncio connections all
  end in getaddrinfo plus a connect, so they are covered by the above.
"""

from __future__ import annotations

import _socket
import _thread
import sys
import time
from types import FrameType

from appshield._threadstate import thread_state
from appshield.hooks import _deferred, _gate
from appshield.hooks._callers import GrantedCallers, granted_callers, identity
from appshield.hooks._convert import Unreadable, event_bytes_like
from appshield.hooks.network.memory import memory as _memory
from appshield.operations import NetworkOp, Operation
from appshield.patching import HookFamily, PatchPoint, compiled_hook_module

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    from appshield.hooks.network import describe
else:
    # The describers (addresses as C reads them, resolutions, AF_UNIX paths): loaded by the
    # first socket event or resolver call (hooks/_deferred.py), from inside the gate. The
    # resolver memory (`_memory`) is not part of it: the audit hook's fast paths read it.
    describe = _deferred.defer_module(
        globals(),
        "describe",
        _deferred.Part(
            "network",
            ("appshield.hooks.network.describe",),
            ("appshield.hooks.file.describe", "appshield.normalize", "_socket"),
        ),
        "appshield.hooks.network.describe",
    )

__all__ = ["AUDIT_HANDLERS", "FAMILY", "PATCHES", "compiled_hook_parts"]

_state = thread_state
_str_copy = str.__getitem__
_bytes_copy = bytes.__getitem__
_ALL = slice(None)

Described = tuple[Operation, str]


def _shield() -> Any:
    """The shield a wrapper consults (None outside a shield, or in appshield's own work)."""
    return _gate.for_wrapper()


# -- audit events: every socket action ------------------------------------------------------


class _Entries(dict):  # type: ignore[type-arg]
    """One policy's remembered allows: the dict carries the policy that decided them, so a
    decision made under the previous policy (on another thread, while the policy changed)
    can never be stored among the new policy's entries."""

    __slots__ = ("owner",)

    def __init__(self, owner: Any) -> None:
        super().__init__()
        self.owner = owner


class _AllowCache:
    """Actions already decided `allow`: key -> (the operation without names, the remembered
    names it was decided with), for the compiled policy that decided them.

    Connects repeat: a service talks to the same few addresses all day, and building,
    hashing and deciding a `NetworkOp` again costs more than the rest of the hook. Only
    allows are cached (a violation is reported every time), only while the policy's network
    rules ignore the call stack, and only for actions on an address (not a name); the cache
    empties itself when the policy changes. A hit still checks the resolver memory: the
    names of the address must be the very tuple the decision saw (the memory builds a new
    one on every change) and none of them may have expired.

    Keys are built from exact `str`/`bytes`/`int` values only (the converted arguments), so
    a lookup never runs a `__hash__` or `__eq__` that an argument object defines."""

    # Slots: the compiled audit hook reads `owner` and `entries` at their offsets
    # (appshield/_c_audit_hook.c, `compiled_hook_parts`).
    __slots__ = ("entries", "granting", "key", "owner", "usable")

    LIMIT = 4096

    def __init__(self) -> None:
        self.key: Any = None  # the compiled policy the entries belong to
        # `key`, for a policy without grants; None with grants, where an entry is reused
        # only for a caller `granting` proves first-party (hooks/_callers.py)
        self.owner: Any = None
        self.granting: GrantedCallers | None = None
        self.entries: dict[Any, tuple[NetworkOp, tuple[str, ...]]] = _Entries(None)
        self.usable = False

    def reset_for(self, compiled: Any) -> None:
        self.entries = _Entries(compiled)
        self.usable = True  # each operation is asked `stack_matters` before it is stored
        self.key = compiled
        self.granting = granted_callers(compiled)
        self.owner = compiled if self.granting is None else None

    def may_store(self, compiled: Any, op: Operation, frame: FrameType) -> bool:
        """An allow of `op`, decided at `frame`, may be reused: no scoped rule is a
        candidate, and under grants the app's own code asked."""
        if not self.usable:
            return False
        granting = self.granting
        if granting is None:
            return not compiled.stack_matters(op)
        return granting.may_remember((op,), frame)

    def store(self, compiled: Any, key: Any, base: NetworkOp, names: tuple[str, ...]) -> None:
        """Remember an allow `compiled` decided, unless the entries now belong to another
        policy (it changed while this decision was made)."""
        entries = self.entries
        if entries.owner is not compiled:  # type: ignore[attr-defined]
            return
        if len(entries) >= self.LIMIT:
            entries.clear()
        entries[key] = (base, names)


_allowed = _AllowCache()

# The C getters of the fields the C socket methods use, whatever a subclass says. Defined
# here, loaded at start-up, so the repeat check needs no test of whether the network part
# is loaded yet; the describer takes them from here.
raw_family = _socket.socket.family.__get__
raw_type = _socket.socket.type.__get__
_monotonic = time.monotonic


def _socket_event(operation: str, api: str) -> Callable[[tuple[Any, ...]], Any]:
    """The audit handler for one socket action. The first half is the hot path (a repeat of
    an allowed action to an exact `(str, int)` tuple): no Python calls beyond this
    function. The describer's `read_address` is its own variable, filled by its first call
    (which loads the network part, inside the gate)."""
    cache = _allowed
    by_address = _memory._by_address
    read_address: Any = None

    def handler(args: tuple[Any, ...]) -> Described | None:
        nonlocal read_address
        if read_address is None:
            read_address = describe.read_address
        sock = args[0]
        address = args[1]
        try:
            # The C getters, inline: the fields the C socket methods use, whatever a
            # subclass says, at the cost of no Python call.
            family = raw_family(sock)
            sotype = raw_type(sock)
        except TypeError:  # a socket of another `_socket` module instance
            family = describe.family_of(sock)
            sotype = describe.type_of(sock)
        # `type(x) is`, never `x.__class__` (a class can fake that), and only then hashed:
        # an exact tuple of an exact str and int hashes and compares without running any
        # code of the caller's.
        if (
            type(address) is not tuple
            or len(address) != 2
            or type(address[0]) is not str
            or type(address[1]) is not int
        ):
            if address is None:  # sendmsg on a connected socket: its connect was judged
                return None
            if family not in describe.FAMILIES:
                return None  # netlink, packet...: not a network operation
            address = read_address(family, address)  # as C read it, or Unreadable
        key = (operation, family, sotype, address)
        compiled = _gate._shield.compiled
        if cache.owner is compiled:
            hit = cache.entries.get(key)
            if hit is not None:
                # (An op without an address finds no entry: dict.get(None) is None.)
                entry = by_address.get(hit[0].address)  # type: ignore[arg-type]
                if entry is None:
                    if not hit[1]:
                        return None
                elif entry.names is hit[1] and entry.soonest > _monotonic():
                    return None
        return _decide_socket_event(operation, api, key, address, compiled, sock)

    return handler


def _repeat_allowed(operation: str) -> Callable[[tuple[Any, ...]], bool]:
    """The audit hook's check *before* the gate, for one socket action: True only for a
    repeat of an action the active policy allowed, to an exact `(str, int)` address (which
    hashes and compares without running any code of the caller's). Anything else, and any
    doubt, is False: the gate then decides in full. A connect to the same few addresses all
    day costs this one call. Nothing is a repeat before the gate's handler has decided and
    stored one, which loads the network part first."""
    cache = _allowed
    by_address = _memory._by_address
    getframe = sys._getframe
    code_key = identity

    def repeat_allowed(args: tuple[Any, ...]) -> bool:
        address = args[1]
        if type(address) is not tuple or len(address) != 2:
            return False
        host, port = address  # an exact tuple: unpacking runs nothing of the caller's
        if type(host) is not str or type(port) is not int:
            return False
        compiled = _gate._shield.compiled
        if cache.owner is not compiled:
            # Grants: only the app's own code reuses (frame 2: the caller of the socket
            # method; 1 is the audit hook). Its code proven first-party: one lookup.
            granting = cache.granting
            if granting is None or cache.key is not compiled:
                return False
            try:
                caller = getframe(2)
            except ValueError:  # no Python caller (a thread of a C library's)
                return False
            code = caller.f_code
            if granting.proven.get(code_key(code)) is not code and not granting.walk(caller):
                return False
        sock = args[0]
        try:
            key = (operation, raw_family(sock), raw_type(sock), address)
        except TypeError:  # a socket of another `_socket` module instance: the long way
            return False
        hit = cache.entries.get(key)
        if hit is None:
            return False
        # (An op without an address finds no entry: dict.get(None) is None.)
        entry = by_address.get(hit[0].address)  # type: ignore[arg-type]
        if entry is None:
            return not hit[1]
        return entry.names is hit[1] and entry.soonest > _monotonic()

    return repeat_allowed


def _decide_socket_event(
    operation: str, api: str, key: Any, address: Any, compiled: Any, sock: Any
) -> Described | None:
    base = describe.base_op(operation, key[1], key[2], address)
    if base is None:
        return None
    if base.transport == "unix":
        return _decide_unix(base, api, key, address, compiled)
    if base.address in describe.UNSPECIFIED and base.operation != "bind":
        # 0.0.0.0 or :: reaches this host, which address depends on the socket: decided as
        # that address, never cached (so no repeat is let through on the address written).
        op = describe.reach(base, sock)
        return describe.with_names(op, describe.names_of(op)), api
    names = _memory.names_for(base.address) if base.address is not None else ()
    op = describe.with_names(base, names)
    if base.host is not None:  # a name: what it resolves to changes, never cached
        return op, api
    if _allowed.key is not compiled:
        _allowed.reset_for(compiled)
    if (
        _allowed.may_store(compiled, op, sys._getframe(1))
        and compiled.decide(op, None).action == "allow"
    ):
        _allowed.store(compiled, key, base, names)
        return None
    return op, api


def _decide_unix(
    base: NetworkOp, api: str, key: Any, address: Any, compiled: Any
) -> Described | None:
    """An AF_UNIX action: the network operation, and for a path, the file write it is."""
    found = describe.unix_file_op(base)
    if found is None:  # an abstract name: a network operation only
        described: list[Described] = [(base, api)]
    else:
        described = [(base, api), (found, api)]
    violation = _gate.first_violation(described)
    if violation is not None:
        return violation
    # Allowed. Remembered only while nothing but the key decides it again: an absolute,
    # clean path whose symlinks this policy does not need resolved (else a moved symlink
    # must be seen), and neither operation has a scoped rule among its candidates.
    if found is not None and (
        found.resolved is not None
        or found.path != base.path
        or not describe.absolute(address)
        or compiled.stack_matters(found)
    ):
        return None
    if _allowed.key is not compiled:
        _allowed.reset_for(compiled)
    if _allowed.may_store(compiled, base, sys._getframe(1)):
        _allowed.store(compiled, key, base, ())
    return None


_on_connect = _socket_event("connect", "socket.connect")
_on_bind = _socket_event("bind", "socket.bind")
_on_sendto = _socket_event("send", "socket.sendto")
_on_sendmsg = _socket_event("send", "socket.sendmsg")


def _on_getaddrinfo(args: tuple[Any, ...]) -> tuple[NetworkOp, str] | None:
    host = describe.resolve_event_host(args[0], none_ok=True)
    port = describe.resolve_event_port(args[1])
    op = describe.describe_resolve(host, port)
    return None if op is None else (op, "socket.getaddrinfo")


def _on_gethostbyname(args: tuple[Any, ...]) -> tuple[NetworkOp, str] | None:
    op = describe.describe_resolve(describe.resolve_event_host(args[0], none_ok=False), None)
    return None if op is None else (op, "socket.gethostbyname")


def _on_gethostbyaddr(args: tuple[Any, ...]) -> tuple[NetworkOp, str] | None:
    op = _reverse_op(describe.resolve_event_host(args[0], none_ok=False))
    return None if op is None else (op, "socket.gethostbyaddr")


def _reverse_op(ip: str | bytes | None) -> NetworkOp | None:
    text = describe.host_text(ip)
    if not text:
        return None
    address = describe.canonical(text)
    if address is None:  # gethostbyaddr also takes a name: a forward lookup first
        return describe.describe_resolve(text, None)
    return NetworkOp("resolve", None, address, None, "tcp", describe.memory.names_for(address))


def _repeat_resolve(args: tuple[Any, ...]) -> bool:
    """The audit hook's check before the gate for `socket.getaddrinfo`: True only for a
    lookup the active policy's resolve memory holds (`_Resolves`), with an exact host and
    port. The event carries the very objects C received, so an exact str or bytes here is
    what C looked up; the memory holds only what deciding these two values let through (an
    address, or a name allowed for any caller), so the event decides nothing new. This is
    also what lets the wrapper's repeat call C without a token."""
    host = args[0]
    port = args[1]
    kind = type(host)
    port_kind = type(port)
    if (kind is str or kind is bytes) and (
        port_kind is int or port_kind is str or port_kind is bytes or port is None
    ):
        memory = _resolves
        active = _gate._shield  # (None if another thread uninstalled meanwhile)
        return (
            active is not None and memory.key is active.compiled and (host, port) in memory.entries
        )
    return False


def compiled_hook_parts() -> dict[str, Any]:
    """What the compiled audit hook reads to answer `_repeat_allowed` and `_repeat_resolve`
    itself (appshield/_c_audit_hook.c; appshield/runtime.py hands it over): this module's
    globals (`_resolves` is replaced when the policy changes), the allowed socket actions
    (`_allowed`, never replaced), the resolver memory's names by address, the classes whose
    slots it reads, where a `NetworkOp` keeps its address, and the socket's own C fields."""
    from appshield.hooks.network import memory

    return {
        "network_globals": globals(),
        "allow_cache_type": _AllowCache,
        "allowed_actions": _allowed,
        "names_by_address": memory.memory._by_address,
        "names_entry_type": memory._Entry,
        "resolves_type": _Resolves,
        "network_op_type": NetworkOp,
        "op_address_index": NetworkOp._fields.index("address"),
        "socket_family": vars(_socket.socket)["family"],
        "socket_type": vars(_socket.socket)["type"],
        "predecided": _predecided,
    }


# Checked by the audit hook before the gate (see `_repeat_allowed`, `_repeat_resolve`).
FAST_PATHS: Mapping[str, Callable[[tuple[Any, ...]], bool]] = {
    "socket.getaddrinfo": _repeat_resolve,
    "socket.connect": _repeat_allowed("connect"),
    "socket.bind": _repeat_allowed("bind"),
    "socket.sendto": _repeat_allowed("send"),
    "socket.sendmsg": _repeat_allowed("send"),
}

AUDIT_HANDLERS: Mapping[str, Callable[[tuple[Any, ...]], Any]] = {
    "socket.connect": _on_connect,
    "socket.bind": _on_bind,
    "socket.sendto": _on_sendto,
    "socket.sendmsg": _on_sendmsg,
    "socket.getaddrinfo": _on_getaddrinfo,
    "socket.gethostbyname": _on_gethostbyname,
    "socket.gethostbyaddr": _on_gethostbyaddr,
}


# -- converting a resolver call's arguments once ---------------------------------------------

# A type the C function refuses: it raises its own error before any lookup (and before its
# audit event), so the call is passed on untouched and nothing is decided.
_REFUSED: Any = object()


def _plain_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments with exact `str` names. A name can be a `str` subclass whose
    `__hash__`/`__eq__` answer differently to appshield's lookup and to C's: both look up
    the same exact names instead. Iterating the dict runs no code of the keys'."""
    plain: dict[str, Any] = {}
    for name, value in kwargs.items():
        if type(name) is not str:
            name = _str_copy(name, _ALL)
        if name in plain:
            raise Unreadable("a keyword argument given twice")
        plain[name] = value
    return plain


def _argument(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str) -> Any:
    """Positional `index` or keyword `name`; `_REFUSED` when the call has neither (the C
    function raises its own TypeError)."""
    if len(args) > index:
        return args[index]
    return kwargs.get(name, _REFUSED)


def _replace(
    args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str, value: Any
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if len(args) > index:
        return (*args[:index], value, *args[index + 1 :]), kwargs
    kwargs[name] = value
    return args, kwargs


def _resolver_host(value: Any) -> Any:
    """A getaddrinfo host, converted once as `socket_getaddrinfo` reads it: None, a str (C
    encodes any str with the "idna" codec, so an exact copy reads the same), bytes (its own
    bytes); `_REFUSED` for anything else (a bytearray too)."""
    kind = type(value)
    if kind is str or kind is bytes or value is None:
        return value
    if issubclass(kind, str):
        return _str_copy(value, _ALL)
    if issubclass(kind, bytes):
        return _bytes_copy(value, _ALL)
    return _REFUSED


def _resolver_port(value: Any) -> Any:
    """A getaddrinfo port as C reads it: an exact int (not a subclass: `PyLong_CheckExact`),
    a str or bytes (their own data), None; `_REFUSED` for anything else."""
    if type(value) is int:
        return value
    return _resolver_host(value)  # str, bytes and None read as a host's are


def _named_host(value: Any) -> Any:
    """A gethostbyname(_ex)/gethostbyaddr argument as `PyArg_ParseTuple("et")` reads it: a
    str, or the bytes of a bytes or bytearray (C copies them; handing it the copy is the
    same); `_REFUSED` for anything else."""
    kind = type(value)
    if kind is str or kind is bytes:
        return value
    if issubclass(kind, str):
        return _str_copy(value, _ALL)
    found = event_bytes_like(value)
    return _REFUSED if found is None else found


def _fresh(host: Any) -> tuple[Any, Any]:
    """(the object handed to the C resolver in place of `host`, the `expect` token naming
    it). The object is an exact copy that is a new object, so the token is something no
    other code holds (a caller's `"localhost"` is an interned string, shared by every module
    that spells it); C reads an exact copy exactly as it reads the original (same errors,
    same exception attributes). A name of fewer than two characters cannot be copied into a
    new object (CPython shares those): it gets no token, and its audit event is simply
    decided once more."""
    if host is None or len(host) < 2:
        return host, None
    copy = (host + (b"." if type(host) is bytes else "."))[:-1]
    return copy, copy


def _expecting(event: str, token: Any, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`call(...)`, whose audit event `event` carrying `token` was decided already. The
    previous token is put back after, not cleared: a wrapper that ran meanwhile (from a
    signal handler) must not drop the pending token of the call it interrupted."""
    if token is None:
        return call(*args, **kwargs)
    previous = _state.expect
    _state.expect = (event, token)
    try:
        return call(*args, **kwargs)
    finally:
        _state.expect = previous


# -- asyncio: decide in the loop thread, mark the executor's call ----------------------------


class _Predecided:
    """Resolutions already decided in an event loop thread, waiting for the executor thread
    that performs them. Keyed on the converted (host, port), exact types only; entries
    expire so that a cancelled lookup cannot leave a pass lying around for long, and only
    executor threads consume them. The lock is re-entrant: a signal handler that resolves
    while this thread holds it must not deadlock."""

    LIFETIME = 30.0
    LIMIT = 1024

    def __init__(self) -> None:
        self._pending: dict[tuple[Any, Any], list[float]] = {}
        self._lock = _thread.RLock()

    def add(self, host: Any, port: Any) -> None:
        deadline = time.monotonic() + self.LIFETIME
        with self._lock:
            if len(self._pending) >= self.LIMIT:
                self._pending.clear()
            self._pending.setdefault((host, port), []).append(deadline)

    def take(self, host: Any, port: Any) -> bool:
        if not self._pending:
            return False
        # Not imported at start-up: no event loop's executor thread exists before it is.
        threading = sys.modules.get("threading")
        if threading is None or not threading.current_thread().name.startswith("asyncio"):
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
        self._lock = _thread.RLock()
        self._pending = {}


_predecided = _Predecided()


def _prepare_loop(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[list[Described], tuple[Any, ...]]:
    # BaseEventLoop.getaddrinfo(host, port, *, family=0, type=0, proto=0, flags=0): it
    # hands host and port to socket.getaddrinfo in an executor, which reads them as
    # `_resolver_host`/`_resolver_port` do.
    kwargs = _plain_kwargs(kwargs) if kwargs else {}
    host = _resolver_host(_argument(args, kwargs, 0, "host"))
    port = _resolver_port(_argument(args, kwargs, 1, "port"))
    if host is _REFUSED or port is _REFUSED:
        return [], (None, args, kwargs)  # the executor's getaddrinfo raises its own error
    args, kwargs = _replace(args, kwargs, 0, "host", host)
    args, kwargs = _replace(args, kwargs, 1, "port", port)
    op = describe.describe_resolve(host, port)
    if op is None:
        return [], (None, args, kwargs)
    return [(op, "asyncio.getaddrinfo")], ((host, port), args, kwargs)


def _loop_getaddrinfo(
    wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    shield = _shield()
    if shield is None:
        return wrapped(*args, **kwargs)
    # Decided here: this frame's callers are the application's coroutines.
    decided, args, kwargs = _gate.judge_call(
        shield, "network", "asyncio.getaddrinfo", _prepare_loop, args, kwargs
    )
    if decided is not None:
        # Only once the decision let it through: a denied lookup leaves no pass behind.
        _predecided.add(*decided)
    return wrapped(*args, **kwargs)


# -- resolver wrappers: convert once, decide, then remember the answer -----------------------


class _Resolves:
    """Lookups that need no decision again under one compiled policy: `(host, port)` ->
    the `resolve` operation the policy allowed, or None for a host that is an address.

    Two kinds of entry:

    - a name the policy allowed, decided again purely (no scoped rule a candidate): only
      under a policy without grants, where no caller can be decided otherwise;
    - an address (`"127.0.0.1"`, `b"::1"`, `""`, `"<broadcast>"`): an address is not
      looked up, so `describe_resolve` makes no operation and nothing is decided (the
      connect that follows is, with every rule on addresses, CIDRs and the names the
      resolver memory holds). What decides that is a pure function of the two values,
      the same for any policy and any caller: remembered under grants too.

    Keys are exact `str`/`bytes` hosts with exact `int`/`str`/`bytes`/None ports, taken
    from the caller's own arguments only when those are already exact (a subclass, even
    converted, is never remembered), so a lookup runs no `__hash__` or `__eq__` of the
    caller's. Family, type, protocol and flags are not in the key: no decision reads them.
    Bounded; replaced whole, never emptied in place, when the policy changes, so that a
    lookup decided under the old policy on another thread lands in the old memory."""

    # The compiled audit hook reads `key` and `entries` at their offsets.
    __slots__ = ("entries", "granting", "key", "usable")

    LIMIT = 4096

    def __init__(self, compiled: Any) -> None:
        self.key: Any = compiled  # the compiled policy the entries belong to
        self.usable = compiled is not None
        self.granting = granted_callers(compiled)
        self.entries: dict[tuple[Any, Any], NetworkOp | None] = {}

    def store(self, key: tuple[Any, Any], op: NetworkOp | None) -> None:
        entries = self.entries
        if len(entries) >= self.LIMIT:
            entries.clear()
        entries[key] = op


_resolves = _Resolves(None)


def _resolves_for(compiled: Any) -> _Resolves:
    global _resolves
    memory = _resolves
    if memory.key is not compiled:
        memory = _resolves = _Resolves(compiled)
    return memory


def _exact_key(host: Any, port: Any) -> tuple[Any, Any] | None:
    """`(host, port)` when both are exact built-in types a memory may hold, else None."""
    kind = type(host)
    port_kind = type(port)
    if (kind is str or kind is bytes) and (
        port_kind is int or port_kind is str or port_kind is bytes or port is None
    ):
        return (host, port)
    return None


def _prepare_getaddrinfo(
    args: tuple[Any, ...], kwargs: dict[str, Any], compiled: Any
) -> tuple[list[Described], tuple[Any, ...]]:
    # getaddrinfo(host, port, family=0, type=0, proto=0, flags=0). Only host and port
    # describe the lookup; the others are ints C converts itself (their `__index__` runs
    # once, as without appshield, and cannot reach the token made here).
    kwargs = _plain_kwargs(kwargs) if kwargs else {}
    given_host = _argument(args, kwargs, 0, "host")
    given_port = _argument(args, kwargs, 1, "port")
    host = _resolver_host(given_host)
    port = _resolver_port(given_port)
    if host is _REFUSED or port is _REFUSED:
        return [], (None, _REFUSED, None, args, kwargs)
    passed, token = _fresh(host)
    args, kwargs = _replace(args, kwargs, 0, "host", passed)
    args, kwargs = _replace(args, kwargs, 1, "port", port)
    key = (host, port)
    predecided = _predecided.take(host, port)
    if predecided or (_resolves.key is compiled and key in _resolves.entries):
        return [], (token, host, None, args, kwargs)  # decided before (loop, or remembered)
    op = describe.describe_resolve(host, port)
    # Remembered (an address needs no decision; a name, if allowed) only for the caller's
    # own exact values, never for a subclass's converted copy.
    exact = _exact_key(given_host, given_port)
    remember = None if exact is None else (exact, op)
    if op is None:
        return [], (token, host, remember, args, kwargs)
    return [(op, "socket.getaddrinfo")], (token, host, remember, args, kwargs)


def _getaddrinfo(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    active = _gate._shield
    if active is None:
        return wrapped(*args, **kwargs)
    if not kwargs and len(args) >= 2:
        # The hot path: a lookup this policy allowed before, or one of an address, with an
        # exact host and port (the key is hashed and compared without running any code of
        # the caller's). Nothing here can fail but the interpreter itself (a signal's
        # exception, the recursion limit), and then the lookup does not happen either.
        # Before `_shield()`: in appshield's own work (`busy`) the call goes through
        # unjudged all the same, and only a name's answer is then not remembered.
        host = args[0]
        port = args[1]
        kind = type(host)
        port_kind = type(port)
        memory = _resolves
        if (
            memory.key is active.compiled
            and (kind is str or kind is bytes)
            and (port_kind is int or port_kind is str or port_kind is bytes or port is None)
            and not _predecided._pending  # an executor thread's pass comes first
        ):
            found = memory.entries.get((host, port), _REFUSED)
            if found is not _REFUSED:
                # Called with the caller's own exact values: the audit event sees the same
                # key in the same memory (`_repeat_resolve`) and lets it through, so no
                # token is needed to tell it this call was decided.
                infos = wrapped(*args)
                if found is not None and _shield() is not None:
                    describe.remember_results(host, infos)  # a name's answer
                return infos
    shield = _shield()
    if shield is None:
        return wrapped(*args, **kwargs)
    compiled = shield.compiled
    # A str host is encoded with the idna codec (by C, and by the conversion here), whose
    # first use imports modules: an import denied there is reported as part of this lookup
    # (`thread_state.attempting`). The positional arguments as given first (read from the
    # tuple: no code of the caller's runs, unlike a lookup in its kwargs), then as converted.
    previous_attempt = _state.attempting
    _state.attempting = (
        "socket.getaddrinfo",
        args[0] if args else None,
        args[1] if len(args) > 1 else None,
    )
    try:
        token, host, decided, args, kwargs = _gate.judge_call(
            shield, "network", "socket.getaddrinfo", _prepare_getaddrinfo, args, kwargs, compiled
        )
        if host is _REFUSED:
            return wrapped(*args, **kwargs)  # C raises its own error, before any lookup
        if decided is not None:
            _remember_resolve(compiled, *decided)
        _state.attempting = ("socket.getaddrinfo", host, _argument(args, kwargs, 1, "port"))
        infos = _expecting("socket.getaddrinfo", token, wrapped, *args, **kwargs)
    finally:
        _state.attempting = previous_attempt
    describe.remember_results(host, infos)
    return infos


def _remember_resolve(compiled: Any, key: tuple[Any, Any], op: NetworkOp | None) -> None:
    """Remember a lookup the gate let through. An address (`op` None) needed no decision;
    a name only if it was an allow (not a violation that monitor mode let through): decided
    again, purely, which a stack-free policy without grants allows."""
    memory = _resolves_for(compiled)
    if not memory.usable:
        return
    if op is None:
        memory.store(key, None)
    elif (
        memory.granting is None  # under grants a name's lookup is not remembered
        and not compiled.stack_matters(op)
        and compiled.decide(op, None).action == "allow"
    ):
        memory.store(key, op)


def _prepare_by_name(
    name: Any, api: str, kind: str
) -> tuple[list[Described], tuple[Any, Any, Any]]:
    host = _named_host(name)
    if host is _REFUSED:
        return [], (_REFUSED, None, None)
    op = _reverse_op(host) if kind == "addr" else describe.describe_resolve(host, None)
    return ([] if op is None else [(op, api)]), (host, *_fresh(host))


def _by_name(api: str, event: str, kind: str) -> Callable[..., Any]:
    def wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        shield = _shield()
        if shield is None or len(args) != 1 or kwargs:
            return wrapped(*args, **kwargs)  # no such signature: C raises its TypeError
        previous = _state.attempting
        _state.attempting = (api, args[0], None)  # as in _getaddrinfo
        try:
            host, passed, token = _gate.judge_call(
                shield, "network", api, _prepare_by_name, args[0], api, kind
            )
            if host is _REFUSED:
                return wrapped(*args)
            _state.attempting = (api, host, None)
            answer = _expecting(event, token, wrapped, passed)
        finally:
            _state.attempting = previous
        _remember_answer(kind, host, answer)
        return answer

    return wrapper


def _remember_answer(kind: str, asked: Any, answer: Any) -> None:
    # The answer comes from the C resolver: exact str/list/tuple.
    if kind == "name":
        describe.remember_names([asked], [answer])
    else:  # (hostname, aliases, addresses)
        hostname, aliases, addresses = answer
        describe.remember_names([asked, hostname, *aliases], list(addresses))


_gethostbyname = _by_name("socket.gethostbyname", "socket.gethostbyname", "name")
_gethostbyname_ex = _by_name("socket.gethostbyname_ex", "socket.gethostbyname", "ex")
_gethostbyaddr = _by_name("socket.gethostbyaddr", "socket.gethostbyaddr", "addr")


def _getaddrinfo_patch() -> Any:
    """The wrapper patched onto `_socket.getaddrinfo`: `_getaddrinfo`, or where the compiled
    audit hook was built, its C front (`resolve_repeat`), which takes the wrapper's hot path
    for a remembered address itself and calls `_getaddrinfo` for everything else. The front
    answers nothing until the compiled hook is installed with this module's memories (never
    under `APPSHIELD_PURE_PYTHON=1`): the wrapt layer and a Python call were about 4,900 of
    the 5,000 instructions the shield added to a `create_connection` to an address."""
    compiled = compiled_hook_module()
    return _getaddrinfo if compiled is None else compiled.resolve_repeat(_getaddrinfo)


PATCHES: tuple[PatchPoint, ...] = (
    PatchPoint("_socket", "getaddrinfo", _getaddrinfo_patch(), "network"),
    PatchPoint("_socket", "gethostbyname", _gethostbyname, "network"),
    PatchPoint("_socket", "gethostbyname_ex", _gethostbyname_ex, "network"),
    PatchPoint("_socket", "gethostbyaddr", _gethostbyaddr, "network"),
    # `from _socket import *` copied these into `socket` before we patched `_socket`.
    PatchPoint("socket", "gethostbyname", _gethostbyname, "network"),
    PatchPoint("socket", "gethostbyname_ex", _gethostbyname_ex, "network"),
    PatchPoint("socket", "gethostbyaddr", _gethostbyaddr, "network"),
    PatchPoint("asyncio.base_events", "BaseEventLoop.getaddrinfo", _loop_getaddrinfo, "network"),
)


def _on_install(shield: Any) -> None:
    _allowed.reset_for(shield.compiled)


def _on_uninstall() -> None:
    _memory.clear()


FAMILY = HookFamily(
    "network",
    PATCHES,
    AUDIT_HANDLERS,
    FAST_PATHS,
    _on_install,
    _on_uninstall,
    (_predecided.after_fork, _memory.after_fork),
)
