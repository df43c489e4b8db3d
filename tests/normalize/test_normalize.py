"""The normalisers on real files, descriptors and addresses, plus fuzzing with hypothesis."""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appshield.normalize import (
    canonical_address,
    fd_path,
    normalize_host,
    normalize_path,
    resolve_path,
)

FUZZ = settings(max_examples=80, deadline=None)
SLOW = settings(
    max_examples=300 if os.environ.get("APPSHIELD_SLOW_SAMPLE") else 5000, deadline=None
)

# --- normalize_path ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given_", "expected"),
    [
        ("/a/b/../c", "/a/c"),
        ("/a/./b/", "/a/b"),
        ("//x", "/x"),
        ("///x//y", "/x/y"),
        ("/..", "/"),
        (b"/a/b", "/a/b"),
        (Path("/a/../b"), "/b"),
    ],
)
def test_normalize_path_absolute(given_: object, expected: str) -> None:
    assert normalize_path(given_) == expected  # type: ignore[arg-type]


def test_normalize_path_relative(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert normalize_path("x/../y", cwd="/srv") == "/srv/y"
    monkeypatch.chdir(tmp_path)
    assert normalize_path("f") == f"{tmp_path}/f"
    assert normalize_path("") == str(tmp_path)


def test_normalize_path_dir_fd(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    fd = os.open(tmp_path / "sub", os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert normalize_path("../f", dir_fd=fd) == f"{tmp_path}/f"
        assert normalize_path("/abs", dir_fd=fd) == "/abs"  # dir_fd ignored, as os does
    finally:
        os.close(fd)


def test_normalize_path_does_not_resolve_symlinks(tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to("/etc")
    assert normalize_path(tmp_path / "link" / "passwd") == f"{tmp_path}/link/passwd"


def test_normalize_path_nul_is_value_error() -> None:
    with pytest.raises(ValueError):
        normalize_path("/a\x00b")
    with pytest.raises(ValueError):
        normalize_path(b"/a\x00b")


@FUZZ
@given(st.one_of(st.text(max_size=40), st.binary(max_size=40)))
def test_normalize_path_fuzz(raw: str | bytes) -> None:
    text = os.fsdecode(raw)
    if "\x00" in text:
        with pytest.raises(ValueError):
            normalize_path(raw, cwd="/base")
        return
    result = normalize_path(raw, cwd="/base")
    assert result.startswith("/") and not result.startswith("//")
    assert normalize_path(result) == result
    assert "/../" not in result + "/" and "/./" not in result + "/"


# --- resolve_path / fd_path ---------------------------------------------------------------------


def test_resolve_path_follows_symlinks(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "f").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    real = os.path.realpath(tmp_path)
    assert resolve_path(tmp_path / "link" / "f") == f"{real}/real/f"
    # `..` after a symlink climbs from the target, as the kernel does
    (tmp_path / "real" / "deep").mkdir()
    (tmp_path / "up").symlink_to(tmp_path / "real" / "deep")
    assert resolve_path(f"{tmp_path}/up/../f") == f"{real}/real/f"


def test_resolve_path_missing_and_dangling(tmp_path: Path) -> None:
    real = os.path.realpath(tmp_path)
    assert resolve_path(tmp_path / "nope" / "x") == f"{real}/nope/x"
    (tmp_path / "dangling").symlink_to(tmp_path / "target-to-be")
    assert resolve_path(tmp_path / "dangling") == f"{real}/target-to-be"


def _tree_of_links(root: Path) -> None:
    """Folders, links to folders (relative and absolute, chained), a link to a file, dangling
    links and a loop: what a new name may be created under, or be."""
    (root / "real" / "deep").mkdir(parents=True)
    (root / "real" / "file").write_text("x")
    (root / "to-real").symlink_to("real")
    (root / "to-deep").symlink_to(root / "real" / "deep")
    (root / "chain").symlink_to("to-deep")
    (root / "to-file").symlink_to("real/file")
    (root / "dangling").symlink_to("real/not-yet")
    (root / "real" / "dangling-up").symlink_to("../nowhere/x")
    (root / "loop").symlink_to("loop")


NEW_NAMES = [
    "real/new",
    "to-real/new",
    "to-deep/new",
    "chain/new",
    "chain/../new",
    "to-deep/../../new",
    "to-real/deep/../new",
    "dangling",
    "real/dangling-up",
    "to-file/new",
    "loop/new",
    "missing/new",
    "real/new/",
    "real/.",
    "real/..",
    "real//new",
    "real/new\udcff",
    "real/" + "n" * 300,
]


@pytest.mark.parametrize("name", NEW_NAMES)
def test_resolve_path_of_a_new_name_is_what_realpath_says(tmp_path: Path, name: str) -> None:
    # A name not there yet (a file about to be created) is put after its folder, which the
    # kernel resolves; every case that is not that one (a dangling link, a folder that does
    # not resolve, `.`/`..`, a trailing `/`) is os.path.realpath's, as before.
    _tree_of_links(tmp_path)
    text = f"{tmp_path}/{name}"
    assert resolve_path(text) == normalize_path(os.path.realpath(text))


def test_resolve_path_of_a_new_name_at_the_root() -> None:
    assert resolve_path("/appshield-no-such-name") == "/appshield-no-such-name"
    assert resolve_path("//appshield-no-such-name") == "/appshield-no-such-name"


def test_resolve_path_of_a_new_name_in_a_deleted_folder(tmp_path: Path) -> None:
    # The kernel names a deleted folder "<path> (deleted)", and os.path.realpath reads the
    # same text through /proc/self/cwd: both answers agree.
    gone = tmp_path / "gone"
    gone.mkdir()
    here = os.getcwd()
    os.chdir(gone)
    try:
        gone.rmdir()
        assert resolve_path("/proc/self/cwd/new") == normalize_path(
            os.path.realpath("/proc/self/cwd/new")
        )
    finally:
        os.chdir(here)


@pytest.fixture(scope="module")
def link_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tree for every example hypothesis tries (a module's: nothing writes to it)."""
    root = tmp_path_factory.mktemp("links")
    _tree_of_links(root)
    return root


@FUZZ
@given(
    st.lists(
        st.sampled_from(
            [
                "real",
                "deep",
                "to-real",
                "to-deep",
                "chain",
                "to-file",
                "dangling",
                "loop",
                "..",
                ".",
                "",
                "new",
                "missing",
            ]
        ),
        min_size=1,
        max_size=6,
    )
)
def test_resolve_path_agrees_with_realpath_on_a_tree_of_links(
    link_tree: Path, parts: list[str]
) -> None:
    root = Path(os.path.realpath(link_tree))
    text = f"{root}/" + "/".join(parts)
    assert resolve_path(text) == normalize_path(os.path.realpath(text))


def test_resolve_path_proc_magic_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.path.realpath(tmp_path)
    (tmp_path / "f").write_text("x")
    assert resolve_path("/proc/self/root/etc/../etc/passwd") == "/etc/passwd"
    assert resolve_path(f"/proc/{os.getpid()}/root{tmp_path}/f") == f"{real}/f"
    monkeypatch.chdir(tmp_path)
    assert resolve_path("/proc/self/cwd/f") == f"{real}/f"
    assert resolve_path("f") == f"{real}/f"
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    try:
        assert resolve_path(f"/proc/self/fd/{fd}") == f"{real}/f"
        assert fd_path(fd) == f"{real}/f"
    finally:
        os.close(fd)


def test_resolve_path_dir_fd(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert resolve_path("f", dir_fd=fd) == f"{os.path.realpath(tmp_path)}/f"
    finally:
        os.close(fd)


def test_resolve_path_does_not_open_a_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert resolve_path(fifo) == f"{os.path.realpath(tmp_path)}/fifo"  # would block if opened


def test_fd_path_without_a_file() -> None:
    read, write = os.pipe()
    try:
        assert fd_path(read) is None
    finally:
        os.close(read)
        os.close(write)
    assert fd_path(read) is None  # closed
    assert fd_path(-1) is None


# --- addresses ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spelling",
    [
        "127.0.0.1",
        "127.1",
        "0x7f.1",
        "0x7f.0.0.1",
        "017700000001",
        "2130706433",
        "0177.0.0.01",
        "::ffff:127.0.0.1",
        "::ffff:7f00:1",
        "[::ffff:127.0.0.1]",
        "::127.0.0.1",
        "0:0:0:0:0:ffff:7f00:1",
    ],
)
def test_canonical_address_loopback_v4(spelling: str) -> None:
    assert canonical_address(spelling) == "127.0.0.1"


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("[::1]", "::1"),
        ("0:0:0:0:0:0:0:1", "::1"),
        ("::", "::"),
        ("fe80::1%eth0", "fe80::1"),
        ("[fe80::1%25eth0]", "fe80::1"),
        ("2001:DB8::0:1", "2001:db8::1"),
    ],
)
def test_canonical_address_v6(spelling: str, expected: str) -> None:
    assert canonical_address(spelling) == expected


@pytest.mark.parametrize(
    "name",
    [
        "example.com",
        "localhost",
        "",
        "1.2.3.4 x",
        " 1.2.3.4",
        "1.2.3.4.5",
        "256.1.1.1",
        "::g",
        "0x",
    ],
)
def test_canonical_address_names_and_garbage(name: str) -> None:
    assert canonical_address(name) is None


def _as_ipaddress_spells(packed: bytes) -> str:
    """What canonical_address gave when it went through `ipaddress` (before it was kept
    out of start-up): mapped and compatible addresses fold to IPv4, the rest is RFC 5952."""
    if len(packed) == 4:
        return str(ipaddress.IPv4Address(packed))
    address = ipaddress.IPv6Address(packed)
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    value = int(address)
    if value >> 32 == 0 and value >= 2:
        return str(ipaddress.IPv4Address(value))
    return str(address)


# Zero groups in runs of every length and place: where RFC 5952's `::` goes.
_GROUPS = st.lists(st.sampled_from([0, 0, 0, 1, 0xFFFF, 0x0DB8, 0x10]), min_size=8, max_size=8)


@SLOW
@given(
    st.one_of(
        st.binary(min_size=16, max_size=16),
        _GROUPS.map(lambda g: b"".join(w.to_bytes(2, "big") for w in g)),
    )
)
def test_canonical_v6_spells_as_ipaddress_does(packed: bytes) -> None:
    expected = _as_ipaddress_spells(packed)
    for spelling in (
        socket.inet_ntop(socket.AF_INET6, packed),
        ":".join(packed[at : at + 2].hex() for at in range(0, 16, 2)),  # no `::`, zero-padded
    ):
        assert canonical_address(spelling) == expected
        assert canonical_address(f"[{spelling}]") == expected


@FUZZ
@given(st.binary(min_size=4, max_size=4))
def test_canonical_v4_spells_as_ipaddress_does(packed: bytes) -> None:
    expected = _as_ipaddress_spells(packed)
    assert canonical_address(socket.inet_ntoa(packed)) == expected
    assert canonical_address(str(int.from_bytes(packed, "big"))) == expected


def check_canonical(text: str) -> None:
    result = canonical_address(text)
    if result is not None:
        assert canonical_address(result) == result
        assert str(ipaddress.ip_address(result)) == result


@FUZZ
@given(st.text(max_size=30))
def test_canonical_address_fuzz_text(text: str) -> None:
    check_canonical(text)


@pytest.mark.slow
@SLOW
@given(st.one_of(st.text(max_size=40), st.text("0123456789abcdefx.:[]%", max_size=40)))
def test_canonical_address_fuzz_exhaustive(text: str) -> None:
    check_canonical(text)


@FUZZ
@given(st.text("0123456789xXabcdef.", max_size=20))
def test_canonical_address_agrees_with_inet_aton(text: str) -> None:
    try:
        packed = socket.inet_aton(text)
    except OSError:
        assert canonical_address(text) is None
    else:
        assert canonical_address(text) == socket.inet_ntoa(packed)


@FUZZ
@given(st.integers(0, 2**32 - 1), st.sampled_from(["dotted", "int", "hex", "octal", "mapped"]))
def test_canonical_address_v4_spellings(value: int, form: str) -> None:
    spelling = {
        "dotted": str(ipaddress.IPv4Address(value)),
        "int": str(value),
        "hex": hex(value),
        "octal": "0" + oct(value)[2:],
        "mapped": f"::ffff:{ipaddress.IPv4Address(value)}",
    }[form]
    assert canonical_address(spelling) == str(ipaddress.IPv4Address(value))


@FUZZ
@given(st.integers(0, 2**128 - 1), st.booleans())
def test_canonical_address_v6_round_trips(value: int, exploded: bool) -> None:
    address = ipaddress.IPv6Address(value)
    spelling = address.exploded if exploded else address.compressed.upper()
    packed = socket.inet_pton(socket.AF_INET6, spelling)
    assert packed == address.packed
    expected = str(address)
    if address.ipv4_mapped is not None:
        expected = str(address.ipv4_mapped)
    elif value >> 32 == 0 and value >= 2:
        expected = str(ipaddress.IPv4Address(value))
    assert canonical_address(spelling) == expected


# --- hosts --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Example.COM.", "example.com"),
        ("example.com", "example.com"),
        ("bücher.de", "xn--bcher-kva.de"),
        ("BÜCHER.de.", "xn--bcher-kva.de"),
        ("", ""),
    ],
)
def test_normalize_host(name: str, expected: str) -> None:
    assert normalize_host(name) == expected


@FUZZ
@given(st.text(max_size=80))
def test_normalize_host_never_raises(name: str) -> None:
    result = normalize_host(name)
    assert isinstance(result, str) and not result.endswith(".")
