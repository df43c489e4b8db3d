"""Hypothesis strategies for observed operations, shared by the learn tests."""

from __future__ import annotations

import posixpath

from hypothesis import strategies as st

from appshield.learn.records import Observation, Roots
from appshield.operations import FileOp, ImportOp, NetworkOp, ProcessOp
from appshield.policy._values import normalise_address

ROOTS = Roots.current()

# Segments include glob and brace characters on purpose: the learned rules must escape them.
_segment = st.text(alphabet="abcxyz019_-.*?[]{}! ", min_size=1, max_size=8).filter(
    lambda s: s not in (".", "..")
)
_bases = st.sampled_from(
    [
        "/srv/app",
        "/etc",
        "/proc/123",
        "/var/lib/x",
        ROOTS.tmp,
        ROOTS.home,
        ROOTS.stdlib[0],
        ROOTS.site_packages[0],
        "/usr/share/zoneinfo",
    ]
)


@st.composite
def paths(draw: st.DrawFn) -> str:
    base = draw(_bases)
    parts = draw(st.lists(_segment, min_size=1, max_size=4))
    return posixpath.join(base, *parts)


# `resolved` pinned to None: builds() also draws the defaulted fields of a named tuple.
file_ops = st.builds(
    FileOp, paths(), st.sampled_from(["read", "write", "delete"]), resolved=st.none()
)

_word = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=6)
_host = st.lists(_word, min_size=1, max_size=3).map(lambda w: "h" + ".".join(w))
_ipv4 = st.ip_addresses(v=4).map(str)
# Operations carry the canonical spelling (IPv4-mapped IPv6 folded), as the hooks make them.
_ipv6 = st.ip_addresses(v=6).map(lambda a: normalise_address(str(a)) or str(a))
_port = st.one_of(st.none(), st.integers(0, 65535))


@st.composite
def network_ops(draw: st.DrawFn) -> NetworkOp:
    operation = draw(st.sampled_from(["connect", "send", "bind", "resolve"]))
    transport = draw(st.sampled_from(["tcp", "udp", "unix"]))
    if transport == "unix":
        return NetworkOp(operation, transport="unix", path=draw(paths()))
    host = draw(st.one_of(st.none(), _host))
    address = draw(st.one_of(st.none(), _ipv4, _ipv6, st.just("127.0.0.1")))
    names = tuple(draw(st.lists(_host, max_size=2)))
    if host is None and address is None and not names:
        host = "fallback.example"
    return NetworkOp(operation, host, address, draw(_port), transport, names)


_exe_name = st.sampled_from(["git", "true", "ls", "uname", "weird*name", "a[b"])


@st.composite
def process_ops(draw: st.DrawFn) -> ProcessOp:
    name = draw(_exe_name)
    folder = draw(st.sampled_from(["/usr/bin", "/opt/tools", ROOTS.tmp]))
    args = tuple(draw(st.lists(st.one_of(_segment, paths()), max_size=3)))
    return ProcessOp(
        posixpath.join(folder, name),
        (name, *args),
        shell=draw(st.booleans()),
        trusted_location=draw(st.booleans()),
    )


_module = st.lists(
    st.text(alphabet="abcxyz_019-", min_size=1, max_size=5), min_size=1, max_size=3
).map(".".join)


@st.composite
def import_ops(draw: st.DrawFn) -> ImportOp:
    if draw(st.integers(0, 5)) == 0:
        return ImportOp(None, None, draw(paths()))
    module = draw(_module)
    origin = draw(
        st.one_of(
            st.none(),
            st.just("built-in"),
            paths().map(lambda p: p + ".py"),
            paths().map(lambda p: p + "/__init__.py"),
        )
    )
    return ImportOp(module, origin)


operations = st.one_of(file_ops, network_ops(), process_ops(), import_ops())
_modules = st.sampled_from(["app", "app.db", "vendor.lib", "__main__"])


@st.composite
def observations(draw: st.DrawFn) -> Observation:
    module = draw(_modules)
    return Observation(
        draw(operations),
        draw(st.sampled_from(["open", "subprocess.Popen", "socket.connect", "import"])),
        module,
        (module, "__main__"),
        draw(st.integers(1, 50)),
        ROOTS,
    )
