"""`implicit:telemetry_exporter`: what the configured OpenTelemetry exporter needs, and no more.

The decisions are asked of a compiled policy with the rule built from a given environment;
the end-to-end tests learn a small app without OpenTelemetry, then run it under
`opentelemetry-instrument` and `appshield run` with a real OTLP/HTTP receiver on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appshield.engine import compile_policy
from appshield.operations import ImportOp, NetworkOp
from appshield.policy import Policy
from appshield.policy.exporter import RULE_ID, Endpoint, endpoints, exporter_rules
from appshield.policy.variables import value
from tests.telemetry import otlp_receiver

DENY_ALL = {
    "version": 1,
    "defaults": {"process": "deny", "file": "deny", "network": "deny", "import": "deny"},
    "rules": [],
}
SITE = value("site_packages", "")[0]
STDLIB = value("stdlib", "")[0]


def _compiled(policy: dict[str, Any], environ: dict[str, str]) -> Any:
    document = Policy.from_mapping(policy).document
    rules = exporter_rules(environ, reach=endpoints(environ))
    return compile_policy(document, "enforce", implicit_allows=rules)


EXPORTER = ["opentelemetry.exporter.otlp.proto.http.trace_exporter", "urllib3.connection"]


def _connect(host: str, port: int) -> NetworkOp:
    return NetworkOp("connect", host=host, port=port, transport="tcp")


# -- which endpoints -------------------------------------------------------------------------


def test_endpoints_default_to_the_sdk_defaults() -> None:
    # no protocol: the HTTP exporter's default, and the distro's (gRPC)
    assert endpoints({}) == (Endpoint("localhost", 4318), Endpoint("localhost", 4317))
    assert endpoints({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}) == (Endpoint("localhost", 4317),)
    assert endpoints({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}) == (
        Endpoint("localhost", 4318),
    )


def test_the_known_defaults_read_as_parsing_reads_them() -> None:
    """`_endpoint` answers the SDK's two default URLs without parsing (urllib.parse and the
    host check stay out of start-up); a space around one takes the parsing path."""
    from appshield.policy.exporter import _DEFAULT_ENDPOINTS, _endpoint

    for url, known in _DEFAULT_ENDPOINTS.items():
        assert _endpoint(url) == known == _endpoint(f" {url} ")


def test_endpoints_per_signal_and_base() -> None:
    environ = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://Collector.example:4318/",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://traces.example/v1/traces",
        "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "logs.example:4317",
    }
    assert endpoints(environ) == (
        Endpoint("traces.example", 443),
        Endpoint("collector.example", 4318),
        Endpoint("logs.example", 4317),
    )


def test_an_unusable_endpoint_opens_nothing() -> None:
    assert (
        endpoints(
            {f"OTEL_EXPORTER_OTLP_{s}_ENDPOINT": "::bad" for s in ("TRACES", "METRICS", "LOGS")}
        )
        == ()
    )


# -- what the rule allows, and what it does not -------------------------------------------------


def test_the_configured_endpoint_only() -> None:
    compiled = _compiled(DENY_ALL, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4999"})
    allowed = compiled.decide(_connect("127.0.0.1", 4999), EXPORTER)
    assert (allowed.action, allowed.rule_id) == ("allow", RULE_ID)
    # the app's own code connecting to the collector: its policy decides
    assert compiled.decide(_connect("127.0.0.1", 4999), ["app"]).rule_id == "default:network"
    # another port of the same host, another host on the same port: the default
    for op in (_connect("127.0.0.1", 5000), _connect("127.0.0.2", 4999)):
        decision = compiled.decide(op, EXPORTER)
        assert (decision.action, decision.rule_id, decision.blocked) == (
            "deny",
            "default:network",
            True,
        )
    # not the default endpoint either, once another is configured
    assert compiled.decide(_connect("localhost", 4318)).action == "deny"
    # a bind or a datagram to the endpoint is not an export
    assert compiled.decide(NetworkOp("bind", host="127.0.0.1", port=4999)).action == "deny"
    assert (
        compiled.decide(NetworkOp("send", host="127.0.0.1", port=4999, transport="udp")).action
        == "deny"
    )


def test_a_name_is_resolved_and_reached_by_its_addresses() -> None:
    compiled = _compiled(DENY_ALL, {})
    resolve = NetworkOp("resolve", host="localhost", port=4318)
    assert compiled.decide(resolve, EXPORTER).rule_id == RULE_ID
    reached = NetworkOp("connect", address="127.0.0.1", port=4318, names=("localhost",))
    assert compiled.decide(reached, EXPORTER).rule_id == RULE_ID


def test_an_explicit_deny_wins_and_the_protection_turns_off() -> None:
    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4999"}
    denying = {
        **DENY_ALL,
        "rules": [
            {
                "id": "no-collector",
                "category": "network",
                "action": "deny",
                "match": {"port": 4999},
            },
            {
                "id": "no-otel",
                "category": "import",
                "action": "deny",
                "match": {"module": "opentelemetry.sdk"},
            },
        ],
    }
    compiled = _compiled(denying, environ)
    decision = compiled.decide(_connect("127.0.0.1", 4999), EXPORTER)
    assert (decision.rule_id, decision.blocked) == ("no-collector", True)
    sdk = ImportOp("opentelemetry.sdk.trace", f"{SITE}/opentelemetry/sdk/trace/__init__.py")
    assert compiled.decide(sdk).rule_id == "no-otel"

    off = Policy.from_mapping({**DENY_ALL, "protections": {"telemetry_exporter": False}})
    assert off.document.protections.telemetry_exporter is False
    # Policy.compiled applies the switch (it reads appshield's start-up environment)
    assert off.decide(_connect("localhost", 4318), EXPORTER).rule_id == "default:network"
    assert off.decide(sdk).rule_id == "default:import"


def test_written_allow_names_the_decision() -> None:
    allowing = {
        **DENY_ALL,
        "rules": [
            {"id": "collector", "category": "network", "action": "allow", "match": {"port": 4318}}
        ],
    }
    decision = _compiled(allowing, {}).decide(_connect("localhost", 4318), EXPORTER)
    assert decision.rule_id == "collector"


def test_imports_of_opentelemetry_from_site_packages_only() -> None:
    compiled = _compiled(DENY_ALL, {})
    ok = ImportOp("opentelemetry.sdk.trace", f"{SITE}/opentelemetry/sdk/trace/__init__.py")
    assert compiled.decide(ok).rule_id == RULE_ID
    assert compiled.decide(ImportOp("opentelemetry", None)).rule_id == RULE_ID  # namespace
    for op in (
        ImportOp("opentelemetry_evil", f"{SITE}/opentelemetry_evil/__init__.py"),
        ImportOp("opentelemetry.sdk.evil", "/tmp/planted/opentelemetry/sdk/evil.py"),
        ImportOp("opentelemetry", "/tmp/planted/opentelemetry/__init__.py"),
        ImportOp("sitecustomize", "/tmp/planted/sitecustomize.py"),
    ):
        assert compiled.decide(op).rule_id == "default:import", op


def test_what_the_sdk_needs_only_under_opentelemetry() -> None:
    compiled = _compiled(DENY_ALL, {})
    under_otel = ["opentelemetry.exporter.otlp.proto.http.trace_exporter", "requests"]
    requests = ImportOp("requests", f"{SITE}/requests/__init__.py")
    queue = ImportOp("queue", f"{STDLIB}/queue.py")
    for op in (requests, queue):
        assert compiled.decide(op, under_otel).rule_id == RULE_ID
        assert compiled.decide(op, ["app"]).rule_id == "default:import"
        assert compiled.decide(op, []).rule_id == "default:import"
    planted = ImportOp("requests", "/tmp/planted/requests/__init__.py")
    assert compiled.decide(planted, under_otel).rule_id == "default:import"
    # what sits below the standard library's folder but is not the standard library
    for op in (
        ImportOp("anything", f"{STDLIB}/site-packages/anything/__init__.py"),
        ImportOp("anything", f"{SITE}/anything/__init__.py"),
    ):
        assert compiled.decide(op, under_otel).rule_id == "default:import", op
    posix = ImportOp("_posixsubprocess", f"{STDLIB}/lib-dynload/_posixsubprocess.cpython.so")
    assert compiled.decide(posix, under_otel).rule_id == RULE_ID
    assert compiled.decide(posix, ["app"]).rule_id == "default:import"


FLOAT_BITS = "opentelemetry.sdk.metrics._internal.exponential_histogram.mapping.ieee_754"
STDLIB_MODULES = value("stdlib_modules", "")[0]


@pytest.mark.parametrize("module", ["ctypes", "_ctypes", "ctypes.util", "cffi", "mmap"])
def test_native_capabilities_are_never_granted(module: str) -> None:
    compiled = _compiled(DENY_ALL, {})
    stack = ["opentelemetry.sdk.metrics._internal", "opentelemetry.sdk.trace"]
    origins = (
        f"{STDLIB}/{module.replace('.', '/')}.py",
        f"{STDLIB}/lib-dynload/{module}.cpython-311-x86_64-linux-gnu.so",
        None,
    )
    for origin in origins:
        decision = compiled.decide(ImportOp(module, origin), stack)
        assert decision.rule_id == "default:import", (module, origin)
        # nor under another name: the file is what runs
        renamed = compiled.decide(ImportOp("innocent", origin), stack)
        assert renamed.rule_id == "default:import" or origin is None, (module, origin)
    # nor a native library, through ctypes or cffi
    library = ImportOp(None, None, sys.executable)
    assert compiled.decide(library, stack).rule_id == "default:import"


def test_ctypes_only_for_the_sdk_float_bits_module_and_only_its_own_files() -> None:
    compiled = _compiled(DENY_ALL, {})
    own = ImportOp("ctypes", f"{STDLIB_MODULES}/ctypes/__init__.py")
    assert compiled.decide(own, [FLOAT_BITS]).rule_id == RULE_ID
    assert compiled.decide(ImportOp("_ctypes", None), [FLOAT_BITS]).rule_id == RULE_ID
    python = ImportOp(None, None, os.path.realpath(sys.executable))
    assert compiled.decide(python, [FLOAT_BITS]).rule_id == RULE_ID
    # not to the rest of OpenTelemetry, nor to the app
    for stack in (["opentelemetry.sdk.metrics"], ["app"], []):
        assert compiled.decide(own, stack).rule_id == "default:import", stack
        assert compiled.decide(python, stack).rule_id == "default:import", stack
    # not a copy of ctypes elsewhere, not another library, not the other native modules
    for op in (
        ImportOp("ctypes", "/tmp/ctypes/__init__.py"),
        ImportOp("ctypes", f"{STDLIB_MODULES}/site-packages/ctypes/__init__.py"),
        ImportOp(None, None, "/usr/lib/x86_64-linux-gnu/libc.so.6"),
        ImportOp("mmap", f"{STDLIB_MODULES}/lib-dynload/mmap.cpython-311-x86_64-linux-gnu.so"),
        ImportOp("cffi", None),
    ):
        assert compiled.decide(op, [FLOAT_BITS]).rule_id == "default:import", op


# -- end to end: learn without OpenTelemetry, run with opentelemetry-instrument ------------------

APP = textwrap.dedent(
    """
    import json, os, socket, sys, time
    from opentelemetry import trace

    with trace.get_tracer("demo").start_as_current_span("demo-request"):
        print("served", json.dumps({"ok": True}), flush=True)
    if os.environ.get("PAUSE"):
        time.sleep(float(os.environ["PAUSE"]))  # the batch processor exports meanwhile
    attack = os.environ.get("ATTACK")
    try:
        if attack == "port":
            socket.create_connection(("127.0.0.1", int(os.environ["OTHER_PORT"])), timeout=2)
        elif attack == "collector":
            host, port = os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"].rsplit("/", 1)[1].split(":")
            socket.create_connection((host, int(port)), timeout=2)
        elif attack == "evil":
            import opentelemetry_evil
        elif attack == "dlopen":
            import ctypes
            ctypes.CDLL("libm.so.6")
        elif attack == "planted":
            sys.path.insert(0, os.path.join(os.getcwd(), "planted"))
            import opentelemetry.planted
    except PermissionError as exc:
        print("blocked:", type(exc).__name__, exc, flush=True)
        sys.exit(3)
    print("done", flush=True)
    """
)
LEARNED_APP = textwrap.dedent(
    """
    import json
    print("served", json.dumps({"ok": True}), flush=True)
    print("done", flush=True)
    """
)
INSTRUMENT = shutil.which("opentelemetry-instrument", path=os.path.dirname(sys.executable))
needs_instrument = pytest.mark.skipif(
    INSTRUMENT is None, reason="opentelemetry-distro is not installed (the test extra has it)"
)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPSHIELD_", "OTEL_"))}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def learned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A policy learned from the app without OpenTelemetry, as learned."""
    folder = tmp_path_factory.mktemp("otel-app")
    (folder / "app.py").write_text(LEARNED_APP)
    learn = ["learn", "--out", "learned.yaml", "--", sys.executable, "app.py"]
    done = subprocess.run(
        [sys.executable, "-m", "appshield", *learn],
        cwd=folder,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    text = (folder / "learned.yaml").read_text()
    assert "opentelemetry" not in text.split("rules:", 1)[1]
    (folder / "app.py").write_text(APP)
    planted = folder / "planted" / "opentelemetry"
    planted.mkdir(parents=True)
    (planted / "planted.py").write_text("print('planted code ran')\n")
    (folder / "opentelemetry_evil.py").write_text("print('evil code ran')\n")
    return folder


def _instrumented(
    folder: Path, endpoint: str, *, policy: str = "learned.yaml", **extra: str
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]], float]:
    """`opentelemetry-instrument appshield run --policy P -- python app.py`, and its
    violations (APPSHIELD_LOG) and the seconds from the app's last line to the exit."""
    log = folder / f"violations-{time.monotonic_ns()}.jsonl"
    env = _env(
        APPSHIELD_LOG=str(log),
        OTEL_SERVICE_NAME="learned-app",
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        **extra,
    )
    run = ["run", "--policy", policy, "--", sys.executable, "app.py"]
    command = [INSTRUMENT or "", sys.executable, "-m", "appshield", *run]
    process = subprocess.Popen(
        command, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    out = []
    last_line_at = time.monotonic()
    for line in process.stdout:
        out.append(line)
        last_line_at = time.monotonic()
    process.wait(timeout=120)
    exit_s = time.monotonic() - last_line_at
    err = process.stderr.read() if process.stderr else ""
    done = subprocess.CompletedProcess(command, process.returncode, "".join(out), err)
    violations = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
    return done, violations, exit_s


def _wait_for_spans(receiver: otlp_receiver.Receiver, name: str, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(span.name == name for span in receiver.spans()):
            return True
        time.sleep(0.05)
    return False


@needs_instrument
def test_learned_app_under_opentelemetry_instrument_exports_its_spans(learned: Path) -> None:
    with otlp_receiver.running() as receiver:
        done, violations, _exit_s = _instrumented(learned, receiver.endpoint)
        assert done.returncode == 0, done.stderr
        assert "served" in done.stdout and "done" in done.stdout
        assert violations == [], violations
        assert _wait_for_spans(receiver, "demo-request"), done.stderr
        resource = otlp_receiver.attributes(
            receiver.requests["/v1/traces"][0].resource_spans[0].resource.attributes
        )
        assert resource["service.name"] == "learned-app"


@needs_instrument
def test_the_app_cannot_use_the_sdks_ctypes_to_load_a_library(learned: Path) -> None:
    """ctypes is in the process once the SDK's metrics loaded it; loading a native library
    with it is still judged (the `ctypes.dlopen` event), and only the SDK module may."""
    with otlp_receiver.running() as receiver:
        done, violations, _exit_s = _instrumented(learned, receiver.endpoint, ATTACK="dlopen")
    assert done.returncode == 3, done.stderr
    assert "done" not in done.stdout
    blocked = [v for v in violations if v["blocked"]]
    assert len(blocked) == 1 and blocked[0]["category"] == "import", violations
    assert "libm" in blocked[0]["target"], blocked


@needs_instrument
@pytest.mark.parametrize(
    ("attack", "target"),
    [
        ("port", "127.0.0.1:{other}"),
        ("collector", "127.0.0.1:{collector}"),
        ("evil", "opentelemetry_evil"),
        ("planted", "opentelemetry.planted"),
    ],
)
def test_the_rule_opens_nothing_else(learned: Path, attack: str, target: str) -> None:
    with otlp_receiver.running() as receiver, otlp_receiver.running() as other:
        other_port = other.endpoint.rsplit(":", 1)[1]
        collector_port = receiver.endpoint.rsplit(":", 1)[1]
        done, violations, _exit_s = _instrumented(
            learned, receiver.endpoint, ATTACK=attack, OTHER_PORT=other_port
        )
        assert other.hits == 0
    assert done.returncode == 3, done.stderr
    assert "blocked: PolicyViolation" in done.stdout
    assert "done" not in done.stdout
    assert "code ran" not in done.stdout
    blocked = [v for v in violations if v["blocked"]]
    expected = target.format(other=other_port, collector=collector_port)
    assert [v["target"] for v in blocked] == [expected], violations
    assert blocked[0]["rule"] in ("default:network", "default:import")


@needs_instrument
@pytest.mark.parametrize("when", ["at-exit", "while-running"])
def test_a_denied_exporter_does_not_hold_up_the_exit(learned: Path, when: str) -> None:
    """The collector's port is denied by a written rule: the SDK would retry each batch for
    its 10 s timeout at exit. The process exits within the flush bound (1 s here) and a
    margin for interpreter shutdown."""
    flush_bound = 1.0
    margin = 3.0
    with otlp_receiver.running() as receiver:
        port = receiver.endpoint.rsplit(":", 1)[1]
        text = (learned / "learned.yaml").read_text()
        deny = (
            "  - id: no-collector\n    category: network\n    action: deny\n"
            f"    match:\n      port: {port}\n"
        )
        (learned / "denied.yaml").write_text(text + deny)
        # at-exit: the batch is first exported by the SDK's own exit flush; while-running: the
        # batch processor tries (and is denied) while the app still runs, then the app exits.
        delay = "60000" if when == "at-exit" else "50"
        extra = {"OTEL_BSP_SCHEDULE_DELAY": delay, "APPSHIELD_FLUSH_TIMEOUT": str(flush_bound)}
        if when == "while-running":
            extra["PAUSE"] = "1"
        done, violations, exit_s = _instrumented(
            learned, receiver.endpoint, policy="denied.yaml", **extra
        )
        assert receiver.hits == 0
    assert done.returncode == 0, done.stderr
    assert "done" in done.stdout
    assert {v["rule"] for v in violations} == {"no-collector"}, violations
    assert exit_s < flush_bound + margin, (exit_s, done.stderr)


def test_the_switch_survives_the_policy_cache() -> None:
    from appshield.policy import cache

    off = Policy.from_mapping({**DENY_ALL, "protections": {"telemetry_exporter": False}})
    plain = cache.plain(off.document)
    assert cache._document(plain).protections.telemetry_exporter is False
    assert cache._document(plain).protections == off.document.protections


CHILD = """
import json, os, sys
from appshield import runtime
from appshield.operations import NetworkOp

shield = runtime.active_shield()
stack = ["opentelemetry.exporter.otlp.proto.http.trace_exporter"]
ports = {}
for name in ("PARENT_PORT", "CHILD_PORT"):
    port = int(os.environ[name])
    op = NetworkOp("connect", host="127.0.0.1", port=port)
    ports[name] = shield.compiled.decide(op, stack).rule_id
print(json.dumps(ports))
"""
PARENT = """
import os, subprocess, sys
env = dict(os.environ, OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:" + os.environ["CHILD_PORT"])
sys.exit(subprocess.run([sys.executable, "child.py"], env=env).returncode)
"""


def test_a_child_with_another_endpoint_gets_its_parents(tmp_path: Path) -> None:
    """A shielded process starts a Python child with OTEL_EXPORTER_OTLP_ENDPOINT pointing
    elsewhere: the child carries its parent's shield, collector included, and no other."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "version: 1\n"
        "defaults: {process: allow, file: allow, network: deny, import: allow}\n"
        "rules: []\n"
    )
    (tmp_path / "child.py").write_text(CHILD)
    (tmp_path / "parent.py").write_text(PARENT)
    env = _env(
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:4999",
        PARENT_PORT="4999",
        CHILD_PORT="5999",
        OTEL_SDK_DISABLED="true",
    )
    run = ["run", "--policy", str(policy), "--", sys.executable, "parent.py"]
    done = subprocess.run(
        [sys.executable, "-m", "appshield", *run],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"PARENT_PORT": RULE_ID, "CHILD_PORT": "default:network"}


@pytest.mark.parametrize(
    "folders",
    [
        ("/usr/lib/python3.11", "/venv/lib/python3.11"),
        ("/opt/a[1]/lib/py*", "/opt/odd?/./lib//x/.."),
        ("/",),
        ("//usr/lib/", "/../..", "///a/./b/"),
        ("relative/lib", "", ".", "../up"),  # (never a real value: still `expand`'s globs)
    ],
)
def test_the_rules_origin_globs_are_what_expand_gives(folders: tuple[str, ...]) -> None:
    """The rule builds its origin globs without `expand` (start-up): the same globs, in the
    same order, for values with glob characters and unnormalised paths too."""
    from appshield.policy.exporter import _normalised, _origins, _under
    from appshield.policy.variables import expand, glob_escaped, normalise_path_glob

    raw = {"stdlib": folders, "python": folders[:1]}
    escaped = {name: tuple(glob_escaped(v) for v in values) for name, values in raw.items()}
    patterns = ("{stdlib}/**", "{stdlib}/**/ctypes*", "{python}", "{stdlib}/site-packages/**")
    expected = tuple(
        dict.fromkeys(normalise_path_glob(g) for p in patterns for g in expand(p, raw))
    )
    assert _origins(escaped, *patterns) == expected
    # The same through the grouped form the rule uses, several rests to a variable.
    grouped = _under(
        escaped,
        _normalised(escaped),
        ("stdlib", ("/**", "/**/ctypes*")),
        ("python", ("",)),
        ("stdlib", ("/site-packages/**",)),
    )
    assert grouped == expected
    # Rests that `normpath` would fold (never the rule's own): the long way, same globs.
    odd = (
        "{stdlib}/a/../b",
        "{stdlib}/./x",
        "{stdlib}//y",
        "{stdlib}/z/",
        "{stdlib}..",
        "{python}/.",
    )
    expected = tuple(dict.fromkeys(normalise_path_glob(g) for p in odd for g in expand(p, raw)))
    assert _origins(escaped, *odd) == expected
    with pytest.raises(ValueError):
        _origins(escaped, "{stdlib}/{python}")
    with pytest.raises(ValueError):
        _origins(escaped, "/usr/{stdlib}")


def test_the_written_out_rests_are_the_names_they_stand_for() -> None:
    from appshield.policy.exporter import _NATIVE, _NATIVE_RESTS, _NEEDED, _NEEDED_RESTS

    paths = [name.replace(".", "/") for name in _NEEDED]
    assert _NEEDED_RESTS == (*(f"/{p}/**" for p in paths), *(f"/{p}.py" for p in paths))
    assert _NATIVE_RESTS == tuple(f"/**/{name}*" for name in (*_NATIVE, "_posixsubprocess"))


@pytest.mark.parametrize(
    ("rests", "clean"),
    [
        (("/a/**", "/b.py", "/**/c*"), True),
        (("/a",), True),
        (("",), False),
        (("/a", ""), False),
        (("a/b",), False),
        (("/a//b",), False),
        (("/a/",), False),
        (("/",), False),
        (("/a/./b",), False),
        (("/a/.",), False),
        (("/a/../b",), False),
        (("/a/..",), False),
        (("/a\n/b",), False),  # a newline inside a rest
        (("/a", "/b\n"), False),
        (("/a\n/b", "c"), False),  # a newline must not pass for a separator
        (("/.a", "/..b", "/a.", "/a..", "/..."), True),  # dots that are names
    ],
)
def test_clean_rests_are_those_normpath_keeps(rests: tuple[str, ...], clean: bool) -> None:
    from appshield.policy.exporter import _clean
    from appshield.policy.variables import normalise_path_glob

    assert _clean(rests) is clean
    if clean:
        assert all(normalise_path_glob("/v/w" + rest) == "/v/w" + rest for rest in rests)


@given(
    st.lists(st.text(alphabet="/a.\n*", max_size=8), min_size=1, max_size=4),
    st.lists(
        st.one_of(
            st.sampled_from(["/", "//", "/v/", "/v/./w", "rel", ""]), st.text("/v.", max_size=6)
        ),
        min_size=1,
        max_size=3,
    ),
)
@settings(max_examples=300, deadline=None)
def test_under_is_normpath_of_each_glob(rests: list[str], values: list[str]) -> None:
    from appshield.policy.exporter import _normalised, _under
    from appshield.policy.variables import normalise_path_glob

    escaped = {"v": tuple(values)}
    expected = tuple(
        dict.fromkeys(normalise_path_glob(value + rest) for rest in rests for value in values)
    )
    assert _under(escaped, _normalised(escaped), ("v", tuple(rests))) == expected
