"""The shadow policy (APPSHIELD_SHADOW_POLICY, `appshield run --shadow`): a candidate decided
beside the enforced policy, reported as shadow through every sink, never enforced.

Real processes, real files in tmp dirs, real sockets on 127.0.0.1, a real child process and
a real first import; the spans are read back through the OpenTelemetry SDK's
InMemorySpanExporter, the log lines from the APPSHIELD_LOG file."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from appshield.decision import Decision
from appshield.operations import FileOp
from appshield.shadow import ShadowDecider
from tests.telemetry.apps import clean_env

ALLOW_ALL = """\
version: 1
name: allow-all
defaults: {process: allow, file: allow, network: allow, import: allow}
"""
DENY_ALL = """\
version: 1
name: deny-all
defaults: {process: deny, file: deny, network: deny, import: deny}
"""
# The enforced policy of the reverse test: writes under DENIED are denied, the rest allowed.
DENY_WRITES = """\
version: 1
name: no-writes
defaults: {process: allow, file: allow, network: allow, import: allow}
rules:
  - id: no-denied-writes
    category: file
    action: deny
    match: {path: "DENIED/**", access: write}
"""

# Sets up the SDK with an in-memory exporter, installs the shield, runs one operation of
# each category (each repeated, so a cache would have its chance to skip the candidate) and
# prints what ran and the spans that came out.
APP = """\
import json, os, socket, subprocess, sys
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)

import appshield
from appshield.errors import PolicyViolation

appshield.install(os.environ["TEST_POLICY"], mode="enforce")
work = os.environ["TEST_WORK"]
done, refused = [], []

def attempt(name, action):
    try:
        action()
        done.append(name)
    except PolicyViolation as exc:
        refused.append([name, exc.rule_id])
    except FileNotFoundError:
        pass  # read or delete after a refused write

def write():
    with open(os.path.join(work, "out.txt"), "w") as f:
        f.write("x")

def read():
    with open(os.path.join(work, "out.txt")) as f:
        f.read()

def delete():
    os.remove(os.path.join(work, "out.txt"))

server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen()
port = server.getsockname()[1]

def connect():
    with socket.create_connection(("127.0.0.1", port)):
        pass

def start():
    subprocess.run(["/bin/true"], check=True)

def load():
    import colorsys

for _ in range(3):
    attempt("write", write)
    attempt("read", read)
    attempt("connect", connect)
    attempt("start", start)
attempt("delete", delete)
attempt("import", load)
server.close()
finished = exporter.get_finished_spans()
spans = [dict(s.attributes) for s in finished if s.name == "appshield.violation"]
print(json.dumps({"done": done, "refused": refused, "spans": spans, "port": port}))
"""

EXPECTED = {
    ("file", "open", "out.txt"),
    ("file", "os.remove", "out.txt"),
    ("network", "socket.connect", "127.0.0.1:"),
    ("process", "subprocess.Popen", "/bin/true"),
    ("import", "import", "colorsys"),
}


def _run(tmp_path: Path, policy: str, shadow: str, **env: str) -> tuple[dict[str, Any], list[Any]]:
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "policy.yaml").write_text(policy.replace("DENIED", str(work)))
    (tmp_path / "shadow.yaml").write_text(shadow.replace("DENIED", str(work)))
    (tmp_path / "app.py").write_text(APP)
    log = tmp_path / "violations.jsonl"
    full = clean_env(
        TEST_POLICY=str(tmp_path / "policy.yaml"),
        TEST_WORK=str(work),
        APPSHIELD_SHADOW_POLICY=str(tmp_path / "shadow.yaml"),
        APPSHIELD_LOG=str(log),
        **env,
    )
    out = subprocess.run(
        [sys.executable, str(tmp_path / "app.py")],
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.splitlines()[-1])
    lines = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
    return result, lines


def _reported(items: list[tuple[str, str, str]]) -> set[tuple[str, str, str]]:
    """The EXPECTED entries found among (category, api, target) triples."""
    return {
        (category, api, part)
        for category, api, part in EXPECTED
        for c, a, target in items
        if c == category and a == api and part in target
    }


def test_deny_all_shadow_reports_every_operation_and_blocks_none(tmp_path: Path) -> None:
    result, lines = _run(tmp_path, ALLOW_ALL, DENY_ALL)
    assert result["refused"] == []
    assert result["done"].count("write") == 3 and "delete" in result["done"]
    assert {"read", "connect", "start", "import"} <= set(result["done"])

    spans = [s for s in result["spans"] if s.get("appshield.shadow") is True]
    assert spans and len(spans) == len(result["spans"])  # the enforced policy reported nothing
    for span in spans:
        assert span["appshield.blocked"] is False and span["appshield.mode"] == "monitor"
        assert span["security_rule.ruleset.name"] == "deny-all"
        assert span["appshield.action"] == "deny"
    triples = [
        (s["security_rule.category"], s["appshield.api"], s["appshield.target"]) for s in spans
    ]
    assert _reported(triples) == EXPECTED

    assert lines and all(line["shadow"] is True for line in lines)
    assert all(line["blocked"] is False and line["policy"] == "deny-all" for line in lines)
    assert _reported([(x["category"], x["api"], x["target"]) for x in lines]) == EXPECTED
    # Blamed on the app's own line, as an enforced violation is.
    (removal,) = [x for x in lines if x["api"] == "os.remove"]
    assert removal["code"]["file"] == str(tmp_path / "app.py")
    assert removal["code"]["function"] == "delete"

    # The caches did not skip the candidate: each repeat of an allowed write, read, connect
    # and start was decided by it again and folded into the summary lines at exit.
    repeats: dict[tuple[str, str], int] = {}
    for line in lines:
        if line.get("summary"):
            key = (line["api"], line["target"])
            repeats[key] = repeats.get(key, 0) + line["suppressed_count"]
    out_file = str(tmp_path / "work" / "out.txt")
    assert repeats.get(("socket.connect", f"127.0.0.1:{result['port']}")) == 2
    assert repeats.get(("subprocess.Popen", "/bin/true")) == 2
    assert repeats.get(("open", out_file)) == 4  # two more writes, two more reads


def test_enforced_deny_still_blocks_beside_an_allow_all_shadow(tmp_path: Path) -> None:
    """The reverse: a shadow that allows everything changes nothing that is enforced."""
    result, lines = _run(tmp_path, DENY_WRITES, ALLOW_ALL)
    assert result["refused"] == [["write", "no-denied-writes"]] * 3
    assert "delete" not in result["done"]  # never written, so nothing to delete
    assert {"connect", "start", "import"} <= set(result["done"])
    assert result["spans"] and all("appshield.shadow" not in s for s in result["spans"])
    assert {s["security_rule.name"] for s in result["spans"]} == {"no-denied-writes"}
    assert lines and all("shadow" not in line for line in lines)
    assert {line["rule"] for line in lines} == {"no-denied-writes"}


def test_both_deny_reports_each_once(tmp_path: Path) -> None:
    """The same rule in both policies (a candidate is usually an edited copy): the enforced
    violation and the shadow one are reported apart, each folded with its own repeats."""
    result, lines = _run(tmp_path, DENY_WRITES, DENY_WRITES)
    assert result["refused"] == [["write", "no-denied-writes"]] * 3
    firsts = [line for line in lines if not line.get("summary")]
    assert sorted(bool(line.get("shadow")) for line in firsts) == [False, True]
    summaries = {bool(x.get("shadow")): x["suppressed_count"] for x in lines if x.get("summary")}
    assert summaries == {False: 2, True: 2}


def test_run_shadow_flag_reaches_python_children(tmp_path: Path) -> None:
    """`appshield run --shadow`: CMD and its Python children decide the candidate too."""
    (tmp_path / "policy.yaml").write_text(ALLOW_ALL)
    (tmp_path / "shadow.yaml").write_text(DENY_ALL)
    log = tmp_path / "log.jsonl"
    target = tmp_path / "child.txt"
    child = f"open({str(target)!r}, 'w').close()"
    parent = textwrap.dedent(
        f"""
        import os, subprocess, sys
        subprocess.run([sys.executable, "-c", {child!r}], check=True)
        print(os.getpid())
        """
    )
    flags = ["--policy", str(tmp_path / "policy.yaml"), "--shadow", str(tmp_path / "shadow.yaml")]
    out = subprocess.run(
        [sys.executable, "-m", "appshield", "run", *flags, "--", sys.executable, "-c", parent],
        env=clean_env(APPSHIELD_LOG=str(log)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert target.exists()
    parent_pid = int(out.stdout.split()[-1])
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    writes = [x for x in lines if x["target"] == str(target) and x["api"] == "open"]
    assert len(writes) == 1 and writes[0]["shadow"] is True
    assert writes[0]["pid"] != parent_pid  # the child's own report
    assert any(x["pid"] == parent_pid and x["category"] == "process" for x in lines)


@pytest.mark.parametrize("how", ["run", "bootstrap"])
def test_invalid_shadow_fails_closed(tmp_path: Path, how: str) -> None:
    """A shadow that was asked for and cannot be loaded stops the start-up (exit 2), as an
    invalid policy does; the command never runs. The control: a valid one lets it run."""
    from appshield.activation import BOOTSTRAP_DIR

    (tmp_path / "policy.yaml").write_text(ALLOW_ALL)
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\ndefaults: {process: maybe}\n")
    good = tmp_path / "good.yaml"
    good.write_text(DENY_ALL)
    marker = tmp_path / "ran"
    code = f"open({str(marker)!r}, 'w').close()"

    def start(shadow: Path) -> subprocess.CompletedProcess[str]:
        if how == "run":
            argv = [sys.executable, "-m", "appshield", "run"]
            argv += ["--policy", str(tmp_path / "policy.yaml"), "--shadow", str(shadow), "--"]
            env = clean_env()
        else:
            argv = []
            env = clean_env(
                PYTHONPATH=BOOTSTRAP_DIR,
                APPSHIELD_POLICY=str(tmp_path / "policy.yaml"),
                APPSHIELD_SHADOW_POLICY=str(shadow),
            )
        return subprocess.run(
            [*argv, sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
        )

    failed = start(bad)
    assert failed.returncode == 2
    assert f"{bad}:2:" in failed.stderr  # FILE:LINE:COL, as for the enforced policy
    assert not marker.exists()
    ok = start(good)
    assert ok.returncode == 0, ok.stderr
    assert marker.exists()


class _Fixed:
    """A stand-in decider with one answer (for the port's own contract)."""

    describes_callers = False

    def __init__(self, decision: Decision, fail: bool = False) -> None:
        self.decision, self.fail = decision, fail

    def decide(self, op: Any, stack: Any = None, api: str = "") -> Decision:
        if self.fail:
            raise ValueError("broken candidate")
        if callable(stack):
            stack()
        return self.decision

    def stack_matters(self, op: Any) -> bool:
        return False


ALLOW = Decision("allow", "default:file", False, "enforce")
DENY = Decision("deny", "no", True, "enforce")


def test_the_enforced_decision_is_the_one_returned() -> None:
    seen: list[Any] = []
    op = FileOp("/x", "read")
    both = ShadowDecider(_Fixed(ALLOW), _Fixed(DENY), lambda *a: seen.append(a))  # type: ignore[arg-type]
    assert both.decide(op, None, "open") is ALLOW
    assert seen == [(op, Decision("deny", "no", False, "monitor"), "open")]
    # Cached allowed operations must not skip the candidate: not cacheable while it denies.
    assert both.stack_matters(op) is True
    reverse = ShadowDecider(_Fixed(DENY), _Fixed(ALLOW), lambda *a: seen.append(a))  # type: ignore[arg-type]
    assert reverse.decide(op, None, "open") is DENY and reverse.stack_matters(op) is False


def test_a_failing_candidate_or_sink_changes_nothing() -> None:
    op = FileOp("/x", "read")

    def sink(*args: Any) -> None:
        raise RuntimeError("sink down")

    broken = ShadowDecider(_Fixed(ALLOW), _Fixed(DENY, fail=True), sink)  # type: ignore[arg-type]
    assert broken.decide(op, None, "open") is ALLOW
    failing_sink = ShadowDecider(_Fixed(DENY), _Fixed(DENY), sink)  # type: ignore[arg-type]
    assert failing_sink.decide(op, None, "open") is DENY


def test_the_stack_is_walked_once_for_both() -> None:
    walks: list[int] = []

    def stack() -> list[str]:
        walks.append(1)
        return ["app"]

    both = ShadowDecider(_Fixed(ALLOW), _Fixed(ALLOW), lambda *a: None)  # type: ignore[arg-type]
    both.decide(FileOp("/x", "read"), stack, "open")
    assert walks == [1]
