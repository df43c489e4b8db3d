"""What each module of a shielded start costs: finding it, reading its code, running its body.

    python benchmarks/import_costs.py [--python /tmp/ne/bin/python] [--gc] [--markdown]

Runs `import appshield.auto` (or `--code`) once under callgrind, in an empty folder with a
copy of the typical policy (examples/web-service.yaml), the policy cache warmed and bytecode
writing on, as production starts (docs/performance.md, "Start-up, seventh round"). Before it,
a few lines wrap the import system's own steps (`_find_and_load`, `_find_spec`, a source
loader's `get_code` and `exec_module`, an extension's `exec_module`) so that each step's
start and end calls `os.getppid`, and callgrind dumps its counts there
(`--dump-before=os_getppid*`). Every stretch between two dumps is then the work of the
innermost step running: a module's own find, load (module object, locks, attributes), code
(reading and unmarshalling its `.pyc`) and body (its statements, without the modules it
imports, which are counted as theirs). The wrapping itself costs about 20 k instructions per
module, counted with the module.

The garbage collector is off by default: its collections fall on whichever module happens to
allocate the object that crosses a threshold, which moves millions between rows from one
change to the next. `--gc` keeps it on. Instruction counts are deterministic (callgrind,
PYTHONHASHSEED=0); valgrind must be installed. Use a non-editable install: an editable one's
finder imports `pathlib` and `re` itself.
"""

from __future__ import annotations

import argparse
import glob
import marshal
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POLICY = ROOT / "examples" / "web-service.yaml"

# Run first in the measured child. It imports nothing: `marshal` and `atexit` are built in.
PRELUDE = """\
import atexit as _ax, gc as _gc, marshal as _ms, os as _os, sys as _sys
if not _os.environ.get("IMPORT_COSTS_GC"):
    _gc.disable()
_b = _sys.modules["_frozen_importlib"]
_bx = _sys.modules["_frozen_importlib_external"]
_mark = _os.getppid
_events = []
_note = _events.append
def _step(kind, original, name_of):
    def step(*args, **kwargs):
        name = name_of(args)
        _note((1, kind, name)); _mark()
        try:
            return original(*args, **kwargs)
        finally:
            _note((0, kind, name)); _mark()
    return step
_b._find_and_load = _step("load", _b._find_and_load, lambda a: a[0])
_b._find_spec = _step("find", _b._find_spec, lambda a: a[0])
_bx.SourceFileLoader.exec_module = _step(
    "body", _bx._LoaderBasics.exec_module, lambda a: a[1].__name__)
_bx.SourceFileLoader.get_code = _step("code", _bx.SourceLoader.get_code, lambda a: a[0].name)
_bx.ExtensionFileLoader.exec_module = _step(
    "body", _bx.ExtensionFileLoader.exec_module, lambda a: a[1].__name__)
def _write():
    _note((2, "end", "")); _mark()
    ended = list(_events)  # not what opening the file below loads (a decision's helpers)
    with open(_os.environ["IMPORT_COSTS_OUT"], "wb") as out:
        _ms.dump(ended, out)
_ax.register(_write)
_note((2, "start", "")); _mark()
"""

KINDS = ("load", "find", "code", "body")


def _summary(path: str) -> int:
    with open(path) as dump:
        for line in dump:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    return 0


def measure(python: str, code: str, keep_gc: bool) -> tuple[dict[str, dict[str, int]], int]:
    """(module -> step -> instructions, in first-import order; the whole run's count)."""
    with tempfile.TemporaryDirectory(prefix="import-costs-") as folder:
        policy = os.path.join(folder, "web-service.yaml")
        shutil.copyfile(POLICY, policy)
        start = os.path.join(folder, "empty")
        os.mkdir(start)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update(APPSHIELD_POLICY=policy, PYTHONHASHSEED="0")
        env["IMPORT_COSTS_OUT"] = os.path.join(folder, "events")
        if keep_gc:
            env["IMPORT_COSTS_GC"] = "1"
        for _ in range(3):  # the policy cache and the bytecode, as a running service has them
            subprocess.run([python, "-c", code], env=env, cwd=start, check=True)
        dumps = os.path.join(folder, "cg.out")
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--dump-before=os_getppid*",
                f"--callgrind-out-file={dumps}",
                python,
                "-c",
                PRELUDE + code,
            ],
            env=env,
            cwd=start,
            check=True,
            capture_output=True,
        )
        with open(env["IMPORT_COSTS_OUT"], "rb") as source:
            events: list[tuple[int, str, str]] = marshal.load(source)
        # Dump k (1-based) holds what ran up to the k-th mark: before event 0, then after
        # each event in turn; the file without a number holds what ran after the last one.
        count = len(glob.glob(dumps + ".*"))
        stretches = [_summary(f"{dumps}.{k}") for k in range(1, count + 1)]
        stretches.append(_summary(dumps))
        total = sum(stretches)
        for leftover in glob.glob(dumps + "*"):
            os.remove(leftover)
    costs: dict[str, dict[str, int]] = {}
    stack: list[tuple[str, str]] = []
    for index, (opening, kind, name) in enumerate(events):
        if opening == 1:
            stack.append((kind, name))
            costs.setdefault(name, dict.fromkeys(KINDS, 0))
        elif opening == 0:
            stack.pop()
        if stack:
            step, module = stack[-1]
            costs[module][step] += stretches[index + 1]
    return costs, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable, help="the interpreter to measure")
    parser.add_argument("--code", default="import appshield.auto", help="what the child runs")
    parser.add_argument("--gc", action="store_true", help="leave the garbage collector on")
    parser.add_argument("--markdown", action="store_true", help="a Markdown table")
    args = parser.parse_args()
    costs, total = measure(args.python, args.code, args.gc)
    rows = sorted(costs.items(), key=lambda item: -sum(item[1].values()))
    if args.markdown:
        print("| module | total | find + load | code | body |")
        print("|---|---|---|---|---|")
    for module, steps in rows:
        whole = sum(steps.values())
        cells = (whole, steps["find"] + steps["load"], steps["code"], steps["body"])
        if args.markdown:
            print(f"| `{module}` | " + " | ".join(f"{c / 1e6:.2f} M" for c in cells) + " |")
        else:
            print(f"{module:40s}" + "".join(f"{c:>13,}" for c in cells))
    ours = [steps for module, steps in costs.items() if module.split(".")[0] == "appshield"]
    print(f"\nthe whole run: {total:,} instructions; appshield's modules: {len(ours)}")


if __name__ == "__main__":
    main()
