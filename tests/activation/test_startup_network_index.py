"""With a warm policy cache, start-up restores every index but the network one: filing the
telemetry exporter's hosts into it imports `ipaddress`, which only a network decision needs.
The first network decision then builds it, and decides exactly as an index built at start
would (real child processes, a real socket on 127.0.0.1, the cache written by a real start)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from tests.activation._helpers import TIMEOUT, clean_env, policy_file

POLICY = """\
version: 1
name: network-later
defaults: {process: deny, file: allow, network: deny, import: allow}
rules:
  - id: local-listener
    category: network
    action: allow
    match: {host: 127.0.0.1, port: PORT, operation: connect, transport: tcp}
  - id: no-metadata
    category: network
    action: deny
    match: {cidr: ["169.254.169.254/32", "fd00:ec2::254/128"]}
"""

CHILD = """\
import socket, sys
before = "ipaddress" in sys.modules  # an editable install's finder imports it, say
import appshield.auto
from appshield import runtime
compiled = runtime.active_shield().policy.compiled
print("at-start", before or "ipaddress" in sys.modules, "network" in compiled._categories)
print("preloaded", before)
ok = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
ok.close()
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1]) + 1), timeout=5)
except PermissionError as exc:
    print("denied", type(exc).__name__)
print("after", "ipaddress" in sys.modules)
"""


def test_the_network_index_is_built_by_the_first_network_decision(tmp_path: Path) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        port = server.getsockname()[1]
        path = policy_file(tmp_path, POLICY.replace("PORT", str(port)))
        env = clean_env(APPSHIELD_POLICY=str(path))
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # the first start writes the cache
        outputs = []
        for _ in range(2):  # without a cache, then restored from it
            done = subprocess.run(
                [sys.executable, "-c", CHILD, str(port)],
                env=env,
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
                check=False,
            )
            assert done.returncode == 0, done.stderr
            outputs.append(done.stdout.split("\n"))
    cold, warm = outputs
    preloaded = warm[1] == "preloaded True"
    assert warm[0] == f"at-start {preloaded} False", warm
    assert cold[1:] == warm[1:] == [warm[1], "denied PolicyViolation", "after True", ""]
