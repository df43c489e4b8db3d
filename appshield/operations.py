"""What is about to happen: one small immutable type per category.

The hooks build these, `explain` and `learn` build these, and the decision engine reads them.
They carry only plain, already-normalised data; producing them may need I/O (resolving a
path, looking up a program on PATH), consuming them never does. All are hashable, so a
decision can be cached on the operation itself.

They are named tuples rather than dataclasses: a frozen dataclass costs over a millisecond to
create at import (its methods are generated and compiled), which every shielded process would
pay at start-up, and a tuple's C-level hash and equality keep the decision cache cheap.

Each is a NamedTuple of its fields (`_ProcessFields`, ...) with a subclass that adds the
`category` class attribute: a type checker accepts only fields inside a NamedTuple body.
The subclass declares `__slots__ = ()`, so instances stay bare tuples (no `__dict__`) and
hash, compare, pickle and print exactly as the NamedTuple alone would.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import ClassVar, Literal, NamedTuple, TypeAlias
else:  # typing's own costs ~0.7 M instructions per class at start-up (appshield/_records.py)
    from appshield._records import NamedTuple

__all__ = [
    "CATEGORIES",
    "FileAccess",
    "FileOp",
    "ImportOp",
    "NetworkOp",
    "NetworkOperation",
    "Operation",
    "ProcessOp",
    "Transport",
    "UndescribedOp",
]

CATEGORIES: tuple[str, ...] = ("process", "file", "network", "import")

FileAccess: TypeAlias = 'Literal["read", "write", "delete"]'
NetworkOperation: TypeAlias = 'Literal["connect", "send", "bind", "resolve"]'
Transport: TypeAlias = 'Literal["tcp", "udp", "unix", "raw"]'


class _ProcessFields(NamedTuple):
    """The fields of `ProcessOp` (see there)."""

    executable: str
    argv: tuple[str, ...] = ()
    shell: bool = False
    cwd: str | None = None
    trusted_location: bool = False
    unshielded: bool = False


class ProcessOp(_ProcessFields):
    """A program about to be started.

    executable: the absolute path of the program, symlinks resolved, as the kernel will run it.
    argv: the full argument vector; argv[0] is also checked against `executable` deny rules.
    shell: the command runs through a shell (os.system, os.popen, shell=True, `sh -c`).
    trusted_location: the program was found through PATH (as it was when the shield started)
        or sits in a folder the process cannot write; only then may a glob without `/`
        (a bare base name such as `git`) match it.
    unshielded: the child is a Python interpreter that will run without the same shield.
    """

    __slots__ = ()
    category: ClassVar[Literal["process"]] = "process"

    @property
    def command_line(self) -> str:
        return " ".join(self.argv) if self.argv else self.executable

    @property
    def target(self) -> str:
        return self.command_line


class _FileFields(NamedTuple):
    """The fields of `FileOp` (see there)."""

    path: str
    access: FileAccess
    resolved: str | None = None


class FileOp(_FileFields):
    """A file access about to happen.

    path: the normalised absolute path (`..` and `.` folded, no symlinks resolved).
    resolved: the same path with symlinks resolved; None when the hook did not need it
        (then rules see `path` for both). A deny matches either; an allow must match `resolved`.
    """

    __slots__ = ()
    category: ClassVar[Literal["file"]] = "file"

    @property
    def real_path(self) -> str:
        return self.resolved if self.resolved is not None else self.path

    @property
    def target(self) -> str:
        return self.path


class _NetworkFields(NamedTuple):
    """The fields of `NetworkOp` (see there)."""

    operation: NetworkOperation
    host: str | None = None
    address: str | None = None
    port: int | None = None
    transport: Transport = "tcp"
    names: tuple[str, ...] = ()
    path: str | None = None
    requested: str | None = None


class NetworkOp(_NetworkFields):
    """A network action about to happen.

    host: the name the code asked for, lower-case, no trailing dot; None when only an address
        is known.
    address: the canonical spelling of the IP address (`ipaddress` form, IPv4-mapped IPv6
        folded to IPv4); None for a name not yet resolved or a unix socket path.
    names: other names recently resolved to `address` (from the resolver memory). A host deny
        on any of them denies.
    port: None when there is none (resolve without port, unix sockets, raw sockets).
    transport: `tcp` (a stream socket: its `sendto`, as with MSG_FASTOPEN, is a `connect`),
        `udp`, `unix`, or `raw` (a SOCK_RAW or packet socket: what it reaches is written in
        the packet, not in the address, so only a rule that names `raw` allows it, and its
        default is deny).
    path: the socket path for transport `unix`; the interface for a packet socket.
    requested: the address as the code gave it, when the kernel reaches another one: a
        connect or send to an unspecified address (`0.0.0.0`, `::`) reaches this host (the
        loopback, or the address the socket is bound to), which `address` then holds. A deny
        or alert on `host`/`cidr` matches either address; an allow must match `address`.
    """

    __slots__ = ()
    category: ClassVar[Literal["network"]] = "network"

    @property
    def target(self) -> str:
        if self.transport == "unix":
            return self.path or ""
        given = self.host or self.requested
        where = given or self.address or self.path or ""
        if self.address and given and self.address != given:
            where = f"{given} ({self.address})"
        if self.port is not None:
            if ":" in where and not where.endswith(")"):
                return f"[{where}]:{self.port}"
            return f"{where}:{self.port}"
        return where


class _ImportFields(NamedTuple):
    """The fields of `ImportOp` (see there)."""

    module: str | None = None
    origin: str | None = None
    library: str | None = None
    home: str | None = None
    init: str | None = None


class ImportOp(_ImportFields):
    """A module about to be imported, or a native library about to be loaded.

    module: dotted module name; None for a bare native library load (ctypes.CDLL).
    origin: the file the module will be loaded from, when known.
    library: the native library path for ctypes/cffi loads.
    home: the name the module's file has in the folders the import system searched at
      start-up, when it differs from `module` (`ctypes` for ctypes' own `__init__.py` run
      as `zz.ctypes`; the `_ctypes` extension loaded as `zz._ctypes` is `_ctypes`).
    init: for an extension module whose dotted name does not agree with its file, the
      last component of that name: it picks the `PyInit_` function that runs, so it names
      the extension's code whatever package the name claims.
    A deny or alert `module` glob matches `module`, `home` or `init`; an allow must match
    `module` and, when known, `home` (see docs/policy.md, `module`).
    """

    __slots__ = ()
    category: ClassVar[Literal["import"]] = "import"

    @property
    def target(self) -> str:
        return self.module or self.library or self.origin or ""


Operation = ProcessOp | FileOp | NetworkOp | ImportOp


class UndescribedOp(NamedTuple):
    """An operation appshield could not describe: reading its arguments raised, or they could
    not be read without running code they define. Never decided by rules: the gate denies it
    (rule `implicit:undescribable`) and reports it with the exception's type.

    kind: the category of the hook that saw it. api: the hook's API or audit event name.
    error: the exception type's name.
    """

    kind: str
    api: str
    error: str

    @property
    def category(self) -> str:
        return self.kind

    @property
    def target(self) -> str:
        return f"<undescribable: {self.error}>"
