"""The hostile-argument property suite (issue 11).

**The property.** For every hooked API and every argument position, a hostile stand-in for
the plain value (a `str`/`bytes`/`bytearray`/`int`/`tuple`/`list`/`dict` subclass, a
`PathLike`, an object with only `__index__`, a non-dict `Mapping` environment) either is
honestly that value, or misbehaves in one dunder (or a `__hash__`+`__eq__`(+`__class__`)
set) only when appshield's own frames call it: it raises (an `Exception`, a bare
`BaseException`, `KeyboardInterrupt`, `SystemExit` or `RecursionError` subclass) on the first
or on every such call, or it lies on the first or on every such call, answering as the
harmless allowed counterpart would. For each case:

    either the operation is denied (its denied effect does not happen),
    or it happened exactly as the plain value it stands for would have,
       and that plain value's decision allows it.

The plain values the stand-ins stand for are all denied by the suite's policy, so in
**enforce** mode no denied effect may happen at all; the allowed counterpart's effect may (a
lie that appshield converted once and handed on is harmless). In **monitor** mode, whenever
the denied effect happened or the shield denied (the call ended in a `PolicyViolation`, an
appshield error or the stand-in's own exception), the case's slice of the `APPSHIELD_LOG`
JSON lines must hold a violation (with `rule`, `api`, `target`, `blocked`, and `reason` for
`implicit:undescribable`).

**How the outside world judges.** Nothing is taken from the shielded process's word about
itself except what a call returned. A canary file under `forbidden/` (write and delete
denied) appears, or a protected file is gone, emptied or hard-linked; `touch` (denied by
executable) leaves a *file* at the case's marker, where the allowed `mkdir` would leave a
folder; `mkdir` makes its folder under `forbidden/` (denied by its arguments); a loopback
listener on 127.0.0.1 records the case's payload on the denied port; a denied module's body
leaves a canary when it runs; a read returns the secret's bytes; `getaddrinfo` answers for
the denied name and port. The plain value and the stand-in also run without appshield
(**control**): both must produce the denied effect, which proves each case a real attack on
that API. After each case the plain denied value runs once more, and a plainly denied open
after it: both must still be refused (enforce) or reported (monitor), or the case left
something behind (a poisoned cache, a stale token) that lets later operations through; the
rest of the batch then moves to a fresh interpreter, so no later case is blamed.

**Speed.** Interpreter start-up is the cost, so hypothesis draws a batch (one case for every
API x position) in the parent, and each batch runs in three children at once (control,
enforce, monitor), the shield installed once per child; a watchdog kills a child that hangs.
The default run is a bounded sample; `-m slow` runs a larger one (`APPSHIELD_SLOW_SAMPLE=1`:
CI's bounded share of it; `APPSHIELD_HOSTILE_EXAMPLES=N`: N batches). Figures (positions
covered, cases run, cases that got through, per mode) are printed at the end of the session
and written to `hostile-figures.json` in pytest's base temporary folder.

`python -m tests.hostile._harness replay '<case>'` replays one case from a failure message;
`python -m tests.hostile._harness survey --all` runs every combination.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.hostile._cases import BEHAVIOURS, DUNDERS, EXCEPTIONS, KINDS, POSITIONS, Position, plan
from tests.hostile._harness import FIGURES, Finding, Listener, format_findings, run_batch

_SAMPLE = os.environ.get("APPSHIELD_SLOW_SAMPLE", "") not in ("", "0")
# Batches of one case per API x position (69 of them): 10 take about 10 s on 2 cores.
DEFAULT_BATCHES = 10
SLOW_BATCHES = int(os.environ.get("APPSHIELD_HOSTILE_EXAMPLES", "0")) or (40 if _SAMPLE else 400)


@st.composite
def hostile_case(draw: st.DrawFn, position: Position) -> dict[str, Any]:
    kind = draw(st.sampled_from(position.kinds))
    behaviour = draw(st.sampled_from(BEHAVIOURS))
    dunders = [] if behaviour == "honest" else draw(st.sampled_from(DUNDERS[kind])).split("+")
    exception = draw(st.sampled_from(EXCEPTIONS)) if behaviour.startswith("raise") else None
    return {
        "api": position.api,
        "position": position.name,
        "kind": kind,
        "dunders": dunders,
        "behaviour": behaviour,
        "exception": exception,
    }


# One case for every API x position: every batch covers them all.
BATCHES = st.tuples(*(hostile_case(position) for position in POSITIONS))


def _check_batches(
    batches: int, tmp_path_factory: pytest.TempPathFactory, listener: Listener
) -> None:
    findings: list[Finding] = []
    numbers = itertools.count()

    # Findings are collected over every batch rather than raised from the first: a failure
    # message that lists each failing case (with a replay command) is worth more than
    # hypothesis shrinking a batch, whose cases are independent anyway.
    @settings(
        max_examples=batches,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(batch=BATCHES)
    def one_batch(batch: tuple[dict[str, Any], ...]) -> None:
        number = next(numbers)
        cases = [{**case, "id": f"b{number}c{i}"} for i, case in enumerate(batch)]
        result = run_batch(cases, tmp_path_factory.mktemp(f"hostile{number}"), listener)
        FIGURES.add(result)
        findings.extend(result.findings)

    one_batch()
    FIGURES.write(tmp_path_factory.getbasetemp() / "hostile-figures.json")
    if findings:
        pytest.fail(
            f"{len(findings)} finding(s); {FIGURES.summary()}\n{format_findings(findings)}",
            pytrace=False,
        )


def test_every_position_has_a_plan_for_each_stand_in() -> None:
    world: dict[str, Any] = {
        name: f"/w/{name}"
        for name in (
            "root forbidden allowed secret home deny_cwd allow_cwd touch mkdir true "
            "public_file protected link_source modules"
        ).split()
    }
    world.update(
        tcp_denied=1, tcp_allowed=2, udp_denied=3, udp_allowed=4, lookup_denied=5, lookup_allowed=6
    )
    labels = [p.label for p in POSITIONS]
    assert len(labels) == len(set(labels))
    for position in POSITIONS:
        assert set(position.kinds) <= set(KINDS)
        found = plan(position.api, position.name, "k1", world)
        assert found["denied"] != found["allowed"], position.label
        assert found["evidence"], position.label
    assert all(DUNDERS[kind] for kind in KINDS)


def test_hostile_arguments_never_get_through(
    tmp_path_factory: pytest.TempPathFactory, hostile_listener: Listener
) -> None:
    _check_batches(DEFAULT_BATCHES, tmp_path_factory, hostile_listener)


@pytest.mark.slow
def test_hostile_arguments_never_get_through_large_sample(
    tmp_path_factory: pytest.TempPathFactory, hostile_listener: Listener
) -> None:
    _check_batches(SLOW_BATCHES, tmp_path_factory, hostile_listener)
