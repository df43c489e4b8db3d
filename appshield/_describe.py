"""Operations described on the command line (`appshield explain`), built the way the hooks
build them: a process start by the one process describer (`appshield._proc_describe`), paths
normalised and resolved, IP literals in their canonical spelling. Shared with anything else
that turns user text into operations.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from appshield._proc_describe import describe_start
from appshield.normalize import (
    canonical_address,
    normalize_host,
    normalize_path,
    reached_address,
    resolve_path,
)
from appshield.operations import FileOp, ImportOp, NetworkOp, ProcessOp
from appshield.settings import STARTUP

__all__ = ["file_op", "import_op", "network_op", "parse_endpoint", "process_op"]


def process_op(
    argv: Sequence[str],
    *,
    shell: bool = False,
    cwd: str | None = None,
    unshielded: bool = False,
    startup_path: str = STARTUP.path,
) -> ProcessOp:
    """A program start as the process hooks of this process would describe
    `subprocess.run(argv, cwd=cwd)`: found through this environment's PATH, trusted by the
    folders of `startup_path`, a missing program judged where the kernel looks first.
    `shell` and `unshielded` can only add to what the description finds (`sh -c ...` is a
    shell start either way)."""
    if not argv:
        raise ValueError("no program given")
    name = argv[0]
    search = os.get_exec_path()
    start = describe_start(
        name, tuple(argv), None, cwd, search=search, missing=True, startup_path=startup_path
    )
    if start is None:
        raise ValueError(f"{name!r} cannot be started (a NUL byte)")
    op = start.op
    if (shell and not op.shell) or (unshielded and not op.unshielded):
        op = op._replace(shell=op.shell or shell, unshielded=op.unshielded or unshielded)
    return op


def file_op(access: str, path: str) -> FileOp:
    absolute = normalize_path(path)
    return FileOp(path=absolute, access=access, resolved=resolve_path(absolute))  # type: ignore[arg-type]


def parse_endpoint(text: str) -> tuple[str, int | None]:
    """`host`, `host:port`, `[v6]:port`, `[v6]` or a bare IPv6 literal -> (host, port)."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"unclosed '[' in {text!r}")
        host, rest = text[1:end], text[end + 1 :]
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise ValueError(f"expected ':PORT' after ']' in {text!r}")
        return host, _port(rest[1:], text)
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, _port(port, text)
    return text, None


def _port(text: str, whole: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) > 65535:
        raise ValueError(f"bad port in {whole!r}")
    return int(text)


def network_op(
    operation: str,
    target: str,
    *,
    transport: str | None = None,
    address: str | None = None,
) -> NetworkOp:
    """A network action on `target` (see `parse_endpoint`; a socket path for unix).
    `address`: what a name resolved to, when the question is about a resolved connection."""
    chosen = transport or ("udp" if operation == "send" else "tcp")
    if chosen == "unix":
        return NetworkOp(operation=operation, transport="unix", path=target)  # type: ignore[arg-type]
    if operation == "send" and chosen == "tcp":
        operation = "connect"  # a stream socket's sendto (MSG_FASTOPEN) opens a connection
    host, port = parse_endpoint(target)
    literal = canonical_address(host)
    if address is not None:
        given = canonical_address(address)
        if given is None:
            raise ValueError(f"--address {address!r} is not an IP address")
        address = given
    address = literal if literal is not None else address
    requested = None
    if operation in ("connect", "send") and address is not None:
        reached = reached_address(address)  # 0.0.0.0 and :: reach the loopback
        if reached is not None:
            address, requested = reached, address
    return NetworkOp(
        operation=operation,  # type: ignore[arg-type]
        host=None if literal is not None else normalize_host(host),
        address=address,
        port=None if chosen == "raw" else port,
        transport=chosen,  # type: ignore[arg-type]
        requested=requested,
    )


def import_op(
    module: str | None, *, origin: str | None = None, library: str | None = None
) -> ImportOp:
    """An import (`module`, maybe from `origin`) or a native library load (`library`: a
    path, or a bare name such as `libc.so.6` that the loader searches for)."""
    if not (module or library):
        raise ValueError("give a module name or --library")
    return ImportOp(
        module=module or None,
        origin=normalize_path(origin) if origin else None,
        library=normalize_path(library) if library and "/" in library else library or None,
    )
