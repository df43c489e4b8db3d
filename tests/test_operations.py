"""The operation types behave exactly as plain NamedTuples with the same fields.

Each is a NamedTuple of its fields plus a subclass that holds the `category` class attribute
(so that type checkers accept it). These tests compare every operation with a reference
NamedTuple built here from the same fields: hashing, equality, pickling (byte for byte),
copying, repr, `_replace` and `_asdict` must not tell them apart, and instances must stay
bare tuples without a `__dict__`.
"""

from __future__ import annotations

import collections
import copy
import pickle
from collections.abc import Iterator
from typing import Any

import pytest

from appshield import operations
from appshield.operations import FileOp, ImportOp, NetworkOp, ProcessOp

SAMPLES: list[tuple[type[Any], str, tuple[Any, ...]]] = [
    (ProcessOp, "process", ("/bin/sh", ("sh", "-c", "true"), True, "/tmp", True, False)),
    (FileOp, "file", ("/etc/passwd", "read", "/etc/passwd")),
    (NetworkOp, "network", ("connect", "example.org", "127.0.0.1", 443, "tcp", ("a",), None)),
    (ImportOp, "import", ("json", "/usr/lib/python3/json/__init__.py", None, None, None)),
]


def _reference(kind: type[Any]) -> type[Any]:
    """A plain NamedTuple with `kind`'s name, fields and defaults: what the operation types
    were before the `category` attribute moved to a subclass."""
    defaults = tuple(kind._field_defaults.values())
    plain = collections.namedtuple(kind.__name__, kind._fields, defaults=defaults)
    plain.__module__ = kind.__module__
    return plain


@pytest.fixture(params=SAMPLES, ids=[kind.__name__ for kind, _, _ in SAMPLES])
def sample(request: pytest.FixtureRequest) -> Iterator[tuple[Any, Any, str]]:
    kind, category, values = request.param
    reference = _reference(kind)
    yield kind(*values), reference(*values), category


def test_category_is_a_class_attribute(sample: tuple[Any, Any, str]) -> None:
    op, _, category = sample
    assert op.category == category
    assert type(op).category == category
    assert "category" not in op._fields


def test_instances_stay_bare_tuples(sample: tuple[Any, Any, str]) -> None:
    op, _, _ = sample
    assert isinstance(op, tuple)
    assert not hasattr(op, "__dict__")
    with pytest.raises(AttributeError):
        op.something = 1


def test_hash_and_equality_are_the_tuple_s(sample: tuple[Any, Any, str]) -> None:
    op, reference, _ = sample
    values = tuple(op)
    assert hash(op) == hash(values) == hash(reference)
    assert op == values == reference
    assert op != (*values[:-1], "other")
    assert type(op)(*values) == op
    assert len({op, type(op)(*values)}) == 1


def test_fields_defaults_and_api_match_a_plain_namedtuple(sample: tuple[Any, Any, str]) -> None:
    op, reference, _ = sample
    kind, plain = type(op), type(reference)
    assert kind._fields == plain._fields
    assert kind._field_defaults == plain._field_defaults
    assert kind.__match_args__ == plain.__match_args__
    assert repr(op) == repr(reference)
    assert op._asdict() == reference._asdict()
    first = kind._fields[0]
    replaced = op._replace(**{first: getattr(op, first)})
    assert type(replaced) is kind and replaced == op
    assert type(kind._make(tuple(op))) is kind


def test_pickles_byte_for_byte_as_a_plain_namedtuple(
    sample: tuple[Any, Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    op, reference, _ = sample
    kind = type(op)
    ours = [pickle.dumps(op, protocol) for protocol in range(pickle.HIGHEST_PROTOCOL + 1)]
    # Pickle finds a class by module and name: let the reference stand at that name while
    # it is pickled, so both pickles name the same class.
    monkeypatch.setattr(operations, kind.__name__, type(reference))
    theirs = [pickle.dumps(reference, protocol) for protocol in range(pickle.HIGHEST_PROTOCOL + 1)]
    monkeypatch.undo()
    assert ours == theirs
    for data in ours:
        loaded = pickle.loads(data)
        assert type(loaded) is kind and loaded == op


def test_copies_keep_type_and_value(sample: tuple[Any, Any, str]) -> None:
    op, _, _ = sample
    for duplicate in (copy.copy(op), copy.deepcopy(op)):
        assert type(duplicate) is type(op) and duplicate == op
