"""In-process tests of what a socket call reaches (issue 12): unspecified addresses, TCP
fast open, raw and packet sockets, AF_UNIX paths as files. Real sockets on 127.0.0.1 and
::1 only; each test installs its own shield and removes it."""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from appshield import runtime
from appshield.errors import PolicyViolation
from appshield.hooks import network
from appshield.hooks.network import describe as _net_describe
from appshield.operations import FileOp, NetworkOp
from appshield.policy import Policy
from appshield.report import Violation


def _listener(
    family: int = socket.AF_INET, host: str = "127.0.0.1", port: int = 0
) -> socket.socket:
    server = socket.socket(family)
    server.bind((host, port))
    server.listen(16)
    server.settimeout(0.5)
    return server


def _install(rules: str, mode: str = "enforce") -> list[Violation]:
    runtime.install(
        Policy.from_yaml(
            f"version: 1\nmode: {mode}\n"
            "defaults: {process: allow, file: allow, network: allow, import: allow}\n"
            f"rules:\n{rules}"
        )
    )
    shield = runtime.active_shield()
    assert shield is not None
    seen: list[Violation] = []
    shield.add_listener(seen.append)
    return seen


@pytest.fixture
def uninstall() -> Iterator[None]:
    try:
        yield
    finally:
        runtime.uninstall()


def _v6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def _raw_sockets() -> bool:
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW).close()
    except OSError:
        return False
    return True


needs_v6 = pytest.mark.skipif(not _v6_loopback(), reason="no IPv6 loopback")
needs_raw = pytest.mark.skipif(not _raw_sockets(), reason="raw sockets need CAP_NET_RAW")

_DENY_LO = "  - {id: lo, category: network, action: deny, match: {cidr: 127.0.0.1/32}}\n"


# -- unspecified addresses -------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "", "0", "0x0", "0.0"])
def test_an_unspecified_address_is_judged_as_the_loopback(uninstall: None, host: str) -> None:
    server = _listener()
    port = server.getsockname()[1]
    seen = _install(_DENY_LO)
    with socket.socket() as s, pytest.raises(PolicyViolation) as caught:
        s.connect((host, port))
    assert caught.value.rule_id == "lo"
    op = seen[-1].operation
    assert isinstance(op, NetworkOp)
    assert (op.address, op.requested) == ("127.0.0.1", "0.0.0.0")
    assert op.target == f"0.0.0.0 (127.0.0.1):{port}"
    with pytest.raises(TimeoutError):
        server.accept()  # nothing arrived
    server.close()


def test_the_socket_bound_address_is_what_zero_reaches(uninstall: None) -> None:
    _install("  []\n")
    with socket.socket() as s:
        s.bind(("127.0.0.2", 0))  # a local bind: nothing is sent
        op = _net_describe.address_op("connect", s, ("0.0.0.0", 9))
    assert op is not None
    assert (op.address, op.requested) == ("127.0.0.2", "0.0.0.0")
    with socket.socket() as s:
        op = _net_describe.address_op("bind", s, ("0.0.0.0", 9))
    assert op is not None
    assert (op.address, op.requested) == ("0.0.0.0", None)  # a bind's wildcard stays one


@needs_v6
def test_no_repeat_is_let_through_on_the_address_written(uninstall: None) -> None:
    # `::` reaches 127.0.0.1 from a socket bound to an IPv4-mapped address, ::1 otherwise:
    # the same call, allowed once, must be judged again from another socket.
    v4 = _listener()
    port = v4.getsockname()[1]
    v6 = _listener(socket.AF_INET6, "::1", port)
    _install('  - {id: v6, category: network, action: deny, match: {cidr: "::1/128"}}\n')
    for _ in range(2):
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::ffff:127.0.0.1", 0))
            s.connect(("::", port))  # reaches 127.0.0.1: allowed
        v4.accept()[0].close()
    assert not [k for k in network._allowed.entries if k[3][0] in ("::", "0.0.0.0", "")]
    with socket.socket(socket.AF_INET6) as s, pytest.raises(PolicyViolation):
        s.connect(("::", port))
    with pytest.raises(TimeoutError):
        v6.accept()
    v4.close()
    v6.close()


def test_a_name_that_resolved_to_zero_is_a_name_of_the_loopback(uninstall: None) -> None:
    seen = _install("  - {id: n, category: network, action: deny, match: {host: zero.test}}\n")
    _net_describe.memory.remember("zero.test", ["0.0.0.0"])
    try:
        with socket.socket() as s, pytest.raises(PolicyViolation):
            s.connect(("0.0.0.0", 9))
        assert "zero.test" in seen[-1].operation.names  # type: ignore[union-attr]
        with socket.socket() as s:
            op = _net_describe.address_op("connect", s, ("zero.test", 9))
        assert op is not None
        assert (op.host, op.address, op.requested) == ("zero.test", "127.0.0.1", "0.0.0.0")
    finally:
        _net_describe.memory.clear()


# -- TCP fast open ---------------------------------------------------------------------------


@pytest.mark.parametrize("call", ["sendto", "sendmsg"])
def test_fast_open_is_a_connect(uninstall: None, call: str) -> None:
    server = _listener()
    port = server.getsockname()[1]
    rules = (
        "  - {id: c, category: network, action: deny,"
        f" match: {{port: {port}, operation: connect}}}}\n"
    )
    seen = _install(rules)
    with socket.socket() as s, pytest.raises(PolicyViolation) as caught:
        if call == "sendto":
            s.sendto(b"x", socket.MSG_FASTOPEN, ("127.0.0.1", port))
        else:
            s.sendmsg([b"x"], [], socket.MSG_FASTOPEN, ("127.0.0.1", port))
    assert caught.value.rule_id == "c"
    assert seen[-1].operation.operation == "connect"  # type: ignore[union-attr]
    assert seen[-1].api == f"socket.{call}"
    with pytest.raises(TimeoutError):
        server.accept()
    server.close()


# -- raw and packet sockets ------------------------------------------------------------------


def _datagram_to(port: int) -> bytes:
    udp = struct.pack("!HHHH", 40000, port, 12, 0) + b"ping"
    loopback = bytes([127, 0, 0, 1])
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 32, 0, 0, 64, 17, 0, loopback, loopback) + udp


@needs_raw
def test_a_raw_socket_is_denied_unless_a_rule_names_raw(uninstall: None) -> None:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(0.5)
    port = receiver.getsockname()[1]
    seen = _install("  - {id: lo, category: network, action: allow, match: {cidr: 127.0.0.0/8}}\n")
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as raw:
        with pytest.raises(PolicyViolation) as caught:
            raw.sendto(_datagram_to(port), ("127.0.0.1", 0))
        assert caught.value.rule_id == "default:network"
        with pytest.raises(PolicyViolation):
            raw.connect(("127.0.0.1", 0))
    op = seen[-1].operation
    assert (op.transport, op.port) == ("raw", None)  # type: ignore[union-attr]
    with pytest.raises(TimeoutError):
        receiver.recvfrom(100)
    runtime.uninstall()
    _install("  - {id: raw, category: network, action: allow, match: {transport: raw}}\n")
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as raw:
        raw.sendto(_datagram_to(port), ("127.0.0.1", 0))
    assert receiver.recvfrom(100)[0] == b"ping"
    receiver.close()


@needs_raw
@pytest.mark.skipif(not hasattr(socket, "AF_PACKET"), reason="Linux packet sockets")
def test_a_packet_socket_is_raw(uninstall: None) -> None:
    seen = _install("  []\n")
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as packet:
        with pytest.raises(PolicyViolation):
            packet.bind(("lo", 0))
        with pytest.raises(PolicyViolation):
            packet.sendto(b"\0" * 14, ("lo", 0x0800, 0, 0, b"\0" * 6))
    op = seen[-1].operation
    assert (op.transport, op.operation, op.path, op.target) == ("raw", "send", "lo", "lo")  # type: ignore[union-attr]


# -- AF_UNIX paths are files -----------------------------------------------------------------


def _unix_server(path: str, kind: int = socket.SOCK_STREAM) -> socket.socket:
    server = socket.socket(socket.AF_UNIX, kind)
    server.bind(path)
    if kind == socket.SOCK_STREAM:
        server.listen(4)
    server.settimeout(0.5)
    return server


def _deny_folder(folder: Path) -> str:
    return (
        "  - id: folder\n    category: file\n    action: deny\n"
        f"    match: {{path: '{folder}/**', access: write}}\n"
    )


def test_a_unix_socket_in_a_denied_folder_is_denied(
    uninstall: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    denied = tmp_path / "d"
    denied.mkdir()
    monkeypatch.chdir(tmp_path)
    server = _unix_server("d/s")
    datagrams = _unix_server("d/g", socket.SOCK_DGRAM)
    os.symlink("d/s", "link")
    seen = _install(_deny_folder(denied))
    for target in ("d/s", str(denied / "s"), "link", "d/s\0/elsewhere"):
        with socket.socket(socket.AF_UNIX) as c, pytest.raises(PolicyViolation) as caught:
            c.connect(target)
        assert caught.value.rule_id == "folder"
        op = seen[-1].operation
        assert isinstance(op, FileOp)
        assert (op.real_path, op.access) == (str(denied / "s"), "write")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as c, pytest.raises(PolicyViolation):
        c.sendto(b"x", "d/g")
    with socket.socket(socket.AF_UNIX) as c, pytest.raises(PolicyViolation):
        c.bind("d/new")
    assert not (denied / "new").exists()
    with pytest.raises(TimeoutError):
        server.accept()
    with pytest.raises(TimeoutError):
        datagrams.recv(10)
    server.close()
    datagrams.close()


def test_an_abstract_unix_name_is_no_file(uninstall: None) -> None:
    name = f"\0appshield-test-{os.getpid()}"
    server = _unix_server(name)
    _install("  - {id: all, category: file, action: deny, match: {path: '/**', access: write}}\n")
    with socket.socket(socket.AF_UNIX) as c:
        c.connect(name)
    server.accept()[0].close()
    server.close()


def test_a_remembered_unix_connect_follows_the_path_again(
    uninstall: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ok").mkdir()
    (tmp_path / "d").mkdir()
    allowed = _unix_server(str(tmp_path / "ok" / "s"))
    denied = _unix_server(str(tmp_path / "d" / "s"))
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "ok" / "s")
    _install(_deny_folder(tmp_path / "d"))
    for _ in range(2):
        with socket.socket(socket.AF_UNIX) as c:
            c.connect(str(link))
        allowed.accept()[0].close()
    link.unlink()
    link.symlink_to(tmp_path / "d" / "s")
    with socket.socket(socket.AF_UNIX) as c, pytest.raises(PolicyViolation):
        c.connect(str(link))
    # A relative path names another socket from another folder.
    monkeypatch.chdir(tmp_path / "ok")
    with socket.socket(socket.AF_UNIX) as c:
        c.connect("s")
    allowed.accept()[0].close()
    monkeypatch.chdir(tmp_path / "d")
    with socket.socket(socket.AF_UNIX) as c, pytest.raises(PolicyViolation):
        c.connect("s")
    with pytest.raises(TimeoutError):
        denied.accept()
    allowed.close()
    denied.close()


def test_monitor_reports_the_file_and_connects(uninstall: None, tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    server = _unix_server(str(tmp_path / "d" / "s"))
    seen = _install(_deny_folder(tmp_path / "d"), mode="monitor")
    with socket.socket(socket.AF_UNIX) as c:
        c.connect(str(tmp_path / "d" / "s"))
    server.accept()[0].close()
    assert [(v.decision.rule_id, v.category, v.blocked) for v in seen] == [
        ("folder", "file", False)
    ]
    server.close()


def test_an_allow_decided_under_the_previous_policy_is_not_stored_under_the_new_one() -> None:
    # A thread decides an allow under policy one; meanwhile another thread's operation finds
    # policy two and resets the memory for it. The late store must not land among policy
    # two's entries, where a repeat would be let through without policy two's decision.
    cache = network._AllowCache()
    one, two = object(), object()
    cache.reset_for(one)
    key = ("connect", 2, 1, ("127.0.0.1", 9))
    base = NetworkOp("connect", None, "127.0.0.1", 9, "tcp")
    cache.reset_for(two)
    cache.store(one, key, base, ())
    assert key not in cache.entries
    cache.store(two, key, base, ())
    assert cache.entries[key] == (base, ())
