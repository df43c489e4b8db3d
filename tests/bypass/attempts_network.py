"""Network bypass attempts: every way to reach the loopback listener (denied by port).

Evidence: "connect" (the listener counts a connection) for TCP; for UDP the attempt binds
its own receiver before install and prints the secret marker when a datagram arrives.
"""

from __future__ import annotations

from tests.bypass._harness import Attempt

_SWALLOW = "except Exception as exc:\n    print('failed:', type(exc).__name__, exc)\n"


def _tcp(id: str, code: str, before: str = "", rules: str = "") -> Attempt:
    return Attempt(id, code, "network", before=before, evidence="connect", rules=rules)


def _swallowing(id: str, body: str, before: str = "") -> Attempt:
    """For clients that connect and then fail on the listener's empty answer."""
    indented = "\n".join("    " + line for line in body.strip().splitlines())
    return _tcp(id, f"try:\n{indented}\n{_SWALLOW}", before)


UDP_RECEIVER = """\
import socket as _s
RECEIVER = _s.socket(_s.AF_INET, _s.SOCK_DGRAM)
RECEIVER.bind(("127.0.0.1", PORT))
RECEIVER.settimeout(2)
"""

UDP_CHECK = """
data, _ = RECEIVER.recvfrom(100)
if data == b"ping":
    print("SECRET-7f3a9")
"""


def _udp(id: str, send: str) -> Attempt:
    return Attempt(id, send + UDP_CHECK, "network", before=UDP_RECEIVER, evidence="stdout")


ATTEMPTS: list[Attempt] = [
    _tcp("net-socket-connect", "import socket\nsocket.socket().connect(('127.0.0.1', PORT))"),
    _tcp("net-raw-socket", "import _socket\n_socket.socket().connect(('127.0.0.1', PORT))"),
    _tcp(
        "net-unbound-socket-connect",
        "import socket\ns = socket.socket()\nsocket.socket.connect(s, ('127.0.0.1', PORT))",
    ),
    _tcp(
        "net-unbound-raw-connect",
        "import _socket\ns = _socket.socket()\n_socket.socket.connect(s, ('127.0.0.1', PORT))",
    ),
    _tcp(
        "net-connect-ex",
        "import socket\nrc = socket.socket().connect_ex(('127.0.0.1', PORT))\nprint(rc)",
    ),
    _tcp("net-spelling-short", "import socket\nsocket.socket().connect(('127.1', PORT))"),
    _tcp("net-spelling-hex", "import socket\nsocket.socket().connect(('0x7f000001', PORT))"),
    _tcp("net-spelling-integer", "import socket\nsocket.socket().connect(('2130706433', PORT))"),
    _tcp("net-spelling-octal", "import socket\nsocket.socket().connect(('0177.0.0.1', PORT))"),
    _tcp("net-spelling-bytes", "import socket\nsocket.socket().connect((b'127.0.0.1', PORT))"),
    _tcp(
        "net-spelling-v4-mapped-v6",
        "import socket\ns = socket.socket(socket.AF_INET6)\ns.connect(('::ffff:127.0.0.1', PORT))",
    ),
    _tcp("net-create-connection", "import socket\nsocket.create_connection(('127.0.0.1', PORT))"),
    _tcp(
        "net-create-connection-by-name",
        "import socket\nsocket.create_connection(('localhost', PORT))",
    ),
    _swallowing(
        "net-http-client",
        "import http.client\n"
        "c = http.client.HTTPConnection('127.0.0.1', PORT, timeout=5)\n"
        "c.request('GET', '/')\nc.getresponse()",
    ),
    _swallowing(
        "net-urllib",
        "import urllib.request\nurllib.request.urlopen(f'http://127.0.0.1:{PORT}/', timeout=5)",
    ),
    _swallowing(
        "net-requests",
        "import requests\nrequests.get(f'http://127.0.0.1:{PORT}/', timeout=5)",
    ),
    _swallowing("net-httpx", "import httpx\nhttpx.get(f'http://127.0.0.1:{PORT}/', timeout=5)"),
    _tcp(
        "net-asyncio-open-connection",
        "import asyncio\n"
        "async def main():\n"
        "    r, w = await asyncio.open_connection('127.0.0.1', PORT)\n"
        "    w.close()\n"
        "asyncio.run(main())",
    ),
    _tcp(
        "net-asyncio-by-name",
        "import asyncio\n"
        "async def main():\n"
        "    r, w = await asyncio.open_connection('localhost', PORT)\n"
        "    w.close()\n"
        "asyncio.run(main())",
    ),
    _tcp(
        "net-asyncio-sock-connect",
        "import asyncio, socket\n"
        "async def main():\n"
        "    s = socket.socket()\n"
        "    s.setblocking(False)\n"
        "    await asyncio.get_running_loop().sock_connect(s, ('127.0.0.1', PORT))\n"
        "asyncio.run(main())",
    ),
    _tcp(
        "net-thread",
        "import socket, threading\n"
        "t = threading.Thread(target=lambda: socket.socket().connect(('127.0.0.1', PORT)))\n"
        "t.start(); t.join()",
    ),
    _tcp(
        "net-executor-thread",
        "import socket, concurrent.futures as cf\n"
        "with cf.ThreadPoolExecutor() as ex:\n"
        "    ex.submit(socket.create_connection, ('127.0.0.1', PORT)).result()",
    ),
    _tcp(
        "net-aliases-captured-before-install",
        "s = SOCK()\nCONNECT(s, ('127.0.0.1', PORT))",
        before="from _socket import socket as SOCK\n"
        "import socket\nCONNECT = socket.socket.connect\n",
    ),
    _tcp(
        "net-resolver-alias-before-install",
        "infos = GAI('localhost', PORT)\nimport socket\nsocket.socket().connect(infos[0][4])",
        before="from _socket import getaddrinfo as GAI\n",
    ),
    _tcp(
        "net-reload-socket",
        "import importlib, socket\n"
        "socket = importlib.reload(socket)\n"
        "socket.create_connection(('localhost', PORT))",
    ),
    _tcp(
        "net-wrapped-resolver",
        "import _socket, socket\n"
        "real = getattr(_socket.getaddrinfo, '__wrapped__', _socket.getaddrinfo)\n"
        "addr = real('localhost', PORT)[0][4]\n"
        "socket.socket(socket.AF_INET6 if ':' in addr[0] else socket.AF_INET).connect(addr)",
    ),
    _tcp(
        "net-gethostbyname-then-ip",
        "import socket\n"
        "ip = socket.gethostbyname('localhost')\n"
        "socket.socket().connect((ip, PORT))",
        rules="""\
        - id: no-localhost-by-name
          category: network
          action: deny
          match: {host: localhost, operation: connect}
        """,
    ),
    _tcp(
        "net-otel-suppress-key",
        "import socket\n"
        "from opentelemetry import context\n"
        "from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY as KEY\n"
        "context.attach(context.set_value(KEY, True))\n"
        "context.attach(context.set_value('suppress_instrumentation', True))\n"
        "socket.socket().connect(('127.0.0.1', PORT))",
    ),
    _tcp(
        "net-env-changed-after-start",
        "import os, socket\n"
        "os.environ['APPSHIELD_DISABLE'] = '1'\n"
        "os.environ['APPSHIELD_MODE'] = 'monitor'\n"
        "socket.socket().connect(('127.0.0.1', PORT))",
    ),
    _tcp(
        "net-sys-modules-pop-socket",
        "import sys\n"
        "for name in ('socket', '_socket'):\n"
        "    sys.modules.pop(name, None)\n"
        "import socket\n"
        "socket.create_connection(('127.0.0.1', PORT))",
    ),
    _tcp(
        "net-child-process",
        "import subprocess, sys\n"
        "code = f\"import socket; socket.socket().connect(('127.0.0.1', {PORT}))\"\n"
        "subprocess.run([sys.executable, '-I', '-c', code])",
        # A shield installed from code does not travel to children (that takes `appshield
        # run`), so the route to a child interpreter is closed by a process rule here.
        rules="""\
        - id: no-python-children
          category: process
          action: deny
          match: {executable: [python*, "/**/python*"]}
        """,
    ),
    _udp(
        "net-udp-sendto",
        "import socket\n"
        "socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'ping', ('127.0.0.1', PORT))",
    ),
    _udp(
        "net-udp-sendmsg",
        "import socket\n"
        "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "u.sendmsg([b'ping'], [], 0, ('127.1', PORT))",
    ),
    _udp(
        "net-udp-connect-send",
        "import socket\n"
        "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "u.connect(('127.0.0.1', PORT))\nu.send(b'ping')",
    ),
    _udp(
        "net-asyncio-datagram",
        "import asyncio\n"
        "async def main():\n"
        "    loop = asyncio.get_running_loop()\n"
        "    t, _ = await loop.create_datagram_endpoint(\n"
        "        asyncio.DatagramProtocol, remote_addr=('127.0.0.1', PORT))\n"
        "    t.sendto(b'ping')\n"
        "    await asyncio.sleep(0.05)\n"
        "asyncio.run(main())",
    ),
]
