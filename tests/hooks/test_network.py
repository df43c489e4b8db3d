"""In-process tests of the network hooks: blocked before the connection, transparent when
allowed, every spelling of an address, the resolver memory, threads, asyncio, fork.

Real sockets on 127.0.0.1 only. Each test installs its own shield and removes it.
"""

from __future__ import annotations

import _socket
import asyncio
import concurrent.futures
import errno
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from appshield import runtime
from appshield.errors import PolicyViolation
from appshield.hooks.network import describe as _net_describe
from appshield.hooks.network.memory import ResolverMemory
from appshield.policy import Policy
from appshield.report import Violation


class Server:
    """A TCP listener that counts accepted connections."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(32)
        self.port: int = self.sock.getsockname()[1]
        self.count = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.count += 1
            conn.close()

    def settle(self) -> int:
        threading.Event().wait(0.05)
        return self.count


@dataclass
class Shielded:
    denied: Server
    allowed: Server
    violations: list[Violation] = field(default_factory=list)


def _policy(denied_port: int, extra: str = "", mode: str = "enforce") -> Policy:
    return Policy.from_yaml(
        f"""\
version: 1
name: net-tests
mode: {mode}
defaults: {{process: allow, file: allow, network: allow, import: allow}}
rules:
  - id: no-port
    category: network
    action: deny
    match: {{port: {denied_port}}}
"""
        + extra
    )


@pytest.fixture
def servers() -> Iterator[tuple[Server, Server]]:
    a, b = Server(), Server()
    yield a, b
    a.sock.close()
    b.sock.close()


def _install(policy: Policy) -> list[Violation]:
    runtime.install(policy)
    shield = runtime.active_shield()
    assert shield is not None
    seen: list[Violation] = []
    shield.add_listener(seen.append)
    return seen


@pytest.fixture
def shielded(servers: tuple[Server, Server]) -> Iterator[Shielded]:
    denied, allowed = servers
    seen = _install(_policy(denied.port))
    try:
        yield Shielded(denied, allowed, seen)
    finally:
        runtime.uninstall()


def test_connect_is_blocked_before_the_connection(shielded: Shielded) -> None:
    s = socket.socket()
    with pytest.raises(PolicyViolation) as caught:
        s.connect(("127.0.0.1", shielded.denied.port))
    s.close()
    assert caught.value.errno == errno.EACCES
    assert isinstance(caught.value, PermissionError)
    assert caught.value.rule_id == "no-port"
    assert shielded.denied.settle() == 0
    assert [v.api for v in shielded.violations] == ["socket.connect"]
    assert shielded.violations[0].callsite.file == __file__


@pytest.mark.parametrize(
    ("family", "spelling"),
    [
        (socket.AF_INET, "127.0.0.1"),
        (socket.AF_INET, "127.1"),
        (socket.AF_INET, "0x7f000001"),
        (socket.AF_INET, "2130706433"),
        (socket.AF_INET, "0177.0.0.1"),
        (socket.AF_INET, b"127.0.0.1"),
        (socket.AF_INET6, "::ffff:127.0.0.1"),
        (socket.AF_INET, "localhost"),
    ],
)
def test_every_spelling_is_the_same_address(
    shielded: Shielded, family: int, spelling: str | bytes
) -> None:
    with socket.socket(family) as s, pytest.raises(PolicyViolation):
        s.connect((spelling, shielded.denied.port))
    assert shielded.denied.settle() == 0
    assert shielded.violations[-1].operation.address == "127.0.0.1"


@pytest.mark.parametrize(
    "how",
    [
        lambda s, a: _socket.socket.connect(s, a),
        lambda s, a: socket.socket.connect(s, a),
        lambda s, a: s.connect_ex(a),
        lambda s, a: socket.create_connection(a),
    ],
    ids=["unbound-c", "unbound-py", "connect_ex", "create_connection"],
)
def test_every_route_to_connect(shielded: Shielded, how: object) -> None:
    with socket.socket() as s, pytest.raises(PolicyViolation):
        how(s, ("127.0.0.1", shielded.denied.port))  # type: ignore[operator]
    assert shielded.denied.settle() == 0


def test_allowed_calls_are_transparent(shielded: Shielded) -> None:
    port = shielded.allowed.port
    with socket.socket() as s:
        assert s.connect(("127.0.0.1", port)) is None
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) == 0
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    free_port = closed.getsockname()[1]
    closed.close()
    with socket.socket() as s, pytest.raises(ConnectionRefusedError) as refused:
        s.connect(("127.0.0.1", free_port))
    assert refused.value.errno == errno.ECONNREFUSED
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", free_port)) == errno.ECONNREFUSED
    with pytest.raises(TypeError):
        socket.getaddrinfo()  # type: ignore[call-arg]
    with pytest.raises(socket.gaierror) as bad:
        socket.getaddrinfo("no-such-host.invalid", 80)
    assert bad.value.errno in (
        socket.EAI_NONAME,
        socket.EAI_AGAIN,
        getattr(socket, "EAI_NODATA", -5),
    )
    assert socket.getaddrinfo(host="localhost", port=port, type=socket.SOCK_STREAM)
    assert shielded.allowed.settle() == 2
    assert shielded.violations == []


def test_resolver_answers_are_unchanged(servers: tuple[Server, Server]) -> None:
    bare = (
        socket.getaddrinfo("localhost", 80, 0, socket.SOCK_STREAM),
        socket.gethostbyname("localhost"),
        socket.gethostbyname_ex("localhost"),
    )
    _install(_policy(servers[0].port))
    try:
        shielded = (
            socket.getaddrinfo("localhost", 80, 0, socket.SOCK_STREAM),
            socket.gethostbyname("localhost"),
            socket.gethostbyname_ex("localhost"),
        )
    finally:
        runtime.uninstall()
    assert shielded == bare


def test_uninstall_restores_identical_objects(servers: tuple[Server, Server]) -> None:
    import asyncio.base_events as base_events

    before = (
        _socket.getaddrinfo,
        _socket.gethostbyname,
        socket.gethostbyname,
        socket.gethostbyaddr,
        vars(base_events.BaseEventLoop)["getaddrinfo"],
    )
    _install(_policy(servers[0].port))
    assert _socket.getaddrinfo is not before[0]
    runtime.uninstall()
    after = (
        _socket.getaddrinfo,
        _socket.gethostbyname,
        socket.gethostbyname,
        socket.gethostbyaddr,
        vars(base_events.BaseEventLoop)["getaddrinfo"],
    )
    assert all(a is b for a, b in zip(before, after, strict=True))


HOST_RULE = """\
  - id: no-localhost
    category: network
    action: deny
    match: {host: localhost, operation: connect}
"""


def test_a_name_rule_denies_the_address_it_resolved_to(servers: tuple[Server, Server]) -> None:
    _, allowed = servers
    seen = _install(_policy(servers[0].port, HOST_RULE))
    try:
        _net_describe.memory.clear()
        with socket.socket() as s:
            s.connect(("127.0.0.1", allowed.port))  # nothing resolved yet: just an address
        ip = socket.gethostbyname("localhost")
        with socket.socket() as s, pytest.raises(PolicyViolation) as caught:
            s.connect((ip, allowed.port))
    finally:
        runtime.uninstall()
    assert caught.value.rule_id == "no-localhost"
    assert "localhost" in seen[-1].operation.names  # type: ignore[union-attr]


def test_udp_and_unix_operations(shielded: Shielded, tmp_path: object) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, pytest.raises(PolicyViolation):
        u.sendto(b"x", ("127.0.0.1", shielded.denied.port))
    op = shielded.violations[-1].operation
    assert (op.operation, op.transport) == ("send", "udp")  # type: ignore[union-attr]
    path = os.path.join(str(tmp_path), "sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen()
    with socket.socket(socket.AF_UNIX) as c:
        c.connect(path)  # allowed: the default allows
    server.close()
    with socket.socket(socket.AF_UNIX) as u:
        described = _net_describe.address_op("connect", u, path)
    assert described is not None
    assert (described.transport, described.path) == ("unix", path)


def test_threads_are_checked(shielded: Shielded) -> None:
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            socket.create_connection(("127.0.0.1", shielded.denied.port))
        except PolicyViolation as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 8
    assert shielded.denied.settle() == 0


def test_asyncio_connection_is_blocked_and_reported_out_of_band(shielded: Shielded) -> None:
    async def main() -> None:
        await asyncio.open_connection("127.0.0.1", shielded.denied.port)

    with pytest.raises(OSError):  # asyncio may fold the denial into a plain OSError
        asyncio.run(main())
    assert shielded.denied.settle() == 0
    assert any(v.api == "socket.connect" for v in shielded.violations)


SCOPED_RESOLVE = """\
  - id: no-resolve-from-here
    category: network
    action: deny
    match: {host: localhost, operation: resolve}
    scope: [tests.hooks.test_network]
"""


def test_asyncio_resolution_keeps_the_callers_stack(servers: tuple[Server, Server]) -> None:
    """The executor thread that resolves shows none of this module; the loop wrapper does."""
    seen = _install(_policy(servers[0].port, SCOPED_RESOLVE))

    async def main() -> None:
        await asyncio.open_connection("localhost", servers[1].port)

    try:
        with pytest.raises(PolicyViolation):
            asyncio.run(main())
        # The same lookup from a thread whose stack shows nothing of this module passes.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            result = pool.submit(socket.getaddrinfo, "localhost", 80).result()
    finally:
        runtime.uninstall()
    assert result
    assert seen[0].callsite.file == __file__
    assert servers[1].settle() == 0


def test_asyncio_allowed_name_resolves_once(servers: tuple[Server, Server]) -> None:
    seen = _install(_policy(servers[0].port, HOST_RULE.replace("deny", "alert")))

    async def main() -> None:
        _, writer = await asyncio.open_connection("localhost", servers[1].port)
        writer.close()

    try:
        asyncio.run(main())
    finally:
        runtime.uninstall()
    assert servers[1].settle() == 1
    assert [v.decision.rule_id for v in seen] == ["no-localhost"]


def test_requests_retries_are_each_reported(shielded: Shielded) -> None:
    requests = pytest.importorskip("requests")
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    session = requests.Session()
    session.mount("http://", HTTPAdapter(max_retries=Retry(total=2, connect=2, backoff_factor=0)))
    with pytest.raises(requests.exceptions.RequestException):
        session.get(f"http://127.0.0.1:{shielded.denied.port}/", timeout=5)
    assert shielded.denied.settle() == 0
    assert len(shielded.violations) == 3  # the first try and two retries, each before raising


def test_monitor_mode_lets_it_happen(servers: tuple[Server, Server]) -> None:
    seen = _install(_policy(servers[0].port, mode="monitor"))
    try:
        with socket.socket() as s:
            s.connect(("127.0.0.1", servers[0].port))
    finally:
        runtime.uninstall()
    assert servers[0].settle() == 1
    assert [v.decision.blocked for v in seen] == [False]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_forked_child_keeps_the_shield(shielded: Shielded) -> None:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 0
        try:
            socket.create_connection(("127.0.0.1", shielded.denied.port))
            code = 1
        except PolicyViolation:
            code = 0
        except BaseException:
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert shielded.denied.settle() == 0


def test_tamper_reload_and_wrapped(shielded: Shielded) -> None:
    import importlib

    importlib.reload(socket)
    with socket.socket() as s, pytest.raises(PolicyViolation):
        s.connect(("127.0.0.1", shielded.denied.port))
    real = _socket.getaddrinfo.__wrapped__  # type: ignore[attr-defined]
    address = real("localhost", 80, socket.AF_INET)[0][4][0]  # the audit event still decides
    with socket.socket() as s, pytest.raises(PolicyViolation):
        s.connect((address, shielded.denied.port))
    os.environ["APPSHIELD_DISABLE"] = "1"
    try:
        with socket.socket() as s, pytest.raises(PolicyViolation):
            s.connect(("127.0.0.1", shielded.denied.port))
    finally:
        del os.environ["APPSHIELD_DISABLE"]
    assert shielded.denied.settle() == 0


def test_resolver_memory_bounds_and_expiry() -> None:
    clock = [0.0]
    mem = ResolverMemory(capacity=3, ttl=10.0)
    import appshield.hooks.network.memory as module

    real_monotonic = module.time.monotonic
    module.time.monotonic = lambda: clock[0]  # type: ignore[assignment]
    try:
        mem.remember("a.example", ["10.0.0.1", "10.0.0.2"])
        mem.remember("b.example", ["10.0.0.2"])
        assert mem.names_for("10.0.0.2") == ("a.example", "b.example")
        assert mem.addresses_for("a.example") == ("10.0.0.1", "10.0.0.2")
        clock[0] = 5.0
        mem.remember("b.example", ["10.0.0.2"])
        clock[0] = 11.0  # a.example expired, b.example refreshed at 5 s
        assert mem.names_for("10.0.0.2") == ("b.example",)
        assert mem.names_for("10.0.0.1") == ()
        assert mem.addresses_for("a.example") == ()
        for i in range(5):
            mem.remember(f"n{i}.example", [f"10.0.1.{i}"])
        assert len(mem) == 3
        assert mem.names_for("10.0.1.0") == ()
        assert mem.names_for("10.0.1.4") == ("n4.example",)
    finally:
        module.time.monotonic = real_monotonic  # type: ignore[assignment]


def test_resolver_memory_is_thread_safe() -> None:
    mem = ResolverMemory(capacity=64, ttl=60.0)

    def hammer(k: int) -> None:
        for i in range(500):
            mem.remember(f"h{k}-{i}.example", [f"10.{k}.{i % 256}.1"])
            mem.names_for(f"10.{k}.{i % 256}.1")

    threads = [threading.Thread(target=hammer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(mem) == 64


def test_signature_errors_are_the_originals(shielded: Shielded) -> None:
    with socket.socket() as s, pytest.raises(TypeError) as caught:
        s.connect("not a tuple")  # type: ignore[arg-type]
    assert "tuple" in str(caught.value)
    with pytest.raises(TypeError):
        socket.gethostbyname("localhost", "extra")  # type: ignore[call-arg]
    assert sys.getrefcount(socket) > 0


def test_a_new_policy_is_not_answered_from_the_old_ones_cache(
    servers: tuple[Server, Server],
) -> None:
    denied, allowed = servers
    _install(_policy(denied.port))
    try:
        for _ in range(2):  # the second time is answered from the allow caches
            socket.getaddrinfo("localhost", allowed.port)
            with socket.socket() as s:
                s.connect(("127.0.0.1", allowed.port))
    finally:
        runtime.uninstall()
    _install(_policy(allowed.port))
    try:
        with socket.socket() as s, pytest.raises(PolicyViolation):
            s.connect(("127.0.0.1", allowed.port))
        with pytest.raises(PolicyViolation):
            socket.getaddrinfo("localhost", allowed.port)
    finally:
        runtime.uninstall()
    assert allowed.settle() == 2


RESOLVE_RULES = """\
  - id: no-localhost-lookup
    category: network
    action: alert
    match: {host: localhost, operation: resolve}
  - id: no-lookup-port
    category: network
    action: deny
    match: {operation: resolve, port: 666}
"""


def test_each_wrapped_lookup_is_decided_and_reported_once(
    servers: tuple[Server, Server],
) -> None:
    """The wrapper decides; the audit event its own call raises carries the wrapper's fresh
    copy of the name, and is let through by identity instead of being decided again."""
    seen = _install(_policy(servers[0].port, RESOLVE_RULES))

    async def main() -> None:
        await asyncio.get_running_loop().getaddrinfo("localhost", 80)

    try:
        socket.getaddrinfo("localhost", 80)
        socket.gethostbyname("localhost")
        socket.gethostbyname_ex(b"localhost")
        socket.gethostbyaddr("localhost")
        asyncio.run(main())
    finally:
        runtime.uninstall()
    assert [v.api for v in seen] == [
        "socket.getaddrinfo",
        "socket.gethostbyname",
        "socket.gethostbyname_ex",
        "socket.gethostbyaddr",
        "asyncio.getaddrinfo",
    ]


def test_a_nul_ends_the_name_and_the_port_as_it_does_for_the_resolver(
    servers: tuple[Server, Server],
) -> None:
    """getaddrinfo hands host and port to the C resolver as C strings: `localhost\\0x` looks
    up `localhost`, port `666\\0x` is port 666."""
    seen = _install(_policy(servers[0].port, RESOLVE_RULES))
    real = _socket.getaddrinfo.__wrapped__  # type: ignore[attr-defined]
    try:
        assert socket.getaddrinfo("localhost\x00.example", 80)  # alerted, as `localhost`
        with pytest.raises(PolicyViolation) as by_port:
            socket.getaddrinfo("localhost", "666\x00x")
        assert real(b"localhost\x00.example", 80)  # the audit event reads it the same way
    finally:
        runtime.uninstall()
    assert by_port.value.rule_id == "no-lookup-port"
    assert [v.decision.rule_id for v in seen] == [
        "no-localhost-lookup",
        "no-lookup-port",
        "no-localhost-lookup",
    ]


def test_code_run_by_the_resolver_call_cannot_borrow_its_token(
    servers: tuple[Server, Server],
) -> None:
    """An argument's `__index__` runs inside the wrapped call, after the wrapper decided: a
    lookup it makes with the same (interned) name is still decided on its own."""
    seen = _install(_policy(servers[0].port, RESOLVE_RULES))
    raw = _socket.getaddrinfo.__wrapped__  # type: ignore[attr-defined]
    inner: list[object] = []

    class Sneaky:
        def __index__(self) -> int:
            try:
                inner.append(raw("localhost", 666))
            except PolicyViolation as exc:
                inner.append(exc)
            return 0

    try:
        socket.getaddrinfo("localhost", 80, Sneaky())  # type: ignore[arg-type]
    finally:
        runtime.uninstall()
    assert len(inner) == 1 and isinstance(inner[0], PolicyViolation)
    assert inner[0].rule_id == "no-lookup-port"
    assert [v.decision.rule_id for v in seen] == ["no-localhost-lookup", "no-lookup-port"]


def test_a_connect_by_name_resolves_as_appshields_own_call(
    servers: tuple[Server, Server],
) -> None:
    """The shield looks the name up itself (to judge the address it reaches), through the C
    resolver with a token of its own: that lookup is neither judged nor reported."""
    denied, allowed = servers
    seen = _install(_policy(denied.port, RESOLVE_RULES.replace("alert", "deny", 1)))
    try:
        _net_describe.memory.clear()
        with socket.socket() as s:
            s.connect(("localhost", allowed.port))
        with socket.socket() as s, pytest.raises(PolicyViolation):
            s.connect(("localhost", denied.port))
    finally:
        runtime.uninstall()
    assert allowed.settle() == 1
    assert [v.decision.rule_id for v in seen] == ["no-port"]
    assert seen[0].operation.address == "127.0.0.1"  # type: ignore[union-attr]


def test_a_numpy_port_is_judged_with_its_port(shielded: Shielded) -> None:
    """An object that is not an int but whose `__index__` is C code (a numpy integer) is
    read as C read it: a `port` rule matches it."""
    numpy = pytest.importorskip("numpy")
    for kind in (numpy.int64, numpy.uint16, numpy.int32):
        with socket.socket() as s, pytest.raises(PolicyViolation):
            s.connect(("127.0.0.1", kind(shielded.denied.port)))
    with socket.socket() as s:
        s.connect(("127.0.0.1", numpy.int64(shielded.allowed.port)))
    with socket.socket() as s, pytest.raises(TypeError):
        s.connect(("127.0.0.1", numpy.array(shielded.denied.port)))  # mutable: refused
    assert shielded.denied.settle() == 0
    assert shielded.allowed.settle() == 1


def test_arguments_that_cannot_be_read_as_c_read_them_are_refused(shielded: Shielded) -> None:
    """A str subclass host (C encodes it by calling its own Python code), a bytearray host
    (it may have changed since C read it) and a port whose `__index__` is Python code are
    refused, reported as undescribable; their plain equivalents are not."""

    class Host(str):
        pass

    class Index:
        def __index__(self) -> int:
            return shielded.allowed.port

    port = shielded.allowed.port
    for address in (
        (Host("127.0.0.1"), port),
        (bytearray(b"127.0.0.1"), port),
        ("127.0.0.1", Index()),
    ):
        with (
            socket.socket() as s,
            pytest.raises(TypeError, match=r"cannot be read|encoded by|changed"),
        ):
            s.connect(address)
    with socket.socket() as s:
        s.connect((str(Host("127.0.0.1")), port))
    assert [v.decision.rule_id for v in shielded.violations] == ["implicit:undescribable"] * 3
    assert shielded.allowed.settle() == 1


FOREIGN_SOCKETS = """\
import sys, appshield
appshield.install(sys.argv[1])
port = int(sys.argv[2])
for name in ("socket", "_socket"):
    sys.modules.pop(name, None)
import _socket  # 3.12+: a new module instance, with a socket type of its own


class Netlink(_socket.socket):
    family = property(lambda self: 16)


class Slots(_socket.socket):
    __slots__ = ("family",)


slots = Slots()
slots.family = 16
for sock in (_socket.socket(), Netlink(), slots):
    try:
        sock.connect(("127.0.0.1", port))
        print("connected")
    except PermissionError:
        print("denied")
"""


def test_the_socket_family_is_the_one_c_uses(
    servers: tuple[Server, Server], tmp_path: Path
) -> None:
    """A subclass that says it is another family (one that is not a network operation), and
    on 3.12+ a socket of a second `_socket` module instance, are judged by the family the C
    methods use."""
    denied, _ = servers
    policy = tmp_path / "policy.yaml"
    rule = f"{{id: no-port, category: network, action: deny, match: {{port: {denied.port}}}}}"
    policy.write_text(
        "version: 1\nname: t\nmode: enforce\n"
        "defaults: {process: allow, file: allow, network: allow, import: allow}\n"
        f"rules:\n  - {rule}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPSHIELD_", "PYTEST_"))}
    done = subprocess.run(
        [sys.executable, "-c", FOREIGN_SOCKETS, str(policy), str(denied.port)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.stdout.split() == ["denied"] * 3, done.stderr
    assert denied.settle() == 0
