"""One child interpreter of the hostile-argument suite: runs a batch of cases, once.

    python _child.py SPEC.json

SPEC holds the mode (`control`: no appshield at all; `enforce`; `monitor`), the world
(folders, programs, ports), the policy file and the cases. For each case the child runs the
plain value first, then the hostile stand-in, then (under a shield) a sentinel denied open that
proves the shield still works after the case. Every outcome is appended as one JSON line to
the results file through a descriptor opened before the shield, so a crash or a hang loses
only the case in progress; the parent judges the effects in the outside world.

Stand-ins misbehave only when appshield's own frames call them: a frame whose module is
`appshield` or below it is on the stack. Module names (`f_globals["__name__"]`) rather than
`co_filename` are compared: reading `f_code` raises the audit event `object.__getattr__`,
one more trip through the shield for every frame walked.

Standard library only (plus appshield itself under a shield); this file is run as a script,
not imported by pytest.
"""

from __future__ import annotations

import asyncio
import faulthandler
import importlib
import io
import json
import multiprocessing.util
import os
import pty
import shutil
import socket
import sqlite3
import subprocess
import sys
import traceback
from collections.abc import Callable
from typing import Any

import _cases  # this folder is sys.path[0]: the child is run as a script

# -- hostile stand-ins ------------------------------------------------------------------------


class HostileError(Exception):
    pass


class HostileBase(BaseException):
    pass


class HostileInterrupt(KeyboardInterrupt):
    pass


class HostileExit(SystemExit):
    pass


class HostileRecursion(RecursionError):
    pass


EXCEPTION_CLASSES: dict[str, type[BaseException]] = {
    "Exception": HostileError,
    "BaseException": HostileBase,
    "KeyboardInterrupt": HostileInterrupt,
    "SystemExit": HostileExit,
    "RecursionError": HostileRecursion,
}
HOSTILE_EXCEPTIONS = tuple(EXCEPTION_CLASSES.values())

_getframe = sys._getframe


def from_appshield() -> bool:
    """Is any frame of appshield on the stack (above the dunder that asks)?"""
    frame = _getframe(2)
    while frame is not None:
        name = frame.f_globals.get("__name__")
        if name.__class__ is str and (name == "appshield" or name.startswith("appshield.")):
            return True
        frame = frame.f_back
    return False


# (id(stand-in), dunder) -> calls from appshield so far: "once" is per dunder, so that a
# lying __hash__ and __eq__ pair both lie on their first call.
_calls: dict[tuple[int, str], int] = {}

_BASES: dict[str, type] = {
    "str": str,
    "bytes": bytes,
    "bytearray": bytearray,
    "int": int,
    "tuple": tuple,
    "list": list,
    "dict": dict,
}
# The Mapping protocol an honest non-dict environment answers (delegating to its dict).
_MAPPING_METHODS = ("__getitem__", "__iter__", "__len__", "__contains__", "get", "items")
_MAPPING_METHODS += ("keys", "values", "copy")


def _plain_copy(base: str, obj: Any) -> Any:
    """The exact-typed value a subclass instance holds, read through the base type."""
    if base == "str":
        return str.__getitem__(obj, slice(None))
    if base == "bytes":
        return bytes.__getitem__(obj, slice(None))
    if base == "bytearray":
        return bytearray.__getitem__(obj, slice(None))
    if base == "int":
        return int.__index__(obj)
    if base == "list":
        return list.__getitem__(obj, slice(None))
    if base == "dict":
        return dict.copy(obj)
    return tuple.__getitem__(obj, slice(None))


def _call(name: str, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """`value.name(*args)` as the plain value would answer it (with the few dunders the
    plain type lacks spelled out the way the corresponding builtin behaves)."""
    method = getattr(type(value), name, None)
    if method is not None:
        return method(value, *args, **kwargs)
    if name == "__fspath__":
        return value
    if name == "__bytes__":
        return os.fsencode(value) if isinstance(value, str) else bytes(value)
    if name == "__int__":
        return int(value)
    if name == "__bool__":
        return bool(value)
    if name == "__radd__":
        return args[0] + value
    if name == "__index__":
        raise TypeError(f"'{type(value).__name__}' object cannot be interpreted as an integer")
    if name == "__hash__":  # bytearray: unhashable
        raise TypeError(f"unhashable type: '{type(value).__name__}'")
    raise AttributeError(name)


def _lie_hash(value: Any) -> int:
    # A lying __hash__ must produce the hash the allowed value has in a dict: a bytearray has
    # none, so it pretends to be the bytes it holds.
    return hash(bytes(value)) if isinstance(value, bytearray) else hash(value)


def build(
    kind: str,
    dunders: list[str],
    behaviour: str,
    exception: str | None,
    true_value: Any,
    lie_value: Any,
) -> Any:
    """A stand-in of `kind` that is `true_value` to everyone, except that the listed dunders
    misbehave as `behaviour` says when appshield calls them."""
    base = _cases.KINDS[kind]
    exc_class = EXCEPTION_CLASSES[exception] if exception else HostileError
    subclass = kind.endswith("_sub") and kind != "fspath_str_sub"

    def plain(obj: Any) -> Any:
        return _plain_copy(base, obj) if subclass else true_value

    def hostile(name: str, honest: Callable[..., Any], lie: Callable[..., Any]) -> Any:
        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            if from_appshield():
                counter = (id(self), name)
                count = _calls.get(counter, 0)
                _calls[counter] = count + 1
                if behaviour == "raise_always" or (behaviour == "raise_once" and count == 0):
                    raise exc_class(f"hostile {name}")
                if behaviour == "lie" or (behaviour == "lie_once" and count == 0):
                    return lie(self, *args, **kwargs)
            return honest(self, *args, **kwargs)

        method.__name__ = name
        return method

    namespace: dict[str, Any] = {}
    if kind == "mapping":
        for name in _MAPPING_METHODS:
            namespace[name] = lambda self, *a, _n=name, **k: _call(_n, true_value, a, k)
    elif not subclass and kind != "fspath_str_sub":
        # The one method the kind exists for, honest unless it is also the hostile dunder.
        special = "__index__" if base == "int" else "__fspath__"
        namespace[special] = lambda self: true_value
    hostile_names = [] if behaviour == "honest" else dunders
    if kind == "fspath_str_sub":
        inner = build("str_sub", dunders, behaviour, exception, true_value, lie_value)
        namespace["__fspath__"] = lambda self: inner
        hostile_names = []
    for name in hostile_names:
        if name == "__class__":
            real_lie = _BASES[base]

            def get_class(self: Any, _lie: type = real_lie) -> type:
                if from_appshield():
                    counter = (id(self), "__class__")
                    count = _calls.get(counter, 0)
                    _calls[counter] = count + 1
                    if behaviour == "raise_always" or (behaviour == "raise_once" and count == 0):
                        raise exc_class("hostile __class__")
                    if behaviour == "lie" or (behaviour == "lie_once" and count == 0):
                        return _lie
                return type(self)

            namespace["__class__"] = property(get_class)
            continue
        if name == "__hash__":
            honest = lambda self: _call("__hash__", plain(self), (), {})  # noqa: E731
            lie = lambda self: _lie_hash(lie_value)  # noqa: E731
        else:
            honest = lambda self, *a, _n=name, **k: _call(_n, plain(self), a, k)  # noqa: E731
            lie = lambda self, *a, _n=name, **k: _call(_n, lie_value, a, k)  # noqa: E731
        namespace[name] = hostile(name, honest, lie)
    if "__eq__" in namespace and "__hash__" not in namespace:
        # Defining __eq__ alone would make the class unhashable.
        namespace["__hash__"] = lambda self: _call("__hash__", plain(self), (), {})
    if subclass:
        cls = type(f"Hostile_{kind}", (_BASES[base],), namespace)
        return cls(true_value)
    cls = type(f"Hostile_{kind}", (), namespace)
    return cls()


# -- values -----------------------------------------------------------------------------------


class Context:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.world: dict[str, Any] = spec["world"]
        self.mode: str = spec["mode"]
        self.fds: dict[str, int] = {}

    def scalar(self, value: Any) -> Any:
        """A plan's symbolic value as the plain Python value."""
        if isinstance(value, str) and value.startswith("fd:"):
            return self.fds[value[3:]]
        if value == "flags:write":
            return os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        if value == "flags:read":
            return os.O_RDONLY
        if isinstance(value, list):
            return tuple(value)
        return value

    def typed(self, kind: str, value: Any) -> Any:
        """The plain value in the type the kind stands for."""
        value = self.scalar(value)
        base = _cases.KINDS[kind]
        if base == "bytes":
            return os.fsencode(value)
        if base == "bytearray":
            return bytearray(os.fsencode(value))
        if base == "list":
            return list(value)
        if base == "dict":
            return {**os.environ, **value}
        return value


def _wait_forked(pid: int, read_end: int) -> dict[str, Any]:
    """Wait for a forked child that reports an exception's name through `read_end`."""
    chunks = []
    while True:
        chunk = os.read(read_end, 4096)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(pid, 0)
    raised = b"".join(chunks).decode("utf-8", "replace")
    return {"child_exc": json.loads(raised)} if raised else {}


def _describe(exc: BaseException) -> dict[str, Any]:
    kind = type(exc)
    # Where it was raised (the innermost frames), for whoever reads the finding.
    frames = traceback.extract_tb(exc.__traceback__)[-4:]
    return {
        "type": kind.__qualname__,
        "module": kind.__module__,
        "hostile": isinstance(exc, HOSTILE_EXCEPTIONS),
        "appshield": kind.__module__.split(".")[0] == "appshield",
        "text": _safe_text(exc),
        "where": [f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno} {f.name}" for f in frames],
    }


def _safe_text(exc: BaseException) -> str:
    try:
        return str(exc)[:300]
    except BaseException as inner:  # a message that cannot be printed says so
        return f"<unprintable: {type(inner).__qualname__}>"


# -- the calls --------------------------------------------------------------------------------

MAIN_PID = os.getpid()


def _fork_exec_call(call: Callable[[], Any]) -> dict[str, Any]:
    """Run an exec in a forked child; the child reports an exception it got, if any."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        try:
            call()
        except BaseException as exc:
            os.write(write_end, json.dumps(_describe(exc)).encode())
        os._exit(99)
    os.close(write_end)
    return _wait_forked(pid, read_end)


def run_call(
    ctx: Context, api: str, position: str, value: Any, plan: dict[str, Any], key: str
) -> dict[str, Any]:
    """Call `api` with `value` in `position` and the plan's plain values elsewhere. Returns
    data the parent needs (what was read or resolved); raises what the call raises."""
    args = plan["args"]
    if api == "open":
        with open(value, "w") as handle:
            handle.write("canary")
    elif api == "open-read":
        with open(value, "rb") as handle:
            return {"data": handle.read(200).decode("utf-8", "replace")}
    elif api == "io.FileIO":
        with io.FileIO(value, "w") as handle:
            handle.write(b"canary")
    elif api == "os.open":
        os.close(os.open(value, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    elif api == "os.open+dir_fd":
        path = value if position == "path" else ctx.scalar(args["path"])
        flags = value if position == "flags" else ctx.scalar(args["flags"])
        dir_fd = value if position == "dir_fd" else ctx.scalar(args["dir_fd"])
        os.close(os.open(path, flags, 0o600, dir_fd=dir_fd))
    elif api == "os.mkdir":
        os.mkdir(value)
    elif api == "os.symlink":
        if position == "dst":
            os.symlink(args["src"], value)
        else:
            os.symlink(value, args["dst"])
    elif api == "os.link":
        if position == "src":
            os.link(value, args["dst"])
        else:
            os.link(args["src"], value)
    elif api in ("os.rename", "os.replace", "shutil.move"):
        move: Callable[[Any, Any], Any] = {
            "os.rename": os.rename,
            "os.replace": os.replace,
            "shutil.move": shutil.move,
        }[api]
        if position == "src":
            move(value, args["dst"])
        else:
            move(args["src"], value)
    elif api == "os.remove":
        os.remove(value)
    elif api == "os.truncate":
        os.truncate(value, 0)
    elif api == "os.mkfifo":
        os.mkfifo(value)
    elif api == "os.mknod":
        os.mknod(value, 0o600 | 0o100000)  # S_IFREG: an unprivileged mknod
    elif api == "sqlite3.connect":
        connection = sqlite3.connect(value)
        try:
            connection.execute("create table if not exists t (x)")
            connection.commit()
        finally:
            connection.close()
    elif api.startswith(("subprocess.", "asyncio.", "os.posix_spawn", "os.spawnv", "os.exec")):
        return _run_process(ctx, api, position, value, args)
    elif api in ("pty.spawn", "multiprocessing.util.spawnv_passfds"):
        return _run_process(ctx, api, position, value, args)
    elif api.startswith("socket."):
        return _run_network(ctx, api, position, value, args, key)
    elif api == "importlib.import_module":
        importlib.import_module(value)
    elif api == "__import__":
        __import__(value)
    else:
        raise KeyError(api)
    return {}


def _program_argv(position: str, value: Any, args: dict[str, Any], w: dict[str, Any]) -> Any:
    """(program, argv) for the process APIs: a hostile program runs with the marker; a
    hostile argument is mkdir's folder."""
    if position in ("args[1]", "argv[1]"):
        return w["mkdir"], ["mkdir", value]
    if position == "argv":
        return w["mkdir"], value
    return value, ["prog", args["marker"]]


def _run_process(
    ctx: Context, api: str, position: str, value: Any, args: dict[str, Any]
) -> dict[str, Any]:
    w = ctx.world
    marker = args["marker"]
    env = dict(os.environ)
    if api in ("subprocess.Popen", "subprocess.run", "subprocess.Popen[posix_spawn]"):
        kwargs: dict[str, Any] = {}
        if position == "args[0]":
            argv = [value, marker]
        elif position == "args[1]":
            argv = [w["mkdir"], value]
        elif position == "executable":
            argv, kwargs["executable"] = ["prog", marker], value
        elif position == "args":
            argv = value
        elif position == "env":  # run, found through the env's PATH
            argv, kwargs["env"] = ["run", marker], value
        else:  # cwd: ./run is touch in the denied folder, mkdir in the allowed one
            argv, kwargs["cwd"] = ["./run", marker], value
        if api == "subprocess.Popen[posix_spawn]":
            kwargs["close_fds"] = False
        if api == "subprocess.run":
            subprocess.run(argv, check=False, **kwargs)
        else:
            subprocess.Popen(argv, **kwargs).wait()
    elif api == "asyncio.create_subprocess_exec":
        extra: dict[str, Any] = {}
        if position == "program":
            program, rest = value, [marker]
        elif position == "env":
            program, rest, extra["env"] = "run", [marker], value
        else:
            program, rest = w["mkdir"], [value]

        async def start() -> None:
            process = await asyncio.create_subprocess_exec(program, *rest, **extra)
            await process.wait()

        asyncio.run(start())
    elif api in ("os.posix_spawn", "os.posix_spawnp"):
        spawn = os.posix_spawn if api == "os.posix_spawn" else os.posix_spawnp
        name = (lambda p: p) if api == "os.posix_spawn" else os.path.basename
        actions = None
        if position == "file_actions":
            program, argv = name(w["true"]), ["true"]
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
            actions = [(os.POSIX_SPAWN_OPEN, 3, value, flags, 0o600)]
        elif position == "argv[1]":
            program, argv = name(w["mkdir"]), ["mkdir", value]
        elif position == "argv":
            program, argv = name(w["mkdir"]), value
        else:
            program, argv = value, ["prog", marker]
        if actions is None:
            pid = spawn(program, argv, env)
        else:
            pid = spawn(program, argv, env, file_actions=actions)
        os.waitpid(pid, 0)
    elif api == "os.spawnv":
        program, argv = _program_argv(position, value, args, w)
        os.spawnv(os.P_WAIT, program, argv)
    elif api in ("os.execv", "os.execve"):
        program, argv = _program_argv(position, value, args, w)
        if api == "os.execv":
            return _fork_exec_call(lambda: os.execv(program, argv))
        return _fork_exec_call(lambda: os.execve(program, argv, env))
    elif api == "pty.spawn":
        if position == "argv[0]":
            pty.spawn([value, marker])
        elif position == "argv":
            pty.spawn(value)
        else:
            pty.spawn([w["mkdir"], value])
    elif api == "multiprocessing.util.spawnv_passfds":
        mkdir = os.fsencode(w["mkdir"])
        if position == "path":
            pid = multiprocessing.util.spawnv_passfds(value, ["prog", marker], ())
        elif position == "args":
            pid = multiprocessing.util.spawnv_passfds(mkdir, value, ())
        else:
            pid = multiprocessing.util.spawnv_passfds(mkdir, ["mkdir", value], ())
        os.waitpid(pid, 0)
    else:
        raise KeyError(api)
    return {}


def _run_network(
    ctx: Context, api: str, position: str, value: Any, args: dict[str, Any], key: str
) -> dict[str, Any]:
    if api == "socket.getaddrinfo":
        host = value if position == "host" else args["host"]
        port = value if position == "port" else args["port"]
        infos = socket.getaddrinfo(
            host, port, socket.AF_INET, socket.SOCK_STREAM, 0, socket.AI_CANONNAME
        )
        canon = infos[0][3] if infos else ""
        return {"data": " ".join(f"{canon}:{info[4][1]}" for info in infos)}
    if position == "address":
        address = value
    elif position == "host":
        address = (value, args["port"])
    else:
        address = (args["host"], value)
    # The listener learns which case reached it from the first bytes it receives.
    payload = f"{ctx.mode}:{key}".encode()
    if api == "socket.create_connection":
        with socket.create_connection(address, timeout=5) as conn:
            conn.sendall(payload)
        return {}
    udp = api in ("socket.sendto", "socket.sendmsg")
    kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.settimeout(5)
        if api == "socket.connect":
            sock.connect(address)
            sock.sendall(payload)
        elif api == "socket.connect_ex":
            code = sock.connect_ex(address)
            if code:
                return {"data": f"errno {code}"}
            sock.sendall(payload)
        elif api == "socket.sendto":
            sock.sendto(payload, address)
        else:
            sock.sendmsg([payload], [], 0, address)
    return {}


# -- the batch --------------------------------------------------------------------------------


class Results:
    """JSON lines appended through a descriptor opened before the shield."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def write(self, record: dict[str, Any]) -> None:
        os.write(self.fd, (json.dumps(record) + "\n").encode())


def _log_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _attempt(
    call: Callable[..., dict[str, Any]], *args: Any
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Run one call; any exception, BaseExceptions included, is an outcome, never the end of
    the batch. A forked child that comes back here (a refused exec inside pty.spawn's child)
    leaves at once: it must not run the rest of the batch."""
    try:
        return call(*args), None
    except BaseException as exc:
        return {}, _describe(exc)
    finally:
        if os.getpid() != MAIN_PID:
            os._exit(97)


def _looks_healthy(mode: str, exc: dict[str, Any] | None, reported: bool) -> bool:
    """What the child can tell about a plainly denied call on its own: refused by appshield
    (enforce), or reported without an exception of the stand-in's (monitor). The parent
    judges the effects; this only decides whether to go on in this interpreter."""
    if mode == "enforce":
        return bool(exc and exc["appshield"])
    return reported and not (exc and exc["hostile"])


def _open_for_writing(path: str) -> dict[str, Any]:
    with open(path, "w"):
        return {}


def main() -> None:
    with open(sys.argv[1]) as handle:
        spec = json.load(handle)
    ctx = Context(spec)
    world = ctx.world
    results = Results(spec["results"])
    log = spec["log"]
    case_timeout = float(spec.get("case_timeout", 20))
    # Folder descriptors for dir_fd, opened before the shield, as an app would.
    for name in ("root", "forbidden", "allowed"):
        ctx.fds[name] = os.open(world[name], os.O_RDONLY | os.O_DIRECTORY)
    # Per case: the plain value (key "<id>p"), the stand-in ("<id>") and, under a shield,
    # the plain value once more after it ("<id>s"), which proves the case left nothing behind
    # (a poisoned cache) that lets the same denied operation through.
    plans = {
        case["id"]: {
            variant: _cases.plan(case["api"], case["position"], case["id"] + suffix, world)
            for variant, suffix in (("plain", "p"), ("hostile", ""), ("again", "s"))
        }
        for case in spec["cases"]
    }
    # The warm-up's own plans (its fixtures made here, before the shield), so that it never
    # touches what a case will use.
    warm_plans: dict[str, tuple[dict[str, Any], str]] = {}
    for case in spec["cases"]:
        label = f"{case['api']}({case['position']})"
        if label not in warm_plans:
            key = f"warm{len(warm_plans)}"
            warm_plans[label] = (_cases.plan(case["api"], case["position"], key, world), key)
            for path, content in warm_plans[label][0]["fixtures"]:
                with open(path, "w") as handle:
                    handle.write(content)
    sys.path.insert(0, world["modules"])  # the import cases' modules
    if ctx.mode != "control":
        import appshield

        appshield.install(spec["policy"], mode=ctx.mode, locked=True)

    # Warm-up: the allowed counterpart of each position, once and plainly, so that appshield's
    # caches of allowed operations hold exactly what a lying stand-in pretends to be.
    warmed: set[str] = set()
    for case in spec["cases"]:
        label = f"{case['api']}({case['position']})"
        warm_plan, key = warm_plans[label]
        if label in warmed or not warm_plan["warm"]:
            continue
        warmed.add(label)
        value = ctx.typed(case["kind"], warm_plan["allowed"])
        _, exc = _attempt(run_call, ctx, case["api"], case["position"], value, warm_plan, key)
        results.write({"warm": label, "exc": exc})

    for number, case in enumerate(spec["cases"]):
        results.write({"start": case["id"]})
        passive = _cases.BY_LABEL[f"{case['api']}({case['position']})"].passive
        variants = ["plain", "hostile"]
        if ctx.mode != "control" and not passive:
            variants.append("again")
        healthy = True
        for variant in variants:
            case_plan = plans[case["id"]][variant]
            key = case["id"] + {"plain": "p", "hostile": "", "again": "s"}[variant]
            if variant == "hostile":
                value = build(
                    case["kind"],
                    case["dunders"],
                    case["behaviour"],
                    case["exception"],
                    ctx.typed(case["kind"], case_plan["denied"]),
                    ctx.typed(case["kind"], case_plan["allowed"]),
                )
            else:
                value = ctx.typed(case["kind"], case_plan["denied"])
            before = _log_size(log)
            faulthandler.dump_traceback_later(case_timeout, exit=True)
            data, exc = _attempt(
                run_call, ctx, case["api"], case["position"], value, case_plan, key
            )
            faulthandler.cancel_dump_traceback_later()
            after = _log_size(log)
            record = {"id": case["id"], "variant": variant, "exc": exc, "log": [before, after]}
            record.update(data)
            results.write(record)
            if variant == "again":
                healthy = healthy and _looks_healthy(
                    ctx.mode, exc or data.get("child_exc"), after > before
                )
        if ctx.mode != "control":
            # The sentinel: a plainly denied open must still be refused (enforce) or reported
            # (monitor) after the case, or the case left the shield broken for what follows.
            sentinel = f"{world['forbidden']}/sentinel{case['id']}"
            before = _log_size(log)
            _, exc = _attempt(_open_for_writing, sentinel)
            after = _log_size(log)
            results.write(
                {"id": case["id"], "variant": "sentinel", "exc": exc, "log": [before, after]}
            )
            healthy = healthy and _looks_healthy(ctx.mode, exc, after > before)
            if ctx.mode == "enforce" and os.path.lexists(sentinel):
                healthy = False
        if not healthy:
            # The case left the shield in a state that changes what follows: the rest of
            # the batch runs in a fresh interpreter, so that no later case is blamed.
            results.write({"done": case["id"], "n": number, "restart": True})
            os._exit(0)
        results.write({"done": case["id"], "n": number})
    results.write({"finished": True})


if __name__ == "__main__":
    try:
        main()
    except BaseException:
        traceback.print_exc()
        raise
