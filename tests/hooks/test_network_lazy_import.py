"""An import that a network call's own C code makes (getaddrinfo and gethostbyname encode a
str host with the `idna` codec, whose first use imports `encodings.idna` and `stringprep`):
when that import is what gets denied, the report still names the network call.

Real processes under `appshield run` (the codec must not be imported yet, which the test
process cannot promise), the JSON log read back from a file.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from appshield.errors import PolicyViolation
from tests.activation._helpers import PY, RUN, clean_env, policy_file, run

POLICY = """
version: 1
name: lazy-import
defaults: {process: allow, file: allow, network: deny, import: allow}
rules:
  - {id: no-stringprep, category: import, action: deny, match: {module: stringprep}}
"""

DENIED = "appshield: import 'stringprep' blocked by rule 'no-stringprep' of policy 'lazy-import'"


def _run(tmp_path: Path, code: str) -> tuple[str, list[dict[str, object]]]:
    policy = policy_file(tmp_path, POLICY)
    log = tmp_path / "violations.jsonl"
    wrapped = f"try:\n    {code}\nexcept PermissionError as exc:\n    print(exc)\n"
    result = run(
        [*RUN, "--policy", str(policy), "--", PY, "-c", wrapped],
        env=clean_env(APPSHIELD_LOG=str(log)),
    )
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in log.read_text().splitlines()]
    return result.stdout.strip(), [r for r in records if r["category"] == "import"]


@pytest.mark.parametrize(
    ("code", "during"),
    [
        ("import socket; socket.getaddrinfo('127.0.0.1', 9)", "socket.getaddrinfo '127.0.0.1:9'"),
        ("import socket; socket.getaddrinfo('::1', '9')", "socket.getaddrinfo '[::1]:9'"),
        (
            "import socket; socket.gethostbyname('b\\u00fccher.invalid')",
            "socket.gethostbyname 'b\u00fccher.invalid'",
        ),
    ],
)
def test_denied_lazy_import_names_the_network_call(tmp_path: Path, code: str, during: str) -> None:
    message, records = _run(tmp_path, code)
    assert message == f"{DENIED}, while attempting {during}"
    assert [(r["target"], r.get("during")) for r in records] == [("stringprep", during)]


def test_the_apps_own_import_names_nothing_else(tmp_path: Path) -> None:
    message, records = _run(tmp_path, "import stringprep")
    assert message == DENIED
    assert [(r["target"], r.get("during")) for r in records] == [("stringprep", None)]


def test_policy_violation_keeps_during_through_pickle() -> None:
    exc = PolicyViolation("r", "import", "import", "stringprep", "deny", "p", "x 'y:1'")
    again = pickle.loads(pickle.dumps(exc))
    assert again.during == "x 'y:1'"
    assert str(again) == str(exc)
    assert str(exc).endswith(", while attempting x 'y:1'")
    # Without it, the message is as before.
    assert str(PolicyViolation("r", "import", "import", "m")) == (
        "appshield: import 'm' blocked by rule 'r'"
    )
