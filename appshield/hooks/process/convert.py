"""A process start's arguments read once, the way CPython's C code reads them.

The process hooks see a start in two ways, and each reads arguments differently:

- **Wrappers** (`fork_exec`, `posix_spawn[p]`, `os.exec[v|ve]`, `os.spawnv*`) convert every
  argument exactly once with the C function's own semantics (the `*_once` functions below),
  decide on the converted values and call the original *with them*. An object's `__fspath__`,
  `__index__`, `__len__`, `__getitem__`, `__iter__`, `keys`/`values` or `__bool__` then runs
  exactly as often as it would have without appshield, and whatever it answers is what the
  OS gets: it cannot tell appshield one thing and the C code another. The results are exact
  `str`/`bytes`/`int`/`tuple`/`dict` objects, which no later code can make lie.
- **Audit handlers** (`os.exec`, `os.posix_spawn`) see arguments the C code has already
  converted, and cannot hand it anything. They read exact types as they are and subclasses
  through the base type's own C methods (`event_argv`, `event_env`); an object the C code
  converted by running Python code (a `PathLike` argv item, a mapping that is not a `dict`)
  could answer differently a second time, so it is `Unreadable` and the gate denies the start.
- **Previews** (`preview_*`) are for the two events raised *before* a later layer converts the
  arguments again and decides again on what it converted: `subprocess.Popen` (fork_exec /
  posix_spawn follow) and `pty.spawn` (the forked child's exec follows). There a `PathLike`
  may be read by calling its `__fspath__` (a `subprocess.run(["ls", Path(...)])` must keep
  working), and the preview says whether everything it read was of an exact type: only such a
  reading may stand in for the later layer's (see `process._PopenStart`).

The C semantics mirrored here were checked against CPython 3.10-3.13: `_posixsubprocess`
reads `executable_list` and `env_list` as sequences of `bytes` (a subclass by its data) and argv
items with `PyUnicode_FSConverter`; `os` functions read paths with `path_converter` (an object
with `__index__` is a descriptor where `fd` is allowed), argv items with
`PyUnicode_FSConverter`, and environments through `keys()` and `values()`.
"""

from __future__ import annotations

import operator
import os
import sys

from appshield.hooks._convert import (
    Unreadable,
    fspath_once,
    index_once,
    is_c_implemented,
    type_attribute,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any

__all__ = [
    "Plain",
    "argv_once",
    "bytes_items_once",
    "env_once",
    "event_argv",
    "event_env",
    "exec_path",
    "file_actions_once",
    "fork_exec_argv_once",
    "inherited_exec_path",
    "path_once",
    "plain",
    "plain_spawn_options",
    "preview_argv",
    "preview_env",
    "preview_path",
    "spawn_options_once",
    "text",
    "token",
]

Plain = str | bytes

_str_copy = str.__getitem__
_bytes_copy = bytes.__getitem__
_list_copy = list.__getitem__
_tuple_copy = tuple.__getitem__
_tuple_len = tuple.__len__
_int_copy = int.__index__
_dict_items = dict.items
_ALL = slice(None)
_EXACT_TEXT = frozenset({str, bytes})
_EXACT_BYTES = frozenset({bytes})
# bytearray and memoryview paths were accepted (with a DeprecationWarning) until 3.12.
_BUFFER_PATHS = sys.version_info < (3, 12)


def plain(value: Any) -> Plain | None:
    """An exact `str`/`bytes` as it is, a subclass read through its base type (the data the C
    code reads, never a method the subclass overrides); None for any other type."""
    kind = type(value)
    if kind is str or kind is bytes:
        return value  # type: ignore[no-any-return]
    if issubclass(kind, str):
        return _str_copy(value, _ALL)
    if issubclass(kind, bytes):
        return _bytes_copy(value, _ALL)
    return None


def all_exact_text(items: tuple[Any, ...]) -> bool:
    """Every item an exact str or bytes (one C-level pass: the common case of a plain argv)."""
    return set(map(type, items)) <= _EXACT_TEXT


# -- tokens ----------------------------------------------------------------------------------

# The object a wrapper hands the C function as its path, and names in `thread_state.expect`:
# the audit hook lets the call's own event through when the event's first argument *is* this
# object. A fresh instance of a private subclass is made for each call, so no other code can
# hold it (an exact str could be an interned literal that anyone can pass). The C functions
# read a str/bytes/int subclass by its data, exactly as they read the exact type.


class _PathToken(str):
    __slots__ = ()


class _BytesPathToken(bytes):
    __slots__ = ()


class _DescriptorToken(int):
    __slots__ = ()


def token(path: str | bytes | int) -> str | bytes | int:
    kind = type(path)
    if kind is str:
        return _PathToken(path)
    if kind is bytes:
        return _BytesPathToken(path)  # type: ignore[arg-type]  # bytes: `kind` says so
    return _DescriptorToken(path)


# -- wrappers: convert once, as the C function would ------------------------------------------


def _has_index(kind: type) -> bool:
    return type_attribute(kind, "__index__") is not None


def path_once(value: Any, *, allow_fd: bool = False) -> str | bytes | int:
    """`path_converter`: a descriptor (anything with `__index__`, checked first) where `allow_fd`,
    str/bytes (a subclass by its data), a buffer before 3.12, else `__fspath__` called once."""
    kind = type(value)
    if kind is str or kind is bytes:
        return value  # type: ignore[no-any-return]
    if allow_fd and _has_index(kind):
        return index_once(value)
    found = plain(value)
    if found is not None:
        return found
    if _BUFFER_PATHS and (issubclass(kind, bytearray) or kind is memoryview):
        return bytes(memoryview(value))
    return fspath_once(value)


def _sequence_items(value: Any, error: str) -> tuple[Any, ...]:
    """The items as `PySequence_Size` + `PySequence_GetItem` read them: an exact list or tuple
    directly, anything else through its own `__len__` and `__getitem__`, called once each."""
    kind = type(value)
    if kind is list or kind is tuple:
        return tuple(value)
    if issubclass(kind, dict) or type_attribute(kind, "__getitem__") is None:
        raise TypeError(error)
    count = len(value)
    return tuple(value[i] for i in range(count))


def argv_once(argv: Any, function: str) -> tuple[Plain, ...]:
    """argv of `execv`/`execve`/`posix_spawn`: a list or tuple (a subclass through its own
    `__len__`/`__getitem__`, as `PySequence_ITEM` reads it), each item `PyUnicode_FSConverter`."""
    kind = type(argv)
    if kind is list or kind is tuple:
        items = tuple(argv)
        if _all_text(items):
            return items  # nothing to convert
    elif not issubclass(kind, (list, tuple)):
        raise TypeError(f"{function}: argv must be a tuple or list")
    else:
        items = _sequence_items(argv, "argv must be a tuple or list")
    return tuple(map(fspath_once, items))


def _all_text(items: tuple[Any, ...]) -> bool:
    for item in items:  # a loop: cheaper than one C-level pass for the few items argv has
        kind = type(item)
        if kind is not str and kind is not bytes:
            return False
    return True


def _plain_ints(items: tuple[Any, ...]) -> tuple[int, ...] | None:
    """Exact ints for ints and int subclasses (read by value); None for anything else."""
    found: list[int] = []
    for item in items:
        kind = type(item)
        if kind is int:
            found.append(item)
        elif issubclass(kind, int):
            found.append(_int_copy(item))
        else:
            return None
    return tuple(found)


def _all_int(items: Any) -> bool:
    for item in items:
        if type(item) is not int:
            return False
    return True


def fork_exec_argv_once(argv: Any) -> tuple[Plain, ...] | None:
    """fork_exec's argv: `PySequence_Fast` (an exact list or tuple as it is, anything else
    iterated once), each item `PyUnicode_FSConverter`. None stays None (execv with no argv)."""
    if argv is None:
        return None
    kind = type(argv)
    if kind is list or kind is tuple:
        items = tuple(argv)
        if all_exact_text(items):
            return items
    else:
        try:
            items = tuple(list(argv))
        except TypeError:
            raise TypeError("argv must be a tuple") from None
    return tuple(map(fspath_once, items))


def bytes_items_once(value: Any) -> tuple[bytes, ...]:
    """fork_exec's `executable_list` and `env_list` (`_PySequence_BytesToCharpArray`): a
    sequence whose items must be bytes; a bytes subclass is read by its data."""
    items = _sequence_items(value, f"{type(value).__name__} is not a sequence")
    if set(map(type, items)) <= _EXACT_BYTES:
        return items
    converted: list[bytes] = []
    for item in items:
        kind = type(item)
        if not issubclass(kind, bytes):
            raise TypeError(f"expected bytes, {kind.__name__} found")
        converted.append(_bytes_copy(item, _ALL))
    return tuple(converted)


def env_once(env: Any) -> dict[Plain, Plain] | None:
    """An environment for `execve`/`posix_spawn` (`parse_envlist`): an exact dict read directly,
    any other mapping through one call each of its `keys()` and `values()`; every key and
    value `PyUnicode_FSConverter`. None stays None (the C function decides what None means).
    `os.environ` itself is the caller's to hand on as it is (see `process`)."""
    if env is None:
        return None
    if type(env) is dict:
        keys, values = list(env), list(env.values())
    else:
        keys, values = list(env.keys()), list(env.values())
    if len(keys) != len(values):
        raise ValueError("env.keys() and env.values() differ in length")
    return dict(zip(map(fspath_once, keys), map(fspath_once, values), strict=True))


def _flag_int(value: Any, what: str) -> int:
    """A `k` (unsigned long) argument: an int or int subclass only, read by its value."""
    if not issubclass(type(value), int):
        raise TypeError(f"{what} must be int, not {type(value).__name__}")
    return _int_copy(value)


_OPEN = getattr(os, "POSIX_SPAWN_OPEN", None)
_CLOSE = getattr(os, "POSIX_SPAWN_CLOSE", None)
_DUP2 = getattr(os, "POSIX_SPAWN_DUP2", None)
_CLOSEFROM = getattr(os, "POSIX_SPAWN_CLOSEFROM", None)


def file_actions_once(
    actions: Any, absolute: Callable[[Plain], Plain]
) -> tuple[tuple[Any, ...], ...] | None:
    """posix_spawn's `file_actions` (`parse_file_actions`): a sequence (`PySequence_Fast`) of
    non-empty tuples read by their items (a tuple subclass by its storage), the tag and the
    descriptors through `__index__`, an open's path `PyUnicode_FSConverter` (and made absolute
    by `absolute`, so that the child opens the file that was judged even if the current folder
    changes meanwhile), its mode an int. Exact tuples of exact values come back."""
    if actions is None:
        return None
    kind = type(actions)
    if kind is list or kind is tuple:
        items = tuple(actions)
    else:
        try:
            items = tuple(list(actions))
        except TypeError:
            raise TypeError("file_actions must be a sequence or None") from None
    converted: list[tuple[Any, ...]] = []
    for action in items:
        # Types first: only then is comparing the tag free of the caller's code.
        if type(action) is tuple and action and _all_int(action) and action[0] != _OPEN:
            # An exact tuple of exact ints (subprocess's close and dup2 actions): what the C
            # code would read, and immutable. Its length is the C code's to check.
            converted.append(action)
            continue
        if not issubclass(type(action), tuple) or not _tuple_len(action):
            raise TypeError("Each file_actions element must be a non-empty tuple")
        fields = _tuple_copy(action, _ALL)
        tag = index_once(fields[0])
        if tag == _OPEN:
            if len(fields) != 5:
                raise TypeError("A open file_action tuple must have 5 elements")
            fd = index_once(fields[1])
            path = absolute(fspath_once(fields[2]))
            flags = index_once(fields[3])
            converted.append((tag, fd, path, flags, _flag_int(fields[4], "mode")))
        elif tag == _CLOSE or (_CLOSEFROM is not None and tag == _CLOSEFROM):
            if len(fields) != 2:
                raise TypeError("A close file_action tuple must have 2 elements")
            converted.append((tag, index_once(fields[1])))
        elif tag == _DUP2:
            if len(fields) != 3:
                raise TypeError("A dup2 file_action tuple must have 3 elements")
            converted.append((tag, index_once(fields[1]), index_once(fields[2])))
        else:
            raise TypeError("Unknown file_actions identifier")
    return tuple(converted)


def spawn_options_once(
    options: Mapping[str, Any], absolute: Callable[[Plain], Plain]
) -> dict[str, Any]:
    """posix_spawn's keyword options, converted as the C function converts them, so that no
    code of the caller's runs inside the original call (where the call's `expect` token is
    already set): `__bool__` of resetids/setsid, `__index__` of setpgroup and of the signals,
    the iteration of the signal sets, the scheduler tuple. Unknown names are left for the C
    function to refuse."""
    converted = dict(options)
    if "file_actions" in converted:
        converted["file_actions"] = file_actions_once(converted["file_actions"], absolute)
    for name in ("resetids", "setsid"):
        if name in converted and type(converted[name]) is not bool:
            converted[name] = bool(converted[name])
    if converted.get("setpgroup") is not None and type(converted["setpgroup"]) is not int:
        converted["setpgroup"] = index_once(converted["setpgroup"])
    for name in ("setsigmask", "setsigdef"):
        if name in converted:
            signals = converted[name]
            kind = type(signals)
            if (kind is list or kind is tuple) and _all_int(signals):
                converted[name] = tuple(signals)
            else:
                converted[name] = tuple(map(index_once, signals))
    scheduler = converted.get("scheduler")
    if scheduler is not None and issubclass(type(scheduler), tuple):
        fields = _tuple_copy(scheduler, _ALL)
        if len(fields) == 2:
            policy, param = fields
            if policy is not None:
                policy = index_once(policy)
            if type(param) is os.sched_param:
                param = os.sched_param(index_once(_tuple_copy(param, 0)))
            converted["scheduler"] = (policy, param)
    return converted


def plain_spawn_options(options: Mapping[str, Any]) -> dict[str, Any] | None:
    """posix_spawn's keyword options when they are already what the C code reads, of exact
    types only (subprocess's own: close and dup2 actions, the signals to reset), with the
    sequences copied to tuples that nothing can change meanwhile; None when any option needs
    `spawn_options_once`."""
    converted: dict[str, Any] = {}
    for name, value in options.items():
        kind = type(value)
        if name == "file_actions" or name == "setsigdef" or name == "setsigmask":
            if kind is not list and kind is not tuple:
                return None
            items: tuple[Any, ...] | None  # None: not all ints (below)
            items = tuple(value)
            if name == "file_actions":
                for action in items:
                    # Types first: only then is comparing the tag free of the caller's code.
                    if type(action) is not tuple or not action or not _all_int(action):
                        return None
                    if action[0] == _OPEN:
                        return None
            else:
                # Signal sets: subprocess passes `signal.Signals` members, an int subclass the
                # C code reads by value; copied here through int.
                items = _plain_ints(items)
                if items is None:
                    return None
            converted[name] = items
        elif (name == "resetids" or name == "setsid") and kind is bool:
            converted[name] = value
        else:
            return None
    return converted


# -- audit events: what the C code already converted -----------------------------------------


def _event_sequence(value: Any, what: str) -> tuple[Any, ...]:
    """An exact list or tuple, or a subclass that reads its items with the base type's own C
    methods (so the storage is what the C code read). Else `Unreadable`."""
    kind = type(value)
    if kind is list or kind is tuple:
        return tuple(value)
    if issubclass(kind, (list, tuple)) and all(
        is_c_implemented(kind, name) for name in ("__len__", "__getitem__", "__iter__")
    ):
        copy = _list_copy if issubclass(kind, list) else _tuple_copy
        return tuple(copy(value, _ALL))
    raise Unreadable(f"{what} of type {kind.__qualname__} cannot be read safely")


def _event_text(value: Any, what: str) -> Plain:
    found = plain(value)
    if found is None:
        raise Unreadable(f"{what} of type {type(value).__qualname__} cannot be read safely")
    return found


def event_argv(argv: Any) -> tuple[Plain, ...]:
    """argv as `os.exec`/`os.posix_spawn` carry it: the original list, whose items the C code
    converted before raising the event. str/bytes items only: reading a `PathLike` again would
    run its `__fspath__` a second time."""
    items = _event_sequence(argv, "argv")
    if all_exact_text(items):
        return items
    return tuple(_event_text(item, "an argv item") for item in items)


def event_env(env: Any) -> dict[Plain, Plain] | None:
    """An environment as `os.exec`/`os.posix_spawn` carry it (the original mapping, already
    converted): None; `os.environ` itself (the child gets this environment: None); an exact
    dict of str/bytes keys and values. Anything else is `Unreadable`."""
    if env is None or env is os.environ:
        return None
    if type(env) is not dict:
        raise Unreadable(f"an environment of type {type(env).__qualname__} cannot be read safely")
    pairs = tuple(_dict_items(env))
    keys = tuple(map(operator.itemgetter(0), pairs))
    values = tuple(map(operator.itemgetter(1), pairs))
    if all_exact_text(keys) and all_exact_text(values):
        return env
    return {
        _event_text(key, "an environment key"): _event_text(value, "an environment value")
        for key, value in pairs
    }


# -- previews: read for a decision that a later layer makes again -----------------------------


def preview_path(value: Any) -> tuple[Plain, bool]:
    """A program or folder, and whether it was an exact str/bytes. A `PathLike` is read by
    calling its `__fspath__` (raising as the later conversion would raise)."""
    kind = type(value)
    if kind is str or kind is bytes:
        return value, True
    found = plain(value)
    if found is not None:
        return found, False
    return fspath_once(value), False


def preview_argv(argv: Any) -> tuple[tuple[Plain, ...], bool]:
    """argv items read as `preview_path` reads them, from a list or tuple."""
    items = _event_sequence(argv, "argv")
    if all_exact_text(items):
        return items, True
    return tuple(preview_path(item)[0] for item in items), False


def preview_env(env: Any) -> tuple[dict[Plain, Plain] | None, bool]:
    """An environment subprocess will encode itself (`os.fsencode` of every key and value, in
    Python, where a str subclass's own `encode` runs): read here as data, and exact only when it
    is a dict of exact str/bytes (then the later layer's reading cannot differ)."""
    if env is None:
        return None, True
    if type(env) is dict:
        pairs = tuple(_dict_items(env))
        exact = True
    else:
        pairs = tuple(env.items())
        exact = False
    keys = tuple(map(operator.itemgetter(0), pairs))
    values = tuple(map(operator.itemgetter(1), pairs))
    if exact and all_exact_text(keys) and all_exact_text(values):
        return env, True
    return {preview_path(k)[0]: preview_path(v)[0] for k, v in pairs}, False


# -- text for the process describer -----------------------------------------------------------
# `appshield._proc_describe` takes plain values only; these read the two things a hook may
# still hold as something else: an event's own program or command, and this process's PATH.


def text(value: Any) -> str:
    """A program, folder or argument read as plain data, as text: str as it is, bytes decoded
    as the file system encoding does (a subclass of either through its base type); an int is
    a descriptor, named by its /proc/self/fd link. Anything else: `Unreadable`."""
    kind = type(value)
    if kind is str:
        return value  # type: ignore[no-any-return]
    if issubclass(kind, int):
        return f"/proc/self/fd/{int.__index__(value)}"
    found = plain(value)
    if found is None:
        raise Unreadable(f"a value of type {kind.__qualname__} cannot be read safely")
    return found if type(found) is str else os.fsdecode(found)


# (PATH as os.environ holds it, its entries): the split of the last value seen.
_environ_path: tuple[object, tuple[str, ...]] = (object(), ())


def inherited_exec_path() -> tuple[str, ...] | None:
    """`os.get_exec_path()` for a child that inherits this environment, without its warnings
    filter and exception round trip (a third of a Popen description): os.environ keeps its
    values as bytes in `_data`, and the same PATH gives the same entries. None when
    os.environ is not the standard mapping (then the caller asks os.get_exec_path)."""
    global _environ_path
    environ = os.environ
    if type(environ) is not os._Environ:
        return None
    data = environ.__dict__.get("_data")
    if type(data) is not dict:
        return None
    value = data.get(b"PATH")
    seen, entries = _environ_path
    if value is not seen:
        if value is None:
            path = os.defpath
        elif type(value) is bytes or issubclass(type(value), bytes):
            # A bytes subclass stored by a str subclass's own `encode`: its data is what the
            # C library's environ holds.
            path = os.fsdecode(bytes.__getitem__(value, slice(None)))
        else:
            raise Unreadable("os.environ holds a PATH that is not bytes")
        entries = tuple(path.split(os.pathsep))
        _environ_path = (value, entries)
    return entries


def exec_path(env: Mapping[Any, Any] | None = None) -> Sequence[str]:
    """PATH as the child will search it (`os.get_exec_path` semantics), for `env` None (this
    environment) or a dict already read as plain data. A PATH that `os.get_exec_path` refuses
    (both `PATH` and `b"PATH"` set) raises as it does: the start would fail the same way."""
    if env is None:
        entries = inherited_exec_path()
        if entries is not None:
            return entries
    elif type(env) is not dict:
        raise Unreadable(f"an environment of type {type(env).__qualname__} cannot be read safely")
    return tuple(map(text, os.get_exec_path(env)))
