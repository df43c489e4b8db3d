"""An app run under `appshield run` while something around it is broken.

    python _outage_app.py WORKDIR [--wait-for FILE]

It configures logging as most apps do (warnings to stderr), then makes 50 denied file opens
(distinct paths, so each one is reported, not folded) and 50 allowed ones, and prints what
it saw as one JSON line. With --wait-for it does a first round, waits for FILE to appear,
waits a little more, and does a second round (for changes made from outside meanwhile).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

ROUND = 50


def one_round(workdir: Path, tag: str) -> dict[str, int]:
    seen = {"blocked": 0, "leaked": 0, "ok": 0, "wrongly_blocked": 0}
    for i in range(ROUND):
        try:
            os.close(os.open(workdir / "secret" / f"{tag}-{i}.txt", os.O_RDONLY | os.O_CREAT))
        except PermissionError:
            seen["blocked"] += 1
        else:
            seen["leaked"] += 1
        try:
            os.close(os.open(workdir / "public.txt", os.O_RDONLY))
        except PermissionError:
            seen["wrongly_blocked"] += 1
        else:
            seen["ok"] += 1
    return seen


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    workdir = Path(sys.argv[1])
    started = time.monotonic()
    rounds = [one_round(workdir, "first")]
    if "--wait-for" in sys.argv:
        flag = Path(sys.argv[sys.argv.index("--wait-for") + 1])
        print("READY", flush=True)
        while not flag.exists():
            time.sleep(0.05)
        time.sleep(1.5)  # several reload intervals
        rounds.append(one_round(workdir, "second"))
    result = {"rounds": rounds, "seconds": time.monotonic() - started}
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
