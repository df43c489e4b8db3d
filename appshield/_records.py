"""`NamedTuple` for appshield's own record types, without `typing`'s cost at class creation.

`typing.NamedTuple` turns every field's annotation into a `ForwardRef` when the class is
created, and with `from __future__ import annotations` every annotation is a string that
`ForwardRef` compiles: about 0.7 M instructions per class. appshield creates some thirty of
these classes on every shielded start, for annotations nothing reads at run time.

This class statement builds the same thing `typing.NamedTuple` does (a
`collections.namedtuple` with the class body's defaults, methods and docstring, the same
prohibited names), and keeps the annotations as the strings they are. Type checkers see
`typing.NamedTuple` itself; each module imports it as

    if TYPE_CHECKING:
        from typing import NamedTuple
    else:
        from appshield._records import NamedTuple

Only the class form is supported, without `Generic`: what appshield uses.
"""

from __future__ import annotations

from collections import namedtuple

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

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
        record = namedtuple(  # type: ignore[misc]
            typename,
            list(fields),
            defaults=[namespace[name] for name in with_default],
            module=namespace["__module__"],
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
