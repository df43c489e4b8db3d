"""The pure decision for the network semantics of issue 12: an unspecified address judged
as what it reaches (the address written still denied by a deny), raw sockets denied unless a
rule names `raw`, and explain's descriptions of both."""

from __future__ import annotations

import pytest

from appshield._describe import network_op
from appshield.normalize import reached_address
from appshield.operations import NetworkOp
from appshield.policy import Policy


def _policy(rules: str, network: str = "allow", mode: str = "enforce") -> Policy:
    return Policy.from_yaml(
        f"version: 1\nmode: {mode}\n"
        f"defaults: {{process: allow, file: allow, network: {network}, import: allow}}\n"
        f"rules:\n{rules}"
    )


ZERO = NetworkOp("connect", None, "127.0.0.1", 80, "tcp", requested="0.0.0.0")


@pytest.mark.parametrize(
    ("address", "bound", "reached"),
    [
        ("0.0.0.0", None, "127.0.0.1"),
        ("0.0.0.0", "0.0.0.0", "127.0.0.1"),
        ("0.0.0.0", "127.0.0.2", "127.0.0.2"),
        ("0.0.0.0", "::", "127.0.0.1"),
        ("::", None, "::1"),
        ("::", "::", "::1"),
        ("::", "127.0.0.1", "127.0.0.1"),  # bound to ::ffff:127.0.0.1 (folded)
        ("127.0.0.1", None, None),
        ("0.0.0.1", None, None),
        ("::1", None, None),
    ],
)
def test_what_an_unspecified_address_reaches(
    address: str, bound: str | None, reached: str | None
) -> None:
    assert reached_address(address, bound) == reached


def test_a_loopback_deny_sees_the_address_reached() -> None:
    policy = _policy("  - {id: lo, category: network, action: deny, match: {cidr: 127.0.0.1/32}}\n")
    decision = policy.decide(ZERO)
    assert (decision.rule_id, decision.blocked) == ("lo", True)
    host = _policy("  - {id: lo, category: network, action: deny, match: {host: 127.0.0.1}}\n")
    assert host.decide(ZERO).blocked


def test_a_deny_on_the_address_written_still_denies() -> None:
    for match in ("{cidr: 0.0.0.0/8}", "{host: 0.0.0.0}", "{cidr: '::ffff:0.0.0.0/104'}"):
        policy = _policy(f"  - {{id: zero, category: network, action: deny, match: {match}}}\n")
        assert policy.decide(ZERO).rule_id == "zero", match


def test_an_allow_must_match_the_address_reached() -> None:
    rules = "  - {id: zero, category: network, action: allow, match: {cidr: 0.0.0.0/32}}\n"
    policy = _policy(rules, network="deny")
    assert policy.decide(ZERO).rule_id == "default:network"
    assert policy.decide(NetworkOp("bind", None, "0.0.0.0", 80)).rule_id == "zero"
    loopback = "  - {id: lo, category: network, action: allow, match: {cidr: 127.0.0.0/8}}\n"
    assert _policy(loopback, network="deny").decide(ZERO).rule_id == "lo"


def test_an_unless_cannot_use_the_address_written() -> None:
    # "deny the loopback unless 0.0.0.0" must not let 0.0.0.0 reach the loopback.
    rules = (
        "  - id: lo\n    category: network\n    action: deny\n"
        "    match: {cidr: 127.0.0.0/8}\n    unless: {cidr: 0.0.0.0/32}\n"
    )
    assert _policy(rules).decide(ZERO).blocked


RAW = NetworkOp("send", None, "127.0.0.1", None, "raw")


def test_raw_is_denied_by_default_whatever_the_network_default() -> None:
    for mode, blocked in (("enforce", True), ("monitor", False)):
        decision = _policy("  []\n", mode=mode).decide(RAW)
        assert (decision.action, decision.rule_id, decision.blocked) == (
            "deny",
            "default:network",
            blocked,
        )
    # Other transports keep the category default.
    assert _policy("  []\n").decide(RAW._replace(transport="udp", port=53)).action == "allow"


def test_only_a_rule_that_names_raw_allows_or_alerts_a_raw_socket() -> None:
    broad = (
        "  - {id: all, category: network, action: allow, match: {}}\n"
        "  - {id: lo, category: network, action: allow, match: {cidr: 127.0.0.0/8}}\n"
        "  - {id: look, category: network, action: alert, match: {operation: send}}\n"
    )
    assert _policy(broad).decide(RAW).rule_id == "default:network"
    named = "  - {id: raw, category: network, action: allow, match: {transport: raw}}\n"
    assert _policy(named).decide(RAW).rule_id == "raw"
    alert = "  - {id: raw, category: network, action: alert, match: {transport: [raw, udp]}}\n"
    assert _policy(alert).decide(RAW).action == "alert"


def test_a_deny_without_a_transport_still_denies_raw() -> None:
    rules = (
        "  - {id: raw, category: network, action: allow, match: {transport: raw}}\n"
        "  - {id: lo, category: network, action: deny, match: {cidr: 127.0.0.0/8}}\n"
    )
    assert _policy(rules).decide(RAW).rule_id == "lo"


def test_transport_raw_is_valid_and_old_transports_still_load() -> None:
    for transport in ("tcp", "udp", "unix", "raw", "[tcp, raw]"):
        rules = (
            f"  - {{id: t, category: network, action: deny, match: {{transport: {transport}}}}}\n"
        )
        _policy(rules)


def test_explain_describes_what_the_kernel_does() -> None:
    zero = network_op("connect", "0.0.0.0:80")
    assert (zero.address, zero.requested, zero.target) == (
        "127.0.0.1",
        "0.0.0.0",
        "0.0.0.0 (127.0.0.1):80",
    )
    assert network_op("connect", "[::]:80").address == "::1"
    assert network_op("bind", "0.0.0.0:80").address == "0.0.0.0"
    fastopen = network_op("send", "127.0.0.1:80", transport="tcp")
    assert fastopen.operation == "connect"
    raw = network_op("send", "127.0.0.1:80", transport="raw")
    assert (raw.transport, raw.port) == ("raw", None)
