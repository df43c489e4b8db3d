"""Checks and normal forms for single match values: globs, hosts, networks, ports.

Each function takes the text as written and returns the normal form, or raises
`ValueError` with a message meant for the user (the caller adds the place).
"""

from __future__ import annotations

import ipaddress
import re

from appshield.normalize import canonical_address, normalize_host

__all__ = [
    "check_class_brackets",
    "check_module_glob",
    "check_path_glob",
    "normalise_address",
    "normalise_host",
    "parse_cidr",
    "parse_port",
]

_HOST_CHARS = re.compile(r"^[a-z0-9_*?\[\]!.-]+$")
_MODULE_SEGMENT = re.compile(r"^[A-Za-z0-9_*?\[\]!]+$")
_PORT_RANGE = re.compile(r"^\s*([0-9]+)\s*-\s*([0-9]+)\s*$")


def check_class_brackets(glob: str, *, allow_slash: bool = True) -> None:
    """Every `[` opens a class closed by a later `]` (a `]` right after `[` or `[!` is a
    member, as in fnmatch)."""
    i, n = 0, len(glob)
    while i < n:
        if glob[i] == "[":
            j = i + 1
            if j < n and glob[j] == "!":
                j += 1
            if j < n and glob[j] == "]":
                j += 1
            end = glob.find("]", j)
            if end < 0:
                raise ValueError(f"unbalanced '[' in glob {glob!r}")
            if not allow_slash and "/" in glob[i:end]:
                raise ValueError(f"a character class cannot hold '/' in glob {glob!r}")
            i = end + 1
        else:
            i += 1
    problem = _engine_glob_problem(glob) if "[" in glob else None
    if problem is not None:
        raise ValueError(f"{problem.removesuffix(' in glob')} in glob {glob!r}")


def _engine_glob_problem(glob: str) -> str | None:
    """Ask the engine's translator too (reversed ranges such as `[z-a]`), so that every
    pattern the loader accepts is one the engine compiles."""
    try:
        from appshield.engine.globs import glob_problem
    except ImportError:  # the engine is optional for loading
        return None
    return glob_problem(glob)


# The segments between a glob's first and last `**` are placed by a scan whose automaton is
# about as wide as they are long, and a decision's cost grows with that width times the
# subject's length (at 512, up to about 6.3 M instructions, 0.45 ms, on a 4,096-character
# path; unbounded, over 20 M; docs/performance-worst-cases.md). No real policy comes near:
# the longest such part in the packs and examples is 26 characters.
MAX_BETWEEN_DOUBLE_STARS = 512


def _check_between_double_stars(glob: str, segments: list[str], sep: str) -> None:
    marks = [i for i, segment in enumerate(segments) if segment == "**"]
    if len(marks) > 1:
        size = len(sep.join(segments[marks[0] + 1 : marks[-1]]))
        if size > MAX_BETWEEN_DOUBLE_STARS:
            shown = glob if len(glob) <= 80 else glob[:77] + "..."
            raise ValueError(
                f"the segments between the first and the last '**' may hold at most "
                f"{MAX_BETWEEN_DOUBLE_STARS:,} characters, not {size:,}, in glob {shown!r}"
            )


def check_path_glob(glob: str) -> None:
    if not glob.startswith("/"):
        raise ValueError(
            f"{glob!r} is not absolute (a path glob must start with '/', '~' or a variable)"
        )
    segments = glob.split("/")
    for segment in segments:
        if "**" in segment and segment != "**":
            raise ValueError(f"'**' must be a whole path segment in {glob!r}")
    _check_between_double_stars(glob, segments, "/")
    check_class_brackets(glob, allow_slash=False)


def check_module_glob(glob: str) -> None:
    if not glob:
        raise ValueError("a module glob cannot be empty")
    for segment in glob.split("."):
        if not segment:
            raise ValueError(f"empty segment in module glob {glob!r}")
        if not _MODULE_SEGMENT.match(segment):
            raise ValueError(f"{glob!r} is not a dotted module name or glob")
        if "**" in segment and segment != "**":
            raise ValueError(f"'**' must be a whole segment in module glob {glob!r}")
    _check_between_double_stars(glob, glob.split("."), ".")
    check_class_brackets(glob)


def normalise_address(text: str) -> str | None:
    """The canonical spelling of an IP literal, exactly as the hooks spell the addresses of
    operations (`127.1` and `::ffff:127.0.0.1` are `127.0.0.1`); None for a name."""
    return canonical_address(text)


def normalise_host(text: str) -> str:
    # The same normaliser as the hooks (lower case, no trailing dot, IDNA for non-ASCII
    # names), so that a rule is written in the form operations arrive in.
    host = normalize_host(text.strip())
    if not host:
        raise ValueError("a host cannot be empty")
    address = normalise_address(host)
    if address is not None:
        return address
    if "/" in host:
        raise ValueError(f"{text!r} is a network, not a host: use 'cidr'")
    if ":" in host:
        raise ValueError(f"{text!r} is not a host name (a port goes in 'port')")
    if not _HOST_CHARS.match(host):
        raise ValueError(f"{text!r} is not a host name or glob")
    check_class_brackets(host)
    return host


def parse_cidr(text: str) -> str:
    try:
        network = ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as exc:
        try:
            loose = ipaddress.ip_network(text.strip(), strict=False)
        except ValueError:
            raise ValueError(f"{text!r} is not an IPv4 or IPv6 network") from exc
        raise ValueError(f"{text!r} has host bits set; did you mean {loose}?") from exc
    if isinstance(network, ipaddress.IPv6Network):
        mapped = network.network_address.ipv4_mapped
        if mapped is not None and network.prefixlen >= 96:
            network = ipaddress.IPv4Network(f"{mapped}/{network.prefixlen - 96}")
    return str(network)


def _check_port(number: int, text: str) -> int:
    if not 0 <= number <= 65535:
        raise ValueError(f"port {text} is out of range 0-65535")
    return number


def parse_port(value: int | str) -> tuple[int, int]:
    if isinstance(value, int):
        port = _check_port(value, str(value))
        return port, port
    stripped = value.strip()
    if stripped.isascii() and stripped.isdigit():
        port = _check_port(int(stripped), stripped)
        return port, port
    found = _PORT_RANGE.match(value)
    if found is None:
        raise ValueError(f'{value!r} is not a port number or a "LOW-HIGH" range')
    low = _check_port(int(found.group(1)), found.group(1))
    high = _check_port(int(found.group(2)), found.group(2))
    if low > high:
        raise ValueError(f"port range {value!r} has LOW greater than HIGH")
    return low, high
