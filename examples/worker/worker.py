"""A background worker: export jobs from a queue, no web request anywhere.

Each job names a file to export; the worker gzips it into the output folder. Job data comes
from outside, so a poisoned job can name any file, e.g. the service's cloud credentials.
Under `appshield.yaml` that read is blocked before a byte is returned; the worker records
the job as refused and carries on with the next. The violation is still reported: with no
request (no active span) it is an `appshield.violation` span of its own, a root span, plus
the `appshield.violations` counter and a warning on the `appshield` logger.

    appshield run --policy examples/worker/appshield.yaml -- \
        python examples/worker/worker.py JOBS.json OUTDIR

JOBS.json: a list of objects `{"id": "...", "source": "/path/to/file"}`.
"""

from __future__ import annotations

import gzip
import json
import logging
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("examples.worker")


@dataclass(frozen=True)
class Outcome:
    job: str
    status: str  # done | refused | failed
    detail: str


def export(source: Path, outdir: Path) -> Path:
    target = outdir / (source.name + ".gz")
    with open(source, "rb") as reader, gzip.open(target, "wb") as writer:
        shutil.copyfileobj(reader, writer)
    return target


def run_job(job: dict[str, str], outdir: Path) -> Outcome:
    try:
        target = export(Path(job["source"]), outdir)
    except PermissionError as error:  # appshield's PolicyViolation is a PermissionError
        log.warning("job %s refused: %s", job["id"], error)
        return Outcome(job["id"], "refused", str(error))
    except OSError as error:
        return Outcome(job["id"], "failed", str(error))
    return Outcome(job["id"], "done", str(target))


def run_jobs(jobs: list[dict[str, str]], outdir: Path) -> list[Outcome]:
    outdir.mkdir(parents=True, exist_ok=True)
    return [run_job(job, outdir) for job in jobs]


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    jobs = json.loads(Path(argv[0]).read_text())
    for outcome in run_jobs(jobs, Path(argv[1])):
        print(f"{outcome.job}: {outcome.status} ({outcome.detail})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
