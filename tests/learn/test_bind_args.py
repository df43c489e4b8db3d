"""A server's bind address on its command line carries over to the next run: the port part
of `-b 127.0.0.1:8002`, `--bind=0.0.0.0:8002`, `--bind :8002`, `--port=8002` becomes
`[0-9]*` in process rules, and a bind to a port given there allows any unprivileged port;
the host stays exactly as seen."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from appshield.learn import learn_policy
from appshield.learn.generalise import configured_numbers
from appshield.learn.records import Observation
from appshield.operations import NetworkOp, ProcessOp
from appshield.policy import Policy
from tests.learn._strategies import ROOTS

_hosts = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
    st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z][a-z0-9-]{0,6}){0,2}", fullmatch=True),
    st.just(""),  # `--bind :8002`
)
_ports = st.integers(1, 65535)
_FORMS = (
    lambda h, p: ("-b", f"{h}:{p}"),
    lambda h, p: (f"--bind={h}:{p}",),
    lambda h, p: ("--bind", f"{h}:{p}"),
    lambda h, p: (f"-b{h}:{p}",),
)


def _run(*args: str) -> ProcessOp:
    return ProcessOp(ROOTS.executable, ("python", "server.py", *args), trusted_location=True)


def _allows(policy: Policy, op: object) -> bool:
    return policy.decide(op).action == "allow"  # type: ignore[arg-type]


def _policy(*observations: Observation) -> Policy:
    return Policy.from_yaml(learn_policy(observations, strict_imports=True).text)


@given(st.sampled_from(_FORMS), _hosts, _hosts, _ports, _ports)
def test_the_port_of_a_bind_argument_carries_over_and_the_host_does_not(
    form: object, host: str, other_host: str, port: int, other_port: int
) -> None:
    make = form  # type: ignore[assignment]
    policy = _policy(Observation(_run(*make(host, port)), roots=ROOTS))  # type: ignore[operator]
    assert _allows(policy, _run(*make(host, other_port)))  # type: ignore[operator]
    if other_host != host:
        assert not _allows(policy, _run(*make(other_host, other_port)))  # type: ignore[operator]


@given(_ports, _ports, st.booleans())
def test_a_port_option_carries_over(port: int, other_port: int, joined: bool) -> None:
    args = (f"--port={port}",) if joined else ("--port", str(port))
    later = (f"--port={other_port}",) if joined else ("--port", str(other_port))
    policy = _policy(Observation(_run(*args), roots=ROOTS))
    assert _allows(policy, _run(*later))
    assert not _allows(policy, _run(*later, "--reload"))


def test_configured_numbers() -> None:
    argv = ["app.py", "-b", "127.0.0.1:8002", "--bind=[::1]:8003", "--port", "8004", "9", "-w2"]
    assert configured_numbers(argv) == {8002, 8003, 8004, 2}
    assert configured_numbers(["http.server", "8000"]) == set()  # positional: not an option's


def _bind(host: str, port: int, argv: tuple[str, ...] | None) -> Observation:
    address = "127.0.0.1" if host in ("127.0.0.1", "localhost") else host
    op = NetworkOp("bind", None, address, port, "tcp")
    return Observation(
        op, "socket.bind", "app", ("app",), roots=ROOTS, argvs=(argv,) if argv else ()
    )


def test_a_bind_to_a_port_given_on_the_command_line_allows_another_port() -> None:
    argv = ("app.py", "-b", "127.0.0.1:8002")
    policy = _policy(_bind("127.0.0.1", 8002, argv))
    assert _allows(policy, NetworkOp("bind", None, "127.0.0.1", 9100, "tcp"))
    assert not _allows(policy, NetworkOp("bind", None, "0.0.0.0", 9100, "tcp"))  # another host
    assert not _allows(policy, NetworkOp("bind", None, "127.0.0.1", 80, "tcp"))  # privileged
    assert not _allows(policy, NetworkOp("connect", None, "127.0.0.1", 9100, "tcp"))
    assert not _allows(policy, NetworkOp("bind", None, "127.0.0.1", 9100, "udp"))
    # Without the command line's word for it, the port stays as seen.
    exact = _policy(_bind("127.0.0.1", 8002, ("app.py", "--workers", "3")))
    assert not _allows(exact, NetworkOp("bind", None, "127.0.0.1", 9100, "tcp"))
    # A privileged port stays exact even when given on the command line.
    privileged = _policy(_bind("127.0.0.1", 80, ("app.py", "--port", "80")))
    assert not _allows(privileged, NetworkOp("bind", None, "127.0.0.1", 81, "tcp"))


# -- end to end: learn, then a second run on another port -------------------------------------

APP = textwrap.dedent(
    """
    import socket, subprocess, sys

    bind = sys.argv[sys.argv.index("-b") + 1]
    try:  # a worker started with the same bind argument, as a server's master does
        subprocess.run([sys.executable, "worker.py", "-b", bind], check=True)
    except PermissionError:
        print("blocked worker")
        sys.exit(0)
    host, _, port = bind.rpartition(":")
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, int(port)))
        s.listen()
    print("served", port)
    """
)


def _low_free_port() -> int:
    """A free port below the ephemeral range (which learn widens anyway)."""
    for _ in range(50):
        port = random.randint(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port")


def _appshield(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("APPSHIELD_", "OTEL_"))}
    return subprocess.run(
        [sys.executable, "-m", "appshield", *args],
        cwd=cwd, capture_output=True, text=True, timeout=120, env={**clean, **env},
    )  # fmt: skip


def test_learned_on_one_port_enforced_on_another(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "worker.py").write_text("import sys\nassert sys.argv[1] == '-b'\n")
    policy = tmp_path / "learned.yaml"
    first, second = _low_free_port(), _low_free_port()
    app = (sys.executable, "app.py", "-b")
    learned = _appshield(
        "learn", "--out", str(policy), "--", *app, f"127.0.0.1:{first}", cwd=tmp_path
    )
    assert learned.returncode == 0, learned.stderr
    text = policy.read_text()
    assert '"-b", "127.0.0.1:[0-9]*"' in text and '"1024-65535"' in text, text

    log = tmp_path / "violations.jsonl"
    run = ("run", "--policy", str(policy), "--")
    done = _appshield(*run, *app, f"127.0.0.1:{second}", cwd=tmp_path, APPSHIELD_LOG=str(log))
    assert done.returncode == 0 and f"served {second}" in done.stdout, done.stderr
    assert not log.exists() or log.read_text() == "", log.read_text()

    # Another host: the worker is not started (and nothing binds anywhere but 127.0.0.1).
    done = _appshield(*run, *app, f"localhost:{second}", cwd=tmp_path, APPSHIELD_LOG=str(log))
    assert done.returncode == 0 and "blocked worker" in done.stdout, done.stderr
    found = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(v["category"], v["blocked"]) for v in found] == [("process", True)], found
