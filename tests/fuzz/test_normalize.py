"""Fuzzing the normalisers the hooks, `explain` and the loader share (appshield.normalize).

Promises checked on arbitrary input: they return quickly, raise nothing but what their
docstrings document (ValueError for a NUL byte in a path), and give a canonical form that
is a fixed point (normalising it again changes nothing). Addresses are also checked for
meaning: every spelling of a number is that address.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appshield.normalize import canonical_address, normalize_host, normalize_path, resolve_path
from tests.fuzz._guard import FAST, FAST_COSTLY, SLOW, time_limit

LIMIT = 5.0

path_parts = st.sampled_from(["", ".", "..", "a", "b", "tmp", "proc", "self", "root", "//"])
path_like = st.one_of(
    st.text(max_size=60),
    st.lists(path_parts, max_size=12).map("/".join),
    st.lists(path_parts, max_size=12).map(lambda parts: "/" + "/".join(parts)),
)


def check_path(text: str | bytes) -> None:
    with time_limit(LIMIT):
        try:
            result = normalize_path(text, cwd="/work/here")
        except ValueError:
            assert (b"\x00" if isinstance(text, bytes) else "\x00") in text
            return
    assert result.startswith("/") and not result.startswith("//")
    assert "/./" not in result + "/" and "/../" not in result + "/"
    assert normalize_path(result) == result


@FAST
@given(path_like)
def test_normalize_path_text(text: str) -> None:
    check_path(text)


@FAST
@given(st.binary(max_size=60))
def test_normalize_path_bytes(raw: bytes) -> None:
    check_path(raw)


def test_normalize_path_refuses_a_non_path() -> None:
    with pytest.raises(TypeError):
        normalize_path(3)  # type: ignore[arg-type]


@FAST
@given(path_like)
def test_resolve_path(text: str) -> None:
    with time_limit(LIMIT):
        try:
            result = resolve_path(text, cwd="/tmp")
        except ValueError:
            assert "\x00" in text
            return
    assert result.startswith("/")
    assert resolve_path(result) == result


def _spellings(value: int) -> list[str]:
    """Ways the C library accepts to write one IPv4 address."""
    octets = value.to_bytes(4, "big")
    return [
        ".".join(str(o) for o in octets),
        str(value),
        hex(value),
        ".".join(hex(o) for o in octets),
        ".".join(f"0{o:o}" for o in octets),
        f"{octets[0]}.{int.from_bytes(octets[1:], 'big')}",
        f"{octets[0]}.{octets[1]}.{int.from_bytes(octets[2:], 'big')}",
        f"::ffff:{ipaddress.IPv4Address(value)}",
        f"[::ffff:{ipaddress.IPv4Address(value)}]",
    ]


@FAST
@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_every_ipv4_spelling_is_one_address(value: int) -> None:
    expected = str(ipaddress.IPv4Address(value))
    for spelling in _spellings(value):
        assert canonical_address(spelling) == expected, spelling


@FAST
@given(st.integers(min_value=2**32, max_value=2**128 - 1))
def test_ipv6_canonical(value: int) -> None:
    address = ipaddress.IPv6Address(value)
    result = canonical_address(address.exploded)
    expected = str(address.ipv4_mapped) if address.ipv4_mapped else str(address)
    assert result == expected
    assert canonical_address(result) == result


def check_address(text: Any) -> None:
    with time_limit(LIMIT):
        result = canonical_address(text)
    if result is None:
        return
    parsed = ipaddress.ip_address(result)  # the canonical form is a real address
    assert str(parsed) == result
    assert canonical_address(result) == result


@FAST
@given(st.one_of(st.text(max_size=50), st.text(alphabet="0123456789abcdefx.:[]%", max_size=40)))
def test_canonical_address_arbitrary(text: str) -> None:
    check_address(text)


def test_canonical_address_other_types() -> None:
    for value in (None, b"127.0.0.1", 2130706433, ["127.0.0.1"], ""):
        assert canonical_address(value) is None  # type: ignore[arg-type]


@FAST
@given(
    st.one_of(st.text(max_size=60), st.binary(max_size=60), st.from_regex(r"[a-zA-Z0-9.-]{0,40}"))
)
def test_normalize_host(name: str | bytes) -> None:
    with time_limit(LIMIT):
        result = normalize_host(name)  # type: ignore[arg-type]
    assert isinstance(result, str)
    assert not result.endswith(".")
    assert normalize_host(result) == result


@FAST_COSTLY  # generating from a regex is slow
@given(st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]{1,10}){0,3}", fullmatch=True))
def test_plain_hostnames_unchanged(name: str) -> None:
    assert normalize_host(name) == name
    assert normalize_host(name.upper() + ".") == name


def test_a_name_is_not_an_address() -> None:
    # inet_aton would read "1.2.3.4 junk" as an address; getaddrinfo refuses it, so must we.
    assert canonical_address("1.2.3.4 junk") is None
    assert canonical_address("localhost") is None
    assert socket.inet_aton("1.2.3.4") == bytes([1, 2, 3, 4])


@pytest.mark.slow
@SLOW
@given(st.one_of(path_like, st.binary(max_size=200)))
def test_long_run_paths(text: str | bytes) -> None:
    check_path(text)


@pytest.mark.slow
@SLOW
@given(st.one_of(st.text(max_size=200), st.text(alphabet="0123456789abcdefxX.:[]%", max_size=60)))
def test_long_run_addresses(text: str) -> None:
    check_address(text)
    with time_limit(LIMIT):
        normalize_host(text)


def test_cwd_is_not_consulted_for_absolute_paths() -> None:
    assert normalize_path("/a/../b", cwd="/nowhere") == "/b"
    assert normalize_path(os.fsencode("/x/./y")) == "/x/y"
