"""Fuzzing the policy loader: whatever the input, `PolicyError` or a valid policy, quickly.

Three shapes of input: arbitrary text; YAML dumped from arbitrary nested structures; and
"policy-shaped" documents built from the real vocabulary (keys, categories, fields) mixed
with arbitrary values, which reach the deep validation code that random text never does.
A policy that loads must also compile and decide without raising.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from appshield import FileOp, ImportOp, NetworkOp, Policy, PolicyError, ProcessOp, load_policy
from tests.fuzz._guard import FAST, FAST_COSTLY, SLOW, SLOW_COSTLY, time_limit

CALL_LIMIT = 10.0  # seconds; a single load normally takes a few milliseconds

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True),
    st.text(max_size=30),
)
structures = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=30,
)

CATEGORIES = ("process", "file", "network", "import", "other")
FIELDS = (
    "executable",
    "args",
    "shell",
    "command_line",
    "unshielded",
    "path",
    "access",
    "host",
    "cidr",
    "port",
    "operation",
    "transport",
    "module",
    "origin",
    "library",
    "bogus",
)
VALUES = st.one_of(
    scalars,
    st.sampled_from(
        [
            "/tmp/**",
            "**",
            "/a/[b",
            "*.example.com",
            "10.0.0.0/8",
            "::1/129",
            "1-65535",
            "80-20",
            "read",
            "write",
            "connect",
            "tcp",
            "ctypes",
            "{tmp}/x",
            "~/x",
            "{nope}/x",
            "git",
            "/usr/bin/*",
            "[!a]",
            "1:30",
            "no",
        ]
    ),
    st.lists(st.sampled_from(["/a", "**", "x", "*"]), max_size=4),
)


@st.composite
def rules(draw: st.DrawFn) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "id": draw(st.one_of(st.sampled_from(["r1", "r2", "bad id", ""]), st.text(max_size=8))),
        "category": draw(st.sampled_from(CATEGORIES)),
        "action": draw(st.sampled_from(["allow", "deny", "alert", "block"])),
        "match": draw(st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=3)),
    }
    if draw(st.booleans()):
        rule["unless"] = draw(
            st.dictionaries(st.sampled_from((*FIELDS, "scope")), VALUES, max_size=2)
        )
    if draw(st.booleans()):
        rule["scope"] = draw(VALUES)
    if draw(st.booleans()):
        rule["mode"] = draw(st.sampled_from(["monitor", "enforce", "loud"]))
    return rule


@st.composite
def policy_shaped(draw: st.DrawFn) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "version": draw(st.sampled_from([1, 1, 2, "1", None])),
        "defaults": draw(
            st.dictionaries(
                st.sampled_from(CATEGORIES),
                st.sampled_from(["allow", "deny", "alert", 3]),
                max_size=5,
            )
        ),
        "rules": draw(st.lists(rules(), max_size=4)),
    }
    for key, value in draw(
        st.dictionaries(
            st.sampled_from(["name", "mode", "disable", "protections", "extends", "zzz"]),
            VALUES,
            max_size=2,
        )
    ).items():
        doc[key] = value
    return doc


PROBES = (
    ProcessOp("/bin/sh", ("sh", "-c", "id"), shell=True, trusted_location=True),
    FileOp("/tmp/x", "read"),
    NetworkOp("connect", host="example.com", address="127.0.0.1", port=443),
    ImportOp("ctypes"),
)


def load_or_policy_error(load: Callable[[], Policy]) -> None:
    """The loader's promise: a Policy, or PolicyError; a loaded one decides without error."""
    with time_limit(CALL_LIMIT):
        try:
            policy = load()
        except PolicyError as error:
            assert str(error)  # every rejection says why
            return
        for operation in PROBES:
            policy.decide(operation, ())


@FAST
@given(st.text(max_size=400))
def test_arbitrary_text(text: str) -> None:
    load_or_policy_error(lambda: Policy.from_yaml(text))


@FAST_COSTLY
@given(structures)
def test_dumped_structures(data: Any) -> None:
    text = yaml.safe_dump(data, allow_unicode=True)
    load_or_policy_error(lambda: Policy.from_yaml(text))


@FAST_COSTLY
@given(policy_shaped())
def test_policy_shaped_yaml(data: dict[str, Any]) -> None:
    text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    load_or_policy_error(lambda: Policy.from_yaml(text))


@FAST_COSTLY
@given(policy_shaped())
def test_policy_shaped_mapping(data: dict[str, Any]) -> None:
    load_or_policy_error(lambda: Policy.from_mapping(data))


_FOLDER = Path(tempfile.mkdtemp(prefix="appshield-fuzz-"))
atexit.register(shutil.rmtree, _FOLDER, True)


@FAST
@given(st.binary(max_size=400))
def test_arbitrary_bytes_in_a_file(raw: bytes) -> None:
    path = _FOLDER / "policy.yaml"
    path.write_bytes(raw)
    load_or_policy_error(lambda: load_policy(path))


@pytest.mark.parametrize(
    "text",
    [
        # An alias bomb: refused (aliases are not allowed), and quickly.
        "a: &a [x, x, x, x, x, x, x, x, x]\n"
        + "".join(
            f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
            for p, c in zip("abcdefgh", "bcdefghi", strict=True)
        ),
        "[" * 5000 + "]" * 5000,  # deep nesting
        "{" * 5000,  # unterminated
        "version: 1\nrules:\n" + "  - id: r\n" * 5000,  # duplicate ids by the thousand
        "x: " + "9" * 100_000,  # huge number
    ],
    ids=["alias-bomb", "deep-nesting", "unterminated", "many-duplicates", "huge-number"],
)
def test_hostile_documents(text: str) -> None:
    load_or_policy_error(lambda: Policy.from_yaml(text))


@pytest.mark.slow
@SLOW
@given(st.one_of(st.text(max_size=2000), structures.map(yaml.safe_dump)))
def test_long_run_text(text: str) -> None:
    load_or_policy_error(lambda: Policy.from_yaml(text))


@pytest.mark.slow
@SLOW_COSTLY
@given(policy_shaped())
def test_long_run_policy_shaped(data: dict[str, Any]) -> None:
    text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    load_or_policy_error(lambda: Policy.from_yaml(text))
