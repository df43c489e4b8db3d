"""The resolve memory (`hooks.network._Resolves`): a repeated getaddrinfo of an address, or of
a name the policy allowed, is let through without being decided again, and nothing about it
can widen what the policy allows.

Real sockets on 127.0.0.1 only. Each test installs its own shield and removes it.
"""

from __future__ import annotations

import _socket
import socket
from collections.abc import Iterator

import pytest

from appshield import runtime
from appshield.errors import PolicyViolation
from appshield.hooks import network
from appshield.hooks._convert import Unreadable
from appshield.policy import Policy
from appshield.report import Violation
from tests.hooks.test_network import Server  # the same counting listener on 127.0.0.1


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.sock.close()


def _install(rules: str = "") -> list[Violation]:
    runtime.install(
        Policy.from_yaml(
            "version: 1\nname: resolve-memory\nmode: enforce\n"
            "defaults: {process: allow, file: allow, network: allow, import: allow}\n"
            "rules:\n"
            + (rules or "  - {id: none, category: network, action: deny, match: {port: 1}}\n")
        )
    )
    shield = runtime.active_shield()
    assert shield is not None
    seen: list[Violation] = []
    shield.add_listener(seen.append)
    return seen


def _entries() -> dict[tuple[object, object], object]:
    shield = runtime.active_shield()
    assert shield is not None
    memory = network._resolves
    return memory.entries if memory.key is shield.compiled else {}


def test_an_address_lookup_is_remembered_and_answered_unchanged(server: Server) -> None:
    raw = _socket.getaddrinfo
    expected = raw("127.0.0.1", server.port, 0, socket.SOCK_STREAM)
    _install()
    try:
        first = socket.getaddrinfo("127.0.0.1", server.port, 0, socket.SOCK_STREAM)
        assert ("127.0.0.1", server.port) in _entries()
        again = [socket.getaddrinfo("127.0.0.1", server.port, 0, socket.SOCK_STREAM)]
        again.append(socket.getaddrinfo(b"127.0.0.1", server.port))
        assert (b"127.0.0.1", server.port) in _entries()
        for _ in range(3):
            socket.create_connection(("127.0.0.1", server.port)).close()
        with pytest.raises(socket.gaierror):  # C's own error, on a repeat as on the first
            socket.getaddrinfo("127.0.0.1", "no-such-service-x")
        with pytest.raises(socket.gaierror):
            socket.getaddrinfo("127.0.0.1", "no-such-service-x")
    finally:
        runtime.uninstall()
    assert first == expected and again[0] == expected
    assert server.settle() == 3


def test_a_policy_change_replaces_the_memory_whole(server: Server) -> None:
    _install()
    try:
        for _ in range(2):
            socket.getaddrinfo("localhost", server.port)
            socket.getaddrinfo("127.0.0.1", server.port)
        old = network._resolves
        assert ("127.0.0.1", server.port) in old.entries
    finally:
        runtime.uninstall()
    _install(
        "  - {id: no-lookup, category: network, action: deny,"
        " match: {host: localhost, operation: resolve}}\n"
    )
    try:
        with pytest.raises(PolicyViolation):
            socket.getaddrinfo("localhost", server.port)
        with pytest.raises(PolicyViolation):  # and again: a deny is never remembered
            socket.getaddrinfo("localhost", server.port)
        socket.getaddrinfo("127.0.0.1", server.port)
        assert network._resolves is not old
        assert list(_entries()) == [("127.0.0.1", server.port)]
        assert ("127.0.0.1", server.port) in old.entries  # the old one was left as it was
    finally:
        runtime.uninstall()


def test_a_lying_str_subclass_is_neither_remembered_nor_answered(server: Server) -> None:
    """A host whose `__eq__`/`__hash__` claim to be a remembered address is decided in full
    (and denied); one whose value is an address is let through but not remembered."""

    class Liar(str):
        def __eq__(self, other: object) -> bool:
            return True

        def __hash__(self) -> int:
            return hash("127.0.0.1")

    seen = _install(
        "  - {id: no-evil, category: network, action: deny,"
        " match: {host: evil.invalid, operation: resolve}}\n"
    )
    try:
        socket.getaddrinfo("127.0.0.1", server.port)
        socket.getaddrinfo("127.0.0.1", server.port)
        for _ in range(2):
            with pytest.raises(PolicyViolation):
                socket.getaddrinfo(Liar("evil.invalid"), server.port)
            with pytest.raises(Unreadable):  # its audit event: refused (not read as C read it)
                _socket.getaddrinfo.__wrapped__(  # type: ignore[attr-defined]
                    Liar("127.0.0.1"), server.port
                )
        network._resolves.entries.clear()
        socket.getaddrinfo(Liar("127.0.0.1"), server.port)
        socket.getaddrinfo(Liar("127.0.0.1"), server.port)
        assert not _entries()
        socket.getaddrinfo("127.0.0.1", server.port)
        assert all(type(host) is str for host, _ in _entries())
    finally:
        runtime.uninstall()
    assert [v.decision.rule_id for v in seen] == ["no-evil", "implicit:undescribable"] * 2


def test_an_address_denied_by_cidr_is_denied_on_every_connect(server: Server) -> None:
    seen = _install("  - {id: lo, category: network, action: deny, match: {cidr: 127.0.0.1/32}}\n")
    try:
        for host in ("127.0.0.1", "0.0.0.0", "::ffff:127.0.0.1") * 2:
            with pytest.raises(PolicyViolation):
                socket.create_connection((host, server.port)).close()
        assert ("127.0.0.1", server.port) in _entries()
        assert ("0.0.0.0", server.port) in _entries()
    finally:
        runtime.uninstall()
    assert [v.decision.rule_id for v in seen] == ["lo"] * 6
    assert server.settle() == 0


def test_a_name_rule_still_denies_an_address_remembered_before(server: Server) -> None:
    """An address lookup is remembered as needing no decision; the connect after it is
    still decided with the names the address resolved from since."""
    _install(
        "  - {id: no-localhost, category: network, action: deny,"
        " match: {host: localhost, operation: connect}}\n"
    )
    try:
        for _ in range(2):
            socket.create_connection(("127.0.0.1", server.port)).close()
        assert ("127.0.0.1", server.port) in _entries()
        socket.getaddrinfo("localhost", server.port, socket.AF_INET)  # -> 127.0.0.1
        for _ in range(2):
            with pytest.raises(PolicyViolation) as denied:
                socket.create_connection(("127.0.0.1", server.port)).close()
            assert denied.value.rule_id == "no-localhost"
    finally:
        runtime.uninstall()
    assert server.settle() == 2


def test_the_memory_is_bounded(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(network._Resolves, "LIMIT", 4)
    _install()
    try:
        for port in range(1000, 1010):
            socket.getaddrinfo("127.0.0.1", port)
            assert len(_entries()) <= 4
    finally:
        runtime.uninstall()


def _network_rule_ids(op: object) -> list[str]:
    shield = runtime.active_shield()
    assert shield is not None
    index = shield.compiled._categories["network"]
    return [index.rule_at(position).id for position in index.candidates(op)]


def test_a_name_the_exporters_scoped_allow_names_is_remembered_only_where_allowed(
    server: Server,
) -> None:
    # implicit:telemetry_exporter allows the exporter's own lookup of `localhost` (the OTLP
    # endpoint's default host), scoped to the exporter's code. Where the policy allows the
    # name anyway, that scoped allow adds nothing, and the app's lookups are remembered like
    # any allowed name's (each used to be decided in full). Where the policy denies it, only
    # the exporter's stack would be allowed: the app's lookup is refused every time, never
    # remembered, and nothing is looked up.
    from appshield.operations import NetworkOp

    op = NetworkOp("resolve", host="localhost", port=server.port, transport="tcp")
    _install()
    try:
        assert "implicit:telemetry_exporter" in _network_rule_ids(op)
        first = socket.getaddrinfo("localhost", server.port, 0, socket.SOCK_STREAM)
        assert ("localhost", server.port) in _entries()
        assert socket.getaddrinfo("localhost", server.port, 0, socket.SOCK_STREAM) == first
        socket.create_connection(("localhost", server.port)).close()
    finally:
        runtime.uninstall()
    assert server.settle() == 1
    runtime.install(
        Policy.from_yaml(
            "version: 1\nname: resolve-memory\nmode: enforce\n"
            "defaults: {process: allow, file: allow, network: deny, import: allow}\n"
        )
    )
    try:
        assert "implicit:telemetry_exporter" in _network_rule_ids(op)
        for _ in range(3):
            with pytest.raises(PolicyViolation):
                socket.getaddrinfo("localhost", server.port)
        assert ("localhost", server.port) not in _entries()
    finally:
        runtime.uninstall()
