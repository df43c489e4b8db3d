"""What the hostile-argument suite attacks: every hooked API, every argument position, and
the hostile stand-ins each position accepts.

Shared by the parent (pytest, hypothesis, judging) and the child interpreters
(`_child.py`, which imports this file as a top-level module): standard library only, and
every value a plan holds is JSON.

A *case* is one hostile stand-in in one position of one API call:

    {"id": "b0c12", "api": "os.rename", "position": "src", "kind": "str_sub",
     "dunders": ["__eq__"], "behaviour": "lie_once", "exception": null}

A *plan* (`plan()`) says, for a case key and a world (folders, programs and ports of one
run), what the stand-in stands for: `denied` (the plain value, which the policy denies: a
canary under a folder the policy protects, `touch`, a listener port the policy denies),
`allowed` (the harmless counterpart the stand-in shows appshield when it lies), the other
arguments of the call, the fixtures to create first, and the evidence that the denied
operation took effect.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "BEHAVIOURS",
    "DUNDERS",
    "EXCEPTIONS",
    "KINDS",
    "POSITIONS",
    "Position",
    "plan",
]

# -- hostile stand-ins ------------------------------------------------------------------------

# honest: an exotic type that tells everyone the truth (a numpy-like `__index__` object, a
# plain str subclass). The others misbehave only when appshield's own frames call them:
# raise_once / raise_always: raise `exception` on the first / on every such call;
# lie / lie_once: answer as the allowed counterpart would, on every / on the first such call
# (lie_once catches a value converted twice: appshield is told one thing, the C call another).
# Ordered by what an attack gains (hypothesis draws the first of a list more often than the
# others): lying once is what beats a double conversion.
BEHAVIOURS: tuple[str, ...] = ("lie_once", "raise_once", "lie", "raise_always", "honest")

# The exception a raising stand-in raises: an ordinary Exception, a bare BaseException, the
# two BaseExceptions Python itself delivers asynchronously, and RecursionError (which the
# issue saw treated as "allowed" near the recursion limit). All subclassed in the child.
EXCEPTIONS: tuple[str, ...] = (
    "Exception",
    "BaseException",
    "KeyboardInterrupt",
    "SystemExit",
    "RecursionError",
)

# kind -> the plain type it stands for ("str", "bytes", "bytearray", "int", "tuple").
KINDS: dict[str, str] = {
    "str_sub": "str",
    "bytes_sub": "bytes",
    "bytearray_sub": "bytearray",
    "pathlike": "str",  # __fspath__ -> str
    "pathlike_bytes": "bytes",  # __fspath__ -> bytes
    "fspath_str_sub": "str",  # an honest PathLike whose __fspath__ returns a hostile str subclass
    "int_sub": "int",
    "index_only": "int",  # an object with __index__ and nothing else of int's
    "tuple_sub": "tuple",
    "list_sub": "list",  # an argv list
    "dict_sub": "dict",  # an environment
    "mapping": "dict",  # an environment that is a Mapping but no dict (os.environ is one)
}

# A "+"-joined entry misbehaves in several dunders at once: a dict or cache lookup needs a
# lying __hash__ *and* __eq__ to find the allowed entry, and an exact-type check on the hot
# path (`x.__class__ is str`) needs a lying __class__ on top.
_HASH_EQ = "__hash__+__eq__"
_CLASS_HASH_EQ = "__class__+__hash__+__eq__"
_TEXT_COMMON = (
    _CLASS_HASH_EQ,
    _HASH_EQ,
    "__class__",
    "__eq__",
    "__ne__",
    "__hash__",
    "__len__",
    "__getitem__",
    "__iter__",
    "__contains__",
    "__str__",
    "__repr__",
    "__add__",
    "__radd__",
    "__bytes__",
    "startswith",
    "endswith",
    "split",
    "isdigit",
    "lower",
)
_STR = (*_TEXT_COMMON, "__format__", "__int__", "encode", "rstrip")
_INT = (
    "__index__",
    "__int__",
    "__eq__",
    "__ne__",
    "__hash__",
    _HASH_EQ,
    "__class__",
    _CLASS_HASH_EQ,
    "__lt__",
    "__le__",
    "__gt__",
    "__ge__",
    "__and__",
    "__rand__",
    "__or__",
    "__ror__",
    "__format__",
    "__str__",
    "__repr__",
    "__bool__",
    "__add__",
    "__radd__",
    "__sub__",
)
# An environment is read for PATH (`os.get_exec_path` asks `env.get` and `env[b"PATH"]`) and
# copied item by item.
_MAPPING = (
    "get",
    "__getitem__",
    "items",
    "__iter__",
    "keys",
    "values",
    "__contains__",
    "__len__",
    "copy",
    "__class__",
    "__eq__",
    "__repr__",
)
DUNDERS: dict[str, tuple[str, ...]] = {
    "str_sub": (*_STR, "__fspath__"),
    "bytes_sub": (*_TEXT_COMMON, "decode", "__fspath__"),
    "bytearray_sub": (*_TEXT_COMMON, "decode"),
    "pathlike": (
        "__fspath__",
        "__class__",
        "__str__",
        "__repr__",
        "__format__",
        "__eq__",
        "__hash__",
        _HASH_EQ,
        "__len__",
        "__getitem__",
        "__bytes__",
    ),
    "pathlike_bytes": (
        "__fspath__",
        "__class__",
        "__str__",
        "__repr__",
        "__eq__",
        "__hash__",
        _HASH_EQ,
        "__len__",
        "__getitem__",
        "__bytes__",
    ),
    "fspath_str_sub": _STR,
    "int_sub": _INT,
    "index_only": (
        "__index__",
        "__int__",
        "__eq__",
        "__hash__",
        _HASH_EQ,
        "__class__",
        "__format__",
        "__str__",
        "__repr__",
        "__lt__",
        "__le__",
        "__gt__",
        "__ge__",
    ),
    "tuple_sub": (
        "__getitem__",
        "__len__",
        "__iter__",
        "__eq__",
        "__ne__",
        "__hash__",
        _HASH_EQ,
        "__class__",
        _CLASS_HASH_EQ,
        "__contains__",
        "__bool__",
        "__add__",
        "__repr__",
        "count",
        "index",
    ),
    "list_sub": (
        "__iter__",
        "__getitem__",
        "__len__",
        "__class__",
        "__contains__",
        "__eq__",
        "__bool__",
        "__reversed__",
        "__add__",
        "__radd__",
        "__repr__",
        "copy",
        "index",
        "count",
    ),
    "dict_sub": _MAPPING,
    "mapping": _MAPPING,
}

# -- APIs x argument positions ----------------------------------------------------------------

# Which stand-ins each kind of position accepts: what the C function (or the stdlib code in
# front of it) takes. Anything else fails without appshield too and proves nothing.
PATHS = ("str_sub", "bytes_sub", "pathlike", "pathlike_bytes", "fspath_str_sub")
INTS = ("int_sub", "index_only")
ADDRESSES = ("tuple_sub",)
SOCKET_HOSTS = ("str_sub", "bytes_sub", "bytearray_sub")  # idna_converter
LOOKUP_HOSTS = ("str_sub", "bytes_sub")  # getaddrinfo: str, bytes or None
SERVICES = ("str_sub", "bytes_sub")  # getaddrinfo's port: an exact int, str or bytes
BYTES_ONLY = ("bytes_sub",)  # fork_exec's executable list: bytes (and subclasses)
ARGVS = ("list_sub",)  # the C functions read a list subclass's items directly
ENVS = ("dict_sub", "mapping")


@dataclass(frozen=True)
class Position:
    api: str
    name: str
    kinds: tuple[str, ...]
    category: str
    # Passive: no decision depends on this argument (a symlink's target): the property is
    # then only "happened exactly as a value the stand-in gave".
    passive: bool = False

    @property
    def label(self) -> str:
        return f"{self.api}({self.name})"


def _file(api: str, *names: str) -> list[Position]:
    return [Position(api, n, PATHS, "file") for n in names]


def _proc(api: str, *names: str, kinds: tuple[str, ...] = PATHS) -> list[Position]:
    return [Position(api, n, kinds, "process") for n in names]


def _net(api: str, hosts: tuple[str, ...], ports: tuple[str, ...]) -> list[Position]:
    return [
        Position(api, "address", ADDRESSES, "network"),
        Position(api, "host", hosts, "network"),
        Position(api, "port", ports, "network"),
    ]


POSITIONS: tuple[Position, ...] = (
    # files
    *_file("open", "path"),
    *_file("open-read", "path"),
    *_file("io.FileIO", "path"),
    *_file("os.open", "path"),
    *_file("os.open+dir_fd", "path"),
    Position("os.open+dir_fd", "flags", INTS, "file"),
    Position("os.open+dir_fd", "dir_fd", INTS, "file"),
    *_file("os.mkdir", "path"),
    *_file("os.symlink", "dst"),
    Position("os.symlink", "src", PATHS, "file", passive=True),
    *_file("os.link", "src", "dst"),
    *_file("os.rename", "src", "dst"),
    *_file("os.replace", "src", "dst"),
    *_file("os.remove", "path"),
    *_file("os.truncate", "path"),
    *_file("shutil.move", "src", "dst"),
    *_file("os.mkfifo", "path"),
    *_file("os.mknod", "path"),
    *_file("sqlite3.connect", "database"),
    # processes
    # "args"/"argv": the whole list; "env": the environment whose PATH finds the program.
    *_proc("subprocess.Popen", "args[0]", "args[1]", "executable", "cwd"),
    *_proc("subprocess.Popen", "args", kinds=ARGVS),
    *_proc("subprocess.Popen", "env", kinds=ENVS),
    *_proc("subprocess.run", "args[0]", "args[1]", "executable", "cwd"),
    *_proc("subprocess.run", "args", kinds=ARGVS),
    *_proc("subprocess.run", "env", kinds=ENVS),
    # close_fds=False and no cwd: subprocess starts the child through os.posix_spawn
    *_proc("subprocess.Popen[posix_spawn]", "args[0]", "args[1]", "executable"),
    *_proc("subprocess.Popen[posix_spawn]", "args", kinds=ARGVS),
    *_proc("asyncio.create_subprocess_exec", "program", "argv[1]"),
    *_proc("asyncio.create_subprocess_exec", "env", kinds=ENVS),
    *_proc("os.posix_spawn", "path", "argv[1]", "file_actions"),
    *_proc("os.posix_spawn", "argv", kinds=ARGVS),
    *_proc("os.posix_spawnp", "file", "argv[1]", "file_actions"),
    *_proc("os.posix_spawnp", "argv", kinds=ARGVS),
    *_proc("os.spawnv", "path", "argv[1]"),
    *_proc("os.spawnv", "argv", kinds=ARGVS),
    *_proc("os.execv", "path", "argv[1]"),
    *_proc("os.execv", "argv", kinds=ARGVS),
    *_proc("os.execve", "path", "argv[1]"),
    *_proc("os.execve", "argv", kinds=ARGVS),
    *_proc("pty.spawn", "argv[0]", "argv[1]"),
    *_proc("pty.spawn", "argv", kinds=ARGVS),
    # fork_exec directly. Its `passfds` are made exact ints by `map(int, ...)` in
    # multiprocessing before any hook sees them, so they are not a position of their own.
    *_proc("multiprocessing.util.spawnv_passfds", "path", kinds=BYTES_ONLY),
    *_proc("multiprocessing.util.spawnv_passfds", "args[1]"),
    *_proc("multiprocessing.util.spawnv_passfds", "args", kinds=ARGVS),
    # network
    *_net("socket.connect", SOCKET_HOSTS, INTS),
    *_net("socket.connect_ex", SOCKET_HOSTS, INTS),
    *_net("socket.sendto", SOCKET_HOSTS, INTS),
    *_net("socket.sendmsg", SOCKET_HOSTS, INTS),
    # create_connection unpacks the address itself and looks it up with getaddrinfo, which
    # takes an exact int port or a service string.
    *_net("socket.create_connection", LOOKUP_HOSTS, SERVICES),
    Position("socket.getaddrinfo", "host", LOOKUP_HOSTS, "network"),
    Position("socket.getaddrinfo", "port", SERVICES, "network"),
    # imports: module names are str (a subclass is accepted)
    Position("importlib.import_module", "name", ("str_sub",), "import"),
    Position("__import__", "name", ("str_sub",), "import"),
)

BY_LABEL: dict[str, Position] = {p.label: p for p in POSITIONS}

# -- plans ------------------------------------------------------------------------------------

_PROGRAM_POSITIONS = {"args[0]", "executable", "program", "path", "file", "argv[0]"}


def plan(api: str, position: str, key: str, world: dict[str, Any]) -> dict[str, Any]:
    """What the case `key` at `api(position)` stands for in `world`.

    Returns {"denied", "allowed", "args", "evidence", "fixtures", "expected", "warm"}:
    - denied / allowed: the plain value and its harmless counterpart;
    - args: the call's other arguments (plain);
    - evidence: how the parent sees that the denied operation took effect;
    - fixtures: [path, content] files to create before the run;
    - expected: paths the case may legitimately create besides the denied effect (the
      allowed counterpart's effect), for the scan for unexpected effects;
    - warm: whether the child performs the allowed counterpart once before the cases, so
      that appshield's caches of allowed operations hold exactly what a lie pretends to be.
    """
    f, a = world["forbidden"], world["allowed"]
    out: dict[str, Any] = {"args": {}, "fixtures": [], "expected": [], "warm": True}
    if api in ("open", "io.FileIO", "os.open", "os.mkdir", "os.mkfifo", "os.mknod") or (
        api == "sqlite3.connect"
    ):
        tag = {
            "open": "o",
            "io.FileIO": "fio",
            "os.open": "oo",
            "os.mkdir": "d",
            "os.mkfifo": "ff",
            "os.mknod": "nd",
            "sqlite3.connect": "db",
        }[api]
        out.update(denied=f"{f}/{tag}{key}", allowed=f"{a}/{tag}warm")
        out["evidence"] = ["exists", out["denied"]]
    elif api == "open-read":
        secret = f"{world['secret']}/s{key}"
        out.update(denied=secret, allowed=world["public_file"])
        out["fixtures"] = [[secret, f"SECRET-{key}"]]
        out["evidence"] = ["data", f"SECRET-{key}"]
    elif api == "os.open+dir_fd":
        target = f"{f}/od{key}"
        out["evidence"] = ["exists", target]
        out["expected"] = [f"{a}/od{key}"]
        if position == "path":
            out.update(denied=f"forbidden/od{key}", allowed="allowed/odwarm")
            out["args"] = {"dir_fd": "fd:root", "flags": "flags:write"}
        elif position == "flags":
            out.update(denied="flags:write", allowed="flags:read")
            out["args"] = {"path": f"od{key}", "dir_fd": "fd:forbidden"}
        else:
            out.update(denied="fd:forbidden", allowed="fd:allowed")
            out["args"] = {"path": f"od{key}", "flags": "flags:write"}
    elif api == "os.symlink":
        if position == "dst":
            out.update(denied=f"{f}/l{key}", allowed=f"{a}/lwarm")
            out["args"] = {"src": "/nonexistent/hostile-target"}
            out["evidence"] = ["exists", out["denied"]]
        else:
            link = f"{a}/sl{key}"
            out.update(denied=f"{world['secret']}/target{key}", allowed=world["public_file"])
            out["args"] = {"dst": link}
            out["evidence"] = ["symlink", link]
            out["expected"] = [link]
    elif api == "os.link":
        if position == "src":
            link = f"{a}/hl{key}"
            out.update(denied=world["protected"], allowed=world["link_source"])
            out["args"] = {"dst": link}
            out["evidence"] = ["hardlink", link, world["protected"]]
            out["expected"] = [link]
            out["warm"] = False  # the allowed counterpart needs a fresh name each time
        else:
            out.update(denied=f"{f}/hl{key}", allowed=f"{a}/hlwarm")
            out["args"] = {"src": world["link_source"]}
            out["evidence"] = ["exists", out["denied"]]
    elif api in ("os.rename", "os.replace", "shutil.move"):
        if position == "src":
            source = f"{f}/r{key}"
            out.update(denied=source, allowed=f"{a}/rwarm{key}")
            out["args"] = {"dst": f"{a}/r{key}"}
            out["fixtures"] = [[source, "moved?"], [out["allowed"], "warm"]]
            out["evidence"] = ["gone", source]
            out["expected"] = [f"{a}/r{key}"]
            out["warm"] = False  # one allowed source per case: a warm-up would move it away
        else:
            source = f"{a}/rs{key}"
            out.update(denied=f"{f}/r{key}", allowed=f"{a}/rdwarm")
            out["args"] = {"src": source}
            out["fixtures"] = [[source, "source"]]
            out["evidence"] = ["exists", out["denied"]]
    elif api == "os.remove":
        out.update(denied=f"{f}/x{key}", allowed=f"{a}/xwarm{key}")
        out["fixtures"] = [[out["denied"], "delete me?"], [out["allowed"], "harmless"]]
        out["evidence"] = ["gone", out["denied"]]
        out["warm"] = False
    elif api == "os.truncate":
        out.update(denied=f"{f}/t{key}", allowed=f"{a}/twarm")
        out["fixtures"] = [[out["denied"], "full"]]
        out["evidence"] = ["emptied", out["denied"]]
    elif api in (
        "subprocess.Popen",
        "subprocess.run",
        "subprocess.Popen[posix_spawn]",
        "asyncio.create_subprocess_exec",
        "os.posix_spawn",
        "os.posix_spawnp",
        "os.spawnv",
        "os.execv",
        "os.execve",
        "pty.spawn",
        "multiprocessing.util.spawnv_passfds",
    ):
        marker = f"{a}/m{key}"
        out["args"] = {"marker": marker}
        if position in _PROGRAM_POSITIONS:
            # touch makes a file at the marker; the allowed mkdir makes a folder there
            if api == "os.posix_spawnp":
                out.update(denied="touch", allowed="mkdir")
            else:
                out.update(denied=world["touch"], allowed=world["mkdir"])
            out["evidence"] = ["file", marker]
            out["expected"] = [marker]
            out["warm"] = False  # the allowed mkdir needs a fresh marker
        elif position == "cwd":
            out.update(denied=world["deny_cwd"], allowed=world["allow_cwd"])
            out["evidence"] = ["file", marker]
            out["expected"] = [marker]
            out["warm"] = False
        elif position in ("args", "argv"):
            # the whole list: mkdir, and a folder under forbidden/ (denied by its arguments)
            out.update(
                denied=[world["mkdir"], f"{f}/pm{key}"], allowed=[world["mkdir"], f"{a}/pmwarm"]
            )
            out["evidence"] = ["exists", f"{f}/pm{key}"]
        elif position == "env":
            # `run`, found through PATH: touch in the denied folder, mkdir in the allowed one
            out.update(denied={"PATH": world["deny_cwd"]}, allowed={"PATH": world["allow_cwd"]})
            out["evidence"] = ["file", marker]
            out["expected"] = [marker]
            out["warm"] = False
        elif position == "file_actions":
            out.update(denied=f"{f}/fa{key}", allowed=f"{a}/fawarm")
            out["evidence"] = ["exists", out["denied"]]
        else:  # an argument: mkdir is denied only for a folder under forbidden/
            out.update(denied=f"{f}/pm{key}", allowed=f"{a}/pmwarm")
            out["evidence"] = ["exists", out["denied"]]
    elif api in (
        "socket.connect",
        "socket.connect_ex",
        "socket.sendto",
        "socket.sendmsg",
        "socket.create_connection",
    ):
        udp = api in ("socket.sendto", "socket.sendmsg")
        denied_port = world["udp_denied" if udp else "tcp_denied"]
        allowed_port = world["udp_allowed" if udp else "tcp_allowed"]
        service = api == "socket.create_connection"
        out["evidence"] = ["udp" if udp else "tcp", key]
        if position == "address":
            out.update(denied=["127.0.0.1", denied_port], allowed=["127.0.0.1", allowed_port])
        elif position == "host":
            # What appshield is told is "" (the C layer's INADDR_ANY, which the rule's cidr
            # does not cover); what connects is always 127.0.0.1. Audit events cannot hand
            # the C call another value, so no connection to anything but 127.0.0.1 is ever
            # attempted, and the lie is never performed for real (no warm-up).
            out.update(denied="127.0.0.1", allowed="")
            out["args"] = {"port": denied_port}
            out["warm"] = False
        else:
            if service:
                out.update(denied=str(denied_port), allowed=str(allowed_port))
            else:
                out.update(denied=denied_port, allowed=allowed_port)
            out["args"] = {"host": "127.0.0.1"}
    elif api == "socket.getaddrinfo":
        # Resolving "localhost" reads /etc/hosts only; a literal is no lookup at all.
        denied_port = world["lookup_denied"]
        out["evidence"] = ["data", f"localhost:{denied_port}"]
        if position == "host":
            out.update(denied="localhost", allowed="127.0.0.1")
            out["args"] = {"port": str(denied_port)}
        else:
            out.update(denied=str(denied_port), allowed=str(world["lookup_allowed"]))
            out["args"] = {"host": "localhost"}
    elif api in ("importlib.import_module", "__import__"):
        # A module whose body leaves a canary; the policy denies hostile_evil*.
        module = f"hostile_evil{key}"
        canary = f"{a}/imp{key}"
        out.update(denied=module, allowed="hostile_ok")
        out["fixtures"] = [[f"{world['modules']}/{module}.py", f"open({canary!r}, 'w').close()\n"]]
        out["evidence"] = ["exists", canary]
    else:
        raise KeyError(api)
    return out
