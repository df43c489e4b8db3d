"""Normalisers shared by the hooks (on the hot path), `explain` and the policy loader.

They turn what code passed to an API into the canonical form that operations carry and that
policies are written in:

- `normalize_path`: absolute, `.`/`..` folded, no symlinks resolved. Pure string work except
  for a relative path, which needs the current folder (or the folder behind `dir_fd`).
  A NUL byte raises `ValueError`, exactly as the `os` functions themselves do: there is no
  path to check because the call would fail anyway.
- `resolve_path` / `fd_path`: symlinks resolved as the kernel resolves them.
- `canonical_address`: one spelling per IP address (`127.1`, `0x7f.1`, `2130706433` and
  `::ffff:127.0.0.1` are all `127.0.0.1`); None for a name.
- `normalize_host`: the form host rules are written in.

Where a program is found, and whether that place is trusted, is the process describer's
(`appshield._proc_describe`).

None of them raises on arbitrary text except where documented.
"""

from __future__ import annotations

# `_socket`, not `socket`: the same address parsers without importing socket (and selectors,
# enum tables, ...) into every shielded process at start-up.
import _socket
import os
from stat import S_ISLNK

__all__ = [
    "canonical_address",
    "fd_path",
    "is_normal_path",
    "normalize_host",
    "normalize_path",
    "reached_address",
    "realpath",
    "resolve_path",
]

PathInput = str | bytes | os.PathLike  # type: ignore[type-arg]

_normpath = os.path.normpath


def _plain(path: PathInput) -> str | bytes:
    """`os.fspath(path)` as an exact str or bytes: a subclass is read through its base type,
    so no method it overrides runs (the hooks hand over values already converted once)."""
    kind = type(path)
    if kind is str or kind is bytes:
        return path  # type: ignore[return-value]
    if not issubclass(kind, (str, bytes)):
        path = os.fspath(path)
        kind = type(path)
        if kind is str or kind is bytes:
            return path
    # A str or bytes subclass from here on (`issubclass(kind, ...)` does not narrow `path`).
    if issubclass(kind, str):
        return str.__getitem__(path, slice(None))  # type: ignore[index]
    return bytes.__getitem__(path, slice(None))  # type: ignore[index]


def _text(path: PathInput) -> str:
    text = _plain(path)
    if type(text) is bytes:
        text = os.fsdecode(text)
    if "\x00" in text:
        raise ValueError("embedded null byte")
    return text  # type: ignore[return-value]


def _fd_number(fd: int) -> int:
    """A descriptor as an exact int: an int subclass is read through int (its `__format__`
    or `__str__` never decides which /proc/self/fd link is read)."""
    kind = type(fd)  # never isinstance: it consults a `__class__` the object may fake
    if kind is int:
        return fd
    if issubclass(kind, int):
        return int.__index__(fd)
    raise TypeError(f"a descriptor must be an int, not {type(fd).__qualname__}")


def _folder(dir_fd: int | None, cwd: str | None) -> str:
    """The folder a relative path starts from: the one open as `dir_fd`, else `cwd`, else
    the current folder."""
    if dir_fd is not None:
        return os.readlink(f"/proc/self/fd/{_fd_number(dir_fd)}")
    if cwd is not None:
        return _text(cwd)
    return _cwd()


def _cwd() -> str:
    try:
        return os.getcwd()
    except OSError:
        # The current folder was deleted: the kernel still knows where it was.
        return os.readlink("/proc/self/cwd").removesuffix(" (deleted)")


def normalize_path(path: PathInput, *, dir_fd: int | None = None, cwd: str | None = None) -> str:
    """The absolute, normalised form of `path` (no symlinks resolved).

    A relative path is taken relative to the folder open as `dir_fd` when given (found through
    /proc/self/fd, so an `OSError` is raised when `dir_fd` is not an open descriptor), else
    `cwd`, else the current folder. Raises ValueError for a NUL byte, TypeError for a type that
    is not a path.
    """
    text = _text(path)
    if not text.startswith("/"):
        text = f"{_folder(dir_fd, cwd)}/{text}"
    text = _normpath(text)
    # POSIX keeps a leading `//` (implementation-defined); Linux treats it as `/`.
    if text.startswith("//"):
        text = "/" + text.lstrip("/")
    return text


def is_normal_path(path: str) -> bool:
    """Whether the absolute `path` is already what `os.path.abspath` makes of it: no `.`,
    `..` or empty part, no trailing `/` (hidden names such as `/root/.pyenv` are fine)."""
    return (
        path[:1] == "/"
        and "//" not in path
        and "/./" not in path
        and "/../" not in path
        and not path.endswith(("/.", "/..", "/"))
    ) or path == "/"


# How many symlinks `realpath` follows before it hands the path to `os.path.realpath`.
_MAX_LINKS = 40


def realpath(path: str, known: set[str] | None = None) -> str:
    """`os.path.realpath(path)`, the same string, at a fraction of the cost (posixpath's
    is about 20,000 instructions a segment; a venv's `python`, three links deep, about
    200,000). It walks the segments as posixpath does, one `lstat` each, a link's target
    put in its place; whatever it is not sure of (a relative path, not a `str`, not POSIX,
    a NUL, a link met twice or more than `_MAX_LINKS`, a link that vanished) is
    `os.path.realpath`'s to answer. `known`: prefixes already found not to be links, shared
    by the calls for one set of paths (each is added to it).

    posixpath's own walk (3.10 to 3.13 alike, where no link repeats): a segment that `lstat`
    fails on counts as no link; `..` drops the last segment of what is resolved so far; a
    link's target continues from its folder, or from `/` when absolute.
    (tests/policy/test_real_path.py and tests/hooks/test_imports_names.py compare them on
    trees of links, loops included.) Not `resolve_path`: the kernel's answer differs from
    realpath's for the magic links of /proc, and these callers keep realpath's."""
    if type(path) is not str or path[:1] != "/" or "\0" in path or os.name != "posix":
        return os.path.realpath(path)
    rest = path.split("/")
    rest.reverse()
    resolved = "/"
    links: set[str] = set()
    while rest:
        name = rest.pop()
        if not name or name == ".":
            continue
        if name == "..":
            resolved = resolved[: resolved.rindex("/")] or "/"
            continue
        candidate = "/" + name if resolved == "/" else resolved + "/" + name
        if known is not None and candidate in known:
            resolved = candidate
            continue
        try:
            is_link = S_ISLNK(os.lstat(candidate).st_mode)
        except OSError:
            is_link = False
        if not is_link:
            if known is not None:
                known.add(candidate)
            resolved = candidate
            continue
        if candidate in links or len(links) >= _MAX_LINKS:
            return os.path.realpath(path)
        links.add(candidate)
        try:
            target = os.readlink(candidate)
        except OSError:
            return os.path.realpath(path)
        if target[:1] == "/":
            resolved = "/"
        parts = target.split("/")
        parts.reverse()
        rest += parts
    return resolved


def fd_path(fd: int) -> str | None:
    """The path the kernel holds for an open descriptor, or None (closed, or not a file:
    pipes, sockets and anonymous inodes have no path)."""
    try:
        target = os.readlink(f"/proc/self/fd/{_fd_number(fd)}")
    except (OSError, ValueError, OverflowError, TypeError):
        return None
    return target if target.startswith("/") else None


def _open_own_path(text: str) -> int:
    """An O_PATH descriptor for the absolute `text` ("" for the root), opened as
    appshield's own call (see `appshield._threadstate.open_own`: no exemption anything else
    can borrow)."""
    from appshield._threadstate import open_own

    # "/" would be encoded as the one-byte bytes CPython shares process-wide, which cannot
    # be a token of appshield's own call; "/." names the same folder.
    return open_own("/." if text in ("", "/") else text, os.O_PATH | os.O_CLOEXEC)


def resolve_path(path: PathInput, *, dir_fd: int | None = None, cwd: str | None = None) -> str:
    """`path` with every symlink resolved, absolute and normalised.

    For a path that exists, the kernel resolves it: an `O_PATH` descriptor (which opens
    nothing: no FIFO blocks, no device wakes up) read back through /proc/self/fd. That is three
    system calls where `os.path.realpath` makes one `lstat` per segment, and it follows the
    magic links (`/proc/self/root`, `/proc/self/cwd`, `/proc/<pid>/fd/N`) the way `open` does.
    `..` is applied after the symlink before it, as the kernel does (never folded lexically
    first). A name that does not exist yet in a folder that does (a file about to be
    created) is put after its folder, resolved the same way (`_new_name`). Any other path
    that does not resolve (a dangling symlink, a missing folder) falls back to
    `os.path.realpath`, which resolves as much as exists and follows a dangling link's text.
    `dir_fd` and `cwd` anchor a relative path as in `normalize_path`.
    """
    text = _text(path)
    if not text.startswith("/"):
        text = f"{_folder(dir_fd, cwd)}/{text}"
    try:
        fd = _open_own_path(text)
    except FileNotFoundError:
        return _new_name(text)
    except OSError:
        return normalize_path(os.path.realpath(text))
    try:
        resolved = fd_path(fd)
    finally:
        os.close(fd)
    if resolved is None:
        return normalize_path(os.path.realpath(text))
    return resolved


def _new_name(text: str) -> str:
    """`resolve_path` of an absolute `text` that does not resolve (ENOENT). The common case
    is a file about to be created: its folder exists and holds nothing by that name. The
    folder is then resolved by the kernel, as an existing path is, and the name put after
    it: what `os.path.realpath` answers, without its Python walk of every part (about
    20,000 instructions a part; a first write of a new file spent more here than deciding).

    Only when the folder itself resolves and an `lstat` of the name in it finds nothing, not
    even a dangling symlink (which `os.path.realpath` follows, and the open would too). A
    name that is empty, `.` or `..`, or any other error goes to `os.path.realpath`, as
    before. (A folder deleted while still open, reachable only through /proc/self/cwd or a
    descriptor, reads back as "<path> (deleted)", as `os.path.realpath` reads it too.)"""
    folder, _, name = text.rpartition("/")
    if name in ("", ".", ".."):
        return normalize_path(os.path.realpath(text))
    try:
        fd = _open_own_path(folder)
    except OSError:
        return normalize_path(os.path.realpath(text))
    try:
        resolved = fd_path(fd)
        try:
            os.lstat(name, dir_fd=fd)
        except FileNotFoundError:
            if resolved is not None:
                return f"/{name}" if resolved == "/" else f"{resolved}/{name}"
        except OSError:
            pass
    finally:
        os.close(fd)
    return normalize_path(os.path.realpath(text))


_IPV4_CHARS = frozenset("0123456789abcdefxABCDEFX.")
_COMPAT_LOW = 2  # `::` and `::1` are not IPv4-compatible addresses


def canonical_address(text: str) -> str | None:
    """The canonical spelling of an IP address written in any form the C library accepts for
    a numeric host, or None when `text` is not one (a name, or garbage).

    IPv4 goes through `inet_aton`, which also reads the legacy forms (`127.1`, `0x7f.0.0.1`,
    `017700000001`, `2130706433`); trailing text is refused, as glibc's getaddrinfo refuses it.
    IPv6 may be bracketed and carry a zone (`fe80::1%eth0`; the zone is dropped). IPv4-mapped
    (`::ffff:a.b.c.d`) and IPv4-compatible (`::a.b.c.d`) IPv6 fold to the IPv4 address they
    reach, so that a rule on the IPv4 address sees them.
    """
    if not isinstance(text, str) or not text:
        return None
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if ":" in text:
        return _canonical_v6(text.partition("%")[0])
    if not _IPV4_CHARS.issuperset(text):
        return None
    try:
        packed = _socket.inet_aton(text)
    except (OSError, ValueError):
        return None
    return _socket.inet_ntoa(packed)  # dotted decimal, as `ipaddress` prints it


# The first 12 bytes of an IPv4-mapped and of an IPv4-compatible IPv6 address.
_MAPPED = bytes(10) + b"\xff\xff"
_COMPAT = bytes(12)


def _canonical_v6(text: str) -> str | None:
    try:
        packed = _socket.inet_pton(_socket.AF_INET6, text)
    except (OSError, ValueError, UnicodeError):
        return None
    head = packed[:12]
    if head == _MAPPED or (head == _COMPAT and int.from_bytes(packed, "big") >= _COMPAT_LOW):
        return _socket.inet_ntoa(packed[12:])
    return _v6_text(packed)


def _v6_text(packed: bytes) -> str:
    """RFC 5952's spelling, the one `str(ipaddress.IPv6Address(packed))` gives: lower-case
    groups without leading zeros, and the longest run of two or more zero groups (the first
    of equal runs) written `::`. Written out here because `ipaddress` costs every start
    several million instructions when a policy names an IPv6 address (the telemetry
    exporter's rules name `::1`); tests/normalize checks the two agree on any address."""
    digits = packed.hex()
    groups = [digits[at : at + 4].lstrip("0") or "0" for at in range(0, 32, 4)]
    best_at = best_length = run_at = run_length = 0
    for index, group in enumerate(groups):
        if group != "0":
            run_length = 0
            continue
        if run_length == 0:
            run_at = index
        run_length += 1
        if run_length > best_length:
            best_at, best_length = run_at, run_length
    if best_length < 2:
        return ":".join(groups)
    return ":".join(groups[:best_at]) + "::" + ":".join(groups[best_at + best_length :])


def reached_address(address: str, bound: str | None = None) -> str | None:
    """Where a connect or a send to the canonical `address` really goes, when that is another
    address; None when it goes to `address` itself. Linux takes an unspecified destination
    for this host: IPv4 `0.0.0.0` (also written `0`, `0x0`, `::ffff:0.0.0.0`, or empty)
    reaches the address the socket is bound to (`bound`, canonical) when it has one, else
    127.0.0.1; IPv6 `::` reaches ::1, or 127.0.0.1 from a socket bound to an IPv4-mapped
    address. (A bind to an unspecified address is a wildcard, not a destination: callers
    only ask this for connect and send.)"""
    if address == "0.0.0.0":
        if bound is not None and ":" not in bound and bound != "0.0.0.0":
            return bound
        return "127.0.0.1"
    if address == "::":
        return "127.0.0.1" if bound is not None and ":" not in bound else "::1"
    return None


def normalize_host(name: str) -> str:
    """Lower-case, trailing dots dropped, non-ASCII names in their IDNA (punycode) form, as the
    resolver will see them. Never raises: a name the IDNA codec refuses stays as lower-case
    text (it cannot resolve anyway, and a rule can still name it)."""
    if isinstance(name, bytes):
        name = name.decode("ascii", "replace")
    name = name.rstrip(".")
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except (UnicodeError, ValueError):
            pass
    return name.lower()
