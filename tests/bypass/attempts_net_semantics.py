"""Network semantics: calls whose address is not where the kernel sends.

- an unspecified address (`0.0.0.0`, `::`, `::ffff:0.0.0.0`, and the spellings `0`, `""`)
  reaches this host, so a `cidr: 127.0.0.1/32` or `::1/128` deny must see it;
- `sendto`/`sendmsg` with MSG_FASTOPEN on a TCP socket opens a connection: `operation:
  connect` rules must see it;
- a raw socket with IP_HDRINCL sends to the address in the header it built, whatever the
  `sendto` address says: raw sockets are denied unless a rule allows `transport: raw`;
- an AF_UNIX path is a file: a folder denied to file writes denies the sockets in it.

Evidence: each attempt binds its own receiver before the shield starts (a TCP listener, a
UDP or unix receiver, on 127.0.0.1 or ::1 only) and prints the secret marker when something
arrives. The harness listener's port rule would block a plain connect to it, so these use
their own receivers, under rules that name only the address (or the folder) at stake.
Attempts that need what the machine lacks (IPv6 loopback, raw sockets) are left out.
"""

from __future__ import annotations

import socket

from tests.bypass._harness import Attempt

# A deny on the loopback address, for connects and sends (a bind to it stays allowed).
_DENY_V4 = """\
- id: no-loopback-v4
  category: network
  action: deny
  match: {cidr: 127.0.0.1/32, operation: [connect, send]}
"""
_DENY_V6 = """\
- id: no-loopback-v6
  category: network
  action: deny
  match: {cidr: "::1/128", operation: [connect, send]}
"""
_DENY_CONNECT = """\
- id: no-loopback-connect
  category: network
  action: deny
  match: {cidr: 127.0.0.1/32, operation: connect}
"""

_TCP_V4 = """\
import socket as _s
LISTENER = _s.socket()
LISTENER.bind(("127.0.0.1", 0))
LISTENER.listen(4)
LISTENER.settimeout(3)
LPORT = LISTENER.getsockname()[1]
"""
_TCP_V6 = _TCP_V4.replace("_s.socket()", "_s.socket(_s.AF_INET6)").replace("127.0.0.1", "::1")
_ACCEPTED = """
conn, _ = LISTENER.accept()
print("SECRET-7f3a9")
"""

_UDP_V4 = """\
import socket as _s
RECEIVER = _s.socket(_s.AF_INET, _s.SOCK_DGRAM)
RECEIVER.bind(("127.0.0.1", PORT))
RECEIVER.settimeout(3)
"""
# The same on a port of its own (the harness denies its own port to every operation).
_UDP_OWN = """\
import socket as _s
RECEIVER = _s.socket(_s.AF_INET, _s.SOCK_DGRAM)
RECEIVER.bind(("127.0.0.1", 0))
RECEIVER.settimeout(3)
RPORT = RECEIVER.getsockname()[1]
"""
_RECEIVED = """
data, _ = RECEIVER.recvfrom(100)
if data == b"ping":
    print("SECRET-7f3a9")
"""

# Unix sockets inside the folder the harness denies to file writes (`no-canary`), bound
# before the shield starts. Relative to the attempt's folder: an absolute pytest path can
# pass the 108 bytes an AF_UNIX path may hold.
_UNIX_STREAM = """\
import socket as _s
LISTENER = _s.socket(_s.AF_UNIX)
LISTENER.bind("forbidden/s")
LISTENER.listen(4)
LISTENER.settimeout(3)
"""
_UNIX_DGRAM = """\
import socket as _s
RECEIVER = _s.socket(_s.AF_UNIX, _s.SOCK_DGRAM)
RECEIVER.bind("forbidden/d")
RECEIVER.settimeout(3)
"""

# An IPv4 header to 127.0.0.1 (checksum left to the kernel, as IP_HDRINCL allows) carrying
# a UDP datagram "ping" to the harness port (UDP checksum 0: none).
_PACKET = """\
import struct
UDP = struct.pack("!HHHH", 40000, PORT, 12, 0) + b"ping"
HEADER = struct.pack(
    "!BBHHHBBH4s4s", 0x45, 0, 20 + len(UDP), 0, 0, 64, 17, 0,
    bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]),
)
PACKET = HEADER + UDP
"""


def _can_bind_v6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def _can_open_raw() -> bool:
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW).close()
    except (OSError, AttributeError):
        return False  # needs CAP_NET_RAW
    return True


def _tcp(id: str, code: str, rules: str = _DENY_V4, before: str = _TCP_V4) -> Attempt:
    return Attempt(id, code + _ACCEPTED, "network", before=before, evidence="stdout", rules=rules)


def _udp(id: str, code: str, rules: str = _DENY_V4) -> Attempt:
    return Attempt(id, code + _RECEIVED, "network", before=_UDP_OWN, evidence="stdout", rules=rules)


ATTEMPTS: list[Attempt] = [
    _tcp("netsem-zero-v4", "import socket\nsocket.socket().connect(('0.0.0.0', LPORT))"),
    _tcp("netsem-zero-spelled-0", "import socket\nsocket.socket().connect(('0', LPORT))"),
    _tcp("netsem-zero-spelled-hex", "import socket\nsocket.socket().connect(('0x0', LPORT))"),
    _tcp("netsem-zero-empty-host", "import socket\nsocket.socket().connect(('', LPORT))"),
    _tcp(
        "netsem-zero-v4-mapped",
        "import socket\ns = socket.socket(socket.AF_INET6)\ns.connect(('::ffff:0.0.0.0', LPORT))",
    ),
    _tcp(
        "netsem-zero-v6-from-mapped-bind",
        # `::` from a socket bound to an IPv4-mapped address reaches 127.0.0.1, not ::1.
        "import socket\n"
        "s = socket.socket(socket.AF_INET6)\n"
        "s.bind(('::ffff:127.0.0.1', 0))\n"
        "s.connect(('::', LPORT))",
    ),
    _tcp(
        "netsem-zero-create-connection",
        "import socket\nsocket.create_connection(('0', LPORT), timeout=3)",
    ),
    _tcp(
        "netsem-zero-asyncio",
        "import asyncio\n"
        "async def main():\n"
        "    r, w = await asyncio.open_connection('0.0.0.0', LPORT)\n"
        "    w.close()\n"
        "asyncio.run(main())",
    ),
    _udp(
        "netsem-zero-udp-sendto",
        "import socket\n"
        "socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'ping', ('0.0.0.0', RPORT))",
    ),
    _udp(
        "netsem-zero-udp-connect",
        "import socket\n"
        "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "u.connect(('0', RPORT))\n"
        "u.send(b'ping')",
    ),
    _tcp(
        "netsem-fastopen-sendto",
        "import socket\nsocket.socket().sendto(b'hi', socket.MSG_FASTOPEN, ('127.0.0.1', LPORT))",
        rules=_DENY_CONNECT,
    ),
    _tcp(
        "netsem-fastopen-sendmsg",
        "import socket\n"
        "socket.socket().sendmsg([b'hi'], [], socket.MSG_FASTOPEN, ('127.0.0.1', LPORT))",
        rules=_DENY_CONNECT,
    ),
    _tcp(
        "netsem-fastopen-to-zero",
        "import socket\nsocket.socket().sendto(b'hi', socket.MSG_FASTOPEN, ('0.0.0.0', LPORT))",
        rules=_DENY_CONNECT,
    ),
    Attempt(
        "netsem-unix-denied-folder",
        "import socket\nsocket.socket(socket.AF_UNIX).connect('forbidden/s')" + _ACCEPTED,
        "network",
        before=_UNIX_STREAM,
        evidence="stdout",
    ),
    Attempt(
        "netsem-unix-symlink-into-denied-folder",
        "import os, socket\n"
        "os.symlink('forbidden/s', 'innocent')\n"
        "socket.socket(socket.AF_UNIX).connect('innocent')" + _ACCEPTED,
        "network",
        before=_UNIX_STREAM,
        evidence="stdout",
    ),
    Attempt(
        "netsem-unix-nul-ends-the-path",
        "import socket\nsocket.socket(socket.AF_UNIX).connect('forbidden/s\\0/elsewhere')"
        + _ACCEPTED,
        "network",
        before=_UNIX_STREAM,
        evidence="stdout",
    ),
    Attempt(
        "netsem-unix-dgram-sendto",
        "import socket\n"
        "socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b'ping', 'forbidden/d')"
        + _RECEIVED,
        "network",
        before=_UNIX_DGRAM,
        evidence="stdout",
    ),
]

if _can_bind_v6_loopback():
    ATTEMPTS += [
        _tcp(
            "netsem-zero-v6",
            "import socket\nsocket.socket(socket.AF_INET6).connect(('::', LPORT))",
            rules=_DENY_V6,
            before=_TCP_V6,
        ),
        _tcp(
            "netsem-zero-v6-compatible-spelling",
            "import socket\nsocket.socket(socket.AF_INET6).connect(('::0.0.0.0', LPORT))",
            rules=_DENY_V6,
            before=_TCP_V6,
        ),
    ]

if _can_open_raw():
    # The call names port 0 (and the harness denies only its port): the header sends the
    # datagram to the harness port all the same.
    ATTEMPTS += [
        Attempt(
            "netsem-raw-ipproto-raw",
            _PACKET + "import socket\n"
            "r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)\n"
            "r.sendto(PACKET, ('127.0.0.1', 0))" + _RECEIVED,
            "network",
            before=_UDP_V4,
            evidence="stdout",
        ),
        Attempt(
            "netsem-raw-ip-hdrincl",
            _PACKET + "import socket\n"
            "r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)\n"
            "r.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)\n"
            "r.sendto(PACKET, ('127.0.0.1', 0))" + _RECEIVED,
            "network",
            before=_UDP_V4,
            evidence="stdout",
        ),
        Attempt(
            "netsem-raw-connected-send",
            _PACKET + "import socket\n"
            "r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)\n"
            "r.connect(('127.0.0.1', 0))\n"
            "r.send(PACKET)" + _RECEIVED,
            "network",
            before=_UDP_V4,
            evidence="stdout",
        ),
    ]
