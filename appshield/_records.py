"""`NamedTuple` for appshield's own record types, without `typing`'s cost at class creation.

`typing.NamedTuple` turns every field's annotation into a `ForwardRef` when the class is
created, and with `from __future__ import annotations` every annotation is a string that
`ForwardRef` compiles: about 0.7 M instructions per class. appshield creates some thirty of
these classes on every shielded start, for annotations nothing reads at run time.

This class statement builds what `typing.NamedTuple` builds (the class `collections.namedtuple`
makes, with the class body's defaults, methods and docstring, the same prohibited names), and
keeps the annotations as the strings they are. It does not call `collections.namedtuple`:
that compiles a `lambda` for each class's `__new__` (`eval`, about a quarter of a million
instructions, seven million per shielded start). The `__new__` functions are written out
below, one per number of fields, compiled once with this file into its `.pyc`; a record's
`__new__` is the one for its field count with the parameters renamed to its fields
(`CodeType.replace`), so it binds positional arguments, keywords and defaults exactly as
namedtuple's, with one call to `tuple.__new__`. The other methods (`_make`, `_replace`,
`__repr__`, `_asdict`, `__getnewargs__`) are shared by every record class and read the
record's `_fields`, where namedtuple makes closures per class: same results and errors, but
one docstring each that names no class. tests/test_records.py compares the two.

Type checkers see `typing.NamedTuple` itself; each module imports it as

    if TYPE_CHECKING:
        from typing import NamedTuple
    else:
        from appshield._records import NamedTuple

Only the class form is supported, without `Generic`: what appshield uses.
"""

from __future__ import annotations

import sys

try:
    from _collections import _tuplegetter
except ImportError:  # another Python than CPython: namedtuple's own fallback
    from operator import itemgetter as _itemgetter

    def _tuplegetter(index: int, doc: str) -> property:  # type: ignore[misc]
        return property(_itemgetter(index), doc=doc)


TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from types import FunctionType
    from typing import Any
else:
    # `types.FunctionType` without importing `types` (about 1.1 M instructions): `appshield
    # run`'s own process needs nothing else of it (docs/performance.md, "appshield run's own
    # process, second round"); a shielded start has it from `functools` anyway.
    FunctionType = type(lambda: None)

__all__ = ["NamedTuple"]

# As typing.NamedTupleMeta: names a body may not redefine, and names never copied over.
_PROHIBITED = frozenset(
    {
        "__new__",
        "__init__",
        "__slots__",
        "__getnewargs__",
        "_fields",
        "_field_defaults",
        "_make",
        "_replace",
        "_asdict",
        "_source",
    }
)
_SPECIAL = frozenset({"__module__", "__name__", "__annotations__"})

_tuple_new = tuple.__new__
_intern = sys.intern


def _n0(_cls: type) -> Any:
    return _tuple_new(_cls, ())


def _n1(_cls: type, f0: object) -> Any:
    return _tuple_new(_cls, (f0,))


def _n2(_cls: type, f0: object, f1: object) -> Any:
    return _tuple_new(_cls, (f0, f1))


def _n3(_cls: type, f0: object, f1: object, f2: object) -> Any:
    return _tuple_new(_cls, (f0, f1, f2))


def _n4(_cls: type, f0: object, f1: object, f2: object, f3: object) -> Any:
    return _tuple_new(_cls, (f0, f1, f2, f3))


def _n5(_cls: type, f0: object, f1: object, f2: object, f3: object, f4: object) -> Any:
    return _tuple_new(_cls, (f0, f1, f2, f3, f4))


def _n6(_cls: type, f0: object, f1: object, f2: object, f3: object, f4: object, f5: object) -> Any:
    return _tuple_new(_cls, (f0, f1, f2, f3, f4, f5))


def _n7(
    _cls: type, f0: object, f1: object, f2: object, f3: object, f4: object, f5: object, f6: object
) -> Any:
    return _tuple_new(_cls, (f0, f1, f2, f3, f4, f5, f6))


def _n8(
    _cls: type,
    f0: object,
    f1: object,
    f2: object,
    f3: object,
    f4: object,
    f5: object,
    f6: object,
    f7: object,
) -> Any:
    return _tuple_new(_cls, (f0, f1, f2, f3, f4, f5, f6, f7))


def _n9(
    _cls: type,
    f0: object,
    f1: object,
    f2: object,
    f3: object,
    f4: object,
    f5: object,
    f6: object,
    f7: object,
    f8: object,
) -> Any:
    return _tuple_new(_cls, (f0, f1, f2, f3, f4, f5, f6, f7, f8))


def _n10(
    _cls: type,
    f0: object,
    f1: object,
    f2: object,
    f3: object,
    f4: object,
    f5: object,
    f6: object,
    f7: object,
    f8: object,
    f9: object,
) -> Any:
    return _tuple_new(_cls, (f0, f1, f2, f3, f4, f5, f6, f7, f8, f9))


def _n11(
    _cls: type,
    f0: object,
    f1: object,
    f2: object,
    f3: object,
    f4: object,
    f5: object,
    f6: object,
    f7: object,
    f8: object,
    f9: object,
    f10: object,
) -> Any:
    return _tuple_new(_cls, (f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10))


def _n12(
    _cls: type,
    f0: object,
    f1: object,
    f2: object,
    f3: object,
    f4: object,
    f5: object,
    f6: object,
    f7: object,
    f8: object,
    f9: object,
    f10: object,
    f11: object,
) -> Any:
    return _tuple_new(_cls, (f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11))


def _n13(
    _cls: type,
    f0: object,
    f1: object,
    f2: object,
    f3: object,
    f4: object,
    f5: object,
    f6: object,
    f7: object,
    f8: object,
    f9: object,
    f10: object,
    f11: object,
    f12: object,
) -> Any:
    return _tuple_new(_cls, (f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12))


def _n14(
    _cls: type,
    f0: object,
    f1: object,
    f2: object,
    f3: object,
    f4: object,
    f5: object,
    f6: object,
    f7: object,
    f8: object,
    f9: object,
    f10: object,
    f11: object,
    f12: object,
    f13: object,
) -> Any:
    return _tuple_new(_cls, (f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13))


def _n15(
    _cls: type,
    f0: object,
    f1: object,
    f2: object,
    f3: object,
    f4: object,
    f5: object,
    f6: object,
    f7: object,
    f8: object,
    f9: object,
    f10: object,
    f11: object,
    f12: object,
    f13: object,
    f14: object,
) -> Any:
    return _tuple_new(_cls, (f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14))


def _n16(
    _cls: type,
    f0: object,
    f1: object,
    f2: object,
    f3: object,
    f4: object,
    f5: object,
    f6: object,
    f7: object,
    f8: object,
    f9: object,
    f10: object,
    f11: object,
    f12: object,
    f13: object,
    f14: object,
    f15: object,
) -> Any:
    return _tuple_new(_cls, (f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15))


_NEW = (_n0, _n1, _n2, _n3, _n4, _n5, _n6, _n7, _n8, _n9, _n10, _n11, _n12, _n13, _n14, _n15, _n16)


# The methods every record class shares. namedtuple makes a closure of each for each class,
# over its field names; these read `_fields` from the record instead, and give the same
# results and errors. Six closures and their cells less per class: about 54,000 instructions
# of each record class's creation, some 24 of which every shielded start creates, and fewer
# objects for the collector to walk at exit.
_REPR_FORMATS: dict[tuple[str, ...], str] = {}  # field names -> the `__repr__` format


def _make(cls: Any, iterable: Iterable[Any]) -> Any:
    "Make a new record of this class from a sequence or iterable"
    result = _tuple_new(cls, iterable)
    expected = len(cls._fields)
    if len(result) != expected:
        raise TypeError(f"Expected {expected} arguments, got {len(result)}")
    return result


_make_classmethod = classmethod(_make)


def _replace(self: Any, /, **kwds: Any) -> Any:
    "Return a new record replacing specified fields with new values"
    result = self._make(map(kwds.pop, self._fields, self))
    if kwds:
        raise ValueError(f"Got unexpected field names: {list(kwds)!r}")
    return result


def __repr__(self: Any) -> str:
    "Return a nicely formatted representation string"
    fields = self._fields
    fmt = _REPR_FORMATS.get(fields)
    if fmt is None:  # made on a class's first repr: most records are never printed
        fmt = _REPR_FORMATS[fields] = "(" + ", ".join(f"{name}=%r" for name in fields) + ")"
    return self.__class__.__name__ + fmt % self  # type: ignore[no-any-return]


def _asdict(self: Any) -> dict[str, Any]:
    "Return a new dict which maps field names to their values."
    return dict(zip(self._fields, self, strict=False))


def __getnewargs__(self: Any) -> tuple[Any, ...]:
    "Return self as a plain tuple.  Used by copy and pickle."
    return tuple(self)


def _record_type(
    typename: str, fields: tuple[str, ...], defaults: tuple[Any, ...], module: str
) -> Any:
    """The class `collections.namedtuple(typename, fields, defaults=defaults, module=module)`
    returns, built without compiling anything (more fields than `_NEW` covers: namedtuple
    itself). A class body's field names are identifiers and never keywords already."""
    if len(fields) >= len(_NEW):
        from collections import namedtuple

        return namedtuple(typename, fields, defaults=defaults, module=module)
    for name in fields:
        if name.startswith("_"):
            raise ValueError(f"Field names cannot start with an underscore: {name!r}")
    typename = _intern(typename)
    field_names = tuple(map(_intern, fields))
    num_fields = len(field_names)
    arg_list = ", ".join(field_names) + ("," if num_fields == 1 else "")
    field_defaults = dict(zip(field_names[num_fields - len(defaults) :], defaults, strict=True))

    template = _NEW[num_fields].__code__
    code = template.replace(co_varnames=("_cls", *field_names), co_name="__new__")
    # The globals namedtuple gives its `__new__`: `tuple.__new__` and no builtins.
    namespace = {"_tuple_new": _tuple_new, "__builtins__": {}, "__name__": f"namedtuple_{typename}"}
    __new__ = FunctionType(code, namespace, "__new__", defaults or None)
    __new__.__doc__ = f"Create new instance of {typename}({arg_list})"
    __new__.__qualname__ = f"{typename}.__new__"
    class_namespace: dict[str, Any] = {
        "__doc__": f"{typename}({arg_list})",
        "__slots__": (),
        "_fields": field_names,
        "_field_defaults": field_defaults,
        "__new__": __new__,
        "_make": _make_classmethod,
        "_replace": _replace,
        "__repr__": __repr__,
        "_asdict": _asdict,
        "__getnewargs__": __getnewargs__,
        "__match_args__": field_names,
    }
    for index, name in enumerate(field_names):
        class_namespace[name] = _tuplegetter(index, _intern(f"Alias for field number {index}"))
    result = type(typename, (tuple,), class_namespace)
    result.__module__ = module
    return result


class _RecordMeta(type):
    def __new__(cls, typename: str, bases: tuple[type, ...], namespace: dict[str, Any]) -> Any:
        if not bases:  # the root class below
            return super().__new__(cls, typename, bases, namespace)
        if bases != (NamedTuple,):
            raise TypeError("a record inherits from NamedTuple alone")
        fields: dict[str, Any] = namespace.get("__annotations__", {})
        with_default: list[str] = []
        for name in fields:
            if name in namespace:
                with_default.append(name)
            elif with_default:
                raise TypeError(
                    f"Non-default namedtuple field {name} cannot follow default field"
                    f"{'s' if len(with_default) > 1 else ''} {', '.join(with_default)}"
                )
        record = _record_type(
            typename,
            tuple(fields),
            tuple(namespace[name] for name in with_default),
            namespace["__module__"],
        )
        record.__annotations__ = record.__new__.__annotations__ = dict(fields)
        for key, value in namespace.items():
            if key in _PROHIBITED:
                raise AttributeError("Cannot overwrite NamedTuple attribute " + key)
            if key not in _SPECIAL and key not in record._fields:
                setattr(record, key, value)
        return record


class NamedTuple(metaclass=_RecordMeta):
    """Base of a record class: `class Point(NamedTuple): x: int; y: int = 0`."""
