"""Learn four real workloads, check the policies, enforce a second run, attack it; print the
markdown table that docs/learning.md shows.

    python scripts/learn_workloads.py [--root DIR] [--only KEY,...] [--show-policy KEY]

Workloads (keys): gunicorn (Flask + `gunicorn -w 3`), uvicorn (FastAPI + `uvicorn --workers
2`), django (`manage.py runserver` with its autoreloader child), worker (pid-, date-, uuid-
and tempfile-named files). For each: `appshield learn` over a bounded request loop on
127.0.0.1 that includes a handler failing with a 500, `appshield check`, a second run under
`appshield run` (another port, new pids and temp names) that also takes a lazy stdlib import
path learning never took, then an injected shell, a read of an unexpected file and a connect
to an unexpected loopback port. The steps are tests/learn/_workloads.py, the same code
tests/learn/test_servers.py runs, so the table and the tests cannot drift apart.

--root DIR         write each app into DIR/KEY (default: a new folder under the temp folder);
                   the learned policies name these folders
--show-policy KEY  also print that workload's learned policy after the table

Exit code 0 when every workload's policy is valid, its second run reports nothing and all
three attacks are blocked; 1 otherwise. Needs the `test` extra (gunicorn, uvicorn, fastapi,
django, flask).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.learn._workloads import (
    ATTACKS,
    WORKLOADS,
    Outcome,
    brief,
    markdown_table,
    run_workload,
)


def _ok(outcome: Outcome) -> bool:
    return (
        outcome.learned.checked.returncode == 0
        and not outcome.second.violations
        and outcome.second.lazy_ok
        and outcome.blocked == len(ATTACKS)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, help="folder for the apps (default: a new one)")
    parser.add_argument("--only", default=",".join(WORKLOADS), help="comma-separated keys")
    parser.add_argument("--show-policy", metavar="KEY", help="print this workload's policy")
    args = parser.parse_args(argv)
    keys = [k for k in args.only.split(",") if k]
    unknown = [k for k in keys if k not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workloads {unknown}; known: {', '.join(WORKLOADS)}")
    root = args.root or Path(tempfile.mkdtemp(prefix="learn-workloads-"))
    outcomes = []
    for key in keys:
        folder = root / key
        folder.mkdir(parents=True, exist_ok=False)
        print(f"{key}: learning in {folder} ...", file=sys.stderr, flush=True)
        outcome = run_workload(WORKLOADS[key], folder)
        for line in brief(outcome.second.violations):
            print(f"{key}: second run reported: {line}", file=sys.stderr)
        if not outcome.second.lazy_ok:
            print(f"{key}: the lazy import path failed: {outcome.second.lazy}", file=sys.stderr)
        outcomes.append(outcome)
    print(markdown_table(outcomes))
    shown = [o for o in outcomes if o.workload.key == args.show_policy]
    for outcome in shown:
        print(f"\n{outcome.learned.text}", end="")
    return 0 if all(_ok(o) for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
