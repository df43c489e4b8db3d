"""The loader, fed arbitrary text and arbitrary structures, raises nothing but
`PolicyError` and never hangs (hypothesis deadlines)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appshield.document import PolicyDocument
from appshield.errors import PolicyError
from appshield.policy.loader import load_mapping, load_text

FUZZ = settings(
    deadline=timedelta(seconds=3),
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow],
)

KEYS = [
    "version", "name", "mode", "extends", "disable", "defaults", "rules", "protections",
    "id", "description", "category", "action", "match", "unless", "scope",
    "process", "file", "network", "import", "executable", "args", "shell", "command_line",
    "unshielded", "path", "access", "host", "cidr", "port", "operation", "transport",
    "module", "origin", "library", "policy_files", "unshielded_children",
]  # fmt: skip
WORDS = [
    *KEYS, "allow", "deny", "alert", "enforce", "monitor", "read", "write", "connect", "tcp",
    "/etc/**", "~/x", "{home}/a", "{nope}", "*.example.com", "10.0.0.0/8", "10.0.0.1/8",
    "80-90", "90-80", "appshield:baseline", "appshield:nope", "../x.yaml", "[", "**", "a.**b",
]  # fmt: skip
TOKENS = [
    *WORDS, ":", ": ", " ", "\n", "\n  ", "- ", "[", "]", "{", "}", ", ", "&a ", "*a",
    "!!python/object:os.system ", "!t ", "1", "no", "1:30", "0x1F", "~", "'", '"', "# c",
    "? ", "|\n", ">\n", "\t", "---\n", "...\n", "%YAML 1.1\n", "<<: ", "\x00", "\ufeff",
]  # fmt: skip


def _only_policy_error(call: Any) -> None:
    try:
        result = call()
    except PolicyError as exc:
        assert exc.problems
        assert all(str(p) for p in exc.problems)
    else:
        assert isinstance(result, PolicyDocument)


@FUZZ
@given(st.text())
def test_arbitrary_text(text: str) -> None:
    _only_policy_error(lambda: load_text(text))


@FUZZ
@given(st.lists(st.sampled_from(TOKENS), max_size=80).map("".join))
def test_yaml_ish_text(text: str) -> None:
    _only_policy_error(lambda: load_text(text, filename="fuzz.yaml"))


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True),
    st.sampled_from(WORDS),
    st.text(max_size=12),
    st.binary(max_size=4),
)
structures = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(
            st.one_of(st.sampled_from(KEYS), st.text(max_size=4), st.integers()), inner, max_size=5
        ),
        st.frozensets(st.integers(), max_size=3),
    ),
    max_leaves=30,
)


@FUZZ
@given(structures)
def test_arbitrary_structures(data: Any) -> None:
    _only_policy_error(lambda: load_mapping(data))


def _field_values() -> st.SearchStrategy[Any]:
    return st.one_of(
        scalars, st.lists(scalars, max_size=3), st.lists(st.lists(scalars, max_size=2), max_size=2)
    )


rules = st.fixed_dictionaries(
    {
        "id": st.one_of(st.sampled_from(["a", "b", "a b", ""]), scalars),
        "category": st.sampled_from(["process", "file", "network", "import", "other"]),
        "action": st.sampled_from(["allow", "deny", "alert", "block"]),
        "match": st.dictionaries(st.sampled_from(KEYS), _field_values(), max_size=3),
    },
    optional={
        "unless": st.dictionaries(st.sampled_from(KEYS), _field_values(), max_size=2),
        "scope": _field_values(),
        "mode": st.sampled_from(["enforce", "monitor", "x"]),
    },
)
policies = st.fixed_dictionaries(
    {
        "version": st.sampled_from([1, 2, "1"]),
        "defaults": st.dictionaries(
            st.sampled_from(["process", "file", "network", "import", "x"]),
            st.sampled_from(["allow", "deny", "alert", "nope"]),
        ),
        "rules": st.lists(rules, max_size=4),
    },
    optional={"extends": st.sampled_from(["appshield:baseline", "nope.yaml", "../x", 1])},
)


@FUZZ
@given(policies)
def test_policy_shaped_mappings_and_their_yaml(data: dict[str, Any]) -> None:
    _only_policy_error(lambda: load_mapping(data))
    text = yaml.safe_dump(data, allow_unicode=True)
    _only_policy_error(lambda: load_text(text))


@pytest.mark.slow
@settings(max_examples=3000, deadline=timedelta(seconds=5), suppress_health_check=list(HealthCheck))
@given(st.one_of(st.text(), st.lists(st.sampled_from(TOKENS), max_size=200).map("".join)))
def test_exhaustive_text(text: str) -> None:
    _only_policy_error(lambda: load_text(text, filename="fuzz.yaml"))
