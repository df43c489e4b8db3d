"""Turn a socket and an address (as the C socket layer received them) into a `NetworkOp`.

**Reading what C read.** The socket audit events (`socket.connect`, `sendto`, `sendmsg`,
`bind`) are raised *after* CPython converted the address itself (`getsockaddrarg`), with the
original object. So the address is read here the way that C code read it, never through
anything the object defines (see `appshield.hooks._convert`):

- the address tuple: an exact tuple, or a tuple subclass read through `tuple` (C reads the
  items directly, whatever `__getitem__`, `__len__` or `__iter__` say);
- the host: an exact `str`, or `bytes` (or a subclass, whose bytes C reads directly). A `str`
  *subclass* is refused: C encodes it with the "idna" codec, whose Python code calls the
  object's own `encode` and `__len__`, so what C used cannot be known (and checking that the
  class overrides nothing proves nothing: another thread can swap a method between C's call
  and the check). A `bytearray` is refused too: C read its buffer, which another thread or a
  signal handler can have changed since;
- the port: `_read_port` (an exact int, an `int` subclass read through `int`, or an object
  whose `__index__` is C code of an immutable type, such as a numpy integer, called again);
- an AF_UNIX path: `str` (or a subclass, which C encodes in C), `bytes` (a subclass only
  before 3.12, where a Python class cannot override the buffer C reads it through).

**What is reached, not what is written.** The operation describes where the kernel sends:

- a connect or send to an unspecified address (`0.0.0.0`, `::`, `::ffff:0.0.0.0`, `""`, `0`)
  reaches this host (`normalize.reached_address`): the address becomes the one reached (the
  socket's own bound address, else the loopback), and the address as written is kept in
  `NetworkOp.requested` for deny rules and the report. Such an operation depends on the
  socket, so it is never memoised or remembered as allowed;
- a `sendto`/`sendmsg` with an address on a stream socket can only open a connection
  (MSG_FASTOPEN; without it the kernel ignores the address or fails): it is a `connect`;
- a SOCK_RAW (or SOCK_PACKET) internet socket, and any AF_PACKET socket, writes its
  destination into the packet itself: transport `raw`, judged without a port, allowed only
  by a rule that names `raw`;
- an AF_UNIX path (not an abstract name, which is no file) is also a file `write`
  (`unix_file_op`), so file rules that deny a folder deny the sockets in it.

Anything else raises `Unreadable`; the gate reports it and denies the operation. The values
read are exact `str`/`bytes`/`int`, so every memo below hashes and compares only those: an
object that lies in `__hash__` or `__eq__` never reaches a dict.

**Speed.** This runs on every connect the hot path in `network.py` has not seen, so it is
built for the common case: the same socket kind and address seen again is a dict lookup
(`_ops`), and only the resolver memory is consulted afresh (names expire).
"""

from __future__ import annotations

import _socket
import os
import sys
from types import GetSetDescriptorType, MemberDescriptorType, MethodDescriptorType

from appshield.hooks import _gate
from appshield.hooks._convert import Unreadable, event_index, event_tuple, type_attribute
from appshield.hooks.file.describe import file_op
from appshield.hooks.network import raw_family, raw_type  # the C getters, defined once
from appshield.hooks.network.memory import memory as memory  # also network.py's, through here
from appshield.normalize import canonical_address, normalize_host, reached_address
from appshield.operations import FileOp, NetworkOp

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "FAMILIES",
    "UNSPECIFIED",
    "OwnBytes",
    "absolute",
    "address_op",
    "base_op",
    "canonical",
    "describe_resolve",
    "family_of",
    "host_text",
    "names_of",
    "raw_family",
    "raw_type",
    "reach",
    "read_address",
    "remember_results",
    "resolve_event_host",
    "resolve_event_port",
    "type_of",
    "unix_file_op",
    "with_names",
]

# From `_socket`: the plain ints, without importing `socket` (enums, selectors) at start-up.
_AF_INET = _socket.AF_INET
_AF_INET6 = _socket.AF_INET6
_AF_UNIX = getattr(_socket, "AF_UNIX", -1)
_AF_PACKET = getattr(_socket, "AF_PACKET", -2)
_SOCK_STREAM = _socket.SOCK_STREAM
# Socket types whose packets carry their own destination: SOCK_RAW, and Linux's obsolete
# SOCK_PACKET (10; `socket(AF_INET, SOCK_PACKET)` is a packet socket that Python still
# reports as AF_INET), which `_socket` does not name.
_RAW_TYPES = frozenset((_socket.SOCK_RAW, 10))
# The families whose addresses are network operations; any other (netlink...) is not.
FAMILIES = frozenset((_AF_INET, _AF_INET6, _AF_UNIX, _AF_PACKET))
# Canonical unspecified addresses: a connect or send to one reaches this host.
UNSPECIFIED = frozenset(("0.0.0.0", "::"))
# Read the raw int attributes of the C socket type: `socket.socket.family` is a Python
# property that builds an IntEnum on every access, several times slower (and a subclass
# could override it; the C getter reads the field the C methods use).
_raw_family, _raw_type = raw_family, raw_type
_getsockname = _socket.socket.getsockname
# The C resolver, captured before any patching: appshield's own lookups go straight to it
# (through `_gate.own_call`), never through the wrapper that judges the app's lookups.
_raw_getaddrinfo = _socket.getaddrinfo

_str_copy = str.__getitem__
_bytes_copy = bytes.__getitem__
_ALL = slice(None)
_mro_of = type.__dict__["__mro__"].__get__
_dict_of = type.__dict__["__dict__"].__get__
_flags_of = type.__dict__["__flags__"].__get__
_IMMUTABLE_TYPE = 1 << 8  # Py_TPFLAGS_IMMUTABLETYPE (3.10+): no attribute of it can be set
# 3.12+: a Python class can implement the buffer protocol (`__buffer__`), through which C
# reads an AF_UNIX path.
_PYTHON_BUFFERS = sys.version_info >= (3, 12)
# What `family` and `type` are on the C socket type (members; a getset in some builds).
_C_FIELDS = (MemberDescriptorType, GetSetDescriptorType)


class OwnBytes(bytes):
    """A host name appshield hands to the resolver itself: always a new object (a plain
    `bytes` copy of a one-letter name is shared by everyone), so the audit hook can let
    exactly this call through by identity. It overrides nothing: C reads a `bytes`
    subclass's own bytes."""

    __slots__ = ()


def _socket_field(sock: Any, name: str) -> int:
    """`sock.family` / `sock.type` as the C socket methods read them."""
    # A socket of another `_socket` module instance: on 3.12+ popping `_socket` from
    # sys.modules and importing it again creates a new socket type, which our descriptor
    # does not accept. Its own member descriptor is found in its MRO, on the first class
    # that is immutable (C code made it: every class Python code makes can be changed, and
    # a Python subclass's property or `__slots__` member of that name is skipped, as the C
    # methods skip it) and that defines the member itself.
    for base in _mro_of(type(sock)):
        if not _flags_of(base) & _IMMUTABLE_TYPE:
            continue
        found = _dict_of(base).get(name)
        if type(found) in _C_FIELDS and found.__objclass__ is base and found.__name__ == name:
            value = found.__get__(sock, base)
            if type(value) is int:
                return value
        break
    raise Unreadable(f"a socket of type {type(sock).__qualname__} cannot be read safely")


def _c_method(sock: Any, name: str) -> Any:
    """The C method `name` of a socket of another `_socket` module instance, found the way
    `_socket_field` finds its fields (on the first immutable class of its MRO)."""
    for base in _mro_of(type(sock)):
        if not _flags_of(base) & _IMMUTABLE_TYPE:
            continue
        found = _dict_of(base).get(name)
        if type(found) is MethodDescriptorType and found.__objclass__ is base:
            return found
        break
    raise Unreadable(f"a socket of type {type(sock).__qualname__} cannot be read safely")


def family_of(sock: Any) -> int:
    try:
        return _raw_family(sock)  # type: ignore[no-any-return]
    except TypeError:
        return _socket_field(sock, "family")


def type_of(sock: Any) -> int:
    try:
        return _raw_type(sock)  # type: ignore[no-any-return]
    except TypeError:
        return _socket_field(sock, "type")


_family_of = family_of
_type_of = type_of


# -- reading an address as the C socket layer read it ----------------------------------------


def _read_host(value: Any) -> str | bytes:
    """An AF_INET/AF_INET6 host as `idna_converter` read it (see the module docstring)."""
    kind = type(value)
    if kind is str or kind is bytes:
        return value  # type: ignore[no-any-return]
    if issubclass(kind, bytes):
        return _bytes_copy(value, _ALL)
    if issubclass(kind, str):
        raise Unreadable(
            "a host of a str subclass is encoded by its own Python code (the idna codec): "
            "pass str(host)"
        )
    if issubclass(kind, bytearray):
        raise Unreadable("a bytearray host may have changed since C read it: pass bytes(host)")
    raise Unreadable(f"a host of type {kind.__qualname__} cannot be read safely")


def _read_port(value: Any) -> int:
    """A port as `PyArg_ParseTuple("i")` read it: exact, an int subclass's own value, or
    the object's `__index__` called again when that gives what C got."""
    kind = type(value)
    if kind is int:
        return value  # type: ignore[no-any-return]
    if not issubclass(kind, int):
        # C called its `__index__` once. Calling it again is faithful only if nothing can
        # have changed in between: the method is C code (`event_index` checks), no class on
        # the way can be changed (another thread could swap `__index__` between C's call and
        # this one), and the object has no item assignment (a 0-d numpy array does).
        for base in _mro_of(kind):
            if not _flags_of(base) & _IMMUTABLE_TYPE:
                raise Unreadable(f"a port of type {kind.__qualname__} cannot be read safely")
        if type_attribute(kind, "__setitem__") is not None:
            raise Unreadable(f"a port of type {kind.__qualname__} is mutable")
    return event_index(value)


def _read_unix_path(value: Any) -> str | bytes:
    kind = type(value)
    if kind is str or kind is bytes:
        return value  # type: ignore[no-any-return]
    if issubclass(kind, str):
        return _str_copy(value, _ALL)  # C encodes it in C
    if issubclass(kind, bytes) and not _PYTHON_BUFFERS:
        return _bytes_copy(value, _ALL)
    raise Unreadable(f"an AF_UNIX address of type {kind.__qualname__} cannot be read safely")


def read_address(family: int, address: Any) -> Any:
    """The address of a socket event, as C read it, built from exact types only: `(host,
    port)` for AF_INET/AF_INET6 (an IPv6 flowinfo and scope id do not change what is
    reached, and are not read), the path for AF_UNIX, `(interface,)` for AF_PACKET (only
    named in the report: a packet socket is judged as `raw` whatever it names). Only for
    `FAMILIES`."""
    if family == _AF_UNIX:
        return _read_unix_path(address)
    if family == _AF_PACKET:
        items = event_tuple(address)
        name = items[0] if items and type(items[0]) is str else ""
        return (name,)
    items = event_tuple(address)
    if items is None or not 2 <= len(items) <= 4:
        # C accepted it, so this cannot happen; if it does, nothing is guessed.
        raise Unreadable("an address that is not a tuple")
    return (_read_host(items[0]), _read_port(items[1]))


# -- operations ------------------------------------------------------------------------------

_CACHE_LIMIT = 4096
_canonical: dict[str, str | None] = {}
_ops: dict[tuple[Any, ...], NetworkOp | None] = {}
_named: dict[tuple[NetworkOp, tuple[str, ...]], NetworkOp] = {}


def canonical(text: str) -> str | None:
    """`normalize.canonical_address`, memoised: connects repeat the same few addresses."""
    found = _canonical.get(text, _canonical)
    if found is not _canonical:
        return found  # type: ignore[return-value]
    value = canonical_address(text)
    if len(_canonical) >= _CACHE_LIMIT:
        _canonical.clear()
    _canonical[text] = value
    return value


def host_text(host: Any) -> str | None:
    """An exact `str` or `bytes` host as text (None for anything else)."""
    kind = type(host)
    if kind is str:
        return host  # type: ignore[no-any-return]
    if kind is bytes:
        return host.decode("ascii", "replace")  # type: ignore[no-any-return]
    return None


def address_op(operation: str, sock: Any, address: Any) -> NetworkOp | None:
    """The operation for `connect`/`send`/`bind` of `sock` to `address`, names included.
    None when the address is not an internet or unix address (netlink, packet...)."""
    family = _family_of(sock)
    if family not in FAMILIES:
        return None
    base = base_op(operation, family, _type_of(sock), read_address(family, address))
    if base is None or base.address is None:
        return base
    if base.address in UNSPECIFIED and base.operation != "bind":
        base = reach(base, sock)
    return with_names(base, names_of(base))


def names_of(op: NetworkOp) -> tuple[str, ...]:
    """The remembered names of the op's address, and of the address as written (a name that
    resolved to `0.0.0.0` leads to the loopback too)."""
    names = memory.names_for(op.address) if op.address is not None else ()
    if op.requested is not None:
        more = memory.names_for(op.requested)
        if more:
            names = tuple(dict.fromkeys((*names, *more)))
    return names


def reach(base: NetworkOp, sock: Any) -> NetworkOp:
    """`base`, to an unspecified address, as the address it reaches from `sock` (see
    `normalize.reached_address`); the address written is kept as `requested`. Reads the
    socket's own bound address: the result depends on the socket, so it is never memoised."""
    reached = reached_address(base.address, _bound_address(sock))  # type: ignore[arg-type]
    if reached is None:
        return base
    return base._replace(address=reached, requested=base.address)


def _bound_address(sock: Any) -> str | None:
    """The canonical local address `sock` is bound to (None when unknown). Read through the
    C method of the socket type, whatever a subclass defines."""
    try:
        try:
            local = _getsockname(sock)
        except TypeError:  # a socket of another `_socket` module instance
            local = _c_method(sock, "getsockname")(sock)
    except OSError:
        # No readable address (a closed descriptor): the connect fails the same way and
        # reaches nothing; judged as an unbound socket, which reaches the loopback.
        return None
    if type(local) is not tuple or not local or type(local[0]) is not str:
        return None
    return canonical(local[0])


def base_op(operation: str, family: int, sotype: int, address: Any) -> NetworkOp | None:
    """The operation without remembered names, memoised on the address as `read_address`
    made it (exact types only). Ops for names are not memoised: what a name resolves to
    changes."""
    key = (operation, family, sotype, address)
    base = _ops.get(key, _ops)
    if base is _ops:
        base = _build(operation, family, sotype, address)
        # A relative unix path is made absolute from the current folder, which changes.
        if (base is None or base.host is None) and (family != _AF_UNIX or absolute(address)):
            if len(_ops) >= _CACHE_LIMIT:
                _ops.clear()
            _ops[key] = base
    return base  # type: ignore[return-value]


def absolute(path: str | bytes) -> bool:
    """An AF_UNIX path that does not depend on the current folder (absolute, abstract, or
    empty)."""
    return path[:1] in ("/", "\0", "") if type(path) is str else path[:1] in (b"/", b"\0", b"")


def with_names(base: NetworkOp, names: tuple[str, ...]) -> NetworkOp:
    """`base` with the remembered `names` of its address (memoised)."""
    if not names:
        return base
    return _with_names(base, names)


def _with_names(base: NetworkOp, names: tuple[str, ...]) -> NetworkOp:
    if base.host is not None:
        names = tuple(n for n in names if n != base.host)
        if not names:
            return base
    key = (base, names)
    op = _named.get(key)
    if op is None:
        op = NetworkOp(
            base.operation, base.host, base.address, base.port, base.transport, names, base.path
        )
        if len(_named) >= _CACHE_LIMIT:
            _named.clear()
        _named[key] = op
    return op


def _build(operation: str, family: int, sotype: int, address: Any) -> NetworkOp | None:
    if family == _AF_UNIX:
        return _unix_op(operation, address)
    if family == _AF_PACKET:
        # Frames built by the app, for any host on the link: nothing here says where to.
        name = address[0] if type(address) is tuple and address else ""
        where = name if type(name) is str and name else None
        return NetworkOp(operation, None, None, None, "raw", (), where)  # type: ignore[arg-type]
    if family != _AF_INET and family != _AF_INET6:
        return None
    host, port = address
    if sotype == _SOCK_STREAM:
        transport = "tcp"
        if operation == "send":
            # A stream socket's sendto/sendmsg with an address connects (MSG_FASTOPEN; the
            # audit event does not carry the flags, and without them the kernel ignores the
            # address of a connected socket or fails on an unconnected one).
            operation = "connect"
    elif sotype in _RAW_TYPES:
        transport = "raw"
        port = None  # a raw socket has no port: the protocol is in the packet
    else:
        transport = "udp"
    text = host_text(host)
    if text is None:  # read_address makes only str and bytes: never reached
        raise Unreadable("a host that is neither str nor bytes")
    special = _special_host(text, family)
    literal = special or canonical(text)
    if literal is not None:
        return NetworkOp(operation, None, literal, port, transport)  # type: ignore[arg-type]
    name = normalize_host(text)
    resolved = _resolve_for_socket(host, name, family)
    return NetworkOp(operation, name, resolved, port, transport)  # type: ignore[arg-type]


def _special_host(text: str, family: int) -> str | None:
    # The C socket layer reads these two spellings itself, before any resolver.
    if text == "":
        return "0.0.0.0" if family == _AF_INET else "::"
    if text == "<broadcast>":
        return "255.255.255.255"
    return None


def _unix_op(operation: str, address: str | bytes) -> NetworkOp:
    raw = address if type(address) is str else os.fsdecode(address)
    if raw.startswith("\0"):
        path = "@" + raw[1:]  # the abstract namespace, spelled as `ss` and `lsof` do
    else:
        # The kernel reads a path up to its first NUL (`"/ok\0/junk"` is `/ok`).
        raw = raw.partition("\0")[0]
        path = os.path.abspath(raw) if raw else raw
    return NetworkOp(operation, None, None, None, "unix", (), path)  # type: ignore[arg-type]


def unix_file_op(op: NetworkOp) -> FileOp | None:
    """The file access of an AF_UNIX action on a path: a `write` (connecting or sending
    writes to the socket, binding creates it), so file rules that deny a folder deny the
    sockets in it. None for an abstract name (`@...`, no file at all) or an autobind. A
    connect follows symlinks, as the kernel does; a bind creates the path's last component
    itself and does not."""
    path = op.path
    if not path or path[0] != "/":
        return None
    return file_op(path, "write", follow=op.operation != "bind")


def _c_host_bytes(host: str | bytes) -> bytes:
    """The bytes the C socket layer handed to the resolver for `host`: bytes as they are, an
    ASCII str as its data, any other str through the "idna" codec (`idna_converter`)."""
    if type(host) is bytes:
        return host
    if host.isascii():
        return host.encode("ascii")  # type: ignore[union-attr]
    return host.encode("idna")  # type: ignore[union-attr]


def _resolve_for_socket(host: str | bytes, name: str, family: int) -> str | None:
    """The address a connect by name will reach, so that `cidr` rules see it. The C layer
    resolved the name itself before the event (a race with a changing DNS answer is a stated
    limit); this looks up the very bytes it used, as appshield's own call: the token is a
    new object made here, so nothing else on this thread can borrow the exemption."""
    known = memory.addresses_for(name)
    if known:
        return known[0]
    try:
        token = OwnBytes(_c_host_bytes(host))
        infos = _gate.own_call(
            "socket.getaddrinfo", token, _raw_getaddrinfo, token, None, family, _SOCK_STREAM
        )
    except (OSError, UnicodeError):
        # Not resolvable now: judged by its name alone (C resolved it a moment ago).
        return None
    # An AF_INET/AF_INET6 lookup: every address is a str (typeshed also allows AF_UNIX's int).
    addresses = [canonical(info[4][0]) for info in infos]  # type: ignore[arg-type]
    memory.remember(name, [a for a in addresses if a])
    return next((a for a in addresses if a), None)


# -- resolutions -----------------------------------------------------------------------------


def resolve_event_host(value: Any, *, none_ok: bool) -> str | bytes | None:
    """The host of a `socket.getaddrinfo`/`gethostbyname`/`gethostbyaddr` event, as C read
    it: None (getaddrinfo only), an exact str or bytes, or a bytes subclass (its own bytes).
    A str subclass went through the "idna" codec's Python code and a bytearray may have
    changed since: `Unreadable`."""
    kind = type(value)
    if kind is str or kind is bytes:
        return value  # type: ignore[no-any-return]
    if value is None and none_ok:
        return None
    if issubclass(kind, bytes):
        return _bytes_copy(value, _ALL)
    return _read_host(value)  # raises for what is left


def resolve_event_port(value: Any) -> int | str | bytes | None:
    """The port of a `socket.getaddrinfo` event: C takes an exact int, a str (read in C) or
    bytes, or None."""
    kind = type(value)
    if kind is int or kind is str or kind is bytes or value is None:
        return value  # type: ignore[no-any-return]
    if issubclass(kind, str):
        return _str_copy(value, _ALL)
    if issubclass(kind, bytes):
        return _bytes_copy(value, _ALL)
    raise Unreadable(f"a port of type {kind.__qualname__} cannot be read safely")


def describe_resolve(host: str | bytes | None, port: int | str | bytes | None) -> NetworkOp | None:
    """The `resolve` operation for getaddrinfo(host, port), both already read as exact
    types; None when nothing is looked up (no host, or a host that is already an address)."""
    text = _c_string(host_text(host))
    if not text:
        return None
    literal = _special_host(text, _AF_INET) or canonical(text)
    if literal is not None:
        return None
    number = port if type(port) is int else _port_number(port)
    return NetworkOp("resolve", normalize_host(text), None, number, "tcp")


def _c_string(text: str | None) -> str | None:
    """`text` as the C resolver reads it: getaddrinfo hands the host and the port on as C
    strings, which end at the first NUL (`"evil.com\\0.good.com"` looks up `evil.com`). The
    other entry points refuse a NUL before they look anything up."""
    if text is not None and "\0" in text:
        return text.partition("\0")[0]
    return text


def _port_number(port: Any) -> int | None:
    text = _c_string(host_text(port))
    if text and text.isascii() and text.isdigit():
        return int(text)
    return None


def remember_results(host: Any, infos: Any) -> None:
    """Record what getaddrinfo returned for `host` (an exact str or bytes) in the resolver
    memory. `infos` comes from the C resolver: exact tuples and strs."""
    text = host_text(host)
    if text and "\0" in text:
        text = _c_string(text)
    if not text or canonical(text) is not None:
        return
    try:
        addresses = [canonical(info[4][0]) for info in infos]
    except (TypeError, IndexError):  # not a resolver answer: nothing to remember
        return
    memory.remember(_host_name(text), [a for a in addresses if a])


def _host_name(text: str) -> str:
    """`normalize_host`, memoised: the same few names are looked up again and again."""
    name = _hosts.get(text)
    if name is None:
        name = normalize_host(text)
        if len(_hosts) >= _CACHE_LIMIT:
            _hosts.clear()
        _hosts[text] = name
    return name


_hosts: dict[str, str] = {}


def remember_names(names: list[Any], addresses: list[Any]) -> None:
    """Record a gethostbyname(_ex)/gethostbyaddr answer: every name maps to every address."""
    canon = [canonical(a) for a in addresses if type(a) is str]
    good = [a for a in canon if a]
    for name in names:
        text = host_text(name)
        if text and canonical(text) is None:
            memory.remember(normalize_host(text), good)
