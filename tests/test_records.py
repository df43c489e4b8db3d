"""appshield._records.NamedTuple builds what typing.NamedTuple builds, minus the ForwardRefs.

The same class bodies go through both, and every observable part is compared: fields,
defaults, methods and docstrings kept, construction, `_replace`, pickling, equality with the
plain tuple, the errors for a bad body. Annotations stay the strings they were written as.
"""

from __future__ import annotations

import collections
import pickle
import typing
from typing import Any

import pytest

from appshield import _records

BODY = '''
class Point(Base):
    """A point."""

    x: int
    y: int = 0
    label: str | None = None

    def norm1(self) -> int:
        return abs(self.x) + abs(self.y)

    @property
    def doubled(self) -> tuple[int, int]:
        return (2 * self.x, 2 * self.y)
'''


def _build(base: Any, module: str) -> Any:
    namespace: dict[str, Any] = {"Base": base, "__name__": module}
    exec(compile("from __future__ import annotations\n" + BODY, module, "exec"), namespace)
    return namespace["Point"]


# Picklable: the class is reachable as this module's attribute under its own name.
Point = _build(_records.NamedTuple, __name__)


def test_same_shape_as_typing() -> None:
    reference = _build(typing.NamedTuple, "reference")
    assert Point._fields == reference._fields == ("x", "y", "label")
    assert Point._field_defaults == reference._field_defaults
    assert Point.__doc__ == reference.__doc__ == "A point."
    assert Point.__mro__[1:] == reference.__mro__[1:] == (tuple, object)
    assert Point.__module__ == __name__ and Point.__qualname__ == "Point"
    point = Point(3, -4)
    assert point == reference(3, -4) == (3, -4, None)
    assert point.norm1() == 7 and point.doubled == (6, -8)
    assert point._replace(label="p") == Point(3, -4, "p")
    assert point._asdict() == {"x": 3, "y": -4, "label": None}
    assert repr(point) == "Point(x=3, y=-4, label=None)"
    assert hash(point) == hash((3, -4, None))
    assert Point.__annotations__ == {"x": "int", "y": "int", "label": "str | None"}


def test_pickles_and_subclasses() -> None:
    point = Point(1, 2, "a")
    assert pickle.loads(pickle.dumps(point)) == point

    class Tagged(Point):
        kind = "tagged"

    tagged = Tagged(1)
    assert tagged.kind == "tagged" and tagged == (1, 0, None)


@pytest.mark.parametrize("base", [typing.NamedTuple, _records.NamedTuple], ids=["typing", "ours"])
def test_same_errors(base: Any) -> None:
    with pytest.raises(TypeError, match="Non-default namedtuple field y"):
        _build_text(base, "class Bad(Base):\n    x: int = 0\n    y: int\n")
    with pytest.raises(AttributeError, match="Cannot overwrite NamedTuple attribute _replace"):
        _build_text(base, "class Bad(Base):\n    x: int\n    def _replace(self): pass\n")


def _build_text(base: Any, text: str) -> Any:
    namespace: dict[str, Any] = {"Base": base, "__name__": "bad"}
    exec(compile("from __future__ import annotations\n" + text, "bad", "exec"), namespace)
    return namespace["Bad"]


@pytest.mark.parametrize("count", [0, 1, 2, 5, 15, 16, 17, 20])
def test_every_field_count_binds_as_namedtuple_does(count: int) -> None:
    """Each field count's `__new__` (the written-out ones, and namedtuple itself past them):
    positional, keyword and default binding, the errors, `_make`, `__match_args__`."""
    names = [f"f{i}" for i in range(count)]
    text = (
        "class Bad(Base):\n    pass\n"
        if not count
        else "class Bad(Base):\n"
        + "".join(
            f"    {name}: int{' = -1' if i == count - 1 else ''}\n" for i, name in enumerate(names)
        )
    )
    ours = _build_text(_records.NamedTuple, text)
    reference = collections.namedtuple("Bad", names, defaults=[-1] if count else None)
    values = list(range(count))
    assert ours(*values) == reference(*values) == tuple(values)
    assert ours(**dict(zip(names, values, strict=True))) == tuple(values)
    assert ours._make(values) == tuple(values) and type(ours._make(values)) is ours
    assert ours.__match_args__ == reference.__match_args__ == tuple(names)
    assert ours.__new__.__defaults__ == reference.__new__.__defaults__
    assert ours.__new__.__qualname__ == "Bad.__new__"
    assert ours.__doc__ == reference.__doc__
    if count:
        assert ours(*values[:-1]) == (*values[:-1], -1)
        assert repr(ours(*values)) == repr(reference(*values))
        assert getattr(ours(*values), names[-1]) == values[-1]
        wrong = [((*values, 0), {}), (values, {"nope": 1})] + ([((), {})] if count > 1 else [])
        for args, kwargs in wrong:
            with pytest.raises(TypeError) as mine:
                ours(*args, **kwargs)
            with pytest.raises(TypeError) as theirs:
                reference(*args, **kwargs)
            assert str(mine.value) == str(theirs.value)
    with pytest.raises(ValueError, match="underscore"):
        _build_text(_records.NamedTuple, "class Bad(Base):\n    _x: int\n")


@pytest.mark.parametrize("count", [1, 2, 5, 16, 17])
def test_shared_methods_answer_as_namedtuples_own(count: int) -> None:
    """`_make`, `_replace`, `__repr__`, `_asdict` and `__getnewargs__` are shared by every
    record class (no closures per class): results and errors are namedtuple's, for the class
    and for a subclass with `__slots__ = ()` (as appshield.operations declares them)."""
    names = [f"f{i}" for i in range(count)]
    text = "class Bad(Base):\n" + "".join(f"    {name}: int\n" for name in names)
    ours = _build_text(_records.NamedTuple, text)
    reference = collections.namedtuple("Bad", names)

    class Sub(ours):  # type: ignore[misc, valid-type]
        __slots__ = ()

    class ReferenceSub(reference):  # type: ignore[misc, valid-type]
        __slots__ = ()

    values = list(range(count))
    for mine, theirs in ((ours, reference), (Sub, ReferenceSub)):
        made = mine._make(values)
        assert type(made) is mine and made == theirs._make(values)
        assert repr(made).split("(", 1)[1] == repr(theirs._make(values)).split("(", 1)[1]
        assert repr(made).startswith(mine.__name__ + "(")
        assert made._asdict() == theirs._make(values)._asdict()
        assert made.__getnewargs__() == tuple(values)
        replaced = made._replace(f0=-1)
        assert type(replaced) is mine and replaced == theirs._make(values)._replace(f0=-1)
        for call in (
            lambda cls: cls._make([*values, 0]),
            lambda cls: cls._make(values)._replace(nope=1),
        ):
            with pytest.raises((TypeError, ValueError)) as got:
                call(mine)
            with pytest.raises((TypeError, ValueError)) as want:
                call(theirs)
            assert type(got.value) is type(want.value) and str(got.value) == str(want.value)
