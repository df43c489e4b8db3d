"""Reading a hooked call's arguments once, the way CPython's C code reads them.

CPython converts a path, an argument, an address or a port in C, and the C function then acts
on its own converted copy. If appshield converted the *original* object again in Python, an
object could answer one way to appshield and another way to the C call (a `PathLike` whose
`__fspath__` looks at its caller, a `str` subclass with a lying `encode`, an `int` subclass
with lying comparisons), or raise only for appshield. So:

- **wrappers** (`fspath_once`, `index_once`) convert each argument exactly once, with the C
  semantics (`os.fspath`, then a copy through the base type; `operator.index`, then an exact
  int), decide on the converted values and call the original *with them*: the OS acts on
  exactly what was judged, and the object's code runs once, as it would have without
  appshield (same value, same exception).
- **audit handlers** see the object after the C code has already converted it, and cannot
  hand the C code anything. They read exact `str`/`bytes`/`int`/`tuple` as they are, and
  subclasses through the base type's own C methods (`str.__getitem__`, `int.__index__`,
  `tuple.__getitem__`): that is the very data the C code used, and nothing the object
  overrides runs. An object of any other type is read only when the conversion the C code
  made is implemented in C (a numpy integer's `__index__`): deterministic, so a second call
  gives what the first gave. Anything else raises `Unreadable`, which the gate reports and
  turns into a denial.

`type(x)` and the base types' unbound methods are used throughout, never `x.__class__` or
`isinstance` (both consult a `__class__` the object may fake).
"""

from __future__ import annotations

import operator
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "Unreadable",
    "event_bytes_like",
    "event_index",
    "event_path",
    "event_text",
    "fspath_once",
    "index_once",
    "is_c_implemented",
    "type_attribute",
]


class Unreadable(TypeError):
    """An argument appshield cannot read without running code the object defines."""


_str_copy = str.__getitem__
_bytes_copy = bytes.__getitem__
_bytearray_copy = bytearray.__getitem__
_int_copy = int.__index__
_tuple_copy = tuple.__getitem__
_ALL = slice(None)
_mro_of = type.__dict__["__mro__"].__get__
_dict_of = type.__dict__["__dict__"].__get__

# Types whose unbound methods are implemented in C: reading a special method found on one of
# them runs no Python code.
_C_CALLABLES = (
    type(str.__len__),  # wrapper_descriptor (slot wrappers)
    type(str.join),  # method_descriptor
    type(len),  # builtin_function_or_method
    type(dict.__dict__["fromkeys"]),  # classmethod_descriptor
)


def type_attribute(kind: type, name: str) -> Any:
    """`name` as the type (not an instance) defines it, looked up through the MRO's own
    dictionaries, as CPython looks up special methods; None when no class defines it. Runs
    no descriptor and no metaclass `__getattribute__`."""
    for base in _mro_of(kind):
        found = _dict_of(base)
        if name in found:
            return found[name]
    return None


def is_c_implemented(kind: type, name: str) -> bool:
    """Whether `kind`'s special method `name` is implemented in C (so calling it twice gives
    the same answer for the same object, and runs no Python code)."""
    found = type_attribute(kind, name)
    return found is not None and type(found) in _C_CALLABLES


def fspath_once(value: Any) -> str | bytes:
    """`os.fspath(value)` with C semantics, as an exact `str` or `bytes`: the conversion a
    wrapper makes once and hands on to the original function."""
    kind = type(value)
    if kind is str or kind is bytes:
        return value  # type: ignore[no-any-return]
    if issubclass(kind, str):
        return _str_copy(value, _ALL)
    if issubclass(kind, bytes):
        return _bytes_copy(value, _ALL)
    converted = os.fspath(value)  # the one call of its __fspath__, raising as C would
    kind = type(converted)
    if kind is str or kind is bytes:
        return converted  # type: ignore[no-any-return]
    if issubclass(kind, str):
        return _str_copy(converted, _ALL)
    return _bytes_copy(converted, _ALL)


def index_once(value: Any) -> int:
    """`operator.index(value)` with C semantics, as an exact `int`."""
    kind = type(value)
    if kind is int:
        return value  # type: ignore[no-any-return]
    if issubclass(kind, int):
        return _int_copy(value)
    converted = operator.index(value)  # its one __index__ call
    return converted if type(converted) is int else _int_copy(converted)


def event_path(value: Any) -> str | bytes | int:
    """A path (or descriptor) as an audit event carries it, after CPython's own conversion:
    exact `str`/`bytes`/`int`, subclasses read through the base type. Anything else (the
    event carries an object the C code converted by calling Python code): `Unreadable`."""
    kind = type(value)
    if kind is str or kind is bytes or kind is int:
        return value  # type: ignore[no-any-return]
    if issubclass(kind, str):
        return _str_copy(value, _ALL)
    if issubclass(kind, bytes):
        return _bytes_copy(value, _ALL)
    if issubclass(kind, int):
        return _int_copy(value)
    if is_c_implemented(kind, "__fspath__"):
        return fspath_once(value)
    if issubclass(kind, (bytearray, memoryview)):
        # Accepted (deprecated) by CPython before 3.12: C copied the bytes before raising the
        # event, and another thread may have changed them since, so what appshield would read
        # is not necessarily what the system call gets.
        raise Unreadable(
            f"a {kind.__qualname__} path may have changed since CPython read it: pass bytes(path)"
        )
    raise Unreadable(f"an argument of type {kind.__qualname__} cannot be read safely")


def event_text(value: Any) -> str:
    """`event_path` as text (bytes decoded as the file system encoding does); an int is a
    descriptor, spelled as its /proc/self/fd link."""
    found = event_path(value)
    if type(found) is int:
        return f"/proc/self/fd/{found}"
    if type(found) is bytes:
        return os.fsdecode(found)
    return found  # type: ignore[return-value]


def event_index(value: Any) -> int:
    """An integer an audit event carries (a port): exact, a subclass read through `int`, or
    an object whose `__index__` is implemented in C (a numpy integer). Otherwise
    `Unreadable`: the C code already called its `__index__`, a second call could differ."""
    kind = type(value)
    if kind is int:
        return value  # type: ignore[no-any-return]
    if issubclass(kind, int):
        return _int_copy(value)
    if is_c_implemented(kind, "__index__"):
        return index_once(value)
    raise Unreadable(f"an integer of type {kind.__qualname__} cannot be read safely")


def event_bytes_like(value: Any) -> bytes | None:
    """bytes or bytearray (or a subclass of either), read through the base type; None for
    any other type."""
    kind = type(value)
    if kind is bytes:
        return value  # type: ignore[no-any-return]
    if issubclass(kind, bytes):
        return _bytes_copy(value, _ALL)
    if issubclass(kind, bytearray):
        return bytes(_bytearray_copy(value, _ALL))
    return None


def event_tuple(value: Any) -> tuple[Any, ...] | None:
    """An exact tuple, or a tuple subclass read through `tuple`; None for any other type."""
    kind = type(value)
    if kind is tuple:
        return value  # type: ignore[no-any-return]
    if issubclass(kind, tuple):
        return _tuple_copy(value, _ALL)
    return None
