#!/usr/bin/env bash
# Run appshield's core and bypass suites on every CPython that pyenv has here.
#
#   scripts/multi_python.sh [VERSION...]        # default: 3.10.13 3.12.1 3.13.0
#
# For each interpreter present under $PYENV_ROOT/versions (default /root/.pyenv): a fresh
# venv in /tmp, `pip install -e '.[test]'` from this checkout, then
# `pytest tests/engine tests/policy tests/hooks tests/bypass tests/hostile tests/failclosed
# tests/packages` (attribution reads interpreter internals that differ between versions)
# and the `run` argument reading
# (argparse differs between versions). Prints one summary line per
# version and exits non-zero if any present version failed (missing ones are reported, not
# failed). Logs: /tmp/appshield-multi-python/<version>.log (or $APPSHIELD_MULTI_OUT)
set -uo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
PYENV_ROOT=${PYENV_ROOT:-/root/.pyenv}
OUT=${APPSHIELD_MULTI_OUT:-/tmp/appshield-multi-python}
SUITES=(tests/engine tests/policy tests/hooks tests/bypass tests/hostile tests/failclosed tests/packages tests/cli/test_run_arguments.py)
# APPSHIELD_MULTI_FULL=1: the whole suite instead (as the README's test command runs it).
if [ "${APPSHIELD_MULTI_FULL:-0}" = "1" ]; then SUITES=(tests); fi
mkdir -p "$OUT"

if [ "$#" -gt 0 ]; then versions=("$@"); else versions=(3.10.13 3.12.1 3.13.0); fi

failed=0
summary=()
for version in "${versions[@]}"; do
    python="$PYENV_ROOT/versions/$version/bin/python"
    log="$OUT/$version.log"
    if [ ! -x "$python" ]; then
        summary+=("$version: not installed, skipped")
        continue
    fi
    venv="$OUT/venv-$version"
    started=$(date +%s)
    {
        rm -rf "$venv"
        "$python" -m venv "$venv" &&
        "$venv/bin/python" -m pip install -q --upgrade pip &&
        "$venv/bin/python" -m pip install -q -e "$ROOT[test]"
    } >"$log" 2>&1
    if [ $? -ne 0 ]; then
        summary+=("$version: INSTALL FAILED (see $log)")
        failed=1
        continue
    fi
    present=()
    for suite in "${SUITES[@]}"; do [ -e "$suite" ] && present+=("$suite"); done
    # -p no:cacheprovider comes from pyproject; keep the run quiet and in this checkout.
    "$venv/bin/python" -m pytest -q "${present[@]}" >>"$log" 2>&1
    status=$?
    result=$(grep -E '^[0-9]+ (passed|failed)|(passed|failed|error).* in [0-9.]+s' "$log" | tail -1)
    seconds=$(( $(date +%s) - started ))
    if [ "$status" -eq 0 ]; then
        summary+=("$version: ok: $result (${seconds}s)")
    else
        summary+=("$version: FAILED (exit $status): $result (see $log)")
        failed=1
    fi
done

# The editable install above re-pointed nothing outside the venvs; the main interpreter's
# own editable install is untouched.
printf '%s\n' "${summary[@]}"
exit "$failed"
