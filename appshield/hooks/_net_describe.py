"""Turn a socket and an address (as the C socket layer receives them) into a `NetworkOp`.

This runs on every allowed connect, so it is built for the common case: the same socket
kind and address tuple seen again is a dict lookup (`_ops`), and only the resolver memory
is consulted afresh (names expire). Everything unusual (names instead of addresses, unix
paths, other families) takes the slow path once per distinct input.
"""

from __future__ import annotations

import _socket
import os
from typing import Any

from appshield.hooks._net_memory import memory
from appshield.hooks._state import appshield_io
from appshield.normalize import canonical_address, normalize_host
from appshield.operations import NetworkOp

__all__ = [
    "address_op",
    "base_op",
    "canonical",
    "describe_resolve",
    "family_of",
    "host_text",
    "remember_results",
    "type_of",
    "with_names",
]

# From `_socket`: the plain ints, without importing `socket` (enums, selectors) at start-up.
_AF_INET = _socket.AF_INET
_AF_INET6 = _socket.AF_INET6
_AF_UNIX = getattr(_socket, "AF_UNIX", -1)
_SOCK_STREAM = _socket.SOCK_STREAM
# Read the raw int attributes of the C socket type: `socket.socket.family` is a Python
# property that builds an IntEnum on every access, several times slower.
_raw_family = _socket.socket.family.__get__
_raw_type = _socket.socket.type.__get__


def family_of(sock: Any) -> int:
    try:
        return _raw_family(sock)
    except TypeError:
        # A socket of another `_socket` module instance: on 3.12+ popping `_socket` from
        # sys.modules and importing it again creates a new socket type, which our
        # descriptor does not accept. Ask the object itself.
        return int(sock.family)


def type_of(sock: Any) -> int:
    try:
        return _raw_type(sock)
    except TypeError:
        return int(sock.type)


_family_of = family_of
_type_of = type_of

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
    if isinstance(host, str):
        return host
    if isinstance(host, (bytes, bytearray)):
        return bytes(host).decode("ascii", "replace")
    return None


def address_op(operation: str, sock: Any, address: Any) -> NetworkOp | None:
    """The operation for `connect`/`send`/`bind` of `sock` to `address`, names included.
    None when the address is not an internet or unix address (netlink, packet...)."""
    base = base_op(operation, _family_of(sock), _type_of(sock), address)
    if base is None or base.address is None:
        return base
    return with_names(base, memory.names_for(base.address))


def base_op(operation: str, family: int, sotype: int, address: Any) -> NetworkOp | None:
    """The operation without remembered names, memoised on the raw arguments (ops for
    names are not memoised: what a name resolves to changes)."""
    try:
        key = (operation, family, sotype, address)
        base = _ops.get(key, _ops)
    except TypeError:  # an unhashable address (a list, a PathLike): no memo
        return _build(operation, family, sotype, address)
    if base is _ops:
        base = _build(operation, family, sotype, address)
        if base is None or base.host is None:
            if len(_ops) >= _CACHE_LIMIT:
                _ops.clear()
            _ops[key] = base
    return base  # type: ignore[return-value]


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
    if family not in (_AF_INET, _AF_INET6):
        return None
    if not isinstance(address, tuple) or len(address) < 2:
        return None
    transport = "tcp" if sotype == _SOCK_STREAM else "udp"
    port = address[1] if isinstance(address[1], int) else None
    text = host_text(address[0])
    if text is None:
        return None
    special = _special_host(text, family)
    literal = special or canonical(text)
    if literal is not None:
        return NetworkOp(operation, None, literal, port, transport)  # type: ignore[arg-type]
    host = normalize_host(text)
    resolved = _resolve_for_socket(host, family)
    return NetworkOp(operation, host, resolved, port, transport)  # type: ignore[arg-type]


def _special_host(text: str, family: int) -> str | None:
    # The C socket layer reads these two spellings itself, before any resolver.
    if text == "":
        return "0.0.0.0" if family == _AF_INET else "::"
    if text == "<broadcast>":
        return "255.255.255.255"
    return None


def _unix_op(operation: str, address: Any) -> NetworkOp:
    try:
        raw = os.fsdecode(address)
    except TypeError:
        raw = ""
    if raw.startswith("\0"):
        path = "@" + raw[1:]  # the abstract namespace, spelled as `ss` and `lsof` do
    else:
        path = os.path.abspath(raw) if raw else raw
    return NetworkOp(operation, None, None, None, "unix", (), path)  # type: ignore[arg-type]


def _resolve_for_socket(host: str, family: int) -> str | None:
    """The address a connect by name will reach, so that `cidr` rules see it. The C layer
    resolves the name again itself (a race with a changing DNS answer is a stated limit)."""
    known = memory.addresses_for(host)
    if known:
        return known[0]
    try:
        with appshield_io():
            infos = _socket.getaddrinfo(host, None, family, _SOCK_STREAM)
    except (OSError, UnicodeError, ValueError):
        return None
    addresses = [canonical(str(info[4][0])) for info in infos]
    remember_results(host, infos)
    return next((a for a in addresses if a), None)


def describe_resolve(host: Any, port: Any) -> NetworkOp | None:
    """The `resolve` operation for getaddrinfo(host, port); None when nothing is looked up
    (no host, or a host that is already an address)."""
    text = host_text(host)
    if not text:
        return None
    literal = _special_host(text, _AF_INET) or canonical(text)
    if literal is not None:
        return None
    number = port if isinstance(port, int) else _port_number(port)
    return NetworkOp("resolve", normalize_host(text), None, number, "tcp")


def _port_number(port: Any) -> int | None:
    text = host_text(port)
    if text and text.isdigit():
        return int(text)
    return None


def remember_results(host: Any, infos: Any) -> None:
    """Record what getaddrinfo returned for `host` in the resolver memory."""
    text = host_text(host)
    if not text or canonical(text) is not None:
        return
    try:
        addresses = [canonical(info[4][0]) for info in infos]
    except (TypeError, IndexError):
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
    canon = [canonical(a) for a in addresses if isinstance(a, str)]
    good = [a for a in canon if a]
    for name in names:
        text = host_text(name)
        if text and canonical(text) is None:
            memory.remember(normalize_host(text), good)
