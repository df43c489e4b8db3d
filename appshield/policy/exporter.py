"""The implicit rule `implicit:telemetry_exporter`: what an OpenTelemetry exporter needs.

A policy learned from (or written for) an app without OpenTelemetry denies everything the
OpenTelemetry SDK does once `opentelemetry-instrument` (or the app's own set-up) turns it on:
the connection to the collector, and hundreds of imports. The operator chose the collector in
the environment (`OTEL_EXPORTER_OTLP_*`), so appshield allows, on its own authority and
without a written rule:

- network: `connect` over TCP to each endpoint the SDK would use (the per-signal
  `OTEL_EXPORTER_OTLP_{TRACES,METRICS,LOGS}_ENDPOINT`, else `OTEL_EXPORTER_OTLP_ENDPOINT`,
  else the SDK's default `http://localhost:4318`, or `localhost:4317` when the protocol is
  `grpc`, both when no protocol is set), and `resolve` of those hosts, while
  OpenTelemetry's code is on the call stack (the exporter's thread). No other host, no
  other port, and not the app's own code.
- file: listing the folders on `sys.path` (not reading below them) while OpenTelemetry's
  code is on the call stack: importlib.metadata does, to find entry points.
- import: the `opentelemetry` packages from the site-packages folders (not a module of that
  name planted anywhere else, not `opentelemetry_evil`), OpenTelemetry's own
  `sitecustomize` (how `opentelemetry-instrument` starts), and, only while OpenTelemetry's
  code is on the call stack, the standard library and the few distributions its exporters
  import (protobuf, requests and urllib3 with their helpers, packaging, wrapt, ...). Native
  capabilities that step around every check (`ctypes`, `_ctypes`, `cffi`, `mmap`) are not
  allowed to OpenTelemetry's code at large; `_posixsubprocess` only by its exact name
  (process starts stay judged by the process rules whatever imported it).
- one exception, as narrow as a rule can be: the SDK's metrics package reads a float's bits
  with `ctypes` (`..._internal.exponential_histogram.mapping.ieee_754`, imported whenever the
  SDK's metrics are, which `opentelemetry-instrument` always does). That one module, proved
  by its code object (a `scope`), may import the standard library's own `ctypes` files and
  open the interpreter (`ctypes.pythonapi`); no other code, no other file, no other library.
  Without it every app that adds `opentelemetry-instrument` would fail to start its
  telemetry. (appshield's own private pipeline loads the same module, as its own work, once
  it reports a violation.)

The endpoints are read once, from the environment appshield saw at start-up
(`appshield.settings.STARTUP`): setting `OTEL_EXPORTER_OTLP_ENDPOINT` later opens
nothing. A Python child of a shielded process uses its root's endpoints, whatever its own
environment says (they travel with the policy variables, see `configured_endpoints`).

Precedence: these are allow rules placed after the written ones, so a matching written `deny`
(or alert) wins, as it beats any allow; a written allow that also matches names the decision.
`protections: {telemetry_exporter: false}` turns the rule off. Pure: no I/O besides the
policy variables `{stdlib}`, `{stdlib_modules}`, `{site_packages}` and `{python}`.
"""

from __future__ import annotations

import os
import sys
from types import MappingProxyType

from appshield.document import Condition, RuleSpec
from appshield.engine.globs import escape
from appshield.policy import variables
from appshield.policy.variables import glob_escaped, normalise_path_glob, real_path, value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import NamedTuple
else:  # typing's own costs ~0.7 M instructions per class at start-up (appshield/_records.py)
    from appshield._records import NamedTuple

__all__ = ["RULE_ID", "Endpoint", "configured_endpoints", "endpoints", "exporter_rules"]

RULE_ID = "implicit:telemetry_exporter"

_SIGNALS = ("TRACES", "METRICS", "LOGS")
_HTTP_DEFAULT = "http://localhost:4318"
_GRPC_DEFAULT = "http://localhost:4317"
_SCHEME_PORTS = {"http": 80, "https": 443}

# What OpenTelemetry's SDK, its OTLP exporters (HTTP and gRPC) and its instrumentation loader
# import besides the standard library (seen with opentelemetry-distro 0.66b2, SDK 1.45).
# Each is allowed from site-packages only, and only while OpenTelemetry's code is on the stack.
_NEEDED = (
    "google.protobuf",
    "google._upb",  # protobuf's C implementation
    "google.rpc",  # the gRPC exporter's status messages (googleapis-common-protos)
    "grpc",
    "requests",
    "urllib3",
    "idna",
    "charset_normalizer",
    "certifi",
    "packaging",
    "typing_extensions",
    "wrapt",
    "deprecated",
    "importlib_metadata",
    "zipp",
)

# Where each of them is below a site-packages folder: packages, then single modules (as
# `_NEEDED` names them; tests/telemetry/test_exporter_rule.py checks they agree). Written
# out rather than made at each start from `_NEEDED`.
_NEEDED_RESTS = (
    "/google/protobuf/**",
    "/google/_upb/**",
    "/google/rpc/**",
    "/grpc/**",
    "/requests/**",
    "/urllib3/**",
    "/idna/**",
    "/charset_normalizer/**",
    "/certifi/**",
    "/packaging/**",
    "/typing_extensions/**",
    "/wrapt/**",
    "/deprecated/**",
    "/importlib_metadata/**",
    "/zipp/**",
    "/google/protobuf.py",
    "/google/_upb.py",
    "/google/rpc.py",
    "/grpc.py",
    "/requests.py",
    "/urllib3.py",
    "/idna.py",
    "/charset_normalizer.py",
    "/certifi.py",
    "/packaging.py",
    "/typing_extensions.py",
    "/wrapt.py",
    "/deprecated.py",
    "/importlib_metadata.py",
    "/zipp.py",
)

# Not allowed to OpenTelemetry's code at large: each hands out memory or native code that no
# hook judges. (`ctypes` only to the one SDK module below.)
_NATIVE = ("ctypes", "_ctypes", "cffi", "_cffi_backend", "mmap")
# The SDK module that imports ctypes when it is imported (to read a float's bits).
_FLOAT_BITS = ("opentelemetry.sdk.metrics._internal.exponential_histogram.mapping.ieee_754",)
# The files of `_NATIVE` and `_posixsubprocess` anywhere below the standard library's folder.
_NATIVE_RESTS = (
    "/**/ctypes*",
    "/**/_ctypes*",
    "/**/cffi*",
    "/**/_cffi_backend*",
    "/**/mmap*",
    "/**/_posixsubprocess*",
)


class Endpoint(NamedTuple):
    host: str  # normalised as rules and operations spell it
    port: int


def _endpoint(url: str) -> Endpoint | None:
    known = _DEFAULT_ENDPOINTS.get(url)
    if known is not None:
        return known
    text = url.strip()
    if not text:
        return None
    # Only for a configured endpoint: urllib.parse, and the loader's host check with
    # ipaddress, are several million instructions that a start with the defaults skips.
    from urllib.parse import urlsplit

    from appshield.policy._values import normalise_host

    if "://" not in text:
        text = "http://" + text  # a gRPC endpoint may be written `host:port`
    try:
        parts = urlsplit(text)
        port = parts.port
        host = parts.hostname
    except ValueError:
        return None  # the SDK cannot use it either
    if not host:
        return None
    if port is None:
        port = _SCHEME_PORTS.get(parts.scheme.lower())
        if port is None:
            return None
    try:
        return Endpoint(normalise_host(host), port)
    except ValueError:
        return None


# The SDK's defaults, as `_endpoint` reads them (tests/telemetry checks they agree).
_DEFAULT_ENDPOINTS = {
    _HTTP_DEFAULT: Endpoint("localhost", 4318),
    _GRPC_DEFAULT: Endpoint("localhost", 4317),
}


def endpoints(environ: Mapping[str, str]) -> tuple[Endpoint, ...]:
    """The collector endpoints the SDK's OTLP exporters would connect to, in signal order,
    without repeats. With no endpoint and no protocol set, both defaults: the SDK's HTTP
    exporter uses 4318, and opentelemetry-distro makes gRPC (4317) the default protocol."""
    found: dict[Endpoint, None] = {}
    base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    general_protocol = environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "").strip().lower()
    for signal in _SIGNALS:
        own = environ.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT", "").strip()
        protocol = (
            environ.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL", "").strip().lower()
            or general_protocol
        )
        if own or base:
            urls = [own or base]
        elif protocol == "grpc":
            urls = [_GRPC_DEFAULT]
        elif protocol:
            urls = [_HTTP_DEFAULT]
        else:
            urls = [_HTTP_DEFAULT, _GRPC_DEFAULT]
        for url in urls:
            endpoint = _endpoint(url)
            if endpoint is not None:
                found.setdefault(endpoint, None)
    return tuple(found)


_INHERITED = "telemetry_endpoints"


def configured_endpoints(environ: Mapping[str, str]) -> tuple[Endpoint, ...]:
    """`endpoints` of the root process's start-up environment. A child of a shielded parent
    uses the parent's (handed down with the policy variables, `appshield._inherit`): a
    child started with another `OTEL_EXPORTER_OTLP_ENDPOINT` gets no other collector, and
    one whose environment OpenTelemetry's distro completed before the shield started
    (`OTEL_EXPORTER_OTLP_PROTOCOL=grpc`) carries its parent's shield all the same."""
    frozen = variables.frozen(_INHERITED)
    if frozen is not None:
        out = []
        for text in frozen:
            host, _, port = text.rpartition("|")
            if host and port.isdigit():
                out.append(Endpoint(host, int(port)))
        return tuple(out)
    found = endpoints(environ)
    variables.record(_INHERITED, tuple(f"{e.host}|{e.port}" for e in found))
    return found


def _fields(**fields: tuple[object, ...]) -> Mapping[str, tuple[object, ...]]:
    return MappingProxyType(fields)


def _rule(category: str, fields: Mapping[str, tuple[object, ...]], **extra: object) -> RuleSpec:
    return RuleSpec(
        RULE_ID,
        category,
        "allow",
        Condition(fields),
        description="the configured OpenTelemetry exporter (docs/telemetry.md)",
        **extra,  # type: ignore[arg-type]
    )


def _origin_variables() -> dict[str, tuple[str, ...]]:
    """The variables the rule's origin globs start with, each value glob-escaped once here
    (as `expand` escapes it) for all of them."""
    return {
        name: tuple(glob_escaped(v) for v in value(name, ""))
        for name in ("stdlib", "stdlib_modules", "site_packages", "python")
    }


def _normalised(escaped: Mapping[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """Each of `escaped`'s values as `normalise_path_glob` leaves it (same order)."""
    return {name: tuple(normalise_path_glob(v) for v in vs) for name, vs in escaped.items()}


def _origins(
    escaped: Mapping[str, tuple[str, ...]],
    *patterns: str,
    normalised: Mapping[str, tuple[str, ...]] | None = None,
) -> tuple[str, ...]:
    """The normalised globs of `patterns`, each a variable then a literal rest
    (`{stdlib}/**`): `expand` and `normalise_path_glob`, as a written rule's, without
    `expand`'s parsing (and its escaping of every value again). The rule itself names its
    patterns as (variable, rests) already (`_under`)."""
    groups = []
    for pattern in patterns:
        name, close, rest = pattern[1:].partition("}")
        if not pattern.startswith("{") or not close or "{" in rest or "}" in rest:
            raise ValueError(f"not a variable and a literal rest: {pattern!r}")
        groups.append((name, (rest,)))
    return _under(escaped, _normalised(escaped) if normalised is None else normalised, *groups)


def _under(
    escaped: Mapping[str, tuple[str, ...]],
    normalised: Mapping[str, tuple[str, ...]],
    *groups: tuple[str, tuple[str, ...]],
) -> tuple[str, ...]:
    """`normalise_path_glob(value + rest)` for each (variable name, rests) of `groups`, each
    rest in turn and each of the variable's values for it, without repeats: the globs
    `expand` gives, normalised, in its order. Made in a few C-level passes rather than a
    `normpath` per glob (most of the cost of building the rule at start-up): for rests
    that normpath has nothing to fold in (`_clean`) and an absolute value other than `/`,
    the glob is the normalised value then the rest, since normpath folds a path left to
    right. (tests/telemetry/test_exporter_rule.py compares them, odd values included.)"""
    out: list[str] = []
    for name, rests in groups:
        values, normals = escaped[name], normalised[name]
        if _clean(rests) and all(n.startswith("/") and n != "/" for n in normals):
            if len(normals) == 1:
                normal = normals[0]
                out += [normal + rest for rest in rests]
            else:
                out += [normal + rest for rest in rests for normal in normals]
        else:
            out += [normalise_path_glob(value + rest) for rest in rests for value in values]
    return tuple(dict.fromkeys(out))


def _clean(rests: tuple[str, ...]) -> bool:
    """Each rest is `/` then segments that `normpath` keeps as they are: none empty, `.` or
    `..` (told from the rests joined by newlines, in C; a newline in a rest fails it)."""
    text = "\n".join(rests) + "\n"
    return (
        text.startswith("/")
        and text.count("\n") == len(rests)  # every newline is a separator
        and text.count("\n/") == len(rests) - 1  # after each, a rest starting with `/`
        and "//" not in text
        and "/\n" not in text
        and "/./" not in text
        and "/.\n" not in text
        and "/../" not in text
        and "/..\n" not in text
    )


# Every absolute origin: as an `unless`, it limits a rule to modules that have no file (the
# namespace packages `opentelemetry` and `google`, built-in modules).
_ANY_FILE = Condition(_fields(origin=("/**",)))


def _search_path_folders(search_path: Sequence[str]) -> tuple[str, ...]:
    out: dict[str, None] = {}
    # The entries share most of their folders (`.../lib/python3.X/...`): each is looked at
    # once for all of them (`real_path` is `os.path.realpath`, for less).
    known: set[str] = set()
    for entry in search_path:
        if isinstance(entry, str):
            folder = os.path.abspath(entry)
            out.setdefault(escape(folder), None)
            out.setdefault(escape(real_path(folder, known)), None)
    return tuple(out)


def exporter_rules(
    environ: Mapping[str, str],
    search_path: Sequence[str] | None = None,
    *,
    reach: Sequence[Endpoint] | None = None,
) -> tuple[RuleSpec, ...]:
    """The rules of `implicit:telemetry_exporter` for the environment at start-up.
    `search_path`: `sys.path` as it is then (by default, now). `reach`: the endpoints
    (by default `configured_endpoints(environ)`)."""
    rules: list[RuleSpec] = []
    otel = ("opentelemetry",)
    # Computed once for all the rules below (sysconfig's path expansion is most of the cost
    # of building this rule at start-up).
    places = _origin_variables()
    normalised = _normalised(places)

    def origins(*groups: tuple[str, tuple[str, ...]]) -> tuple[str, ...]:
        """`{variable}rest` for each (variable, rests) group (see `_under`)."""
        return _under(places, normalised, *groups)

    for endpoint in configured_endpoints(environ) if reach is None else reach:
        host = (endpoint.host,)
        connect = _fields(
            host=host,
            port=((endpoint.port, endpoint.port),),
            operation=("connect",),
            transport=("tcp",),
        )
        # Only OpenTelemetry's code: the app's own connection to the collector is still
        # the app's policy's business.
        rules.append(_rule("network", connect, scope=otel))
        rules.append(_rule("network", _fields(host=host, operation=("resolve",)), scope=otel))
    # urllib3 (the HTTP exporter's client) probes for IPv6 when it is imported: a bind to
    # port 0 of ::1 (it carries on without IPv6 if refused, but reports a violation).
    rules.append(
        _rule(
            "network",
            _fields(host=("::1",), port=((0, 0),), operation=("bind",), transport=("tcp",)),
            scope=otel,
        )
    )
    rules.append(
        _rule(
            "import",
            _fields(module=otel, origin=origins(("site_packages", ("/opentelemetry/**",)))),
        )
    )
    # Namespace packages have no file (their submodules do, and meet the rule above).
    rules.append(_rule("import", _fields(module=(*otel, "google")), unless=_ANY_FILE))
    rules.append(
        _rule(
            "import",
            _fields(
                module=("sitecustomize",),
                origin=origins(
                    (
                        "site_packages",
                        ("/opentelemetry/instrumentation/auto_instrumentation/sitecustomize.py",),
                    )
                ),
            ),
        )
    )
    needed = origins(("site_packages", _NEEDED_RESTS))
    rules.append(_rule("import", _fields(module=_NEEDED, origin=needed), scope=otel))
    # The standard library: any module from its folders but the native capabilities, told
    # by their files (whatever name they are loaded under), and site-packages, which an
    # interpreter without a venv keeps below the standard library's folder; the built-in
    # modules (no file) by name.
    not_stdlib = Condition(
        _fields(
            origin=origins(
                ("site_packages", ("/**",)),
                (
                    "stdlib",
                    (
                        # the base interpreter's, when a venv's is what {site_packages} names
                        "/site-packages/**",
                        "/dist-packages/**",
                        "/ctypes/**",
                        *_NATIVE_RESTS,
                    ),
                ),
            )
        )
    )
    rules.append(
        _rule(
            "import",
            # by origin alone (no `module: "*"`, which would file the rule where every
            # import meets it and switch off the engine's screen of unnamed imports)
            _fields(origin=origins(("stdlib", ("/**",)))),
            unless=not_stdlib,
            scope=otel,
        )
    )
    builtins = tuple(
        sorted(n for n in sys.builtin_module_names if n not in _NATIVE and n != "_posixsubprocess")
    )
    rules.append(_rule("import", _fields(module=builtins), unless=_ANY_FILE, scope=otel))
    # `subprocess` imports it; opentelemetry.sdk.resources and packaging import subprocess.
    rules.append(
        _rule(
            "import",
            _fields(
                module=("_posixsubprocess",),
                origin=origins(("stdlib", ("/**/_posixsubprocess*",))),
            ),
            scope=otel,
        )
    )
    rules.append(
        _rule("import", _fields(module=("_posixsubprocess",)), unless=_ANY_FILE, scope=otel)
    )
    # ctypes for the SDK's float-bits module only: the standard library's own ctypes files
    # (never a copy elsewhere, whatever its name), `_ctypes` built in or from lib-dynload,
    # and the interpreter itself (`ctypes.pythonapi` opens the running program).
    rules.append(
        _rule(
            "import",
            _fields(
                module=("ctypes", "_ctypes"),
                origin=origins(("stdlib_modules", ("/ctypes/**", "/lib-dynload/_ctypes.*"))),
            ),
            scope=_FLOAT_BITS,
        )
    )
    rules.append(_rule("import", _fields(module=("_ctypes",)), unless=_ANY_FILE, scope=_FLOAT_BITS))
    rules.append(_rule("import", _fields(library=origins(("python", ("",)))), scope=_FLOAT_BITS))
    # The SDK and `opentelemetry-instrument` find their exporters, propagators and
    # instrumentors through entry points: importlib.metadata lists every folder on sys.path
    # (the folder itself, read access, nothing below it).
    folders = _search_path_folders(sys.path if search_path is None else search_path)
    if folders:
        rules.append(_rule("file", _fields(path=folders, access=("read",)), scope=otel))
    return tuple(rules)
